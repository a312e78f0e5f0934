import { findCondition } from '../../common/api/conditions.ts';
import { loadKubeConfig } from '../../common/kubeconfig.ts';
import { rootFingerprint, rotationStatus } from '../../common/pki/index.ts';
import { readHubInfo } from '../../hub/hub-info.ts';
import { MemberClusterStore } from '../../hub/members.ts';
import { TrustStore } from '../../hub/trust-store.ts';
import { observeMembers } from '../../hub/trust-rotation.ts';
import { isCurrentMember } from '../../hub/membership.ts';
import { kubeconfigOption, stringValue, type Command } from '../command.ts';
import { render, type Column } from '../output.ts';

interface ClusterTrustRow {
  clusterId: string;
  bundleSequence: number | undefined;
  /** What the agent reports its certificates chain to. */
  root: string;
  /** What the hub issued its intermediate and agent certificate under: what the rotation counts. */
  issuedRoot: string;
  onTargetRoot: boolean;
  /** A rotation stage timed out waiting for it and stepped on without it. */
  leftBehind: boolean;
  available: string;
}

const short = (fingerprint: string): string =>
  fingerprint ? `${fingerprint.replaceAll(':', '').slice(0, 12).toLowerCase()}…` : '-';

const columns: Column<ClusterTrustRow>[] = [
  { header: 'CLUSTER', value: (r) => r.clusterId },
  { header: 'BUNDLE', value: (r) => (r.bundleSequence === undefined ? '-' : String(r.bundleSequence)) },
  { header: 'ROOT IN USE', value: (r) => short(r.root) },
  { header: 'ISSUED UNDER', value: (r) => short(r.issuedRoot) },
  { header: 'ON TARGET ROOT', value: (r) => String(r.onTargetRoot) },
  { header: 'LEFT BEHIND', value: (r) => String(r.leftBehind) },
  { header: 'AVAILABLE', value: (r) => r.available },
];

export const trustRotate: Command = {
  path: ['trust', 'rotate'],
  summary: 'rotate the federation root CA in stages, with zero failed handshakes',
  usage: 'isthmus trust rotate --kubeconfig <hub kubeconfig>',
  options: { ...kubeconfigOption },
  run: async (ctx) => {
    const kc = loadKubeConfig(stringValue(ctx, 'kubeconfig'));
    const info = await readHubInfo(kc, stringValue(ctx, 'namespace') ?? 'isthmus-system');
    await TrustStore.requestRotation(kc, info.trustNamespace);
    ctx.stdout(
      'Root rotation requested. Follow it with `isthmus trust status`: add new root → distribute → re-issue intermediates → retire old root.\n',
    );
    return 0;
  },
};

export const trustStatus: Command = {
  path: ['trust', 'status'],
  summary: 'show the rotation stage and which cluster holds which bundle and root',
  usage: 'isthmus trust status --kubeconfig <hub kubeconfig> [-o table|json|yaml]',
  options: { ...kubeconfigOption },
  run: async (ctx) => {
    const kc = loadKubeConfig(stringValue(ctx, 'kubeconfig'));
    const namespace = stringValue(ctx, 'namespace') ?? 'isthmus-system';
    const info = await readHubInfo(kc, namespace);
    const trust = await TrustStore.read(kc, info.trustNamespace, info.trustDomain);
    const { rotation, bundle } = trust.state;
    const target = rotation.stage === 'stable' ? rotation.root : rotation.newRoot;
    const members = (await new MemberClusterStore(kc).list()).filter(isCurrentMember);
    // The hub's own judgement (rotation.ts), from the same MemberCluster fields it reads.
    const status = new Map(
      rotationStatus(rotation, observeMembers(members, '', Date.now())).map((c) => [c.clusterId, c]),
    );
    const rows: ClusterTrustRow[] = members.map((m) => {
      const cluster = status.get(m.spec.clusterId);
      return {
        clusterId: m.spec.clusterId,
        bundleSequence: m.status?.trustBundleSequence,
        root: m.status?.trustRoot ?? '',
        issuedRoot: cluster?.issuedRoot ?? '',
        onTargetRoot: cluster?.onTargetRoot ?? false,
        leftBehind: cluster?.leftBehind ?? false,
        available: findCondition(m.status?.conditions, 'Available')?.status ?? 'Unknown',
      };
    });
    const forced = rotation.forced ?? [];
    const summary = {
      stage: rotation.stage,
      bundleSequence: bundle.sequence,
      bundleRoots: bundle.roots.map(rootFingerprint),
      targetRoot: target,
      forced,
      clusters: rows,
    };
    if (ctx.output === 'table') {
      ctx.stdout(
        `Stage: ${rotation.stage}   bundle sequence: ${bundle.sequence}   roots: ${bundle.roots.map((r) => short(rootFingerprint(r))).join(', ')}   target root: ${short(target)}\n`,
      );
      for (const step of forced) {
        ctx.stdout(
          `WARNING: stage ${step.stage} timed out at ${step.at}; the rotation went on without ${step.clusters.join(', ')}, which did not follow (re-join them if they lost trust)\n`,
        );
      }
      ctx.stdout('\n');
    }
    ctx.stdout(render(ctx.output, summary, rows, columns));
    return 0;
  },
};
