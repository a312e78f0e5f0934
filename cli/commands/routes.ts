// `isthmus routes <ns>/<svc>`: a service's effective routing as the east-west gateway of the
// cluster the kubeconfig points at sees it now — its outbound listener, the policy in force, and
// per cluster the locality level, the share of new connections it takes and why not more. Read
// from the listener table the gateway publishes in its own cluster; nothing else is asked.
import { CoreV1Api, type KubeConfig } from '@kubernetes/client-node';
import { IsthmusError } from '../../common/errors.ts';
import {
  DEFAULT_GATEWAY_NAME,
  gatewayListenersConfigMapName,
  listenersDocumentSchema,
  type OutboundListenerRecord,
} from '../../common/gateway-contract.ts';
import { isNotFound } from '../../common/kube/index.ts';
import { loadKubeConfig } from '../../common/kubeconfig.ts';
import { kubeconfigOption, stringValue, type Command } from '../command.ts';
import { render, type Column } from '../output.ts';

/** The gateway's listener table, or [] when it has published none yet. */
export async function readListenerTable(
  kc: KubeConfig,
  namespace: string,
  gatewayName: string,
): Promise<OutboundListenerRecord[]> {
  try {
    const configMap = await kc
      .makeApiClient(CoreV1Api)
      .readNamespacedConfigMap({ name: gatewayListenersConfigMapName(gatewayName), namespace });
    return listenersDocumentSchema.parse(JSON.parse(configMap.data?.['listeners.json'] ?? '{"listeners":[]}'))
      .listeners;
  } catch (err) {
    if (isNotFound(err)) return [];
    throw err;
  }
}

interface RouteRow {
  port: number;
  cluster: string;
  level: number;
  share: number;
  healthy: string;
  why: string;
}

const columns: Column<RouteRow>[] = [
  { header: 'PORT', value: (r) => String(r.port) },
  { header: 'CLUSTER', value: (r) => r.cluster },
  { header: 'LEVEL', value: (r) => (r.level < 0 ? '-' : String(r.level)) },
  { header: 'SHARE', value: (r) => `${(r.share * 100).toFixed(1)} %` },
  { header: 'HEALTHY', value: (r) => r.healthy },
  { header: 'WHY', value: (r) => r.why || (r.share > 0 ? 'serving' : 'not needed: a better level takes it all') },
];

export const routes: Command = {
  path: ['routes'],
  summary: "show where a service's new connections go from this cluster, and why",
  usage:
    'isthmus routes <namespace>/<service> --kubeconfig <member kubeconfig> [--gateway east-west] [-o table|json|yaml]',
  options: { ...kubeconfigOption, gateway: { type: 'string', default: DEFAULT_GATEWAY_NAME } },
  run: async (ctx) => {
    const [target] = ctx.positionals;
    const match = /^([a-z0-9-]+)\/([a-z0-9-]+)$/.exec(target ?? '');
    if (!match)
      throw new IsthmusError('ISTHMUS_INPUT_INVALID', `expected <namespace>/<service>, got "${target ?? ''}"`);
    const [, namespace, service] = match as unknown as [string, string, string];
    const kc = loadKubeConfig(stringValue(ctx, 'kubeconfig'));
    const listeners = (
      await readListenerTable(
        kc,
        stringValue(ctx, 'namespace') ?? 'isthmus-system',
        stringValue(ctx, 'gateway') ?? DEFAULT_GATEWAY_NAME,
      )
    ).filter((l) => l.namespace === namespace && l.name === service);
    if (listeners.length === 0)
      throw new IsthmusError(
        'ISTHMUS_INPUT_INVALID',
        `the gateway of this cluster has no outbound listener for ${namespace}/${service} (not imported here, or the gateway is not running)`,
      );
    const rows: RouteRow[] = listeners.flatMap((l) =>
      l.routes.map((r) => ({
        port: l.port,
        cluster: r.cluster,
        level: r.level,
        share: r.share,
        healthy: `${r.healthy}/${r.total}`,
        why: r.reason,
      })),
    );
    if (ctx.output === 'table') {
      for (const l of listeners) {
        ctx.stdout(
          `${namespace}/${service} port ${l.port}: listener ${l.address}:${l.listenPort}   policy: ${l.policy || 'defaults (region, zone, cluster; 70 % healthy before spill-over)'}${l.healthy ? '' : `   NOT READY: ${l.reason}`}\n`,
        );
      }
      ctx.stdout('\n');
    }
    ctx.stdout(render(ctx.output, { namespace, service, listeners }, rows, columns));
    return 0;
  },
};
