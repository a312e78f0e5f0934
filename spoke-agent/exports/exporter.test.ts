// The exporter against a real kube-apiserver: ServiceExport, Service and EndpointSlice objects in
// → reports to an in-test hub and ServiceExport conditions out.
import { setTimeout as sleep } from 'node:timers/promises';
import {
  CoreV1Api,
  CustomObjectsApi,
  DiscoveryV1Api,
  PatchStrategy,
  setHeaderOptions,
  type KubeConfig,
  type V1Endpoint,
  type V1ServiceSpec,
} from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  findCondition,
  MCS_GROUP,
  MCS_VERSION,
  SERVICE_EXPORT_PLURAL,
  serviceExportSchema,
  type Condition,
  type ServiceExportSpec,
} from '../../common/api/index.ts';
import { ALLOWED_CLUSTERS_ANNOTATION } from '../../common/catalog.ts';
import { ensureNamespace } from '../../common/kube/index.ts';
import { createLogger } from '../../common/logger.ts';
import { startTestbed, waitFor, type Testbed } from '../../local/testbed/index.ts';
import { createExporter, type Exporter } from './exporter.ts';
import { RecordingHub } from './recording-hub.testkit.ts';

const log = createLogger({
  component: 'exporter-test',
  level: process.env.ISTHMUS_TEST_LOG === '1' ? 'debug' : 'silent',
});
const CLUSTER_ID = 'cluster-a';

let bed: Testbed;
let kc: KubeConfig;
let core: CoreV1Api;
let discovery: DiscoveryV1Api;
let custom: CustomObjectsApi;
const hub = new RecordingHub();
let exporter: Exporter;
const stop = new AbortController();
let running: Promise<void>;

beforeAll(async () => {
  bed = await startTestbed({ clusters: 1, nats: false });
  kc = bed.clusters[0]!.kubeConfig();
  core = kc.makeApiClient(CoreV1Api);
  discovery = kc.makeApiClient(DiscoveryV1Api);
  custom = kc.makeApiClient(CustomObjectsApi);
  exporter = createExporter({ kc, clusterId: CLUSTER_ID, hub, log, timing: { retryInitialMs: 20, retryMaxMs: 200 } });
  running = exporter.run(stop.signal);
  await exporter.synced();
});

afterAll(async () => {
  stop.abort();
  await running;
  await bed?.[Symbol.asyncDispose]();
});

// ---------------------------------------------------------------------------------------------
// Objects

async function createService(namespace: string, name: string, spec: V1ServiceSpec): Promise<void> {
  await ensureNamespace(kc, namespace);
  await core.createNamespacedService({ namespace, body: { metadata: { name, namespace }, spec } });
}

const httpService: V1ServiceSpec = { ports: [{ name: 'http', port: 80, protocol: 'TCP' }] };

function endpoint(ip: string, zone?: string, ready?: boolean): V1Endpoint {
  return { addresses: [ip], zone, conditions: ready === undefined ? {} : { ready } };
}

async function createSlice(
  namespace: string,
  name: string,
  service: string,
  endpoints: V1Endpoint[],
  options: { addressType?: string; labels?: Record<string, string> } = {},
): Promise<void> {
  await discovery.createNamespacedEndpointSlice({
    namespace,
    body: {
      metadata: { name, namespace, labels: { 'kubernetes.io/service-name': service, ...options.labels } },
      addressType: options.addressType ?? 'IPv4',
      endpoints,
      ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
    },
  });
}

async function setSliceEndpoints(namespace: string, name: string, endpoints: V1Endpoint[]): Promise<void> {
  await discovery.patchNamespacedEndpointSlice(
    { namespace, name, body: { endpoints } },
    setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
  );
}

/** Creates a ServiceExport; returns its creationTimestamp. */
async function createExport(
  namespace: string,
  name: string,
  annotations?: Record<string, string>,
  spec?: ServiceExportSpec,
): Promise<string> {
  await ensureNamespace(kc, namespace);
  const created: unknown = await custom.createNamespacedCustomObject({
    group: MCS_GROUP,
    version: MCS_VERSION,
    namespace,
    plural: SERVICE_EXPORT_PLURAL,
    body: {
      apiVersion: `${MCS_GROUP}/${MCS_VERSION}`,
      kind: 'ServiceExport',
      metadata: { name, namespace, annotations },
      ...(spec ? { spec } : {}),
    },
  });
  return serviceExportSchema.parse(created).metadata.creationTimestamp as string;
}

