// Leader election against a real kube-apiserver. Real I/O is interleaved with the electors'
// timers, so no test bounds how long something took: they check who leads and in which order things
// happened — the callbacks' timeline in this process, and every version of the Lease as a watch saw
// it (holder, acquireTime, renewTime, duration), whose times come from the same clock as Date.now().
// The only upper bounds are a lease or renew deadline (`patient`) that no test comes near.
// Where expiry is under test the timings are short, and a loaded machine may make a leader miss its
// renew deadline and lose the lease: correct behaviour, which those checks allow for.
import { setTimeout as sleep } from 'node:timers/promises';
import { CoordinationV1Api, V1MicroTime, Watch, type KubeConfig, type V1Lease } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestbed, waitFor, type Testbed } from '../../local/testbed/index.ts';
import { createLogger } from '../logger.ts';
import { LeaderElector, type LeaderElectionOptions } from './leader-election.ts';
import { ensureNamespace, isConflict } from './objects.ts';
import { TcpProxy } from './tcp-proxy.testkit.ts';

const logger = createLogger({
  component: 'leader-election-test',
  level: process.env.ISTHMUS_TEST_LOG === '1' ? 'debug' : 'silent',
});
const NS = 'isthmus-system';
// Short timings where expiry and stepping down are under test: lease 4 s, renew deadline 3 s, retry
// 0.5 s. (The renew deadline also bounds each attempt, a read and a write through a proxy; it must
// leave room for a slow API server.)
const timings = { leaseDurationMs: 4_000, renewDeadlineMs: 3_000, retryPeriodMs: 500 } as const;
// Elsewhere a lease and a renew deadline no test outlasts: a leader stops leading only on purpose
// (stop(), or another holder on its lease), however loaded the machine, and a successor can only
// have the lease if it was released.
const patient = { leaseDurationMs: 120_000, renewDeadlineMs: 30_000 } as const;
/** Barriers wait this long at most, only so that a broken elector does not hang the run. */
const BARRIER_MS = 60_000;

let bed: Testbed;
let kc: KubeConfig;

beforeAll(async () => {
  bed = await startTestbed({ clusters: 1, nats: false, installCrds: false });
  kc = bed.clusters[0]!.kubeConfig();
  await ensureNamespace(kc, NS);
});

afterAll(async () => {
  await bed?.[Symbol.asyncDispose]();
});

/** A callback as it happened: "started", "stopped" or "leader:<id>"; `at` is Date.now(), the clock leases are stamped with. */
interface Happening {
  readonly who: string;
  readonly event: string;
  readonly at: number;
}

interface Candidate {
  readonly elector: LeaderElector;
  /** This candidate's callbacks, in order. */
  readonly log: Happening[];
  readonly signals: AbortSignal[];
}

/** The candidates for one lease and their callbacks on one timeline, in the order they ran. */
class Election {
  readonly lease: string;
  readonly timeline: Happening[] = [];
  readonly candidates: Candidate[] = [];
  /** onStartedLeading calls that found another candidate still leading. */
  readonly overlaps: string[] = [];

  constructor(lease: string) {
    this.lease = lease;
  }

  candidate(identity: string, extra: Partial<LeaderElectionOptions> = {}): Candidate {
    const log: Happening[] = [];
    const signals: AbortSignal[] = [];
    const record = (event: string): void => {
      const happening = { who: identity, event, at: Date.now() };
      log.push(happening);
      this.timeline.push(happening);
    };
    const elector: LeaderElector = new LeaderElector({
      kubeConfig: kc,
      leaseName: this.lease,
      namespace: NS,
      identity,
      ...timings,
      logger,
      onStartedLeading: (signal) => {
        const others = this.candidates
          .filter((c) => c.elector !== elector && c.elector.isLeader())
          .map((c) => c.elector.identity);
        if (others.length > 0) this.overlaps.push(`${identity} started while ${others.join(', ')} led`);
        signals.push(signal);
        record('started');
      },
      onStoppedLeading: () => record('stopped'),
      onNewLeader: (id) => record(`leader:${id}`),
      ...extra,
    });
    const candidate = { elector, log, signals };
    this.candidates.push(candidate);
    return candidate;
  }

