import { setTimeout as sleep } from 'node:timers/promises';
import { CoordinationV1Api, V1MicroTime, type KubeConfig } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestbed, waitFor, type Testbed } from '../../e2e/testbed/index.ts';
import { createLogger } from '../logger.ts';
import { LeaderElector, type LeaderElectionOptions } from './leader-election.ts';
import { ensureNamespace } from './objects.ts';
import { TcpProxy } from './tcp-proxy.testkit.ts';

const logger = createLogger({ component: 'leader-election-test', level: process.env.ISTHMUS_TEST_LOG === '1' ? 'debug' : 'silent' });
const NS = 'isthmus-system';
// Short timings for tests: lease 2 s, renew deadline 1.5 s, retry 0.5 s.
const timings = { leaseDurationMs: 2_000, renewDeadlineMs: 1_500, retryPeriodMs: 500 } as const;

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

interface Candidate {
  readonly elector: LeaderElector;
  /** Timeline of callbacks: "started", "stopped", "leader:<id>", with times. */
  readonly log: { event: string; at: number }[];
  readonly signals: AbortSignal[];
}

function candidate(identity: string, lease: string, extra: Partial<LeaderElectionOptions> = {}): Candidate {
  const log: { event: string; at: number }[] = [];
  const signals: AbortSignal[] = [];
  const elector = new LeaderElector({
    kubeConfig: kc,
    leaseName: lease,
    namespace: NS,
    identity,
    ...timings,
    logger,
    onStartedLeading: (signal) => {
      signals.push(signal);
      log.push({ event: 'started', at: performance.now() });
    },
    onStoppedLeading: () => log.push({ event: 'stopped', at: performance.now() }),
    onNewLeader: (id) => log.push({ event: `leader:${id}`, at: performance.now() }),
    ...extra,
  });
  return { elector, log, signals };
}

function until(what: string, condition: () => boolean, timeoutMs = 10_000): Promise<void> {
  return waitFor(what, () => Promise.resolve(condition()), timeoutMs, 10);
}

async function readLease(name: string): Promise<{ holder: string; transitions: number }> {
  const lease = await kc.makeApiClient(CoordinationV1Api).readNamespacedLease({ name, namespace: NS });
  return { holder: lease.spec?.holderIdentity ?? '', transitions: lease.spec?.leaseTransitions ?? 0 };
}

