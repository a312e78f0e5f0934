// Root rotation as a pure state machine (DESIGN §3): add the new root to the bundle → wait until
// every member trusts it → re-issue intermediates (and the hub's and agents' certificates) under
// the new root → drop the old root → wait until every member has the bundle without it. At no
// point does anyone present a chain that a peer does not trust, hence zero failed handshakes.
//
// Progress is judged by what the hub did, not by what agents say: a cluster counts as re-issued
// once the hub itself signed its intermediate and its agent certificate under the new root (the
// agent's claimed root only ever asks for more work). No stage waits forever: after the stage
// timeout the rotation steps on anyway, records which clusters did not follow (they are left
// behind: not waited for again in this rotation), and the caller warns about them.
//
// The hub calls advanceRotation on every reconcile with what it observed; the actions it gets
// back are idempotent (repeat them until the observations show they took effect).
import { z } from 'zod';
import { IsthmusError } from '../errors.ts';

/** A stage the rotation stepped past at its deadline, and the clusters that had not followed. */
export interface ForcedStep {
  readonly stage: 'distributing' | 'reissuing' | 'retiring';
  readonly clusters: readonly string[];
  /** When the step was forced (ISO 8601). */
  readonly at: string;
}

/** Roots are named by fingerprint (rootFingerprint). */
export type RotationState =
  | {
      readonly stage: 'stable';
      readonly root: string;
      readonly bundleSequence: number;
      /** Forced steps of the rotation that led here (kept so `isthmus trust status` still shows them). */
      readonly forced?: readonly ForcedStep[];
    }
  | {
      /** distributing: bundle [old, new] published, waiting for every member to hold it.
       *  reissuing: waiting until the hub issued every member's certificates (and its own) under the new root.
       *  retiring: bundle [new] published, waiting for every member to hold it. */
      readonly stage: 'distributing' | 'reissuing' | 'retiring';
      readonly oldRoot: string;
      readonly newRoot: string;
      /** The sequence of the bundle this stage published. */
      readonly bundleSequence: number;
      /** When this stage began (ISO 8601); its deadline runs from here. */
      readonly since: string;
      readonly forced?: readonly ForcedStep[];
    };

export type RotationStage = RotationState['stage'];

const forcedStepSchema = z.object({
  stage: z.enum(['distributing', 'reissuing', 'retiring']),
  clusters: z.array(z.string()),
  at: z.iso.datetime(),
});