  /** Never two leaders: no candidate started while another led, by the electors' state and by their callbacks. */
  expectNeverTwoLeaders(): void {
    expect(this.overlaps).toEqual([]);
    const leading = new Set<string>();
    for (const { who, event } of this.timeline) {
      if (event === 'started') {
        expect([...leading], `when ${who} started`).toEqual([]);
        leading.add(who);
      } else if (event === 'stopped') {
        leading.delete(who);
      }
    }
  }

  /** Position of `who`'s first `event` at or after `from` on the timeline (-1 if none). */
  indexOf(who: string, event: string, from = 0): number {
    return this.timeline.findIndex((h, i) => i >= from && h.who === who && h.event === event);
  }

  /** Waits until exactly one candidate leads, every candidate names it as the leader, and so does the lease. */
  async agreedLeader(): Promise<Candidate> {
    let leader: Candidate | undefined;
    await waitFor(
      'one leader everyone agrees on',
      async () => {
        const leading = this.candidates.filter((c) => c.elector.isLeader());
        const [first] = leading;
        if (leading.length !== 1 || !first) return false;
        if (!this.candidates.every((c) => c.elector.leader() === first.elector.identity)) return false;
        if ((await readLease(this.lease)).holder !== first.elector.identity) return false;
        leader = first;
        return first.elector.isLeader();
      },
      BARRIER_MS,
      10,
    );
    return leader as Candidate;
  }
}

/** One version of the Lease's spec, as written. Times in ms since the epoch. */
interface LeaseVersion {
  readonly holder: string;
  readonly acquireTime: number;
  readonly renewTime: number;
  readonly durationMs: number;
  readonly transitions: number;
}

function msOf(time: Date | string | undefined): number {
  return time === undefined ? Number.NaN : new Date(time).getTime();
}

/** Every version of one Lease, from a watch opened before any candidate starts. */
class LeaseHistory implements AsyncDisposable {
  readonly versions: LeaseVersion[] = [];
  #controller: AbortController | undefined;
  #closing = false;
  #ended: string | undefined;