describe('LeaderElector on a real kube-apiserver', () => {
  it('elects exactly one of two candidates, and both agree who it is', async () => {
    const a = candidate('a', 'one-leader');
    const b = candidate('b', 'one-leader');
    a.elector.start();
    b.elector.start();
    await until('a leader', () => a.elector.isLeader() || b.elector.isLeader());
    const [leader, standby] = a.elector.isLeader() ? [a, b] : [b, a];
    // Watch for a few lease periods: never two leaders, never none.
    const deadline = performance.now() + 2 * timings.leaseDurationMs;
    while (performance.now() < deadline) {
      expect([a, b].filter((c) => c.elector.isLeader())).toEqual([leader]);
      await sleep(25);
    }
    await until('standby observed the leader', () => standby.elector.leader() === leader.elector.identity);
    expect(leader.elector.leader()).toBe(leader.elector.identity);
    expect(leader.log.filter((e) => e.event === 'started')).toHaveLength(1);
    expect(standby.log.map((e) => e.event)).toEqual([`leader:${leader.elector.identity}`]);
    expect((await readLease('one-leader')).holder).toBe(leader.elector.identity);
    await Promise.all([a.elector.stop(), b.elector.stop()]);
    expect(leader.log.map((e) => e.event)).toEqual([`leader:${leader.elector.identity}`, 'started', 'stopped']);
    expect(leader.signals[0]?.aborted).toBe(true);
  });

  it('hands over within about one retry period when the leader stops and releases the lease', async () => {
    const a = candidate('a', 'release');
    a.elector.start();
    await until('a leads', () => a.elector.isLeader());
    const b = candidate('b', 'release');
    b.elector.start();
    await until('b sees a', () => b.elector.leader() === 'a');
    await sleep(timings.retryPeriodMs); // b is somewhere in its retry cycle

    const stopped = performance.now();
    await a.elector.stop({ release: true });
    expect(a.elector.isLeader()).toBe(false);
    expect(a.log.at(-1)?.event).toBe('stopped');
    await until('b leads', () => b.elector.isLeader(), 5_000);
    const handoverMs = performance.now() - stopped;
    console.info(`handover after release: ${Math.round(handoverMs)} ms (retry period ${timings.retryPeriodMs} ms)`);
    // At most one retry period (plus up to 20% jitter) and a round trip.
    expect(handoverMs).toBeLessThan(timings.retryPeriodMs * 1.2 + 250);
    expect(await readLease('release')).toEqual({ holder: 'b', transitions: 1 });
    await b.elector.stop();
    expect((await readLease('release')).holder).toBe('');
  });

  it('takes over after lease expiry when the leader crashes, never before', async () => {
    const a = candidate('a', 'crash');
    a.elector.start();
    await until('a leads', () => a.elector.isLeader());
    const b = candidate('b', 'crash');
    b.elector.start();
    await until('b sees a', () => b.elector.leader() === 'a');

    const crashed = performance.now();
    await a.elector.stop({ release: false }); // no release: the lease still names a
    expect((await readLease('crash')).holder).toBe('a');
    await until('b leads', () => b.elector.isLeader(), 10_000);
    const takeoverMs = performance.now() - crashed;
    console.info(`takeover after crash: ${Math.round(takeoverMs)} ms (lease ${timings.leaseDurationMs} ms, retry ${timings.retryPeriodMs} ms)`);
    // a renewed at most one retry period before it stopped, so the lease ran out no earlier
    // than leaseDuration - retryPeriod after, and b noticed within one more retry period.
    expect(takeoverMs).toBeGreaterThanOrEqual(timings.leaseDurationMs - timings.retryPeriodMs - 100);
    expect(takeoverMs).toBeLessThan(timings.leaseDurationMs + timings.retryPeriodMs * 1.2 + 250);
    expect(b.log.map((e) => e.event)).toEqual(['leader:a', 'leader:b', 'started']);
    await b.elector.stop();
  });

  it('steps down when it cannot renew within renewDeadline, before anyone else may lead', async () => {
    await using proxy = await TcpProxy.start(bed.clusters[0]!.server);
    const a = candidate('a', 'partition', { kubeConfig: proxy.kubeConfig(kc) });
    a.elector.start();
    await until('a leads', () => a.elector.isLeader());
    const b = candidate('b', 'partition');
    b.elector.start();
    await until('b sees a', () => b.elector.leader() === 'a');

    const cut = performance.now();
    proxy.cut(); // a can no longer reach the API server; b can
    await until('b leads', () => b.elector.isLeader(), 10_000);
    const aStopped = a.log.find((e) => e.event === 'stopped');
    const bStarted = b.log.find((e) => e.event === 'started');
    expect(aStopped).toBeDefined();
    expect(a.elector.isLeader()).toBe(false);
    expect(a.signals[0]?.aborted).toBe(true);
    console.info(`partitioned leader stepped down after ${Math.round(aStopped!.at - cut)} ms; successor started ${Math.round(bStarted!.at - aStopped!.at)} ms later`);
    // Within the renew deadline of its last renewal (at most one retry period before the cut)...
    expect(aStopped!.at - cut).toBeLessThanOrEqual(timings.renewDeadlineMs + 250);
    // ...and strictly before the successor started: never two leaders.
    expect(aStopped!.at).toBeLessThan(bStarted!.at);

    // When the network heals, a stays a standby behind b.
    proxy.restore();
    await until('a sees b', () => a.elector.leader() === 'b', 5_000);
    expect(a.elector.isLeader()).toBe(false);
    await Promise.all([a.elector.stop(), b.elector.stop()]);
  });

  it('steps down at once when another holder shows up on its lease', async () => {
    const a = candidate('a', 'usurped');
    a.elector.start();
    await until('a leads', () => a.elector.isLeader());
    const api = kc.makeApiClient(CoordinationV1Api);
    const lease = await api.readNamespacedLease({ name: 'usurped', namespace: NS });
    const now = new V1MicroTime();
    await api.replaceNamespacedLease({
      name: 'usurped',
      namespace: NS,
      body: { ...lease, spec: { ...lease.spec, holderIdentity: 'intruder', leaseDurationSeconds: 60, acquireTime: now, renewTime: now } },
    });
    const replaced = performance.now();
    await until('a stepped down', () => !a.elector.isLeader(), 5_000);
    expect(performance.now() - replaced).toBeLessThan(timings.retryPeriodMs + 400);
    expect(a.elector.leader()).toBe('intruder');
    expect(a.log.map((e) => e.event)).toEqual(['leader:a', 'started', 'stopped', 'leader:intruder']); // stepped down before announcing
    await a.elector.stop();
    expect((await readLease('usurped')).holder).toBe('intruder'); // not ours to release
  });

  it('lets leader work finish before releasing on stop', async () => {
    const order: string[] = [];
    const a = candidate('a', 'graceful', {
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
    expect(() => new LeaderElector({ ...base, leaseDurationMs: 2_000, renewDeadlineMs: 2_000 })).toThrow(/renewDeadline/);
    expect(() => new LeaderElector({ ...base, retryPeriodMs: 8_000 })).toThrow(/retryPeriod/);
    expect(() => new LeaderElector({ ...base, identity: '' })).toThrow(/identity/);
  });
});
