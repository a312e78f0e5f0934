// The importer against a real kube-apiserver and a real nats-server: the test plays the hub and
// writes catalog entries into the KV bucket; the importer's NATS connection runs through a TCP
// proxy the test can cut. Deletions come as the hub makes them (tombstones); a key that vanishes
// without one keeps its import.
import { randomUUID } from 'node:crypto';
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

// Shared by every test: only the apiserver and NATS. Each test gets its own namespace, an empty
// catalog bucket and its own importer (`importerUnderTest`), so none depends on what another left.
let bed: Testbed;
let kc: KubeConfig;
let core: CoreV1Api;
let discovery: DiscoveryV1Api;
let custom: CustomObjectsApi;
let hub: NatsConnection;
let proxy: TcpProxy;
let agent: NatsConnection;

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

/** The importer has processed the bucket up to `revision`, and its queue is idle. */
async function caughtUp(t: ImporterUnderTest, revision: number): Promise<void> {
  await waitFor(
    `catalog revision ${revision} seen`,
    () => Promise.resolve(t.importer.status().revision >= revision),
    10_000,
    20,
  );
  await settled(t);
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
async function settled(t: ImporterUnderTest): Promise<void> {
  await waitFor(
    'importer idle',
    async () => {
      if (t.importer.status().pending > 0) return false;
      await sleep(200);
      return t.importer.status().pending === 0;
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
  proxy = await TcpProxy.start(nats.url);
  agent = await connect({
    servers: `tls://127.0.0.1:${proxy.port}`,
    name: 'agent',
    tls: await nats.clientCredentials('agent', AGENT_CERTIFICATE_SUBJECT),
    maxReconnectAttempts: -1,
    reconnectTimeWait: 100,
    reconnectJitter: 0,
  });
});

afterAll(async () => {
  await agent?.close();
  await hub?.close();
  await proxy?.[Symbol.asyncDispose]();
  await bed?.[Symbol.asyncDispose]();
});

/** One test's importer, namespace and bucket; `restart` stops the importer and starts a new one. */
interface ImporterUnderTest extends AsyncDisposable {
  readonly ns: string;
  readonly kv: KV;
  readonly importer: Importer;
  readonly registry: Registry;
  /** What the gateway listens on; tests change it and call `resync()`, as the agent will. */
  outboundListener: OutboundListener;
  put(value: CatalogEntry): Promise<number>;
  tombstone(name: string): Promise<number>;
  restart(meanwhile: () => Promise<unknown>): Promise<void>;
}

async function importerUnderTest(): Promise<ImporterUnderTest> {
  const ns = `shop-${randomUUID().slice(0, 8)}`;
  await ensureNamespace(kc, ns);
  const kvm = new Kvm(hub);
  await (await kvm.create(CATALOG_BUCKET)).destroy(); // whatever an earlier test wrote
  const kv = await kvm.create(CATALOG_BUCKET);
  let running: { importer: Importer; registry: Registry; stop: () => Promise<void> } | undefined;
  const start = async (): Promise<void> => {
    const registry = new Registry();
    const importer = createImporter({
      kc,
      clusterId: CLUSTER_ID,
      nc: agent,
      log,
      outboundListener: (namespace, name, port) => subject.outboundListener(namespace, name, port),
      conflictRetryMs: 300,
      watchRetry: { initialMs: 50, maxMs: 500 },
    });
    registerImporterMetrics(registry, () => importer.status());
    running = { importer, registry, stop: runInBackground(importer).stop };
    await importer.synced();
  };
  const subject: ImporterUnderTest = {
    ns,
    kv,
    get importer() {
      return running!.importer;
    },
    get registry() {
      return running!.registry;
    },
    outboundListener: () => undefined,
    put: (value) => putEntry(kv, value),
    tombstone: (name) => putTombstone(kv, `${ns}.${name}`),
    async restart(meanwhile) {
      await running?.stop();
      await meanwhile();
      await start();
    },
    async [Symbol.asyncDispose]() {
      proxy.restore(); // a test that failed while NATS was cut
      await running?.stop();
    },
  };
  await start();
  return subject;
}

describe('importer', () => {
  it('imports an entry: ServiceImport, one slice per source cluster and the clusterset Service', async () => {
    await using t = await importerUnderTest();
    await t.put(
      entry(
        t.ns,
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
    const si = await imported(t.ns, 'web', 2);
    const service = await derivedService(t.ns, 'web');
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
        ((await serviceImport(t.ns, 'web'))?.spec['ips'] as string[] | undefined)?.[0] === service?.spec?.clusterIP,
      5_000,
      50,
    );
    expect(si.metadata.labels).toMatchObject({ 'app.kubernetes.io/managed-by': 'isthmus-agent' });
    expect(si.metadata.annotations).toMatchObject({
      'multicluster.kubernetes.io/derived-service': derivedServiceName(t.ns, 'web'),
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

    const all = await slices(t.ns, 'web');
    expect(all).toHaveLength(2); // one per source cluster, empty while the gateway has no outbound listener
    const west = sourceSlice(all, 'west');
    expect(west?.metadata?.labels).toMatchObject({
      'multicluster.kubernetes.io/service-name': 'web',
      'multicluster.kubernetes.io/source-cluster': 'west',
      'endpointslice.kubernetes.io/managed-by': 'agent.isthmus.dev',
      'app.kubernetes.io/managed-by': 'isthmus-agent',
      'kubernetes.io/service-name': derivedServiceName(t.ns, 'web'),
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
    await using t = await importerUnderTest();
    const ports = [
      { name: 'http', port: 80 },
      { name: 'grpc', port: 9090 },
    ];
    await t.put(entry(t.ns, 'web', [cluster('west', { ports }), cluster(CLUSTER_ID, { endpoints: [] })], { ports }));
    await imported(t.ns, 'web', 2);
    t.outboundListener = (_namespace, name, port) =>
      name === 'web' ? { address: OUTBOUND_ADDRESS, port: 20_000 + port.port } : undefined;
    t.importer.resync();
    let west: V1EndpointSlice | undefined;
    await waitFor(
      'source slice names the listener',
      async () => {
        west = sourceSlice(await slices(t.ns, 'web'), 'west');
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
    const local = sourceSlice(await slices(t.ns, 'web'), CLUSTER_ID);
    expect(local?.endpoints?.map((e) => [e.addresses[0], e.conditions?.ready])).toEqual([[OUTBOUND_ADDRESS, false]]);
    expect(local?.ports?.map((p) => p.port)).toEqual([20_080]); // the local export serves http only
    await waitFor(
      'Ready=True',
      async () =>
        (await serviceImport(t.ns, 'web'))?.status?.conditions?.find((c) => c.type === 'Ready')?.status === 'True',
      10_000,
      50,
    );
  });

  it('writes nothing for an unchanged entry, re-put or resynced', async () => {
    await using t = await importerUnderTest();
    await t.put(entry(t.ns, 'web', [cluster('west'), cluster('north')]));
    await imported(t.ns, 'web', 2);
    await settled(t);
    const before = await versions(t.ns, 'web');
    const writes = t.importer.status().writes;
    await t.put(entry(t.ns, 'web', [cluster('west')])); // a change, then the same again twice
    await imported(t.ns, 'web', 1);
    await settled(t);
    const changedWrites = t.importer.status().writes;
    expect(changedWrites).toBeGreaterThan(writes);
    const after = await versions(t.ns, 'web');
    await t.put(entry(t.ns, 'web', [cluster('west')]));
    t.importer.resync();
    await settled(t);
    expect(t.importer.status().writes).toBe(changedWrites);
    expect(await versions(t.ns, 'web')).toEqual(after);
    expect(after).not.toEqual(before);
  });

  it('refuses a Headless import without slices, recreates the clusterset Service when it turns ClusterSetIP, and deletes the slices when it turns back', async () => {
    await using t = await importerUnderTest();
    const refused = async (): Promise<boolean> =>
      (await serviceImport(t.ns, 'switch'))?.status?.conditions?.find((c) => c.type === 'Ready')?.reason ===
      'HeadlessNotSupported';
    await t.put(entry(t.ns, 'switch', [cluster('west', { type: 'Headless' })], { type: 'Headless' }));
    // The condition is written after the slices in the same reconcile: none were written.
    await waitFor('Headless import refused', refused, 10_000, 50);
    expect(await slices(t.ns, 'switch')).toEqual([]);
    const headless = await derivedService(t.ns, 'switch');
    expect(headless?.spec?.clusterIP).toBe('None');
    expect((await serviceImport(t.ns, 'switch'))?.spec['ips']).toBeUndefined();
    await t.put(entry(t.ns, 'switch', [cluster('west')]));
    await waitFor(
      'ServiceImport with an IP',
      async () => ((await serviceImport(t.ns, 'switch'))?.spec['ips'] as string[] | undefined)?.length === 1,
      10_000,
      50,
    );
    await imported(t.ns, 'switch', 1);
    const service = await derivedService(t.ns, 'switch');
    expect(service?.metadata?.uid).not.toBe(headless?.metadata?.uid);
    expect((await serviceImport(t.ns, 'switch'))?.spec).toMatchObject({
      type: 'ClusterSetIP',
      ips: [service?.spec?.clusterIP],
    });
    await t.put(entry(t.ns, 'switch', [cluster('west', { type: 'Headless' })], { type: 'Headless' }));
    await waitFor(
      'refused again, its slice deleted',
      async () => (await refused()) && (await slices(t.ns, 'switch')).length === 0,
      10_000,
      50,
    );
  });

  it('deletes the slice of a cluster that left the entry, and nothing else', async () => {
    await using t = await importerUnderTest();
    await t.put(
      entry(t.ns, 'api', [
        cluster('west'),
        cluster('north', { gatewayAddresses: [{ address: '10.3.0.1', port: 15443 }] }),
      ]),
    );
    const si = await imported(t.ns, 'api', 2);
    await t.put(entry(t.ns, 'api', [cluster('west')]));
    await waitFor('north slice deleted', async () => !sourceSlice(await slices(t.ns, 'api'), 'north'), 10_000, 50);
    const after = await imported(t.ns, 'api', 1);
    expect(after.metadata.uid).toBe(si.metadata.uid);
    expect(after.status?.clusters).toEqual([{ cluster: 'west' }]);
    expect(sourceSlice(await slices(t.ns, 'api'), 'west')).toBeDefined();
  });

  it('deletes everything it made when the hub ends the entry with a tombstone', async () => {
    await using t = await importerUnderTest();
    await t.put(entry(t.ns, 'gone', [cluster('west')]));
    await imported(t.ns, 'gone', 1);
    await t.tombstone('gone');
    await goneEntirely(t.ns, 'gone');
  });

  it('keeps the import, its uid and its IP when the key is deleted or purged without a tombstone, and writes nothing when it is back', async () => {
    await using t = await importerUnderTest();
    await t.put(entry(t.ns, 'kept', [cluster('west')]));
    await t.put(entry(t.ns, 'purged', [cluster('west')]));
    const kept = await imported(t.ns, 'kept', 1);
    await imported(t.ns, 'purged', 1);
    await settled(t);
    const before = [await versions(t.ns, 'kept'), await versions(t.ns, 'purged')];
    const writes = t.importer.status().writes;
    await t.kv.delete(`${t.ns}.kept`);
    await t.kv.purge(`${t.ns}.purged`);
    await caughtUp(t, (await t.kv.status()).streamInfo.state.last_seq);
    expect([await versions(t.ns, 'kept'), await versions(t.ns, 'purged')]).toEqual(before);
    expect((await serviceImport(t.ns, 'kept'))?.spec['ips']).toEqual(kept.spec['ips']);
    await t.put(entry(t.ns, 'kept', [cluster('west')]));
    await caughtUp(t, await t.put(entry(t.ns, 'purged', [cluster('west')])));
    expect([await versions(t.ns, 'kept'), await versions(t.ns, 'purged')]).toEqual(before);
    expect(t.importer.status().writes).toBe(writes);
  });

  it('imports into a namespace once it exists', async () => {
    await using t = await importerUnderTest();
    const late = `${t.ns}-late`;
    await caughtUp(t, await t.put(entry(late, 'db', [cluster('west')])));
    expect(await orUndefined(core.readNamespace({ name: late }))).toBeUndefined();
    await ensureNamespace(kc, late);
    await imported(late, 'db', 1);
  });

  it('imports nothing that no exporter allows this cluster, and withdraws it when the allowance goes', async () => {
    await using t = await importerUnderTest();
    await caughtUp(t, await t.put(entry(t.ns, 'private', [cluster('west', { allowedClusters: ['north'] })])));
    expect(await serviceImport(t.ns, 'private')).toBeUndefined();
    expect(await slices(t.ns, 'private')).toEqual([]);
    expect(await derivedService(t.ns, 'private')).toBeUndefined();
    await t.put(entry(t.ns, 'private', [cluster('west', { allowedClusters: ['north', CLUSTER_ID] })]));
    await imported(t.ns, 'private', 1);
    await t.put(entry(t.ns, 'private', [cluster('west', { allowedClusters: ['north'] })]));
    await goneEntirely(t.ns, 'private');
  });

  it('never modifies or deletes a ServiceImport it does not own', async () => {
    await using t = await importerUnderTest();
    await custom.createNamespacedCustomObject({
      group: MCS_GROUP,
      version: MCS_VERSION,
      namespace: t.ns,
      plural: SERVICE_IMPORT_PLURAL,
      body: {
        apiVersion: MCS_API_VERSION,
        kind: 'ServiceImport',
        metadata: { name: 'legacy', labels: { owner: 'someone-else' } },
        spec: { type: 'Headless', ports: [{ port: 1 }] },
      },
    });
    const foreign = await serviceImport(t.ns, 'legacy');
    await t.put(entry(t.ns, 'legacy', [cluster('west')]));
    await waitFor(
      'conflict reported',
      () =>
        Promise.resolve(t.importer.status().conflicts.some((c) => c.kind === 'ServiceImport' && c.name === 'legacy')),
      10_000,
      50,
    );
    await waitFor('slices of legacy', async () => (await slices(t.ns, 'legacy')).length === 1, 10_000, 50);
    const reconciled = t.importer.status().reconciles;
    await waitFor(
      'three conflict retries',
      () => Promise.resolve(t.importer.status().reconciles >= reconciled + 3),
      10_000,
      50,
    );
    expect((await serviceImport(t.ns, 'legacy'))?.metadata.resourceVersion).toBe(foreign?.metadata.resourceVersion);

    await t.tombstone('legacy');
    await waitFor(
      'owned objects of legacy deleted',
      async () => (await slices(t.ns, 'legacy')).length === 0 && !(await derivedService(t.ns, 'legacy')),
      10_000,
      50,
    );
    await settled(t);
    expect((await serviceImport(t.ns, 'legacy'))?.metadata.resourceVersion).toBe(foreign?.metadata.resourceVersion);
    expect(t.importer.status().conflicts).toEqual([]);
  });

  it('deletes nothing while NATS is unreachable, then converges on what changed meanwhile without touching the rest', async () => {
    await using t = await importerUnderTest();
    await t.put(entry(t.ns, 'keep', [cluster('west')]));
    await t.put(entry(t.ns, 'shrink', [cluster('west'), cluster('north')]));
    await t.put(entry(t.ns, 'drop', [cluster('west')]));
    await imported(t.ns, 'keep', 1);
    await imported(t.ns, 'shrink', 2);
    await imported(t.ns, 'drop', 1);
    await settled(t);
    const keep = await versions(t.ns, 'keep');
    const drop = await versions(t.ns, 'drop');

    const attempts = reconnectAttempts(agent, 3);
    proxy.cut();
    await t.tombstone('drop');
    await t.put(entry(t.ns, 'shrink', [cluster('west')]));
    await t.put(entry(t.ns, 'fresh', [cluster('west')]));
    await attempts; // several reconnects fail meanwhile
    expect(await versions(t.ns, 'drop')).toEqual(drop);
    expect(sourceSlice(await slices(t.ns, 'shrink'), 'north')).toBeDefined();
    expect(await serviceImport(t.ns, 'fresh')).toBeUndefined();

    proxy.restore();
    await goneEntirely(t.ns, 'drop');
    await imported(t.ns, 'fresh', 1);
    await waitFor(
      'north slice of shrink deleted',
      async () => !sourceSlice(await slices(t.ns, 'shrink'), 'north'),
      10_000,
      50,
    );
    await settled(t);
    expect(await versions(t.ns, 'keep')).toEqual(keep);
  });

  it('after a restart, keeps an import whose key vanished meanwhile without a tombstone', async () => {
    await using t = await importerUnderTest();
    await t.put(entry(t.ns, 'keep', [cluster('west')]));
    await imported(t.ns, 'keep', 1);
    await settled(t);
    const keep = await versions(t.ns, 'keep');
    await t.restart(() => t.kv.delete(`${t.ns}.keep`));
    await caughtUp(t, (await t.kv.status()).streamInfo.state.last_seq);
    expect(await versions(t.ns, 'keep')).toEqual(keep);
    expect(t.importer.status().writes).toBe(0);
    await caughtUp(t, await t.put(entry(t.ns, 'keep', [cluster('west')])));
    expect(await versions(t.ns, 'keep')).toEqual(keep);
    expect(t.importer.status().writes).toBe(0);
  });

  it('after a restart, deletes what the hub ended meanwhile and writes nothing else', async () => {
    await using t = await importerUnderTest();
    await t.put(entry(t.ns, 'keep', [cluster('west')]));
    await t.put(entry(t.ns, 'api', [cluster('west')]));
    await imported(t.ns, 'keep', 1);
    await imported(t.ns, 'api', 1);
    await settled(t);
    const keep = await versions(t.ns, 'keep');
    await t.restart(() => t.tombstone('api'));
    await goneEntirely(t.ns, 'api');
    await settled(t);
    expect(t.importer.status().writes).toBe(3); // its ServiceImport, slice and clusterset Service
    expect(await t.registry.getSingleMetricAsString('isthmus_agent_import_writes_total')).toMatch(/ 3$/m);
    expect(await versions(t.ns, 'keep')).toEqual(keep);
  });
});