async function deleteExport(namespace: string, name: string): Promise<void> {
  await custom.deleteNamespacedCustomObject({
    group: MCS_GROUP,
    version: MCS_VERSION,
    namespace,
    plural: SERVICE_EXPORT_PLURAL,
    name,
  });
}

async function conditionsOf(namespace: string, name: string): Promise<Condition[]> {
  const object: unknown = await custom.getNamespacedCustomObject({
    group: MCS_GROUP,
    version: MCS_VERSION,
    namespace,
    plural: SERVICE_EXPORT_PLURAL,
    name,
  });
  return serviceExportSchema.parse(object).status?.conditions ?? [];
}

type Expected = Partial<Pick<Condition, 'status' | 'reason' | 'message'>>;

/** Waits until each named condition matches; returns the conditions then. */
async function waitForConditions(
  namespace: string,
  name: string,
  expected: Record<string, Expected | 'absent'>,
): Promise<Condition[]> {
  let conditions: Condition[] = [];
  const matches = (): boolean =>
    Object.entries(expected).every(([type, want]) => {
      const got = findCondition(conditions, type);
      if (want === 'absent') return got === undefined;
      return (
        got !== undefined && Object.entries(want).every(([field, value]) => got[field as keyof Condition] === value)
      );
    });
  await waitFor(
    `conditions of ${namespace}/${name}: ${JSON.stringify(expected)}`,
    async () => {
      conditions = await conditionsOf(namespace, name);
      return matches();
    },
    10_000,
    20,
  ).catch((err: unknown) => {
    throw new Error(`${String(err)}; last seen ${JSON.stringify(conditions)}`);
  });
  return conditions;
}

function median(values: readonly number[]): number {
  return [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] as number;
}

const reported =
  (namespace: string, name: string) =>
  (r: { ok: boolean; request: { services: { namespace: string; name: string }[] } }) =>
    r.ok && r.request.services.some((s) => s.namespace === namespace && s.name === name);

// ---------------------------------------------------------------------------------------------

