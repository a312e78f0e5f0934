import { describe, expect, it } from 'vitest';
import { isIsthmusError } from '../errors.ts';
import {
  advanceRotation,
  beginRotation,
  clusterTrustReportSchema,
  needsReissue,
  rotationStateSchema,
  signingRoot,
  type RotationObservation,
  type RotationState,
} from './rotation.ts';

const OLD = 'old-root';
const NEW = 'new-root';
const stable: RotationState = { stage: 'stable', root: OLD, bundleSequence: 4 };
const T0 = Date.parse('2026-01-01T00:00:00Z');
const MINUTE = 60_000;
const policy = { stageTimeoutMs: 60 * MINUTE };

/** A member as the hub sees it: the bundle it reports, the root it claims, the root the hub issued under (defaults to the claim). */
interface Member {
  bundleSequence?: number;
  rootInUse?: string;
  issuedRoot?: string;
}

function observe(hubRootInUse: string, members: Record<string, Member | undefined>, now = T0): RotationObservation {
  return {
    hubRootInUse,
    now,
    members: new Map(
      Object.entries(members).map(([id, m]) => [
        id,
        {
          report:
            m?.bundleSequence !== undefined && m.rootInUse !== undefined
              ? { bundleSequence: m.bundleSequence, rootInUse: m.rootInUse }
              : undefined,
          issuedRoot: m && 'issuedRoot' in m ? m.issuedRoot : m?.rootInUse,
        },
      ]),
    ),
  };
}

