// The hub's rotation driver on a fake clock and an in-memory trust store: a silent member holds a
// stage only until the stage timeout (then a warning names it), and an agent's claimed root
// never counts as progress — only certificates the hub issued under the new root do.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { pino } from 'pino';
import type { MemberCluster, MemberClusterStatus } from '../common/api/isthmus.ts';
import { RootAuthority, createTrustBundle, signingRoot, type RotationState } from '../common/pki/index.ts';
import type { MemberCache } from './membership.ts';
import { observeMembers, stepTrustRotation, type TrustRotationDeps } from './trust-rotation.ts';
import type { TrustState } from './trust-store.ts';

const TRUST_DOMAIN = 'isthmus.local';
const STAGE_TIMEOUT_MS = 30 * 60_000;

function member(clusterId: string, status: Omit<MemberClusterStatus, 'conditions'>): MemberCluster {
  return {
    apiVersion: 'isthmus.dev/v1alpha1',
    kind: 'MemberCluster',
    metadata: { name: clusterId },
    spec: { clusterId, accepted: true },
    status: {
      ...status,
      conditions: [
        { type: 'Joined', status: 'True', reason: 'Joined', message: '', lastTransitionTime: '2026-01-01T00:00:00Z' },
      ],
    },
  };
}

/** A hub with an in-memory trust store whose members are what the test sets. */
async function fakeHub(): Promise<{
  deps: TrustRotationDeps;
  members: Map<string, MemberCluster>;
  logs: Record<string, unknown>[];
  state: () => TrustState;
  oldRoot: string;
}> {
  const root = await RootAuthority.generate({ trustDomain: TRUST_DOMAIN });
  let state: TrustState = {
    roots: new Map([[root.fingerprint, root]]),
    bundle: createTrustBundle({ trustDomain: TRUST_DOMAIN, sequence: 1, roots: [root.certificatePem] }),
    rotation: { stage: 'stable', root: root.fingerprint, bundleSequence: 1 },
    handledRequest: '',
  };
  const members = new Map<string, MemberCluster>();
  const cache: MemberCache = { get: (id) => members.get(id), list: () => [...members.values()] };
  const logs: Record<string, unknown>[] = [];
  const log = pino(
    { level: 'info' },
    { write: (line: string) => logs.push(JSON.parse(line) as Record<string, unknown>) },
  );
  let requested: string | undefined = 'requested';
  const trust: TrustRotationDeps['trust'] = {
    get state() {
      return state;
    },
    get pendingRotationRequest() {
      return requested !== state.handledRequest ? requested : undefined;
    },
    save: (next: TrustState) => {
      state = next;
      requested = next.handledRequest;
      return Promise.resolve(true);
    },
  };
  const deps: TrustRotationDeps = {
    trust,
    memberCache: cache,
    // The hub's SVID and NATS's certificate follow the signing root at once (hub.ts does that within a trust tick).
    hubRootInUse: () => signingRoot(state.rotation),
    natsIssuedRoot: () => signingRoot(state.rotation),
    rootTtlMs: 3_600_000,
    stageTimeoutMs: STAGE_TIMEOUT_MS,
    log,
  };
  return { deps, members, logs, state: () => state, oldRoot: root.fingerprint };
}

function rotating(state: RotationState): Extract<RotationState, { newRoot: string }> {
  if (state.stage === 'stable') throw new Error('not rotating');
  return state;
}

