import { findCondition } from '../../common/api/conditions.ts';
import { loadKubeConfig } from '../../common/kubeconfig.ts';
import { rootFingerprint } from '../../common/pki/index.ts';
import { readHubInfo } from '../../hub/hub-info.ts';
import { MemberClusterStore } from '../../hub/members.ts';
import { TrustStore } from '../../hub/trust-store.ts';
import { isCurrentMember } from '../../hub/membership.ts';
import { kubeconfigOption, stringValue, type Command } from '../command.ts';
import { render, type Column } from '../output.ts';

interface ClusterTrustRow {
  clusterId: string;
  bundleSequence: number | undefined;
  root: string;
  onTargetRoot: boolean;
  available: string;
}

const short = (fingerprint: string): string => (fingerprint ? `${fingerprint.replaceAll(':', '').slice(0, 12).toLowerCase()}…` : '-');

const columns: Column<ClusterTrustRow>[] = [
  { header: 'CLUSTER', value: (r) => r.clusterId },
  { header: 'BUNDLE', value: (r) => (r.bundleSequence === undefined ? '-' : String(r.bundleSequence)) },
  { header: 'ROOT IN USE', value: (r) => short(r.root) },
  { header: 'ON TARGET ROOT', value: (r) => String(r.onTargetRoot) },
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
    ctx.stdout('Root rotation requested. Follow it with `isthmus trust status`: add new root → distribute → re-issue intermediates → retire old root.\n');
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
    const rows: ClusterTrustRow[] = (await new MemberClusterStore(kc).list()).filter(isCurrentMember).map((m) => ({
      clusterId: m.spec.clusterId,
      bundleSequence: m.status?.trustBundleSequence,
      root: m.status?.trustRoot ?? '',
      onTargetRoot: m.status?.trustRoot === target,
      available: findCondition(m.status?.conditions, 'Available')?.status ?? 'Unknown',
    }));
    const summary = { stage: rotation.stage, bundleSequence: bundle.sequence, bundleRoots: bundle.roots.map(rootFingerprint), targetRoot: target, clusters: rows };
    if (ctx.output === 'table') {
      ctx.stdout(`Stage: ${rotation.stage}   bundle sequence: ${bundle.sequence}   roots: ${bundle.roots.map((r) => short(rootFingerprint(r))).join(', ')}   target root: ${short(target)}\n\n`);
    }
    ctx.stdout(render(ctx.output, summary, rows, columns));
    return 0;
  },
};
