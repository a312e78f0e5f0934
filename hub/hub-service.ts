// The hub's gRPC handlers (DESIGN §4): Join authenticates with a bootstrap token; every other
// call authenticates with the agent certificate, and the cluster id comes from that certificate
// (so a heartbeat's report of applied FailoverPolicies is always filed under the caller's cluster)
// together with its membership epoch: a certificate of an earlier membership of a re-joined
// cluster id is refused on every call, and Renew signs only for the presented epoch.
// Join guarantees: a token use is spent only once a MemberCluster was created for it (and given
// back by deleting that MemberCluster when the token had none left), so a refused Join never
// costs a use; a pending join is pinned to the keys of its first request (join-keys.ts), so only
// the holder of those keys can complete it once an operator accepts.
import { setTimeout as sleep } from 'node:timers/promises';
import { findCondition } from '../common/api/conditions.ts';
import type { MemberCluster } from '../common/api/isthmus.ts';
import { IsthmusError } from '../common/errors.ts';
import type {
  AppliedPolicy,
  CallContext,
  Credentials,
  HubHandlers,
  JoinRequest,
  ReportExportsRequest,
  ReportExportsResponse,
} from '../common/hub-api/index.ts';
import type { Logger } from '../common/logger.ts';
import {
  RefusalReason,
  bundleToPem,
  bundleToSpiffeJson,
  needsReissue,
  verifyPeer,
  type TrustBundle,
} from '../common/pki/index.ts';
import { describeJoinKeys, joinKeysOf, pinnedJoinKeys, sameJoinKeys, type JoinKeys } from './join-keys.ts';
import { TOKEN_ID_ANNOTATION, type MemberClusterStore } from './members.ts';
import { CachedMembership, isCurrentMember, membershipEpochOf, type MemberCache } from './membership.ts';
import type { TokenStore } from './tokens.ts';
import type { TrustStore } from './trust-store.ts';
import { observeMember } from './trust-rotation.ts';

/** Where ReportExports goes (the federated catalog). */
export interface ExportsSink {
  report(clusterId: string, request: ReportExportsRequest): Promise<ReportExportsResponse>;
  /** Whether the hub wants the cluster's full export set now, given the count its heartbeat gives. */
  wantsReport?(clusterId: string, exportCount: number): boolean;
}

/** Where a heartbeat's report of the FailoverPolicy copies a cluster holds goes (the leader's policy controller). */
export interface AppliedPoliciesSink {
  report(clusterId: string, applied: readonly AppliedPolicy[]): void;
}

export interface HubServiceDeps {
  readonly trust: TrustStore;
  readonly tokens: TokenStore;
  readonly members: MemberClusterStore;
  readonly memberCache: MemberCache;
  readonly exports: ExportsSink;
  readonly appliedPolicies?: AppliedPoliciesSink;
  readonly isLeader: () => boolean;
  readonly leader: () => string | undefined;
  readonly log: Logger;
  readonly settings: {
    readonly autoAccept: boolean;
    readonly agentTtlMs: number;
    readonly intermediateTtlMs: number;
    readonly heartbeatIntervalMs: number;
    /** How long Join waits for `isthmus cluster accept` before asking the agent to retry. */
    readonly acceptanceWaitMs: number;
    readonly hubEndpoints: readonly string[];
    readonly natsUrls: readonly string[];
  };
}

/** The calling agent as its verified certificate says: its cluster and the epoch of its membership. */
export interface AuthenticatedAgent {
  readonly clusterId: string;
  readonly epoch: number;
}

/**
 * Verifies the calling agent's certificate against the current membership: refuses non-members,
 * and certificates of an earlier membership of a re-joined cluster id (DESIGN §3).
 */
