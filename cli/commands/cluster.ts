import { findCondition } from '../../common/api/conditions.ts';
import type { MemberCluster } from '../../common/api/isthmus.ts';
import { IsthmusError } from '../../common/errors.ts';
import { describeJoinKeys, pinnedJoinKeys } from '../../hub/join-keys.ts';
import { MemberClusterStore } from '../../hub/members.ts';
import { kubeconfigOption, stringValue, type Command, type CommandContext } from '../command.ts';
import { loadKubeConfig } from '../../common/kubeconfig.ts';
import { age, render, type Column } from '../output.ts';

const columns: Column<MemberCluster>[] = [
  { header: 'CLUSTER', value: (m) => m.spec.clusterId },
  { header: 'REGION', value: (m) => m.spec.region ?? '' },
  { header: 'ZONE', value: (m) => m.spec.zone ?? '' },
  { header: 'ACCEPTED', value: (m) => String(m.spec.accepted) },
  { header: 'JOINED', value: (m) => findCondition(m.status?.conditions, 'Joined')?.status ?? 'Unknown' },
  { header: 'AVAILABLE', value: (m) => findCondition(m.status?.conditions, 'Available')?.status ?? 'Unknown' },
  {
    header: 'LAST HEARTBEAT',
    value: (m) => (m.status?.lastHeartbeatTime ? `${age(m.status.lastHeartbeatTime)} ago` : 'never'),
  },
  { header: 'EXPORTS', value: (m) => String(m.status?.exportCount ?? 0) },
  { header: 'AGE', value: (m) => age(m.metadata.creationTimestamp) },
  // The keys the first Join pinned: compare with what `isthmus join` printed on the member before accepting.
  { header: 'AGENT KEY', value: (m) => shortKey(pinnedJoinKeys(m)?.agent) },
  { header: 'INTERMEDIATE KEY', value: (m) => shortKey(pinnedJoinKeys(m)?.intermediate) },
];

/** "sha256:0123456789abcdef…": enough to compare by eye; -o json/yaml shows the whole hash. */
function shortKey(fingerprint: string | undefined): string {
  return fingerprint ? `${fingerprint.slice(0, 'sha256:'.length + 16)}…` : '<none>';
}

function store(ctx: CommandContext): MemberClusterStore {
  return new MemberClusterStore(loadKubeConfig(stringValue(ctx, 'kubeconfig')));
}

function clusterIdArgument(ctx: CommandContext, verb: string): string {
  const id = ctx.positionals[0];
  if (!id)
    throw new IsthmusError(
      'ISTHMUS_INPUT_INVALID',
      `name the cluster to ${verb}: isthmus cluster ${verb} <cluster id>`,
    );
  return id;
}

export const clusterList: Command = {
  path: ['cluster', 'list'],
  summary: 'list member clusters with their acceptance and health',
  usage: 'isthmus cluster list --kubeconfig <hub kubeconfig> [-o table|json|yaml]',
  options: { ...kubeconfigOption },
  run: async (ctx) => {
    const members = (await store(ctx).list()).sort((a, b) => a.spec.clusterId.localeCompare(b.spec.clusterId));
    ctx.stdout(
      members.length === 0 && ctx.output === 'table'
        ? 'No member clusters.\n'
        : render(ctx.output, members, members, columns),
    );
    return 0;
  },
};

export const clusterAccept: Command = {
  path: ['cluster', 'accept'],
  summary: 'accept a cluster that asked to join (when the hub does not auto-accept)',
  usage: 'isthmus cluster accept <cluster id> --kubeconfig <hub kubeconfig>',
  options: { ...kubeconfigOption },
  run: async (ctx) => {
    const id = clusterIdArgument(ctx, 'accept');
    const members = store(ctx);
    const member = await members.get(id);
    if (!member) throw new IsthmusError('ISTHMUS_CLUSTER_NOT_FOUND', `${id}; see \`isthmus cluster list\``);
    // Accept exactly what was looked at: a MemberCluster re-created (with other keys) meanwhile is refused.
    await members.setAccepted(id, true, member.metadata.uid);
    ctx.stdout(`cluster ${id} accepted (${describeJoinKeys(pinnedJoinKeys(member))})\n`);
    return 0;
  },
};

export const clusterRemove: Command = {
  path: ['cluster', 'remove'],
  summary: "end a cluster's membership: the hub refuses its calls and drops it from the membership list",
  usage: 'isthmus cluster remove <cluster id> --kubeconfig <hub kubeconfig>',
  options: { ...kubeconfigOption },
  run: async (ctx) => {
    const id = clusterIdArgument(ctx, 'remove');
    if (!(await store(ctx).delete(id)))
      throw new IsthmusError('ISTHMUS_CLUSTER_NOT_FOUND', `${id}; see \`isthmus cluster list\``);
    ctx.stdout(`cluster ${id} removed\n`);
    return 0;
  },
};
