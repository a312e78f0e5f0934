// What data-plane e2e tests and benchmarks do on a Federation started with gateways: export a
// service with live test backends (and dead addresses), find what a client dials (the clusterset
// Service's endpoint, as kube-proxy would), run clients inside a member's namespace, read metrics.
import { DiscoveryV1Api } from '@kubernetes/client-node';
import { CustomObjectsApi } from '@kubernetes/client-node';
import {
  FAILOVER_POLICY_PLURAL,
  ISTHMUS_API_VERSION,
  ISTHMUS_GROUP,
  ISTHMUS_VERSION,
  type FailoverPolicySpec,
} from '../../common/api/isthmus.ts';
import { derivedServiceName } from '../../spoke-agent/imports/naming.ts';
import { exportService } from '../../local/exports.ts';
import type { Federation } from '../../local/federation/index.ts';
import { waitFor, type LocalCluster, type ManagedProcess } from '../../local/testbed/index.ts';

export interface Backend {
  readonly id: string;
  readonly address: string;
  readonly port: number;
  process: ManagedProcess;
}

export interface ConnectReport {
  readonly served: Record<string, number>;
  readonly failed: number;
  readonly errors: string[];
}

export interface Timeline {
  readonly startedAt: number;
  /** [start offset ms, backend id or "!error", duration ms] */
  readonly connections: readonly [number, string, number][];
}

export const SERVICE_PORT = 8080;

/**
 * Exports `name` from `cluster` with live backends `ids` on SERVICE_PORT, plus `dead` addresses
 * where nothing listens, and `notReady` more that the EndpointSlice lists as not ready.
 */
export async function exportWithBackends(
  fed: Federation,
  cluster: LocalCluster,
  namespace: string,
  name: string,
  ids: readonly string[],
  extra: { dead?: number; notReady?: number } = {},
): Promise<Backend[]> {
  const lab = fed.lab;
  if (!lab) throw new Error('the federation has no network namespaces');
  const backends: Backend[] = [];
  for (const id of ids) {
    const started = await fed.startBackend(cluster.name, id, SERVICE_PORT);
    backends.push({ id, address: started.address, port: started.port, process: started.process });
  }
  const endpoints: { ip: string; zone: string; ready?: boolean }[] = backends.map((b) => ({
    ip: b.address,
    zone: 'z',
  }));
  for (let i = 0; i < (extra.dead ?? 0); i++)
    endpoints.push({ ip: await lab.cluster(cluster.name).allocateAddress(), zone: 'z' });
  for (let i = 0; i < (extra.notReady ?? 0); i++)
    endpoints.push({ ip: await lab.cluster(cluster.name).allocateAddress(), zone: 'z', ready: false });
  await exportService(cluster.kubeConfig(), {
    namespace,
    name,
    ports: [{ name: 'tcp', port: SERVICE_PORT }],
    endpoints,
  });
  return backends;
}

/** Stops backends (the EndpointSlice still lists them ready: no kubelet notices). */
export async function killBackends(backends: readonly Backend[]): Promise<void> {
  await Promise.all(backends.map((b) => b.process.stop(1_000)));
}

/** Starts the backends again on their own addresses. */
export async function reviveBackends(fed: Federation, cluster: LocalCluster, backends: Backend[]): Promise<void> {
  for (const backend of backends)
    backend.process = (await fed.startBackend(cluster.name, backend.id, backend.port, backend.address)).process;
}

