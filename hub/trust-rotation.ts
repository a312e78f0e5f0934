// Leader-only driver of root rotation (DESIGN §3): `isthmus trust rotate` leaves a request on the
// trust Secret; each step starts the rotation and then advances the PKI state machine with what
// the hub knows of each member (the bundle sequence its heartbeats report, and the root the hub
// itself issued its certificates under, recorded on the MemberCluster by Join and Renew),
// applying each step's actions to the persisted trust state. Re-issuing intermediates happens
// agent-side when heartbeat responses ask for it; the hub's own SVID follows the signing root
// (see hub.ts). A stage that waits past its timeout steps on without the silent members, and the
// step is logged as a warning naming them (and kept in the state for `isthmus trust status`).
import type { MemberCluster } from '../common/api/isthmus.ts';
import type { Logger } from '../common/logger.ts';
import {
  RootAuthority,
  advanceRotation,
  beginRotation,
  createTrustBundle,
  rootFingerprint,
  type ClusterTrustObservation,
  type RotationObservation,
  type RotationStep,
} from '../common/pki/index.ts';
import { isCurrentMember, type MemberCache } from './membership.ts';
import type { TrustState, TrustStore } from './trust-store.ts';

export interface TrustRotationDeps {
  readonly trust: Pick<TrustStore, 'state' | 'pendingRotationRequest' | 'save'>;
  readonly memberCache: MemberCache;
  /** Root of the SVID this hub presents now. */
  readonly hubRootInUse: () => string;
  /** Root of the NATS certificate the hub last published; absent when the hub does not manage NATS's TLS. */
  readonly natsIssuedRoot?: (() => string | undefined) | undefined;
  readonly rootTtlMs: number;
  /** How long a rotation stage waits for silent members (hub config rotation.stageTimeout). */
  readonly stageTimeoutMs: number;
  readonly log: Logger;
}

/** What the hub knows of one member's trust (its MemberCluster status). */
export function observeMember(member: MemberCluster): ClusterTrustObservation {
  const { trustBundleSequence, trustRoot, intermediateRoot, agentCertificateRoot } = member.status ?? {};
  return {
    report:
      trustBundleSequence !== undefined && trustRoot
        ? { bundleSequence: trustBundleSequence, rootInUse: trustRoot }
        : undefined,
    issuedRoot: intermediateRoot && intermediateRoot === agentCertificateRoot ? intermediateRoot : undefined,
  };
}

export function observeMembers(
  members: readonly MemberCluster[],
  hubRootInUse: string,
  now: number,
  natsIssuedRoot?: string,
): RotationObservation {
  return {
    members: new Map(members.filter(isCurrentMember).map((m) => [m.spec.clusterId, observeMember(m)])),
    hubRootInUse,
    now,
    ...(natsIssuedRoot !== undefined ? { natsIssuedRoot } : {}),
  };
}

/** The trust state after `step`: its bundle publications and root retirements applied. */
export function applyRotationStep(state: TrustState, step: RotationStep): TrustState {
  const roots = new Map(state.roots);
  let bundle = state.bundle;
  for (const action of step.actions) {
    if (action.kind === 'publish-bundle') {
      const pem = (fingerprint: string): string => {
        const held =
          roots.get(fingerprint)?.certificatePem ??
          bundle.roots.find((r) => rootFingerprint(r) === fingerprint)?.toString();
        if (!held) throw new Error(`rotation names root ${fingerprint}, which the hub does not know`);
        return held;
      };
      bundle = createTrustBundle({
        trustDomain: bundle.trustDomain,
        sequence: action.sequence,
        roots: action.roots.map(pem),
      });
    } else if (action.kind === 'retire-root') {
      roots.delete(action.root);
    }
    // reissue-* actions are carried out by heartbeat responses and the hub's trust loop; warnings by the caller.
  }
  return { ...state, roots, bundle, rotation: step.state };
}

function sameStep(state: TrustState, step: RotationStep): boolean {
  return (
    JSON.stringify(state.rotation) === JSON.stringify(step.state) &&
    !step.actions.some((a) => a.kind === 'publish-bundle' || a.kind === 'retire-root')
  );
}

/**
 * One step of the rotation on the trust state as last refreshed (the hub's trust loop refreshes
 * it and reloads its own identity after each step). A save that loses to another writer is
 * simply retried on the next step.
 */
export async function stepTrustRotation(deps: TrustRotationDeps): Promise<void> {
  const { trust, log } = deps;
  const state = trust.state;
  // A managed NATS whose Secret was never written yet counts as not moved ('').
  const observation = observeMembers(
    deps.memberCache.list(),
    deps.hubRootInUse(),
    Date.now(),
    deps.natsIssuedRoot && (deps.natsIssuedRoot() ?? ''),
  );
  let next: TrustState | undefined;
  const request = trust.pendingRotationRequest;
  if (state.rotation.stage === 'stable' && request) {
    const newRoot = await RootAuthority.generate({ trustDomain: state.bundle.trustDomain, lifetimeMs: deps.rootTtlMs });
    if (!deps.natsIssuedRoot)
      log.warn(
        "the hub does not manage NATS's TLS (nats.serverTlsSecret): NATS must trust the new root, and present a certificate under it, before the old root is retired, or agents lose the catalog",
      );
    const step = beginRotation(state.rotation, newRoot.fingerprint, observation);
    next = applyRotationStep(
      { ...state, roots: new Map([...state.roots, [newRoot.fingerprint, newRoot]]), handledRequest: request },
      step,
    );
    log.info(
      { oldRoot: state.rotation.root, newRoot: newRoot.fingerprint, bundleSequence: next.bundle.sequence },
      'root rotation started',
    );
  } else if (state.rotation.stage !== 'stable') {
    const step = advanceRotation(state.rotation, observation, { stageTimeoutMs: deps.stageTimeoutMs });
    if (!sameStep(state, step)) {
      next = applyRotationStep(state, step);
      for (const action of step.actions) {
        if (action.kind !== 'warn-left-behind') continue;
        log.warn(
          { stage: action.forced.stage, clusters: action.forced.clusters, stageTimeoutMs: deps.stageTimeoutMs },
          `root rotation stage ${action.forced.stage} timed out: stepping on without ${action.forced.clusters.join(', ')}, which did not follow`,
        );
      }
      log.info(
        {
          stage: step.state.stage,
          bundleSequence: next.bundle.sequence,
          waitingFor: step.status
            .filter((c) => !c.leftBehind && (!c.hasCurrentBundle || !c.onTargetRoot))
            .map((c) => c.clusterId),
        },
        'root rotation advanced',
      );
    }
  }
  if (next) await trust.save(next);
}