describe('root rotation state machine', () => {
  it('walks add → distributed → re-issued → retired, waiting on the slowest member at each stage', () => {
    const begun = beginRotation(stable, NEW, observe(OLD, { a: { bundleSequence: 4, rootInUse: OLD }, b: undefined }));
    expect(begun.state).toEqual({
      stage: 'distributing',
      oldRoot: OLD,
      newRoot: NEW,
      bundleSequence: 5,
      since: new Date(T0).toISOString(),
    });
    expect(begun.actions).toEqual([{ kind: 'publish-bundle', roots: [OLD, NEW], sequence: 5 }]);
    expect(signingRoot(begun.state)).toBe(OLD);

    // b has not caught up: nothing may be re-issued yet.
    const waiting = advanceRotation(
      begun.state,
      observe(OLD, { a: { bundleSequence: 5, rootInUse: OLD }, b: { bundleSequence: 4, rootInUse: OLD } }),
      policy,
    );
    expect(waiting.state.stage).toBe('distributing');
    expect(waiting.actions).toEqual([]);
    expect(waiting.status).toEqual([
      {
        clusterId: 'a',
        bundleSequence: 5,
        hasCurrentBundle: true,
        rootInUse: OLD,
        issuedRoot: OLD,
        onTargetRoot: false,
        leftBehind: false,
      },
      {
        clusterId: 'b',
        bundleSequence: 4,
        hasCurrentBundle: false,
        rootInUse: OLD,
        issuedRoot: OLD,
        onTargetRoot: false,
        leftBehind: false,
      },
    ]);

    const reissuing = advanceRotation(
      begun.state,
      observe(OLD, { a: { bundleSequence: 5, rootInUse: OLD }, b: { bundleSequence: 5, rootInUse: OLD } }),
      policy,
    );
    expect(reissuing.state.stage).toBe('reissuing');
    expect(signingRoot(reissuing.state)).toBe(NEW);
    expect(reissuing.actions).toEqual([
      { kind: 'reissue-intermediate', clusterId: 'a', root: NEW },
      { kind: 'reissue-intermediate', clusterId: 'b', root: NEW },
      { kind: 'reissue-hub-svid', root: NEW },
    ]);

    // a and the hub moved; the action for b is repeated until it reports the new root.
    const partly = advanceRotation(
      reissuing.state,
      observe(NEW, { a: { bundleSequence: 5, rootInUse: NEW }, b: { bundleSequence: 5, rootInUse: OLD } }),
      policy,
    );
    expect(partly.state.stage).toBe('reissuing');
    expect(partly.actions).toEqual([{ kind: 'reissue-intermediate', clusterId: 'b', root: NEW }]);

    const retiring = advanceRotation(
      partly.state,
      observe(NEW, { a: { bundleSequence: 5, rootInUse: NEW }, b: { bundleSequence: 5, rootInUse: NEW } }),
      policy,
    );
    expect(retiring.state).toEqual({
      stage: 'retiring',
      oldRoot: OLD,
      newRoot: NEW,
      bundleSequence: 6,
      since: new Date(T0).toISOString(),
      forced: [],
    });
    expect(retiring.actions).toEqual([{ kind: 'publish-bundle', roots: [NEW], sequence: 6 }]);

    const stillRetiring = advanceRotation(
      retiring.state,
      observe(NEW, { a: { bundleSequence: 6, rootInUse: NEW }, b: { bundleSequence: 5, rootInUse: NEW } }),
      policy,
    );
    expect(stillRetiring.state.stage).toBe('retiring');
    expect(stillRetiring.actions).toEqual([]);

    const done = advanceRotation(
      retiring.state,
      observe(NEW, { a: { bundleSequence: 6, rootInUse: NEW }, b: { bundleSequence: 7, rootInUse: NEW } }),
      policy,
    );
    expect(done.state).toEqual({ stage: 'stable', root: NEW, bundleSequence: 6, forced: [] });
    expect(done.actions).toEqual([{ kind: 'retire-root', root: OLD }]);
    expect(done.status.every((cluster) => cluster.onTargetRoot && cluster.hasCurrentBundle)).toBe(true);
  });

  it('passes several stages in one call when the reports already allow it', () => {
    const begun = beginRotation(stable, NEW, observe(OLD, {}));
    // No members at all: straight to re-issuing, where only the hub is left to move.
    expect(advanceRotation(begun.state, observe(OLD, {}), policy).actions).toEqual([
      { kind: 'reissue-hub-svid', root: NEW },
    ]);
    expect(advanceRotation(begun.state, observe(NEW, {}), policy).state.stage).toBe('retiring');
  });

  it('counts a cluster as re-issued only once the hub issued its certificates under the new root, whatever its agent claims', () => {
    const begun = beginRotation(stable, NEW, observe(OLD, { a: { bundleSequence: 4, rootInUse: OLD } }));
    const reissuing = advanceRotation(begun.state, observe(NEW, { a: { bundleSequence: 5, rootInUse: OLD } }), policy);
    expect(reissuing.state.stage).toBe('reissuing');

    // The agent says it presents the new root, but the hub never issued it anything under it.
    const claimed = observe(NEW, { a: { bundleSequence: 5, rootInUse: NEW, issuedRoot: OLD } }, T0 + MINUTE);
    const step = advanceRotation(reissuing.state, claimed, policy);
    expect(step.state.stage).toBe('reissuing');
    expect(step.actions).toEqual([{ kind: 'reissue-intermediate', clusterId: 'a', root: NEW }]);
    expect(step.status[0]).toMatchObject({ rootInUse: NEW, issuedRoot: OLD, onTargetRoot: false });
    expect(
      needsReissue(reissuing.state, claimed.members.get('a') ?? { report: undefined, issuedRoot: undefined }),
    ).toBe(true);

    // Issued under the new root: done, even while the agent still reports the old one (it is asked again).
    const issued = observe(NEW, { a: { bundleSequence: 5, rootInUse: OLD, issuedRoot: NEW } }, T0 + 2 * MINUTE);
    const retiring = advanceRotation(reissuing.state, issued, policy);
    expect(retiring.state.stage).toBe('retiring');
    expect(needsReissue(reissuing.state, issued.members.get('a') ?? { report: undefined, issuedRoot: undefined })).toBe(
      true,
    );
  });

  it('waits for a silent member until the stage timeout, then steps on without it and names it', () => {
    const members = (sequence: number, root: string, now: number): RotationObservation =>
      observe(
        root,
        { a: { bundleSequence: sequence, rootInUse: root }, silent: { bundleSequence: 4, rootInUse: OLD } },
        now,
      );
    const begun = beginRotation(stable, NEW, members(4, OLD, T0));

    const justBefore = advanceRotation(begun.state, members(5, OLD, T0 + policy.stageTimeoutMs - 1), policy);
    expect(justBefore.state).toBe(begun.state);
    expect(justBefore.actions).toEqual([]);

    const atDeadline = T0 + policy.stageTimeoutMs;
    const forced = advanceRotation(begun.state, members(5, OLD, atDeadline), policy);
    const left = { stage: 'distributing', clusters: ['silent'], at: new Date(atDeadline).toISOString() };
    expect(forced.state).toEqual({
      stage: 'reissuing',
      oldRoot: OLD,
      newRoot: NEW,
      bundleSequence: 5,
      since: new Date(atDeadline).toISOString(),
      forced: [left],
    });
    expect(forced.actions[0]).toEqual({ kind: 'warn-left-behind', forced: left });
    expect(forced.status.find((c) => c.clusterId === 'silent')?.leftBehind).toBe(true);
    // It is still asked to move (should it come back), but no later stage waits for it.
    expect(forced.actions).toContainEqual({ kind: 'reissue-intermediate', clusterId: 'silent', root: NEW });

    const t1 = atDeadline + MINUTE;
    const retiring = advanceRotation(
      forced.state,
      observe(NEW, { a: { bundleSequence: 5, rootInUse: NEW }, silent: { bundleSequence: 4, rootInUse: OLD } }, t1),
      policy,
    );
    expect(retiring.state).toMatchObject({
      stage: 'retiring',
      bundleSequence: 6,
      since: new Date(t1).toISOString(),
      forced: [left],
    });
    expect(retiring.actions).toEqual([{ kind: 'publish-bundle', roots: [NEW], sequence: 6 }]);

    const done = advanceRotation(
      retiring.state,
      observe(
        NEW,
        { a: { bundleSequence: 6, rootInUse: NEW }, silent: { bundleSequence: 4, rootInUse: OLD } },
        t1 + MINUTE,
      ),
      policy,
    );
    expect(done.state).toEqual({ stage: 'stable', root: NEW, bundleSequence: 6, forced: [left] });
    expect(done.actions).toEqual([{ kind: 'retire-root', root: OLD }]);
  });

  it('steps past a member that never gets re-issued at the deadline of the re-issuing stage', () => {
    const begun = beginRotation(stable, NEW, observe(OLD, {}));
    const reissuing = advanceRotation(
      begun.state,
      observe(NEW, { a: { bundleSequence: 5, rootInUse: OLD } }, T0),
      policy,
    );
    expect(reissuing.state.stage).toBe('reissuing');
    const stuck = observe(NEW, { a: { bundleSequence: 5, rootInUse: OLD } }, T0 + policy.stageTimeoutMs - 1);
    expect(advanceRotation(reissuing.state, stuck, policy).state.stage).toBe('reissuing');
    const late = T0 + policy.stageTimeoutMs;
    const forced = advanceRotation(
      reissuing.state,
      observe(NEW, { a: { bundleSequence: 5, rootInUse: OLD } }, late),
      policy,
    );
    const left = { stage: 'reissuing', clusters: ['a'], at: new Date(late).toISOString() };
    expect(forced.state).toEqual({
      stage: 'retiring',
      oldRoot: OLD,
      newRoot: NEW,
      bundleSequence: 6,
      since: new Date(late).toISOString(),
      forced: [left],
    });
    expect(forced.actions).toEqual([
      { kind: 'warn-left-behind', forced: left },
      { kind: 'publish-bundle', roots: [NEW], sequence: 6 },
    ]);
  });

  it('retires the old root only once the NATS certificate the hub manages was issued under the new root', () => {
    const begun = beginRotation(stable, NEW, observe(OLD, {}));
    const withNats = (natsIssuedRoot: string): RotationObservation => ({
      ...observe(NEW, { a: { bundleSequence: 5, rootInUse: NEW } }),
      natsIssuedRoot,
    });
    const waiting = advanceRotation(begun.state, withNats(OLD), policy);
    expect(waiting.state.stage).toBe('reissuing');
    expect(waiting.actions).toEqual([{ kind: 'reissue-nats-svid', root: NEW }]);
    // Not even the stage deadline steps past NATS: the hub issues its certificate itself.
    expect(
      advanceRotation(waiting.state, { ...withNats(OLD), now: T0 + 10 * policy.stageTimeoutMs }, policy).state.stage,
    ).toBe('reissuing');
    expect(advanceRotation(waiting.state, withNats(NEW), policy).state.stage).toBe('retiring');
  });

  it('does nothing when stable and refuses to start twice or to rotate to the same root', () => {
    expect(advanceRotation(stable, observe(OLD, { a: { bundleSequence: 4, rootInUse: OLD } }), policy).actions).toEqual(
      [],
    );
    const begun = beginRotation(stable, NEW, observe(OLD, {}));
    for (const attempt of [
      () => beginRotation(begun.state, 'third', observe(OLD, {})),
      () => beginRotation(stable, OLD, observe(OLD, {})),
    ]) {
      let thrown: unknown;
      try {
        attempt();
      } catch (err) {
        thrown = err;
      }
      expect(isIsthmusError(thrown, 'ISTHMUS_PKI_ROTATION_INVALID')).toBe(true);
    }
  });

  it('validates agent reports and persisted states at the edge', () => {
    expect(
      rotationStateSchema.parse({
        stage: 'retiring',
        oldRoot: OLD,
        newRoot: NEW,
        bundleSequence: 9,
        since: new Date(T0).toISOString(),
      }),
    ).toMatchObject({ stage: 'retiring' });
    expect(rotationStateSchema.safeParse({ stage: 'stable', oldRoot: OLD, bundleSequence: 9 }).success).toBe(false);
    expect(clusterTrustReportSchema.safeParse({ bundleSequence: 3, rootInUse: 'AB:CD' }).success).toBe(true);
    expect(clusterTrustReportSchema.safeParse({ bundleSequence: -1, rootInUse: 'AB:CD' }).success).toBe(false);
    expect(clusterTrustReportSchema.safeParse({ bundleSequence: 3 }).success).toBe(false);
  });
});
