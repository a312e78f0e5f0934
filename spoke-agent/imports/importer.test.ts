// The importer against a real kube-apiserver and a real nats-server: the test plays the hub and
// writes catalog entries into the KV bucket; the importer's NATS connection runs through a TCP
// proxy the test can cut. Deletions come as the hub makes them (tombstones); a key that vanishes
// without one keeps its import.
import { setTimeout as sleep } from 'node:timers/promises';
import {
  CoreV1Api,
  CustomObjectsApi,
  DiscoveryV1Api,
  type KubeConfig,
  type V1EndpointSlice,
  type V1Service,
} from '@kubernetes/client-node';
import { Kvm, type KV } from '@nats-io/kv';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestbed, waitFor, type Testbed } from '../../local/testbed/index.ts';
import { MCS_API_VERSION, MCS_GROUP, MCS_VERSION, SERVICE_IMPORT_PLURAL } from '../../common/api/mcs.ts';
import { CATALOG_BUCKET, catalogEntrySchema, type CatalogEntry } from '../../common/catalog.ts';
import { ensureNamespace, isNotFound } from '../../common/kube/index.ts';
import { TcpProxy } from '../../common/kube/tcp-proxy.testkit.ts';
import { runInBackground } from '../../common/lifecycle.testkit.ts';
import { createLogger } from '../../common/logger.ts';
import { federationNatsAccounts } from '../../common/nats-authorization.ts';
import { AGENT_CERTIFICATE_SUBJECT } from '../../common/pki/index.ts';
import { putEntry, putTombstone, reconnectAttempts } from './catalog.testkit.ts';
import {
  createImporter,
  derivedServiceName,
  registerImporterMetrics,
  type Importer,
  type OutboundListener,
} from './index.ts';

const log = createLogger({
  component: 'importer-test',
  level: process.env.ISTHMUS_TEST_LOG === '1' ? 'debug' : 'silent',
});
const CLUSTER_ID = 'east';
// Only data here: an EndpointSlice may not name a loopback address.
const OUTBOUND_ADDRESS = '10.255.0.10';

let bed: Testbed;
let kc: KubeConfig;
let core: CoreV1Api;
let discovery: DiscoveryV1Api;
let custom: CustomObjectsApi;
let hub: NatsConnection;
let kv: KV;
let proxy: TcpProxy;
let agent: NatsConnection;
let importer: Importer;
let stopImporter: (() => Promise<void>) | undefined;
let registry: Registry;
/** What the gateway listens on; tests change it and call `resync()`, as the agent will. */
let outboundListener: OutboundListener = () => undefined;

interface ServiceImportObject {
  metadata: {
    name: string;
    uid: string;
    resourceVersion: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
  };
  spec: Record<string, unknown>;
  status?: { clusters?: { cluster: string }[]; conditions?: { type: string; status: string; reason: string }[] };
}

function cluster(clusterId: string, overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    clusterId,
    region: `region-${clusterId}`,
    zone: `${clusterId}-1a`,
    gatewayAddresses: [{ address: '10.1.0.1', port: 15443 }],
    exportCreatedAt: '2024-01-01T00:00:00Z',
    type: 'ClusterSetIP',
    ports: [{ name: 'http', port: 80 }],
    endpoints: [{ zone: `${clusterId}-1a`, ready: 1 }],
    ...overrides,
  };
}

function entry(
  namespace: string,
  name: string,
  clusters: Record<string, unknown>[],
  overrides: Record<string, unknown> = {},
): CatalogEntry {
  return catalogEntrySchema.parse({
    namespace,
    name,
    type: 'ClusterSetIP',
    ports: [{ name: 'http', port: 80 }],
    clusters,
    ...overrides,
  });
}

const put = (value: CatalogEntry): Promise<number> => putEntry(kv, value);
const tombstone = (key: string): Promise<number> => putTombstone(kv, key);

/** The importer has processed the bucket up to `revision`, and its queue is idle. */
async function caughtUp(revision: number): Promise<void> {
  await waitFor(
    `catalog revision ${revision} seen`,
    () => Promise.resolve(importer.status().revision >= revision),
    10_000,
    20,
  );
  await settled();
}