export function createAgentVerifier(deps: {
  readonly trust: { readonly bundle: TrustBundle };
  readonly memberCache: MemberCache;
}): (context: CallContext) => AuthenticatedAgent {
  const members = new CachedMembership(deps.memberCache);
  return (context) => {
    if (!context.peerCertificate) {
      throw new IsthmusError(
        'ISTHMUS_PEER_REFUSED',
        'no verified client certificate: this call needs the agent certificate from Join',
      );
    }
    const verdict = verifyPeer([context.peerCertificate], {
      bundle: deps.trust.bundle,
      members,
      authorize: (id) => id.kind === 'agent',
    });
    if (verdict.ok) return { clusterId: verdict.peer.clusterId as string, epoch: verdict.peer.epoch as number };
    if (verdict.reason === RefusalReason.NOT_A_MEMBER)
      throw new IsthmusError('ISTHMUS_CLUSTER_NOT_MEMBER', `${verdict.detail}; it was removed from the federation`);
    if (verdict.reason === RefusalReason.EPOCH_SUPERSEDED)
      throw new IsthmusError('ISTHMUS_MEMBERSHIP_SUPERSEDED', verdict.detail);
    throw new IsthmusError('ISTHMUS_PEER_REFUSED', `${verdict.reason}: ${verdict.detail}`);
  };
}

/** The calling agent's cluster id; the server runs this before it decodes a request (HubServerGuards.authenticate). */
export function createAgentAuthenticator(
  deps: Parameters<typeof createAgentVerifier>[0],
): (context: CallContext) => string {
  const verify = createAgentVerifier(deps);
  return (context) => verify(context).clusterId;
}

