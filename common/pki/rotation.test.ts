import { describe, expect, it } from 'vitest';
import { isIsthmusError } from '../errors.ts';
import {
  advanceRotation,
  beginRotation,
  clusterTrustReportSchema,
  rotationStateSchema,
  signingRoot,
  type ClusterTrustReport,
  type RotationObservation,
  type RotationState,
} from './rotation.ts';

const OLD = 'old-root';
const NEW = 'new-root';
const stable: RotationState = { stage: 'stable', root: OLD, bundleSequence: 4 };

function observe(hubRootInUse: string, members: Record<string, ClusterTrustReport | undefined>): RotationObservation {
  return { hubRootInUse, members: new Map(Object.entries(members)) };
}

describe('root rotation state machine', () => {
  it('walks add → distributed → re-issued → retired, waiting on the slowest member at each stage', () => {
    const begun = beginRotation(stable, NEW, observe(OLD, { a: { bundleSequence: 4, rootInUse: OLD }, b: undefined }));
    expect(begun.state).toEqual({ stage: 'distributing', oldRoot: OLD, newRoot: NEW, bundleSequence: 5 });
    expect(begun.actions).toEqual([{ kind: 'publish-bundle', roots: [OLD, NEW], sequence: 5 }]);
    expect(signingRoot(begun.state)).toBe(OLD);

    // b has not caught up: nothing may be re-issued yet.
    const waiting = advanceRotation(begun.state, observe(OLD, { a: { bundleSequence: 5, rootInUse: OLD }, b: { bundleSequence: 4, rootInUse: OLD } }));
    expect(waiting.state.stage).toBe('distributing');
    expect(waiting.actions).toEqual([]);
    expect(waiting.status).toEqual([
      { clusterId: 'a', bundleSequence: 5, hasCurrentBundle: true, rootInUse: OLD, onTargetRoot: false },
      { clusterId: 'b', bundleSequence: 4, hasCurrentBundle: false, rootInUse: OLD, onTargetRoot: false },
    ]);

    const reissuing = advanceRotation(begun.state, observe(OLD, { a: { bundleSequence: 5, rootInUse: OLD }, b: { bundleSequence: 5, rootInUse: OLD } }));
    expect(reissuing.state.stage).toBe('reissuing');
    expect(signingRoot(reissuing.state)).toBe(NEW);
    expect(reissuing.actions).toEqual([
      { kind: 'reissue-intermediate', clusterId: 'a', root: NEW },
      { kind: 'reissue-intermediate', clusterId: 'b', root: NEW },
      { kind: 'reissue-hub-svid', root: NEW },
    ]);

    // a and the hub moved; the action for b is repeated until it reports the new root.
    const partly = advanceRotation(reissuing.state, observe(NEW, { a: { bundleSequence: 5, rootInUse: NEW }, b: { bundleSequence: 5, rootInUse: OLD } }));
    expect(partly.state.stage).toBe('reissuing');
    expect(partly.actions).toEqual([{ kind: 'reissue-intermediate', clusterId: 'b', root: NEW }]);

    const retiring = advanceRotation(partly.state, observe(NEW, { a: { bundleSequence: 5, rootInUse: NEW }, b: { bundleSequence: 5, rootInUse: NEW } }));
    expect(retiring.state).toEqual({ stage: 'retiring', oldRoot: OLD, newRoot: NEW, bundleSequence: 6 });
    expect(retiring.actions).toEqual([{ kind: 'publish-bundle', roots: [NEW], sequence: 6 }]);

    const stillRetiring = advanceRotation(retiring.state, observe(NEW, { a: { bundleSequence: 6, rootInUse: NEW }, b: { bundleSequence: 5, rootInUse: NEW } }));
    expect(stillRetiring.state.stage).toBe('retiring');
    expect(stillRetiring.actions).toEqual([]);

    const done = advanceRotation(retiring.state, observe(NEW, { a: { bundleSequence: 6, rootInUse: NEW }, b: { bundleSequence: 7, rootInUse: NEW } }));
    expect(done.state).toEqual({ stage: 'stable', root: NEW, bundleSequence: 6 });
    expect(done.actions).toEqual([{ kind: 'retire-root', root: OLD }]);
    expect(done.status.every((cluster) => cluster.onTargetRoot && cluster.hasCurrentBundle)).toBe(true);
  });

  it('passes several stages in one call when the reports already allow it', () => {
    const begun = beginRotation(stable, NEW, observe(OLD, {}));
    // No members at all: straight to re-issuing, where only the hub is left to move.
    expect(advanceRotation(begun.state, observe(OLD, {})).actions).toEqual([{ kind: 'reissue-hub-svid', root: NEW }]);
    expect(advanceRotation(begun.state, observe(NEW, {})).state.stage).toBe('retiring');
  });

  it('does nothing when stable and refuses to start twice or to rotate to the same root', () => {
    expect(advanceRotation(stable, observe(OLD, { a: { bundleSequence: 4, rootInUse: OLD } })).actions).toEqual([]);
    const begun = beginRotation(stable, NEW, observe(OLD, {}));
    for (const attempt of [() => beginRotation(begun.state, 'third', observe(OLD, {})), () => beginRotation(stable, OLD, observe(OLD, {}))]) {
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
    expect(rotationStateSchema.parse({ stage: 'retiring', oldRoot: OLD, newRoot: NEW, bundleSequence: 9 })).toMatchObject({ stage: 'retiring' });
    expect(rotationStateSchema.safeParse({ stage: 'stable', oldRoot: OLD, bundleSequence: 9 }).success).toBe(false);
    expect(clusterTrustReportSchema.safeParse({ bundleSequence: 3, rootInUse: 'AB:CD' }).success).toBe(true);
    expect(clusterTrustReportSchema.safeParse({ bundleSequence: -1, rootInUse: 'AB:CD' }).success).toBe(false);
    expect(clusterTrustReportSchema.safeParse({ bundleSequence: 3 }).success).toBe(false);
  });
});