async function orUndefined<T>(read: Promise<T>): Promise<T | undefined> {
  try {
    return await read;
  } catch (err) {
    if (isNotFound(err)) return undefined;
    throw err;
  }
}

async function serviceImport(namespace: string, name: string): Promise<ServiceImportObject | undefined> {
  return (await orUndefined(
    custom.getNamespacedCustomObject({
      group: MCS_GROUP,
      version: MCS_VERSION,
      namespace,
      plural: SERVICE_IMPORT_PLURAL,
      name,
    }),
  )) as ServiceImportObject | undefined;
}

async function derivedService(namespace: string, name: string): Promise<V1Service | undefined> {
  return orUndefined(core.readNamespacedService({ namespace, name: derivedServiceName(namespace, name) }));
}

async function slices(namespace: string, name: string): Promise<V1EndpointSlice[]> {
  const list = await discovery.listNamespacedEndpointSlice({
    namespace,
    labelSelector: `multicluster.kubernetes.io/service-name=${name}`,
  });
  return list.items.sort((a, b) => (a.metadata?.name ?? '').localeCompare(b.metadata?.name ?? ''));
}

function sourceSlice(all: V1EndpointSlice[], clusterId: string): V1EndpointSlice | undefined {
  return all.find((s) => s.metadata?.labels?.['multicluster.kubernetes.io/source-cluster'] === clusterId);
}

/** Everything the importer holds for one service, as versions: equal means nothing was written. */
async function versions(namespace: string, name: string): Promise<string[]> {
  const [si, service, all] = await Promise.all([
    serviceImport(namespace, name),
    derivedService(namespace, name),
    slices(namespace, name),
  ]);
  return [si, service, ...all].map((o) => `${o?.metadata?.name}@${o?.metadata?.uid}/${o?.metadata?.resourceVersion}`);
}

async function imported(namespace: string, name: string, clusters: number): Promise<ServiceImportObject> {
  let found: ServiceImportObject | undefined;
  await waitFor(
    `ServiceImport ${namespace}/${name} with ${clusters} clusters`,
    async () => {
      found = await serviceImport(namespace, name);
      return found?.status?.clusters?.length === clusters && (await slices(namespace, name)).length >= clusters;
    },
    10_000,
    50,
  );
  return found as ServiceImportObject;
}

async function goneEntirely(namespace: string, name: string): Promise<void> {
  await waitFor(
    `everything of ${namespace}/${name} deleted`,
    async () => {
      const [si, service, all] = await Promise.all([
        serviceImport(namespace, name),
        derivedService(namespace, name),
        slices(namespace, name),
      ]);
      return !si && !service && all.length === 0;
    },
    10_000,
    50,
  );
}

/** The work queue is empty twice, 200 ms apart. */
async function settled(): Promise<void> {
  await waitFor(
    'importer idle',
    async () => {
      if (importer.status().pending > 0) return false;
      await sleep(200);
      return importer.status().pending === 0;
    },
    10_000,
    20,
  );
}

beforeAll(async () => {
  bed = await startTestbed({ clusters: 1, natsAuthorization: (adminNkey) => federationNatsAccounts([adminNkey]) });
  kc = bed.clusters[0]!.kubeConfig();
  core = kc.makeApiClient(CoreV1Api);
  discovery = kc.makeApiClient(DiscoveryV1Api);
  custom = kc.makeApiClient(CustomObjectsApi);
  const nats = bed.nats!;
  hub = await nats.connect('hub');
  kv = await new Kvm(hub).create(CATALOG_BUCKET);
  proxy = await TcpProxy.start(nats.url);
  agent = await connect({
    servers: `tls://127.0.0.1:${proxy.port}`,
    name: 'agent',
    tls: await nats.clientCredentials('agent', AGENT_CERTIFICATE_SUBJECT),
    maxReconnectAttempts: -1,
    reconnectTimeWait: 100,
    reconnectJitter: 0,
  });
  await ensureNamespace(kc, 'shop');
  await startImporter();
});

