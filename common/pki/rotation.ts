// Root rotation as a pure state machine (DESIGN §3): add the new root to the bundle → wait until
// every member trusts it → re-issue intermediates (and the hub's and agents' certificates) under
// the new root → drop the old root → wait until every member has the bundle without it. At no
// point does anyone present a chain that a peer does not trust, hence zero failed handshakes.
//
// The hub calls advanceRotation on every reconcile with what the members last reported; the
// actions it gets back are idempotent (repeat them until the reports show they took effect).
import { z } from 'zod';
import { IsthmusError } from '../errors.ts';

/** Roots are named by fingerprint (rootFingerprint). */
export type RotationState =
  | { readonly stage: 'stable'; readonly root: string; readonly bundleSequence: number }
  | {
      /** distributing: bundle [old, new] published, waiting for every member to hold it.
       *  reissuing: waiting for every member (and the hub) to present chains to the new root.
       *  retiring: bundle [new] published, waiting for every member to hold it. */
      readonly stage: 'distributing' | 'reissuing' | 'retiring';
      readonly oldRoot: string;
      readonly newRoot: string;
      /** The sequence of the bundle this stage published. */
      readonly bundleSequence: number;
    };

export type RotationStage = RotationState['stage'];

/** For reading a persisted RotationState back (the hub keeps it in its trust Secret). */
export const rotationStateSchema: z.ZodType<RotationState> = z.union([
  z.object({ stage: z.literal('stable'), root: z.string().min(1), bundleSequence: z.number().int().nonnegative() }),
  z.object({
    stage: z.enum(['distributing', 'reissuing', 'retiring']),
    oldRoot: z.string().min(1),
    newRoot: z.string().min(1),
    bundleSequence: z.number().int().nonnegative(),
  }),
]);

/** What an agent reports (Heartbeat) about its cluster's trust. */
export const clusterTrustReportSchema = z.object({
  /** Sequence of the bundle every component of the cluster has loaded. */
  bundleSequence: z.number().int().nonnegative(),
  /**
   * Root that every certificate the cluster presents chains to: its intermediate, its agent
   * certificate and the leaves currently served. While any of them is still on the old root,
   * the agent reports the old root.
   */
  rootInUse: z.string().min(1),
});

export type ClusterTrustReport = z.output<typeof clusterTrustReportSchema>;

export interface RotationObservation {
  /** Every current member; undefined while a member has not reported yet. */
  readonly members: ReadonlyMap<string, ClusterTrustReport | undefined>;
  /** Root of the SVID the hub presents. */
  readonly hubRootInUse: string;
}

export type RotationAction =
  | { readonly kind: 'publish-bundle'; readonly roots: readonly string[]; readonly sequence: number }
  | { readonly kind: 'reissue-intermediate'; readonly clusterId: string; readonly root: string }
  | { readonly kind: 'reissue-hub-svid'; readonly root: string }
  /** Nothing depends on the old root any more: delete its key. */
  | { readonly kind: 'retire-root'; readonly root: string };

export interface ClusterRotationStatus {
  readonly clusterId: string;
  readonly bundleSequence: number | undefined;
  /** Holds the bundle this stage published (or a later one). */
  readonly hasCurrentBundle: boolean;
  readonly rootInUse: string | undefined;
  /** Presents chains to the root the rotation moves to (the only root when stable). */
  readonly onTargetRoot: boolean;
}

export interface RotationStep {
  readonly state: RotationState;
  readonly actions: readonly RotationAction[];
  readonly status: readonly ClusterRotationStatus[];
}

function targetRoot(state: RotationState): string {
  return state.stage === 'stable' ? state.root : state.newRoot;
}

/**
 * The root that must sign an intermediate issued now (a cluster joining mid-rotation): the old
 * one until every member trusts the new one.
 */
export function signingRoot(state: RotationState): string {
  return state.stage === 'stable' ? state.root : state.stage === 'distributing' ? state.oldRoot : state.newRoot;
}

/** Which cluster holds which bundle sequence and presents which root. */
export function rotationStatus(state: RotationState, observation: RotationObservation): ClusterRotationStatus[] {
  return [...observation.members].map(([clusterId, report]) => ({
    clusterId,
    bundleSequence: report?.bundleSequence,
    hasCurrentBundle: report !== undefined && report.bundleSequence >= state.bundleSequence,
    rootInUse: report?.rootInUse,
    onTargetRoot: report?.rootInUse === targetRoot(state),
  }));
}

/** Starts a rotation from a stable state: publish the bundle with both roots. */
export function beginRotation(state: RotationState, newRoot: string, observation: RotationObservation): RotationStep {
  if (state.stage !== 'stable') throw new IsthmusError('ISTHMUS_PKI_ROTATION_INVALID', `a rotation is already ${state.stage}`);
  if (newRoot === state.root) throw new IsthmusError('ISTHMUS_PKI_ROTATION_INVALID', 'the new root is the current root');
  const next: RotationState = { stage: 'distributing', oldRoot: state.root, newRoot, bundleSequence: state.bundleSequence + 1 };
  return step(next, [{ kind: 'publish-bundle', roots: [state.root, newRoot], sequence: next.bundleSequence }], observation);
}

/** Moves as far as the observation allows and says what must happen next. */
export function advanceRotation(state: RotationState, observation: RotationObservation): RotationStep {
  if (state.stage === 'stable') return step(state, [], observation);
  const status = rotationStatus(state, observation);
  const everyoneHasBundle = status.every((cluster) => cluster.hasCurrentBundle);
  switch (state.stage) {
    case 'distributing':
      if (!everyoneHasBundle) return step(state, [], observation);
      return advanceRotation({ ...state, stage: 'reissuing' }, observation);
    case 'reissuing': {
      const reissue: RotationAction[] = status
        .filter((cluster) => !cluster.onTargetRoot)
        .map((cluster) => ({ kind: 'reissue-intermediate', clusterId: cluster.clusterId, root: state.newRoot }));
      if (observation.hubRootInUse !== state.newRoot) reissue.push({ kind: 'reissue-hub-svid', root: state.newRoot });
      if (reissue.length > 0) return step(state, reissue, observation);
      const next: RotationState = { ...state, stage: 'retiring', bundleSequence: state.bundleSequence + 1 };
      return step(next, [{ kind: 'publish-bundle', roots: [state.newRoot], sequence: next.bundleSequence }], observation);
    }
    case 'retiring':
      if (!everyoneHasBundle) return step(state, [], observation);
      return step({ stage: 'stable', root: state.newRoot, bundleSequence: state.bundleSequence }, [{ kind: 'retire-root', root: state.oldRoot }], observation);
  }
}

function step(state: RotationState, actions: readonly RotationAction[], observation: RotationObservation): RotationStep {
  return { state, actions, status: rotationStatus(state, observation) };
}