  static async watch(name: string): Promise<LeaseHistory> {
    const history = new LeaseHistory();
    history.#controller = await new Watch(kc).watch(
      `/apis/coordination.k8s.io/v1/namespaces/${NS}/leases`,
      { fieldSelector: `metadata.name=${name}` },
      (phase: string, lease: V1Lease) => {
        if (phase !== 'ADDED' && phase !== 'MODIFIED') return;
        const spec = lease.spec ?? {};
        history.versions.push({
          holder: spec.holderIdentity ?? '',
          acquireTime: msOf(spec.acquireTime),
          renewTime: msOf(spec.renewTime),
          durationMs: (spec.leaseDurationSeconds ?? 0) * 1000,
          transitions: spec.leaseTransitions ?? 0,
        });
      },
      (err: unknown) => {
        if (!history.#closing) history.#ended = `lease watch ended early: ${String(err)}`;
      },
    );
    if (history.#ended) throw new Error(history.#ended);
    return history;
  }

  /** Holders term by term (renewals collapsed); '' is a released lease. */
  holders(): string[] {
    return this.versions.map((v) => v.holder).filter((holder, i, all) => i === 0 || holder !== all[i - 1]);
  }

  /** The version where `holder` last took the lease from someone else (or from nobody), and the term before it. */
  takeover(holder: string): { readonly taken: LeaseVersion; readonly before: LeaseVersion[] } {
    const at = this.versions.findLastIndex(
      (v, i) => i > 0 && v.holder === holder && this.versions[i - 1]?.holder !== holder,
    );
    expect(at, `${holder} took over the lease`).toBeGreaterThan(0);
    const previous = (this.versions[at - 1] as LeaseVersion).holder;
    let start = at - 1;
    while (start > 0 && (this.versions[start - 1] as LeaseVersion).holder === previous) start--;
    return { taken: this.versions[at] as LeaseVersion, before: this.versions.slice(start, at) };
  }

  /** Whenever one candidate's lease passed to another, the new holder acquired it no earlier than the old one's renewTime + leaseDuration. */
  expectTakeoversOnlyAfterExpiry(): void {
    this.versions.forEach((next, i) => {
      const prev = this.versions[i - 1];
      if (!prev || !prev.holder || !next.holder || prev.holder === next.holder) return;
      expect(next.acquireTime, `${next.holder} took over from ${prev.holder}`).toBeGreaterThanOrEqual(
        prev.renewTime + prev.durationMs,
      );
      expect(next.transitions).toBe(prev.transitions + 1);
    });
  }

  until(what: string, condition: (versions: readonly LeaseVersion[]) => boolean): Promise<void> {
    return waitFor(
      what,
      () => {
        if (this.#ended) throw new Error(this.#ended);
        return Promise.resolve(condition(this.versions));
      },
      BARRIER_MS,
      10,
    );
  }

  [Symbol.asyncDispose](): Promise<void> {
    this.#closing = true;
    this.#controller?.abort();
    return Promise.resolve();
  }
}

/** A barrier on the electors' state. */
function until(what: string, condition: () => boolean, timeoutMs = BARRIER_MS): Promise<void> {
  return waitFor(what, () => Promise.resolve(condition()), timeoutMs, 10);
}

async function readLease(name: string): Promise<{ holder: string; transitions: number }> {
  const lease = await kc.makeApiClient(CoordinationV1Api).readNamespacedLease({ name, namespace: NS });
  return { holder: lease.spec?.holderIdentity ?? '', transitions: lease.spec?.leaseTransitions ?? 0 };
}

/** The other candidate of two. */
function other(election: Election, one: Candidate): Candidate {
  return election.candidates.find((c) => c !== one) as Candidate;
}

describe('LeaderElector on a real kube-apiserver', () => {
  it('elects exactly one of two candidates, and both agree who it is', async () => {
    await using history = await LeaseHistory.watch('one-leader');
    const election = new Election('one-leader');
    const a = election.candidate('a', patient);
    const b = election.candidate('b', patient);
    a.elector.start();
    b.elector.start();
    const leader = await election.agreedLeader();
    const standby = other(election, leader);
    const id = leader.elector.identity;
    // Keep watching while the leader renews a few times: it stays the one leader, and both say so.
    const from = history.versions.length;
    await history.until('three more renewals', (versions) => versions.length >= from + 3);
    expect(await election.agreedLeader()).toBe(leader);
    expect(leader.log.map((h) => h.event)).toEqual([`leader:${id}`, 'started']);
    expect(standby.log.map((h) => h.event)).toEqual([`leader:${id}`]);

    await standby.elector.stop(); // first, so it cannot pick up the lease the leader releases
    await leader.elector.stop();
    await history.until('the lease released', (versions) => versions.at(-1)?.holder === '');
    expect(history.holders()).toEqual([id, '']); // one holder throughout, then released
    election.expectNeverTwoLeaders();
    expect(leader.log.map((h) => h.event)).toEqual([`leader:${id}`, 'started', 'stopped']);
    expect(standby.log.map((h) => h.event)).toEqual([`leader:${id}`]);
    expect(leader.signals.map((s) => s.aborted)).toEqual([true]);
  });

  it('hands over without waiting for expiry when the leader stops and releases the lease', async () => {
    await using history = await LeaseHistory.watch('release');
    const election = new Election('release');
    const a = election.candidate('a', patient);
    a.elector.start();
    await until('a leads', () => a.elector.isLeader());
    const b = election.candidate('b', patient);
    b.elector.start();
    await until('b sees a', () => b.elector.leader() === 'a');

    await a.elector.stop({ release: true });
    expect(a.elector.isLeader()).toBe(false);
    expect(a.log.at(-1)?.event).toBe('stopped');
    await until('b leads', () => b.elector.isLeader());
    await history.until('b in the lease', (versions) => versions.at(-1)?.holder === 'b');
    const { taken, before } = history.takeover('b');
    expect(history.holders()).toEqual(['a', '', 'b']);
    const aLast = history.versions.findLast((v) => v.holder === 'a') as LeaseVersion;
    expect(before.at(-1)?.renewTime).toBeGreaterThanOrEqual(aLast.renewTime); // released after a's last renewal
    expect(taken.acquireTime).toBeLessThan(aLast.renewTime + aLast.durationMs); // ... and taken before a's lease ran out
    expect(election.indexOf('a', 'stopped')).toBeLessThan(election.indexOf('b', 'started'));
    election.expectNeverTwoLeaders();
    expect(await readLease('release')).toEqual({ holder: 'b', transitions: 1 });
    await b.elector.stop();
    expect((await readLease('release')).holder).toBe('');
  });

  it('takes over after lease expiry when the leader crashes, never before', async () => {
    await using history = await LeaseHistory.watch('crash');
    const election = new Election('crash');
    const a = election.candidate('a');
    a.elector.start();
    await until('a leads', () => a.elector.isLeader());
    election.candidate('b').elector.start();
    // Whoever leads once both agree crashes (a, unless a loaded machine made it lose the lease).
    const crashed = await election.agreedLeader();
    const successor = other(election, crashed);
    const [gone, next] = [crashed.elector.identity, successor.elector.identity];

    await crashed.elector.stop({ release: false }); // no release: the lease still names the crashed leader
    await until('the successor leads', () => successor.elector.isLeader());
    await history.until('the successor in the lease', (versions) => versions.at(-1)?.holder === next);
    const { taken, before } = history.takeover(next);
    const last = before.at(-1) as LeaseVersion;
    expect(last.holder).toBe(gone); // not released
    // Not before the lease as last renewed ran out: neither in the lease nor in the successor's callback.
    expect(taken.acquireTime).toBeGreaterThanOrEqual(last.renewTime + last.durationMs);
    const started = successor.log.findLast((h) => h.event === 'started') as Happening;
    expect(started.at).toBeGreaterThanOrEqual(last.renewTime + last.durationMs);
    expect(successor.log.slice(-3).map((h) => h.event)).toEqual([`leader:${gone}`, `leader:${next}`, 'started']);
    election.expectNeverTwoLeaders();
    history.expectTakeoversOnlyAfterExpiry();
    await successor.elector.stop();
  });

  it("leaves a renewed lease alone although its own clock runs an hour ahead of the holder's", async () => {
    const election = new Election('clock-ahead');
    const a = election.candidate('a', patient);
    a.elector.start();
    await until('a leads', () => a.elector.isLeader());
    // By this clock every renewal of a's is an hour old: judged by the holder's timestamps, long expired.
    const b = election.candidate('b', { ...patient, now: () => Date.now() + 3_600_000 });
    b.elector.start();
    await until('b sees a leading', () => b.elector.leader() === 'a');
    expect(a.elector.isLeader()).toBe(true);
    expect(b.elector.isLeader()).toBe(false);
    await b.elector.stop();
    await a.elector.stop();
    election.expectNeverTwoLeaders();
  });

  it("takes over a crashed holder's lease one lease duration after it last saw it change, although its clock runs an hour behind", async () => {
    const election = new Election('clock-behind');
    const a = election.candidate('a');
    a.elector.start();
    await until('a leads', () => a.elector.isLeader());
    // By this clock a's last renewal lies an hour in the future: judged by it, the lease would not run out for an hour.
    const b = election.candidate('b', { now: () => Date.now() - 3_600_000 });
    b.elector.start();
    await until('b sees a', () => b.elector.leader() === 'a');
    await a.elector.stop({ release: false });
    await until('b leads', () => b.elector.isLeader());
    expect(b.log.map((h) => h.event)).toEqual(['leader:a', 'leader:b', 'started']);
    await b.elector.stop();
    election.expectNeverTwoLeaders();
  });

  it('steps down when it cannot renew within renewDeadline, before anyone else may lead', async () => {
    // Each candidate reaches the API server through its own proxy; the leader's is cut.
    await using proxyA = await TcpProxy.start(bed.clusters[0]!.server);
    await using proxyB = await TcpProxy.start(bed.clusters[0]!.server);
    const proxies = new Map([
      ['a', proxyA],
      ['b', proxyB],
    ]);
    await using history = await LeaseHistory.watch('partition');
    const election = new Election('partition');
    const a = election.candidate('a', { kubeConfig: proxyA.kubeConfig(kc) });
    a.elector.start();
    await until('a leads', () => a.elector.isLeader());
    election.candidate('b', { kubeConfig: proxyB.kubeConfig(kc) }).elector.start();
    const cutOff = await election.agreedLeader();
    const successor = other(election, cutOff);
    const [gone, next] = [cutOff.elector.identity, successor.elector.identity];

    const cutAt = election.timeline.length;
    proxies.get(gone)?.cut(); // the leader can no longer reach the API server; the other candidate can
    await until('the successor leads', () => successor.elector.isLeader());
    await history.until('the successor in the lease', (versions) => versions.at(-1)?.holder === next);
    expect(cutOff.elector.isLeader()).toBe(false);
    expect(cutOff.signals.at(-1)?.aborted).toBe(true);
    const stoppedAt = election.indexOf(gone, 'stopped', cutAt);
    const startedAt = election.indexOf(next, 'started', cutAt);
    expect(stoppedAt).toBeGreaterThanOrEqual(0);
    // The cut-off leader stepped down before the successor started: never two leaders...
    expect(stoppedAt).toBeLessThan(startedAt);
    // ...and the successor only took the lease once it had run out.
    const { taken, before } = history.takeover(next);
    const last = before.at(-1) as LeaseVersion;
    expect(last.holder).toBe(gone);
    expect(taken.acquireTime).toBeGreaterThanOrEqual(last.renewTime + last.durationMs);
    // It held on for renewDeadline after its last renewal it knows of: the last one in the lease,
    // or the one before if the cut lost the answer to the last.
    const known = (before.at(-2) ?? last).renewTime;
    expect((election.timeline[stoppedAt] as Happening).at).toBeGreaterThanOrEqual(known + timings.renewDeadlineMs);
    election.expectNeverTwoLeaders();
    history.expectTakeoversOnlyAfterExpiry();

    // When the network heals, the old leader stays a standby behind the new one.
    proxies.get(gone)?.restore();
    await until('the old leader sees the new one', () => cutOff.elector.leader() === next);
    expect(cutOff.elector.isLeader()).toBe(false);
    await cutOff.elector.stop();
    await successor.elector.stop();
  });

  it('steps down at once when another holder shows up on its lease', async () => {
    // Stepping down well before its renew deadline means a noticed the intruder, not its own failure to renew.
    await using history = await LeaseHistory.watch('usurped');
    const election = new Election('usurped');
    const a = election.candidate('a', patient);
    a.elector.start();
    await until('a leads', () => a.elector.isLeader());
    const api = kc.makeApiClient(CoordinationV1Api);
    await waitFor(
      'the intruder written', // a renewal between our read and our write is a conflict: read again
      async () => {
        const lease = await api.readNamespacedLease({ name: 'usurped', namespace: NS });
        const now = new V1MicroTime();
        const body = {
          ...lease,
          spec: {
            ...lease.spec,
            holderIdentity: 'intruder',
            leaseDurationSeconds: 60,
            acquireTime: now,
            renewTime: now,
          },
        };
        try {
          await api.replaceNamespacedLease({ name: 'usurped', namespace: NS, body });
          return true;
        } catch (err) {
          if (isConflict(err)) return false;
          throw err;
        }
      },
      BARRIER_MS,
      0,
    );
    await until('a stepped down', () => !a.elector.isLeader());
    expect(a.elector.leader()).toBe('intruder');
    expect(a.log.map((e) => e.event)).toEqual(['leader:a', 'started', 'stopped', 'leader:intruder']); // stepped down before announcing
    await history.until('the intruder in the lease', (versions) => versions.some((v) => v.holder === 'intruder'));
    const { before } = history.takeover('intruder');
    const aLast = before.at(-1) as LeaseVersion;
    expect((a.log[2] as Happening).at).toBeLessThan(aLast.renewTime + patient.renewDeadlineMs);
    await a.elector.stop();
    expect(history.holders()).toEqual(['a', 'intruder']); // it never wrote over the intruder
    expect((await readLease('usurped')).holder).toBe('intruder'); // not ours to release
  });

  it('lets leader work finish before releasing on stop', async () => {
    const order: string[] = [];
    const a = new Election('graceful').candidate('a', {
      ...patient,
      onStartedLeading: async (signal) => {
        order.push('work started');
        await new Promise((resolve) => signal.addEventListener('abort', resolve, { once: true }));
        await sleep(100); // flushing state
        order.push(`work finished, holder ${(await readLease('graceful')).holder}`);
      },
    });
    a.elector.start();
    await until('a leads', () => a.elector.isLeader());
    await a.elector.stop();
    order.push(`released, holder '${(await readLease('graceful')).holder}'`);
    expect(order).toEqual(['work started', 'work finished, holder a', "released, holder ''"]);
  });

  it('refuses inconsistent timings', () => {
    const base = { kubeConfig: kc, leaseName: 'x', namespace: NS, identity: 'a' };
    expect(() => new LeaderElector({ ...base, leaseDurationMs: 2_000, renewDeadlineMs: 2_000 })).toThrow(
      /renewDeadline/,
    );
    expect(() => new LeaderElector({ ...base, retryPeriodMs: 8_000 })).toThrow(/retryPeriod/);
    expect(() => new LeaderElector({ ...base, identity: '' })).toThrow(/identity/);
  });
});