describe('hub root rotation driver', () => {
  beforeEach(() => {
    vi.useFakeTimers({ toFake: ['Date'], now: Date.parse('2026-03-01T12:00:00Z') });
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('waits for a silent member until the stage timeout, then steps on with a warning naming it', async () => {
    const hub = await fakeHub();
    hub.members.set(
      'a',
      member('a', {
        trustBundleSequence: 1,
        trustRoot: hub.oldRoot,
        intermediateRoot: hub.oldRoot,
        agentCertificateRoot: hub.oldRoot,
      }),
    );
    hub.members.set(
      'silent',
      member('silent', {
        trustBundleSequence: 1,
        trustRoot: hub.oldRoot,
        intermediateRoot: hub.oldRoot,
        agentCertificateRoot: hub.oldRoot,
      }),
    );
    await stepTrustRotation(hub.deps);
    const { newRoot } = rotating(hub.state().rotation);
    expect(hub.state().rotation.stage).toBe('distributing');

    // a follows; silent never says anything again.
    hub.members.set(
      'a',
      member('a', {
        trustBundleSequence: 2,
        trustRoot: hub.oldRoot,
        intermediateRoot: hub.oldRoot,
        agentCertificateRoot: hub.oldRoot,
      }),
    );
    for (let minute = 1; minute < 30; minute++) {
      vi.advanceTimersByTime(60_000);
      await stepTrustRotation(hub.deps);
      expect(hub.state().rotation.stage).toBe('distributing');
    }
    expect(hub.logs.filter((l) => l.level === 40)).toEqual([]);

    vi.advanceTimersByTime(60_000);
    await stepTrustRotation(hub.deps);
    expect(hub.state().rotation).toMatchObject({
      stage: 'reissuing',
      newRoot,
      forced: [{ stage: 'distributing', clusters: ['silent'] }],
    });
    const warnings = hub.logs.filter((l) => l.level === 40);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatchObject({ stage: 'distributing', clusters: ['silent'] });
    expect(String(warnings[0]?.msg)).toContain('silent');

    // The hub issues a's certificates under the new root; the silent member is not waited for again.
    hub.members.set(
      'a',
      member('a', {
        trustBundleSequence: 2,
        trustRoot: newRoot,
        intermediateRoot: newRoot,
        agentCertificateRoot: newRoot,
      }),
    );
    await stepTrustRotation(hub.deps);
    expect(hub.state().rotation.stage).toBe('retiring');
    hub.members.set(
      'a',
      member('a', {
        trustBundleSequence: 3,
        trustRoot: newRoot,
        intermediateRoot: newRoot,
        agentCertificateRoot: newRoot,
      }),
    );
    await stepTrustRotation(hub.deps);
    expect(hub.state().rotation).toMatchObject({
      stage: 'stable',
      root: newRoot,
      forced: [{ stage: 'distributing', clusters: ['silent'] }],
    });
    expect([...hub.state().roots.keys()]).toEqual([newRoot]);
  });

  it('does not count an agent that claims the new root without having been issued under it', async () => {
    const hub = await fakeHub();
    hub.members.set(
      'a',
      member('a', {
        trustBundleSequence: 1,
        trustRoot: hub.oldRoot,
        intermediateRoot: hub.oldRoot,
        agentCertificateRoot: hub.oldRoot,
      }),
    );
    await stepTrustRotation(hub.deps);
    const { newRoot } = rotating(hub.state().rotation);
    hub.members.set(
      'a',
      member('a', {
        trustBundleSequence: 2,
        trustRoot: hub.oldRoot,
        intermediateRoot: hub.oldRoot,
        agentCertificateRoot: hub.oldRoot,
      }),
    );
    await stepTrustRotation(hub.deps);
    expect(hub.state().rotation.stage).toBe('reissuing');

    // The heartbeat claims the new root; the hub issued only the agent certificate under it.
    hub.members.set(
      'a',
      member('a', {
        trustBundleSequence: 2,
        trustRoot: newRoot,
        intermediateRoot: hub.oldRoot,
        agentCertificateRoot: newRoot,
      }),
    );
    for (let i = 0; i < 3; i++) {
      vi.advanceTimersByTime(60_000);
      await stepTrustRotation(hub.deps);
    }
    expect(hub.state().rotation.stage).toBe('reissuing');
    expect(observeMembers([...hub.members.values()], newRoot, Date.now()).members.get('a')).toEqual({
      report: { bundleSequence: 2, rootInUse: newRoot },
      issuedRoot: undefined,
    });

    hub.members.set(
      'a',
      member('a', {
        trustBundleSequence: 2,
        trustRoot: newRoot,
        intermediateRoot: newRoot,
        agentCertificateRoot: newRoot,
      }),
    );
    await stepTrustRotation(hub.deps);
    expect(hub.state().rotation).toMatchObject({ stage: 'retiring', forced: [] });
  });
});