describe('exporter on a real kube-apiserver', () => {
  it('reports a Service with its EndpointSlices, sets Valid, then Ready=Exported once the hub acknowledged it', async () => {
    const ns = 'shop';
    await createService(ns, 'cart', {
      ports: [
        { name: 'http', port: 80, targetPort: 8080, protocol: 'TCP', appProtocol: 'http' },
        { name: 'dns', port: 53, protocol: 'UDP' },
      ],
      sessionAffinity: 'ClientIP',
      sessionAffinityConfig: { clientIP: { timeoutSeconds: 600 } },
    });
    await createSlice(ns, 'cart-v4-1', 'cart', [
      endpoint('10.1.0.1', 'zone-a', true),
      endpoint('10.1.0.2', 'zone-a'),
      endpoint('10.1.0.3', 'zone-a', false),
      endpoint('10.1.0.4', 'zone-b', true),
    ]);
    await createSlice(ns, 'cart-v4-2', 'cart', [endpoint('10.1.0.5', 'zone-b', true), endpoint('10.1.0.6')]);
    // Dual stack: the same pods through IPv6 must not count twice.
    await createSlice(ns, 'cart-v6', 'cart', [endpoint('fd00::1', 'zone-a', true)], { addressType: 'IPv6' });
    // A slice this agent wrote for an import is no local endpoint.
    await createSlice(ns, 'cart-imported', 'cart', [endpoint('10.9.0.1', 'zone-c', true)], {
      labels: { 'endpointslice.kubernetes.io/managed-by': 'agent.isthmus.dev' },
    });

    const release = hub.hold();
    const from = hub.reports.length;
    const createdAt = await createExport(
      ns,
      'cart',
      { [ALLOWED_CLUSTERS_ANNOTATION]: 'cluster-c, cluster-b' },
      { exportedLabels: { tier: 'web' }, exportedAnnotations: { note: 'cart' } },
    );
    const report = await hub.waitForReport(
      'cart reported',
      (r) => r.request.services.some((s) => s.name === 'cart'),
      from,
    );
    expect(report.request.services.find((s) => s.name === 'cart')).toEqual({
      namespace: ns,
      name: 'cart',
      type: 'ClusterSetIP',
      ports: [
        { name: 'http', protocol: 'TCP', port: 80, appProtocol: 'http' },
        { name: 'dns', protocol: 'UDP', port: 53, appProtocol: '' },
      ],
      sessionAffinity: 'ClientIP',
      sessionAffinityTimeoutSeconds: 600,
      exportCreatedAt: createdAt,
      endpoints: [
        { zone: '', ready: 1, total: 1 },
        { zone: 'zone-a', ready: 2, total: 3 },
        { zone: 'zone-b', ready: 2, total: 2 },
      ],
      allowedClusters: ['cluster-b', 'cluster-c'],
      ipFamilies: ['IPv4'],
      internalTrafficPolicy: 'Cluster',
      trafficDistribution: '',
      exportedLabels: { tier: 'web' },
      exportedAnnotations: { note: 'cart' },
    });

    // The hub has not answered yet.
    const pending = await waitForConditions(ns, 'cart', {
      Valid: { status: 'True', reason: 'Valid' },
      Ready: { status: 'False', reason: 'Pending' },
      Conflict: 'absent',
    });
    release();
    const exported = await waitForConditions(ns, 'cart', {
      Valid: { status: 'True' },
      Ready: { status: 'True', reason: 'Exported' },
      Conflict: { status: 'False', reason: 'NoConflicts' },
    });
    expect(findCondition(exported, 'Valid')?.lastTransitionTime).toBe(
      findCondition(pending, 'Valid')?.lastTransitionTime,
    );
    expect(exporter.exportCount()).toBeGreaterThanOrEqual(1);
  });

  it('reports a headless Service as Headless', async () => {
    await createService('headless', 'db', { clusterIP: 'None', ports: [{ port: 5432 }] });
    const from = hub.reports.length;
    await createExport('headless', 'db');
    await hub.waitForReport('db reported', reported('headless', 'db'), from);
    expect(hub.service('headless', 'db')).toMatchObject({
      type: 'Headless',
      sessionAffinity: 'None',
      sessionAffinityTimeoutSeconds: 0,
      endpoints: [],
      allowedClusters: [],
    });
  });

  it('a ServiceExport without a Service is Valid=False/NoService and not reported, until the Service comes', async () => {
    const ns = 'ghosts';
    await createExport(ns, 'ghost');
    await waitForConditions(ns, 'ghost', {
      Valid: { status: 'False', reason: 'NoService', message: `Service ${ns}/ghost does not exist` },
      Ready: { status: 'False', reason: 'Pending' },
    });
    const from = hub.reports.length;
    await createService(ns, 'ghost', httpService);
    await hub.waitForReport('ghost reported once its Service exists', reported(ns, 'ghost'), from);
    for (const r of hub.reports.slice(0, from)) expect(r.request.services.some((s) => s.namespace === ns)).toBe(false);
    await waitForConditions(ns, 'ghost', {
      Valid: { status: 'True', reason: 'Valid' },
      Ready: { status: 'True', reason: 'Exported' },
    });

    // The Service goes: unexported, and says why.
    const before = hub.reports.length;
    await core.deleteNamespacedService({ namespace: ns, name: 'ghost' });
    await hub.waitForReport(
      'ghost unexported',
      (r) => r.ok && !r.request.services.some((s) => s.namespace === ns),
      before,
    );
    await waitForConditions(ns, 'ghost', {
      Valid: { status: 'False', reason: 'NoService' },
      Ready: { status: 'False', reason: 'Pending' },
      Conflict: 'absent',
    });
  });

  it('an ExternalName Service is Valid=False/InvalidServiceType and not reported', async () => {
    const ns = 'external';
    await createService(ns, 'legacy', { type: 'ExternalName', externalName: 'legacy.example.com' });
    await createService(ns, 'fine', httpService);
    await createExport(ns, 'legacy');
    await waitForConditions(ns, 'legacy', {
      Valid: { status: 'False', reason: 'InvalidServiceType' },
      Ready: { status: 'False', reason: 'Pending' },
    });
    const from = hub.reports.length;
    await createExport(ns, 'fine');
    const report = await hub.waitForReport('fine reported', reported(ns, 'fine'), from);
    expect(report.request.services.some((s) => s.name === 'legacy')).toBe(false);
  });

  it('an allowed-clusters annotation naming no cluster id is refused, not widened', async () => {
    const ns = 'restricted';
    await createService(ns, 'vault', httpService);
    await createExport(ns, 'vault', { [ALLOWED_CLUSTERS_ANNOTATION]: 'cluster-b,Not_A_Cluster' });
    await waitForConditions(ns, 'vault', { Valid: { status: 'False', reason: 'InvalidAllowedClusters' } });
    expect(hub.reports.some((r) => r.request.services.some((s) => s.namespace === ns))).toBe(false);
  });

  it('conflicts from the hub become Conflict=True with reason and message, and clear again', async () => {
    const ns = 'conflicts';
    await createService(ns, 'api', httpService);
    await createSlice(ns, 'api-1', 'api', [endpoint('10.2.0.1', 'zone-a', true)]);
    hub.conflicts = [
      {
        namespace: ns,
        name: 'api',
        type: 'PortConflict',
        message: 'port 80/TCP is 8080/TCP in cluster-b (older export wins)',
      },
    ];
    await createExport(ns, 'api');
    const conflicted = await waitForConditions(ns, 'api', {
      Ready: { status: 'True', reason: 'Exported' },
      Conflict: {
        status: 'True',
        reason: 'PortConflict',
        message: 'port 80/TCP is 8080/TCP in cluster-b (older export wins)',
      },
    });

    // Two conflicts at once: reasons joined with commas, as upstream does.
    hub.conflicts = [
      ...hub.conflicts,
      { namespace: ns, name: 'api', type: 'SessionAffinityConflict', message: 'ClientIP in cluster-b' },
    ];
    await setSliceEndpoints(ns, 'api-1', [endpoint('10.2.0.1', 'zone-a', true), endpoint('10.2.0.2', 'zone-a', true)]);
    await waitForConditions(ns, 'api', {
      Conflict: {
        status: 'True',
        reason: 'PortConflict,SessionAffinityConflict',
        message: 'port 80/TCP is 8080/TCP in cluster-b (older export wins); ClientIP in cluster-b',
      },
    });

    hub.conflicts = [];
    await setSliceEndpoints(ns, 'api-1', [endpoint('10.2.0.1', 'zone-a', true)]);
    const cleared = await waitForConditions(ns, 'api', { Conflict: { status: 'False', reason: 'NoConflicts' } });
    expect(findCondition(cleared, 'Ready')?.lastTransitionTime).toBe(
      findCondition(conflicted, 'Ready')?.lastTransitionTime,
    );

    // Discovered later from another cluster's export, through the catalog.
    exporter.applyCatalogConflicts(ns, 'api', [
      { type: 'TypeConflict', message: 'Headless in cluster-c', clusters: ['cluster-c', CLUSTER_ID] },
      { type: 'PortConflict', message: 'between cluster-b and cluster-c', clusters: ['cluster-b', 'cluster-c'] },
    ]);
    await waitForConditions(ns, 'api', {
      Conflict: { status: 'True', reason: 'TypeConflict', message: 'Headless in cluster-c' },
    });
    exporter.applyCatalogConflicts(ns, 'api', []);
    await waitForConditions(ns, 'api', { Conflict: { status: 'False', reason: 'NoConflicts' } });
  });

  it('deleting the ServiceExport drops it from the next report', async () => {
    const ns = 'leaving';
    await createService(ns, 'old', httpService);
    await createService(ns, 'stays', httpService);
    let from = hub.reports.length;
    await createExport(ns, 'old');
    await createExport(ns, 'stays');
    await hub.waitForReport('both reported', (r) => reported(ns, 'old')(r) && reported(ns, 'stays')(r), from);
    const count = exporter.exportCount();
    from = hub.reports.length;
    await deleteExport(ns, 'old');
    const next = await hub.waitForReport('report after the delete', (r) => r.ok, from);
    expect(next.request.services.some((s) => s.namespace === ns && s.name === 'old')).toBe(false);
    expect(next.request.services.some((s) => s.namespace === ns && s.name === 'stays')).toBe(true);
    expect(exporter.exportCount()).toBe(count - 1);
  });

  it('coalesces a burst of 50 new exports into far fewer reports, the last with all of them', async () => {
    const ns = 'burst';
    await ensureNamespace(kc, ns);
    const names = Array.from({ length: 50 }, (_, i) => `svc-${i}`);
    await Promise.all(names.map((name) => createService(ns, name, httpService)));
    await sleep(50);
    const from = hub.reports.length;
    const started = performance.now();
    await Promise.all(names.map((name) => createExport(ns, name)));
    const all = await hub.waitForReport(
      'all 50 reported',
      (r) => r.ok && r.request.services.filter((s) => s.namespace === ns).length === 50,
      from,
    );
    await sleep(100);
    const reports = hub.reports.slice(from);
    const carrying = reports.filter((r) => r.request.services.some((s) => s.namespace === ns));
    console.log(
      `exporter: 50 ServiceExports created concurrently → ${carrying.length} report(s); all 50 in a report ${(all.at - started).toFixed(1)} ms after the burst began`,
    );
    // Coalesced: fewer reports than exports (one each would be 50), however long the 50 creates take.
    expect(carrying.length).toBeLessThan(names.length);
    expect(hub.last()?.request.services.filter((s) => s.namespace === ns)).toHaveLength(50);
  });

  // How fast is a figure for bench/ (propagation); here: every lone change is reported, in order.
  it('reports each lone change of the apiserver, the last one last', async () => {
    const ns = 'latency';
    await createService(ns, 'web', httpService);
    await createSlice(ns, 'web-1', 'web', [endpoint('10.3.0.1', 'zone-a', true)]);
    let from = hub.reports.length;
    await createExport(ns, 'web');
    await hub.waitForReport('web reported', reported(ns, 'web'), from);
    await sleep(100);

    const sinceWrite: number[] = [];
    const sinceWritten: number[] = [];
    for (let ready = 2; ready <= 11; ready++) {
      const endpoints = Array.from({ length: ready }, (_, i) => endpoint(`10.3.0.${i + 1}`, 'zone-a', true));
      from = hub.reports.length;
      const started = performance.now();
      await setSliceEndpoints(ns, 'web-1', endpoints);
      const written = performance.now();
      const report = await hub.waitForReport(
        `web with ${ready} endpoints`,
        (r) => r.request.services.find((s) => s.namespace === ns)?.endpoints[0]?.ready === ready,
        from,
      );
      sinceWrite.push(report.at - started);
      sinceWritten.push(report.at - written);
      await sleep(30);
    }
    const p50 = median(sinceWrite);
    const show = (list: number[]): string => list.map((l) => l.toFixed(1)).join(', ');
    console.log(
      `exporter: lone EndpointSlice change → report, from sending the PATCH (PATCH + watch + debounce): p50 ${p50.toFixed(1)} ms [${show(sinceWrite)}]`,
    );
    console.log(
      `exporter: ... from the PATCH's answer (watch + debounce, the event may beat the answer): p50 ${median(sinceWritten).toFixed(1)} ms [${show(sinceWritten)}]`,
    );
    expect(sinceWrite).toHaveLength(10);
    expect(hub.last()?.request.services.find((s) => s.namespace === ns)?.endpoints[0]?.ready).toBe(11);
  });

  it('a failing hub gets the report again with backoff; nothing is lost or cleared meanwhile', async () => {
    const ns = 'flaky';
    await createService(ns, 'orders', httpService);
    await createService(ns, 'billing', httpService);
    const stable = hub.last()?.request.services.length ?? 0;
    hub.failNext = 5;
    const from = hub.reports.length;
    await createExport(ns, 'orders');
    await hub.waitForReport('first failed attempt', (r) => !r.ok, from);
    await createExport(ns, 'billing'); // arrives while the hub is down
    await waitForConditions(ns, 'billing', {
      Valid: { status: 'True' },
      Ready: { status: 'False', reason: 'Pending' },
    });
    const ok = await hub.waitForReport('accepted report', (r) => r.ok, from);
    const attempts = hub.reports.slice(from, hub.reports.indexOf(ok) + 1);
    expect(attempts.map((r) => r.ok)).toEqual([false, false, false, false, false, true]);
    for (const attempt of attempts) expect(attempt.request.services.length).toBeGreaterThanOrEqual(stable + 1);
    expect(ok.request.services.filter((s) => s.namespace === ns).map((s) => s.name)).toEqual(['billing', 'orders']);
    await waitForConditions(ns, 'orders', { Ready: { status: 'True', reason: 'Exported' } });
    await waitForConditions(ns, 'billing', { Ready: { status: 'True', reason: 'Exported' } });
  });
});