/** The clusterset Service's endpoint in `cluster` once its gateway listens: what kube-proxy would DNAT the VIP to. */
export async function clustersetEndpoint(
  cluster: Pick<LocalCluster, 'name' | 'kubeConfig'>,
  namespace: string,
  name: string,
): Promise<{ address: string; port: number }> {
  const discovery = cluster.kubeConfig().makeApiClient(DiscoveryV1Api);
  let found: { address: string; port: number } | undefined;
  await waitFor(
    `${namespace}/${name} clusterset endpoint in ${cluster.name}`,
    async () => {
      const slices = await discovery.listNamespacedEndpointSlice({
        namespace,
        labelSelector: `kubernetes.io/service-name=${derivedServiceName(namespace, name)}`,
      });
      const slice = slices.items.find((s) => s.endpoints?.some((e) => e.conditions?.ready));
      const address = slice?.endpoints?.[0]?.addresses[0];
      const port = slice?.ports?.[0]?.port;
      found = address && port ? { address, port } : undefined;
      return found !== undefined;
    },
    30_000,
    200,
  );
  return found as { address: string; port: number };
}

/** `count` sequential connections from inside `from`'s namespace. */
export async function connect(
  fed: Federation,
  from: LocalCluster,
  target: { address: string; port: number },
  count: number,
): Promise<ConnectReport> {
  return JSON.parse(
    await fed.inCluster(from.name, ['connect', target.address, String(target.port), String(count)], 600_000),
  ) as ConnectReport;
}

/** New connections one after another for `seconds`, each with its start time and outcome (a connection not done in `timeoutMs` fails). */
export async function timeline(
  fed: Federation,
  from: LocalCluster,
  target: { address: string; port: number },
  seconds: number,
  timeoutMs = 15_000,
): Promise<Timeline> {
  return JSON.parse(
    await fed.inCluster(
      from.name,
      ['timeline', target.address, String(target.port), String(seconds), String(timeoutMs)],
      600_000,
    ),
  ) as Timeline;
}

/** Sum of a Prometheus metric over the series whose labels include `labels`. */
export function metric(text: string, name: string, labels: Record<string, string>): number {
  const wanted = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
  return text
    .split('\n')
    .filter((line) => line.startsWith(`${name}{`) && wanted.every((w) => line.includes(w)))
    .reduce((sum, line) => sum + Number(line.slice(line.lastIndexOf(' ') + 1)), 0);
}

/** Creates (or replaces) a FailoverPolicy on the hub. */
export async function applyFailoverPolicy(
  fed: Federation,
  namespace: string,
  name: string,
  spec: Partial<FailoverPolicySpec> & { service: string },
): Promise<void> {
  const api = fed.hubCluster.kubeConfig().makeApiClient(CustomObjectsApi);
  const body = { apiVersion: ISTHMUS_API_VERSION, kind: 'FailoverPolicy', metadata: { name, namespace }, spec };
  try {
    const current = (await api.getNamespacedCustomObject({
      group: ISTHMUS_GROUP,
      version: ISTHMUS_VERSION,
      namespace,
      plural: FAILOVER_POLICY_PLURAL,
      name,
    })) as { metadata: { resourceVersion: string } };
    await api.replaceNamespacedCustomObject({
      group: ISTHMUS_GROUP,
      version: ISTHMUS_VERSION,
      namespace,
      plural: FAILOVER_POLICY_PLURAL,
      name,
      body: { ...body, metadata: { ...body.metadata, resourceVersion: current.metadata.resourceVersion } },
    });
  } catch {
    await api.createNamespacedCustomObject({
      group: ISTHMUS_GROUP,
      version: ISTHMUS_VERSION,
      namespace,
      plural: FAILOVER_POLICY_PLURAL,
      body,
    });
  }
}

/** `isthmus routes` from `cluster`: each cluster's share of new connections (first port), and the policy in force. */
export async function routeShares(
  fed: Federation,
  cluster: LocalCluster,
  namespace: string,
  name: string,
): Promise<{ shares: Map<string, number>; policy: string }> {
  const result = await fed.cli(['routes', `${namespace}/${name}`, '-o', 'json'], cluster.name);
  if (result.code !== 0) return { shares: new Map(), policy: '' };
  const [listener] = (
    JSON.parse(result.stdout) as { listeners: { policy: string; routes: { cluster: string; share: number }[] }[] }
  ).listeners;
  return { shares: new Map((listener?.routes ?? []).map((r) => [r.cluster, r.share])), policy: listener?.policy ?? '' };
}