export function createHubHandlers(deps: HubServiceDeps): HubHandlers {
  const verifyAgent = createAgentVerifier(deps);
  const { trust, tokens, members, memberCache, settings, log } = deps;
  const heartbeatSeconds = Math.max(1, Math.round(settings.heartbeatIntervalMs / 1000));

  function requireLeader(): void {
    if (!deps.isLeader()) {
      const leader = deps.leader();
      throw new IsthmusError(
        'ISTHMUS_NOT_LEADER',
        leader ? `the leader is ${leader}; try another hub endpoint` : 'no leader elected yet; retry shortly',
      );
    }
  }

  function cached(clusterId: string): MemberCluster | undefined {
    return memberCache.get(clusterId);
  }

  /** The calling agent's cluster id: set by the server's authenticate hook, else verified here. */
  function authenticateAgent(context: CallContext): string {
    return context.clusterId ?? verifyAgent(context).clusterId;
  }

  function credentials(agentCertificate: string, intermediateCertificate: string): Credentials {
    const bundle = trust.bundle;
    return {
      agentCertificate,
      intermediateCertificate,
      trustBundlePem: bundleToPem(bundle),
      trustBundleJson: bundleToSpiffeJson(bundle),
      trustBundleSequence: bundle.sequence,
    };
  }

  /** Marks a freshly created MemberCluster pending, after spending its token use. */
  async function spendAndMarkPending(member: MemberCluster, request: JoinRequest, tokenId: string): Promise<void> {
    const id = member.spec.clusterId;
    try {
      await tokens.consume(tokenId);
    } catch (err) {
      // No use left (a concurrent join took the last one): this join never happened.
      await members
        .delete(id)
        .catch((cleanup: unknown) =>
          log.warn({ clusterId: id, err: cleanup }, 'could not delete the MemberCluster of a refused join'),
        );
      throw err;
    }
    await members.patchStatus(member, { agentVersion: request.facts.agentVersion || undefined }, [
      {
        type: 'Accepted',
        status: settings.autoAccept ? 'True' : 'False',
        reason: settings.autoAccept ? 'Accepted' : 'PendingAcceptance',
        message: settings.autoAccept
          ? 'accepted automatically (hub autoAccept)'
          : `waiting for \`isthmus cluster accept ${id}\``,
      },
      { type: 'Joined', status: 'False', reason: 'PendingAcceptance', message: 'the cluster asked to join' },
      { type: 'Available', status: 'Unknown', reason: 'NeverConnected', message: 'no heartbeat yet' },
    ]);
  }

  /**
   * Creates the MemberCluster (pinning the CSR keys) and spends one token use, or finds the
   * pending one this token created on an earlier try with the same keys.
   */
  async function admit(request: JoinRequest, tokenId: string, keys: JoinKeys): Promise<void> {
    const id = request.facts.clusterId;
    let existing = (await members.get(id)) ?? undefined;
    if (!existing) {
      const created = await members.create(request.facts, { accepted: settings.autoAccept, tokenId, keys });
      if (created) {
        await spendAndMarkPending(created, request, tokenId);
        log.info(
          {
            clusterId: id,
            tokenId,
            accepted: settings.autoAccept,
            agentKey: keys.agent,
            intermediateKey: keys.intermediate,
          },
          'cluster asked to join',
        );
        return;
      }
      existing = (await members.get(id)) ?? undefined;
      if (!existing)
        throw new IsthmusError('ISTHMUS_HUB_UNAVAILABLE', `${id} was created and removed concurrently; ask again`);
    }
    const joined = findCondition(existing.status?.conditions, 'Joined')?.status === 'True';
    const sameJoin = existing.metadata.annotations?.[TOKEN_ID_ANNOTATION] === tokenId;
    if (joined || !sameJoin) {
      throw new IsthmusError(
        'ISTHMUS_CLUSTER_ID_TAKEN',
        `cluster id "${id}" belongs to a ${joined ? 'member' : 'pending join'}; pick another id, or run \`isthmus cluster remove ${id}\` first if that cluster is gone`,
      );
    }
    const pinned = pinnedJoinKeys(existing);
    if (!sameJoinKeys(pinned, keys)) {
      log.warn({ clusterId: id, tokenId, pinned, offered: keys }, 'join retry with other keys refused');
      throw new IsthmusError(
        'ISTHMUS_JOIN_KEYS_MISMATCH',
        `cluster id "${id}" is pinned to ${describeJoinKeys(pinned)}; this request offers ${describeJoinKeys(keys)}. If the pending join is not yours or its agent lost its keys, run \`isthmus cluster remove ${id}\` on the hub and join again`,
      );
    }
    // An earlier try created it but stopped before spending the use.
    if (!findCondition(existing.status?.conditions, 'Accepted')) await spendAndMarkPending(existing, request, tokenId);
  }

  async function awaitAcceptance(clusterId: string, keys: JoinKeys): Promise<MemberCluster> {
    const deadline = Date.now() + settings.acceptanceWaitMs;
    for (;;) {
      const member = (await members.get(clusterId)) ?? undefined;
      if (!member)
        throw new IsthmusError('ISTHMUS_CLUSTER_NOT_FOUND', `${clusterId} was removed while waiting for acceptance`);
      if (member.spec.accepted) return member;
      if (Date.now() >= deadline)
        throw new IsthmusError(
          'ISTHMUS_CLUSTER_NOT_ACCEPTED',
          `${clusterId}: run \`isthmus cluster accept ${clusterId}\` on the hub after checking the keys it pinned (${describeJoinKeys(keys)}); the agent keeps asking`,
        );
      await sleep(250);
    }
  }

  return {
    async Join(request) {
      requireLeader();
      const token = await tokens.authenticate(request.token);
      const keys = await joinKeysOf(request);
      await admit(request, token.id, keys);
      const member = await awaitAcceptance(request.facts.clusterId, keys);
      // Removed and re-created by another join while this one waited: not this join's any more.
      if (!sameJoinKeys(pinnedJoinKeys(member), keys))
        throw new IsthmusError(
          'ISTHMUS_JOIN_KEYS_MISMATCH',
          `cluster id "${request.facts.clusterId}" was re-pinned to ${describeJoinKeys(pinnedJoinKeys(member))} while this join waited`,
        );
      const signer = trust.signingAuthority();
      const epoch = membershipEpochOf(member);
      const [intermediate, agent] = await Promise.all([
        signer.signIntermediate(request.facts.clusterId, epoch, request.intermediateCsr, {
          lifetimeMs: settings.intermediateTtlMs,
        }),
        signer.signAgentCertificate(request.facts.clusterId, epoch, request.agentCsr, {
          lifetimeMs: settings.agentTtlMs,
        }),
      ]);
      // The roots the hub issued under are what root rotation counts as progress (never the agent's word).
      await members.patchStatus(
        member,
        {
          certificateExpiry: agent.notAfter.toISOString(),
          lastHeartbeatTime: new Date().toISOString(),
          intermediateRoot: signer.fingerprint,
          agentCertificateRoot: signer.fingerprint,
        },
        [
          { type: 'Accepted', status: 'True', reason: 'Accepted', message: 'accepted into the federation' },
          { type: 'Joined', status: 'True', reason: 'Joined', message: `joined with token ${token.id}` },
          { type: 'Available', status: 'True', reason: 'HeartbeatReceived', message: 'the agent joined just now' },
        ],
      );
      log.info({ clusterId: request.facts.clusterId, tokenId: token.id, epoch }, 'cluster joined');
      return {
        credentials: credentials(agent.certificatePem, intermediate.certificatePem),
        trustDomain: trust.bundle.trustDomain,
        natsUrls: [...settings.natsUrls],
        hubEndpoints: [...settings.hubEndpoints],
        heartbeatIntervalSeconds: heartbeatSeconds,
      };
    },

    async Renew(request, context) {
      // Verified here even after the server's hook: the new certificates carry the epoch of the
      // presented one, never a later membership's.
      const { clusterId, epoch } = verifyAgent(context);
      requireLeader();
      const signer = trust.signingAuthority();
      const agent = request.agentCsr
        ? await signer.signAgentCertificate(clusterId, epoch, request.agentCsr, { lifetimeMs: settings.agentTtlMs })
        : undefined;
      const intermediate = request.intermediateCsr
        ? await signer.signIntermediate(clusterId, epoch, request.intermediateCsr, {
            lifetimeMs: settings.intermediateTtlMs,
          })
        : undefined;
      const member = cached(clusterId);
      if (member && (agent || intermediate)) {
        await members.patchStatus(member, {
          ...(agent
            ? { certificateExpiry: agent.notAfter.toISOString(), agentCertificateRoot: signer.fingerprint }
            : {}),
          ...(intermediate ? { intermediateRoot: signer.fingerprint } : {}),
        });
      }
      log.info(
        { clusterId, agent: agent !== undefined, intermediate: intermediate !== undefined },
        'certificates renewed',
      );
      return { credentials: credentials(agent?.certificatePem ?? '', intermediate?.certificatePem ?? '') };
    },

    async Heartbeat(request, context) {
      const clusterId = authenticateAgent(context);
      requireLeader();
      const member = cached(clusterId);
      if (!isCurrentMember(member)) throw new IsthmusError('ISTHMUS_CLUSTER_NOT_MEMBER', clusterId);
      await members.patchStatus(
        member,
        {
          lastHeartbeatTime: new Date().toISOString(),
          trustBundleSequence: request.trustBundleSequence,
          exportCount: request.exportCount,
          ...(request.rootInUse ? { trustRoot: request.rootInUse } : {}),
          ...(request.agentVersion ? { agentVersion: request.agentVersion } : {}),
        },
        [{ type: 'Available', status: 'True', reason: 'HeartbeatReceived', message: 'heartbeats arrive on time' }],
      );
      if (request.appliedPoliciesKnown) deps.appliedPolicies?.report(clusterId, request.appliedPolicies);
      const bundle = trust.bundle;
      const behind = request.trustBundleSequence < bundle.sequence;
      const rotation = trust.state.rotation;
      return {
        trustBundleSequence: bundle.sequence,
        heartbeatIntervalSeconds: heartbeatSeconds,
        trustBundlePem: behind ? bundleToPem(bundle) : '',
        trustBundleJson: behind ? bundleToSpiffeJson(bundle) : '',
        reissueIntermediate: needsReissue(rotation, {
          report: { bundleSequence: request.trustBundleSequence, rootInUse: request.rootInUse },
          issuedRoot: observeMember(member).issuedRoot,
        }),
        resendExports: deps.exports.wantsReport?.(clusterId, request.exportCount) ?? false,
      };
    },

    async ReportExports(request, context) {
      const clusterId = authenticateAgent(context);
      requireLeader();
      return deps.exports.report(clusterId, request);
    },

    async Leave(request, context) {
      const clusterId = authenticateAgent(context);
      requireLeader();
      await members.delete(clusterId);
      log.info({ clusterId, reason: request.reason }, 'cluster left the federation');
      return {};
    },
  };
}