async function startImporter(): Promise<void> {
  registry = new Registry();
  importer = createImporter({
    kc,
    clusterId: CLUSTER_ID,
    nc: agent,
    log,
    outboundListener: (namespace, name, port) => outboundListener(namespace, name, port),
    conflictRetryMs: 300,
    watchRetry: { initialMs: 50, maxMs: 500 },
  });
  const started = importer;
  registerImporterMetrics(registry, () => started.status());
  stopImporter = runInBackground(importer).stop;
  await importer.synced();
}

afterAll(async () => {
  await stopImporter?.();
  await agent?.close();
  await hub?.close();
  await proxy?.[Symbol.asyncDispose]();
  await bed?.[Symbol.asyncDispose]();
});

describe('importer', () => {
  it('imports an entry: ServiceImport, one slice per source cluster and the clusterset Service', async () => {
    await put(
      entry(
        'shop',
        'web',
        [
          cluster('west', {
            gatewayAddresses: [
              { address: '10.1.0.1', port: 15443 },
              { address: '10.1.0.2', port: 15443 },
            ],
            endpoints: [{ zone: 'west-1a', ready: 2 }],
            ports: [
              { name: 'http', port: 80 },
              { name: 'grpc', port: 9090, appProtocol: 'grpc' },
            ],
          }),
          cluster(CLUSTER_ID, { gatewayAddresses: [{ address: '10.2.0.1', port: 15443 }], endpoints: [] }),
        ],
        {
          ports: [
            { name: 'http', port: 80 },
            { name: 'grpc', port: 9090, appProtocol: 'grpc' },
          ],
          sessionAffinity: 'ClientIP',
          sessionAffinityTimeoutSeconds: 300,
        },
      ),
    );
    const si = await imported('shop', 'web', 2);
    const service = await derivedService('shop', 'web');
    expect(service?.spec).toMatchObject({
      type: 'ClusterIP',
      ports: [
        { name: 'http', protocol: 'TCP', port: 80 },
        { name: 'grpc', protocol: 'TCP', port: 9090, appProtocol: 'grpc' },
      ],
    });
    expect(service?.metadata?.labels).toMatchObject({
      'app.kubernetes.io/managed-by': 'isthmus-agent',
      'multicluster.kubernetes.io/service-name': 'web',
    });
    expect(service?.spec?.clusterIP).toMatch(/^10\.96\./);
    await waitFor(
      'ServiceImport IPs',
      async () =>
        ((await serviceImport('shop', 'web'))?.spec['ips'] as string[] | undefined)?.[0] === service?.spec?.clusterIP,
      5_000,
      50,
    );
    expect(si.metadata.labels).toMatchObject({ 'app.kubernetes.io/managed-by': 'isthmus-agent' });
    expect(si.metadata.annotations).toMatchObject({
      'multicluster.kubernetes.io/derived-service': derivedServiceName('shop', 'web'),
    });
    expect(si.spec).toMatchObject({
      type: 'ClusterSetIP',
      ports: [
        { name: 'http', protocol: 'TCP', port: 80 },
        { name: 'grpc', protocol: 'TCP', port: 9090, appProtocol: 'grpc' },
      ],
      sessionAffinity: 'ClientIP',
      sessionAffinityConfig: { clientIP: { timeoutSeconds: 300 } },
    });
    expect(si.status?.clusters).toEqual([{ cluster: 'west' }, { cluster: CLUSTER_ID }]);

    const all = await slices('shop', 'web');
    expect(all).toHaveLength(2); // one per source cluster, empty while the gateway has no outbound listener
    const west = sourceSlice(all, 'west');
    expect(west?.metadata?.labels).toMatchObject({
      'multicluster.kubernetes.io/service-name': 'web',
      'multicluster.kubernetes.io/source-cluster': 'west',
      'endpointslice.kubernetes.io/managed-by': 'agent.isthmus.dev',
      'app.kubernetes.io/managed-by': 'isthmus-agent',
      'kubernetes.io/service-name': derivedServiceName('shop', 'web'),
    });
    expect(west?.endpoints ?? []).toEqual([]);
    expect(JSON.parse(west?.metadata?.annotations?.['isthmus.dev/gateway-addresses'] ?? '[]')).toEqual([
      { address: '10.1.0.1', port: 15443 },
      { address: '10.1.0.2', port: 15443 },
    ]);
    expect(JSON.parse(west?.metadata?.annotations?.['isthmus.dev/locality'] ?? '{}')).toMatchObject({
      region: 'region-west',
      zone: 'west-1a',
    });
    expect(si.status?.conditions?.find((c) => c.type === 'Ready')).toMatchObject({
      status: 'False',
      reason: 'ListenerPending',
    });
  });

  it('points every source slice at the outbound listener once the gateway has one, and turns Ready', async () => {
    outboundListener = (_namespace, name, port) =>
      name === 'web' ? { address: OUTBOUND_ADDRESS, port: 20_000 + port.port } : undefined;
    importer.resync();
    let west: V1EndpointSlice | undefined;
    await waitFor(
      'source slice names the listener',
      async () => {
        west = sourceSlice(await slices('shop', 'web'), 'west');
        return (west?.endpoints?.length ?? 0) > 0;
      },
      10_000,
      50,
    );
    expect(west?.endpoints?.map((e) => [e.addresses[0], e.zone, e.conditions?.ready])).toEqual([
      [OUTBOUND_ADDRESS, 'west-1a', true],
    ]);
    expect(west?.ports?.map((p) => [p.name, p.port])).toEqual([
      ['http', 20_080],
      ['grpc', 29_090],
    ]);
    const local = sourceSlice(await slices('shop', 'web'), CLUSTER_ID);
    expect(local?.endpoints?.map((e) => [e.addresses[0], e.conditions?.ready])).toEqual([[OUTBOUND_ADDRESS, false]]);
    expect(local?.ports?.map((p) => p.port)).toEqual([20_080]); // the local export serves http only
    await waitFor(
      'Ready=True',
      async () =>
        (await serviceImport('shop', 'web'))?.status?.conditions?.find((c) => c.type === 'Ready')?.status === 'True',
      10_000,
      50,
    );
  });

  it('writes nothing for an unchanged entry, re-put or resynced', async () => {
    await settled();
    const before = await versions('shop', 'web');
    const writes = importer.status().writes;
    await put(entry('shop', 'web', [cluster('west')])); // a change, then the same again twice
    await imported('shop', 'web', 1);
    await settled();
    const changedWrites = importer.status().writes;
    expect(changedWrites).toBeGreaterThan(writes);
    const after = await versions('shop', 'web');
    await put(entry('shop', 'web', [cluster('west')]));
    importer.resync();
    await settled();
    expect(importer.status().writes).toBe(changedWrites);
    expect(await versions('shop', 'web')).toEqual(after);
    expect(after).not.toEqual(before);
  });

  it('refuses a Headless import without slices, recreates the clusterset Service when it turns ClusterSetIP, and deletes the slices when it turns back', async () => {
    const refused = async (): Promise<boolean> =>
      (await serviceImport('shop', 'switch'))?.status?.conditions?.find((c) => c.type === 'Ready')?.reason ===
      'HeadlessNotSupported';
    await put(entry('shop', 'switch', [cluster('west', { type: 'Headless' })], { type: 'Headless' }));
    // The condition is written after the slices in the same reconcile: none were written.
    await waitFor('Headless import refused', refused, 10_000, 50);
    expect(await slices('shop', 'switch')).toEqual([]);
    const headless = await derivedService('shop', 'switch');
    expect(headless?.spec?.clusterIP).toBe('None');
    expect((await serviceImport('shop', 'switch'))?.spec['ips']).toBeUndefined();
    await put(entry('shop', 'switch', [cluster('west')]));
    await waitFor(
      'ServiceImport with an IP',
      async () => ((await serviceImport('shop', 'switch'))?.spec['ips'] as string[] | undefined)?.length === 1,
      10_000,
      50,
    );
    await imported('shop', 'switch', 1);
    const service = await derivedService('shop', 'switch');
    expect(service?.metadata?.uid).not.toBe(headless?.metadata?.uid);
    expect((await serviceImport('shop', 'switch'))?.spec).toMatchObject({
      type: 'ClusterSetIP',
      ips: [service?.spec?.clusterIP],
    });
    await put(entry('shop', 'switch', [cluster('west', { type: 'Headless' })], { type: 'Headless' }));
    await waitFor(
      'refused again, its slice deleted',
      async () => (await refused()) && (await slices('shop', 'switch')).length === 0,
      10_000,
      50,
    );
  });

  it('deletes the slice of a cluster that left the entry, and nothing else', async () => {
    await put(
      entry('shop', 'api', [
        cluster('west'),
        cluster('north', { gatewayAddresses: [{ address: '10.3.0.1', port: 15443 }] }),
      ]),
    );
    const si = await imported('shop', 'api', 2);
    await put(entry('shop', 'api', [cluster('west')]));
    await waitFor('north slice deleted', async () => !sourceSlice(await slices('shop', 'api'), 'north'), 10_000, 50);
    const after = await imported('shop', 'api', 1);
    expect(after.metadata.uid).toBe(si.metadata.uid);
    expect(after.status?.clusters).toEqual([{ cluster: 'west' }]);
    expect(sourceSlice(await slices('shop', 'api'), 'west')).toBeDefined();
  });

  it('deletes everything it made when the hub ends the entry with a tombstone', async () => {
    await put(entry('shop', 'gone', [cluster('west')]));
    await imported('shop', 'gone', 1);
    await tombstone('shop.gone');
    await goneEntirely('shop', 'gone');
  });

  it('keeps the import, its uid and its IP when the key is deleted or purged without a tombstone, and writes nothing when it is back', async () => {
    await put(entry('shop', 'kept', [cluster('west')]));
    await put(entry('shop', 'purged', [cluster('west')]));
    const kept = await imported('shop', 'kept', 1);
    await imported('shop', 'purged', 1);
    await settled();
    const before = [await versions('shop', 'kept'), await versions('shop', 'purged')];
    const writes = importer.status().writes;
    await kv.delete('shop.kept');
    await kv.purge('shop.purged');
    await caughtUp((await kv.status()).streamInfo.state.last_seq);
    expect([await versions('shop', 'kept'), await versions('shop', 'purged')]).toEqual(before);
    expect((await serviceImport('shop', 'kept'))?.spec['ips']).toEqual(kept.spec['ips']);
    await put(entry('shop', 'kept', [cluster('west')]));
    await caughtUp(await put(entry('shop', 'purged', [cluster('west')])));
    expect([await versions('shop', 'kept'), await versions('shop', 'purged')]).toEqual(before);
    expect(importer.status().writes).toBe(writes);
  });

  it('imports into a namespace once it exists', async () => {
    await caughtUp(await put(entry('late', 'db', [cluster('west')])));
    expect(await orUndefined(core.readNamespace({ name: 'late' }))).toBeUndefined();
    await ensureNamespace(kc, 'late');
    await imported('late', 'db', 1);
  });

  it('imports nothing that no exporter allows this cluster, and withdraws it when the allowance goes', async () => {
    await caughtUp(await put(entry('shop', 'private', [cluster('west', { allowedClusters: ['north'] })])));
    expect(await serviceImport('shop', 'private')).toBeUndefined();
    expect(await slices('shop', 'private')).toEqual([]);
    expect(await derivedService('shop', 'private')).toBeUndefined();
    await put(entry('shop', 'private', [cluster('west', { allowedClusters: ['north', CLUSTER_ID] })]));
    await imported('shop', 'private', 1);
    await put(entry('shop', 'private', [cluster('west', { allowedClusters: ['north'] })]));
    await goneEntirely('shop', 'private');
  });

  it('never modifies or deletes a ServiceImport it does not own', async () => {
    await custom.createNamespacedCustomObject({
      group: MCS_GROUP,
      version: MCS_VERSION,
      namespace: 'shop',
      plural: SERVICE_IMPORT_PLURAL,
      body: {
        apiVersion: MCS_API_VERSION,
        kind: 'ServiceImport',
        metadata: { name: 'legacy', labels: { owner: 'someone-else' } },
        spec: { type: 'Headless', ports: [{ port: 1 }] },
      },
    });
    const foreign = await serviceImport('shop', 'legacy');
    await put(entry('shop', 'legacy', [cluster('west')]));
    await waitFor(
      'conflict reported',
      () => Promise.resolve(importer.status().conflicts.some((c) => c.kind === 'ServiceImport' && c.name === 'legacy')),
      10_000,
      50,
    );
    await waitFor('slices of legacy', async () => (await slices('shop', 'legacy')).length === 1, 10_000, 50);
    const reconciled = importer.status().reconciles;
    await waitFor(
      'three conflict retries',
      () => Promise.resolve(importer.status().reconciles >= reconciled + 3),
      10_000,
      50,
    );
    expect((await serviceImport('shop', 'legacy'))?.metadata.resourceVersion).toBe(foreign?.metadata.resourceVersion);

    await tombstone('shop.legacy');
    await waitFor(
      'owned objects of legacy deleted',
      async () => (await slices('shop', 'legacy')).length === 0 && !(await derivedService('shop', 'legacy')),
      10_000,
      50,
    );
    await settled();
    expect((await serviceImport('shop', 'legacy'))?.metadata.resourceVersion).toBe(foreign?.metadata.resourceVersion);
    expect(importer.status().conflicts).toEqual([]);
  });

  it('deletes nothing while NATS is unreachable, then converges on what changed meanwhile without touching the rest', async () => {
    await put(entry('shop', 'keep', [cluster('west')]));
    await put(entry('shop', 'shrink', [cluster('west'), cluster('north')]));
    await put(entry('shop', 'drop', [cluster('west')]));
    await imported('shop', 'keep', 1);
    await imported('shop', 'shrink', 2);
    await imported('shop', 'drop', 1);
    await settled();
    const keep = await versions('shop', 'keep');
    const drop = await versions('shop', 'drop');

    const attempts = reconnectAttempts(agent, 3);
    proxy.cut();
    await tombstone('shop.drop');
    await put(entry('shop', 'shrink', [cluster('west')]));
    await put(entry('shop', 'fresh', [cluster('west')]));
    await attempts; // several reconnects fail meanwhile
    expect(await versions('shop', 'drop')).toEqual(drop);
    expect(sourceSlice(await slices('shop', 'shrink'), 'north')).toBeDefined();
    expect(await serviceImport('shop', 'fresh')).toBeUndefined();

    proxy.restore();
    await goneEntirely('shop', 'drop');
    await imported('shop', 'fresh', 1);
    await waitFor(
      'north slice of shrink deleted',
      async () => !sourceSlice(await slices('shop', 'shrink'), 'north'),
      10_000,
      50,
    );
    await settled();
    expect(await versions('shop', 'keep')).toEqual(keep);
  });

  it('after a restart, keeps an import whose key vanished meanwhile without a tombstone', async () => {
    await settled();
    const keep = await versions('shop', 'keep');
    await stopImporter?.();
    await kv.delete('shop.keep');
    await startImporter();
    await caughtUp((await kv.status()).streamInfo.state.last_seq);
    expect(await versions('shop', 'keep')).toEqual(keep);
    expect(importer.status().writes).toBe(0);
    await caughtUp(await put(entry('shop', 'keep', [cluster('west')])));
    expect(await versions('shop', 'keep')).toEqual(keep);
    expect(importer.status().writes).toBe(0);
  });

  it('after a restart, deletes what the hub ended meanwhile and writes nothing else', async () => {
    await settled();
    const keep = await versions('shop', 'keep');
    await stopImporter?.();
    await tombstone('shop.api');
    await startImporter();
    await goneEntirely('shop', 'api');
    await settled();
    expect(importer.status().writes).toBe(3); // its ServiceImport, slice and clusterset Service
    expect(await registry.getSingleMetricAsString('isthmus_agent_import_writes_total')).toMatch(/ 3$/m);
    expect(await versions('shop', 'keep')).toEqual(keep);
  });
});