/** For reading a persisted RotationState back (the hub keeps it in its trust Secret). */
export const rotationStateSchema: z.ZodType<RotationState> = z.union([
  z.object({
    stage: z.literal('stable'),
    root: z.string().min(1),
    bundleSequence: z.number().int().nonnegative(),
    forced: z.array(forcedStepSchema).optional(),
  }),
  z.object({
    stage: z.enum(['distributing', 'reissuing', 'retiring']),
    oldRoot: z.string().min(1),
    newRoot: z.string().min(1),
    bundleSequence: z.number().int().nonnegative(),
    // Written by versions without stage deadlines: the deadline then runs from when this hub read it.
    since: z.iso.datetime().default(() => new Date().toISOString()),
    forced: z.array(forcedStepSchema).optional(),
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

/** What the hub knows about one member's trust. */
export interface ClusterTrustObservation {
  /** The agent's last report (Heartbeat); undefined until it reported. */
  readonly report: ClusterTrustReport | undefined;
  /**
   * The root that signed both the latest intermediate and the latest agent certificate the hub
   * issued to this cluster; undefined while they were signed by different roots (or never).
   */
  readonly issuedRoot: string | undefined;
}

export interface RotationObservation {
  /** Every current member. */
  readonly members: ReadonlyMap<string, ClusterTrustObservation>;
  /** Root of the SVID the hub presents. */
  readonly hubRootInUse: string;
  /** Root of the NATS certificate the hub last published; absent when the hub does not manage NATS's TLS. */
  readonly natsIssuedRoot?: string;
  /** When this was observed (ms since the epoch): stage deadlines are measured against it. */
  readonly now: number;
}

export interface RotationPolicy {
  /** How long a stage waits for members before stepping on without them. */
  readonly stageTimeoutMs: number;
}

export type RotationAction =
  | { readonly kind: 'publish-bundle'; readonly roots: readonly string[]; readonly sequence: number }
  | { readonly kind: 'reissue-intermediate'; readonly clusterId: string; readonly root: string }
  | { readonly kind: 'reissue-hub-svid'; readonly root: string }
  | { readonly kind: 'reissue-nats-svid'; readonly root: string }
  /** Nothing depends on the old root any more: delete its key. */
  | { readonly kind: 'retire-root'; readonly root: string }
  /** A stage's deadline passed: the rotation stepped on without these clusters. */
  | { readonly kind: 'warn-left-behind'; readonly forced: ForcedStep };

export interface ClusterRotationStatus {
  readonly clusterId: string;
  readonly bundleSequence: number | undefined;
  /** Holds the bundle this stage published (or a later one). */
  readonly hasCurrentBundle: boolean;
  /** What the agent says its certificates chain to (shown, never counted as progress). */
  readonly rootInUse: string | undefined;
  /** The root the hub issued its intermediate and agent certificate under. */
  readonly issuedRoot: string | undefined;
  /** The hub issued its certificates under the root the rotation moves to (the only root when stable). */
  readonly onTargetRoot: boolean;
  /** A forced step of this rotation went on without it: no later stage waits for it. */
  readonly leftBehind: boolean;
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

/**
 * Whether a cluster still needs certificates under the new root: the hub has not issued them, or
 * its agent says it does not present them (it may have lost the response; asking again is harmless).
 */
export function needsReissue(state: RotationState, cluster: ClusterTrustObservation): boolean {
  return (
    state.stage === 'reissuing' && (cluster.issuedRoot !== state.newRoot || cluster.report?.rootInUse !== state.newRoot)
  );
}

/** Which cluster holds which bundle sequence and was issued certificates under which root. */
export function rotationStatus(state: RotationState, observation: RotationObservation): ClusterRotationStatus[] {
  const leftBehind = new Set(state.stage === 'stable' ? [] : (state.forced ?? []).flatMap((f) => f.clusters));
  return [...observation.members].map(([clusterId, { report, issuedRoot }]) => ({
    clusterId,
    bundleSequence: report?.bundleSequence,
    hasCurrentBundle: report !== undefined && report.bundleSequence >= state.bundleSequence,
    rootInUse: report?.rootInUse,
    issuedRoot,
    onTargetRoot: issuedRoot === targetRoot(state),
    leftBehind: leftBehind.has(clusterId),
  }));
}

/** Starts a rotation from a stable state: publish the bundle with both roots. */
export function beginRotation(state: RotationState, newRoot: string, observation: RotationObservation): RotationStep {
  if (state.stage !== 'stable')
    throw new IsthmusError('ISTHMUS_PKI_ROTATION_INVALID', `a rotation is already ${state.stage}`);
  if (newRoot === state.root)
    throw new IsthmusError('ISTHMUS_PKI_ROTATION_INVALID', 'the new root is the current root');
  const next: RotationState = {
    stage: 'distributing',
    oldRoot: state.root,
    newRoot,
    bundleSequence: state.bundleSequence + 1,
    since: new Date(observation.now).toISOString(),
  };
  return step(
    next,
    [{ kind: 'publish-bundle', roots: [state.root, newRoot], sequence: next.bundleSequence }],
    observation,
  );
}

/** Moves as far as the observation (and the stage deadline) allows and says what must happen next. */
export function advanceRotation(
  state: RotationState,
  observation: RotationObservation,
  policy: RotationPolicy,
): RotationStep {
  if (state.stage === 'stable') return step(state, [], observation);
  const status = rotationStatus(state, observation);
  const awaited = status.filter((cluster) => !cluster.leftBehind);
  const since = new Date(observation.now).toISOString();
  const overdue = observation.now - Date.parse(state.since) >= policy.stageTimeoutMs;
  /** Past the deadline: the same move as when everyone followed, recording who did not. */
  const force = (
    laggards: readonly ClusterRotationStatus[],
  ): { forced: readonly ForcedStep[]; warning: RotationAction[] } => {
    if (laggards.length === 0) return { forced: state.forced ?? [], warning: [] };
    const forced: ForcedStep = { stage: state.stage, clusters: laggards.map((c) => c.clusterId), at: since };
    return { forced: [...(state.forced ?? []), forced], warning: [{ kind: 'warn-left-behind', forced }] };
  };
  switch (state.stage) {
    case 'distributing':
    case 'retiring': {
      const lacking = awaited.filter((cluster) => !cluster.hasCurrentBundle);
      if (lacking.length > 0 && !overdue) return step(state, [], observation);
      const { forced, warning } = force(lacking);
      if (state.stage === 'retiring') {
        return step(
          { stage: 'stable', root: state.newRoot, bundleSequence: state.bundleSequence, forced },
          [...warning, { kind: 'retire-root', root: state.oldRoot }],
          observation,
        );
      }
      const next = advanceRotation({ ...state, stage: 'reissuing', since, forced }, observation, policy);
      return { ...next, actions: [...warning, ...next.actions] };
    }
    case 'reissuing': {
      const reissue: RotationAction[] = [...observation.members]
        .filter(([, cluster]) => needsReissue(state, cluster))
        .map(([clusterId]) => ({ kind: 'reissue-intermediate', clusterId, root: state.newRoot }));
      const hubMoved = observation.hubRootInUse === state.newRoot;
      if (!hubMoved) reissue.push({ kind: 'reissue-hub-svid', root: state.newRoot });
      const natsMoved = observation.natsIssuedRoot === undefined || observation.natsIssuedRoot === state.newRoot;
      if (!natsMoved) reissue.push({ kind: 'reissue-nats-svid', root: state.newRoot });
      const notIssued = awaited.filter((cluster) => !cluster.onTargetRoot);
      // The hub's and NATS's identities are never left behind: the hub issues them itself within a trust tick.
      if (!hubMoved || !natsMoved || (notIssued.length > 0 && !overdue)) return step(state, reissue, observation);
      const { forced, warning } = force(notIssued);
      const next: RotationState = {
        ...state,
        stage: 'retiring',
        bundleSequence: state.bundleSequence + 1,
        since,
        forced,
      };
      return step(
        next,
        [...warning, { kind: 'publish-bundle', roots: [state.newRoot], sequence: next.bundleSequence }],
        observation,
      );
    }
  }
}

function step(
  state: RotationState,
  actions: readonly RotationAction[],
  observation: RotationObservation,
): RotationStep {
  return { state, actions, status: rotationStatus(state, observation) };
}
