// The catalog watcher against a real nats-server with JetStream: the test plays the hub and
// writes the bucket; the watcher's own connection runs through a TCP proxy that can be cut.
import { setTimeout as sleep } from 'node:timers/promises';
import { Kvm, type Bucket, type KV } from '@nats-io/kv';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestbed, waitFor, type Testbed } from '../../e2e/testbed/index.ts';
import { CATALOG_BUCKET, type CatalogEntry } from '../../common/catalog.ts';
import { TcpProxy } from '../../common/kube/tcp-proxy.testkit.ts';
import { createLogger } from '../../common/logger.ts';
import { CatalogWatcher } from './catalog-watcher.ts';

const log = createLogger({ component: 'catalog-watcher-test', level: process.env.ISTHMUS_TEST_LOG === '1' ? 'debug' : 'silent' });

let bed: Testbed;
let hub: NatsConnection;
let proxy: TcpProxy;
let agent: NatsConnection;

function entry(namespace: string, name: string, port = 80): CatalogEntry {
  return {
    namespace,
    name,
    type: 'ClusterSetIP',
    ports: [{ name: 'http', protocol: 'TCP', port, appProtocol: '' }],
    sessionAffinity: 'None',
    sessionAffinityTimeoutSeconds: 0,
    clusters: [
      {
        clusterId: 'west',
        region: 'r',
        zone: 'z',
        network: '',
        labels: {},
        gatewayAddresses: [{ address: '10.1.0.1', port: 15443 }],
        exportCreatedAt: '2024-01-01T00:00:00Z',
        type: 'ClusterSetIP',
        ports: [{ name: 'http', protocol: 'TCP', port, appProtocol: '' }],
        sessionAffinity: 'None',
        sessionAffinityTimeoutSeconds: 0,
        endpoints: [{ zone: 'z', ready: 1, total: 1 }],
        allowedClusters: [],
        ipFamilies: ['IPv4'],
        internalTrafficPolicy: 'Cluster',
        trafficDistribution: '',
        exportedLabels: {},
        exportedAnnotations: {},
      },
    ],
    conflicts: [],
    ipFamilies: ['IPv4'],
    internalTrafficPolicy: 'Cluster',
    trafficDistribution: '',
    exportedLabels: {},
    exportedAnnotations: {},
  };
}

async function put(kv: KV, value: CatalogEntry): Promise<number> {
  return kv.put(`${value.namespace}.${value.name}`, JSON.stringify(value));
}

function until(what: string, condition: () => boolean, timeoutMs = 10_000): Promise<void> {
  return waitFor(what, () => Promise.resolve(condition()), timeoutMs, 20);
}

/** A watcher over the proxied connection, stopped after the test body. */
async function withWatcher(body: (watcher: CatalogWatcher, changes: string[]) => Promise<void>): Promise<void> {
  const watcher = new CatalogWatcher({ nc: agent, log, retry: { initialMs: 50, maxMs: 500 }, progressCheckMs: 300 });
  const changes: string[] = [];
  watcher.onChange((key, value) => changes.push(`${value ? 'set' : 'removed'} ${key}${value ? `:${value.ports[0]?.port}` : ''}`));
  watcher.start();
  try {
    await body(watcher, changes);
  } finally {
    await watcher.stop();
  }
}

beforeAll(async () => {
  bed = await startTestbed({ clusters: 0 });
  const nats = bed.nats!;
  hub = await nats.connect('hub');
  proxy = await TcpProxy.start(nats.url);
  const creds = await nats.clientCredentials('agent');
  agent = await connect({ servers: `tls://127.0.0.1:${proxy.port}`, name: 'agent', tls: creds, maxReconnectAttempts: -1, reconnectTimeWait: 100, reconnectJitter: 0 });
});

afterAll(async () => {
  await agent?.close();
  await hub?.close();
  await proxy?.[Symbol.asyncDispose]();
  await bed?.[Symbol.asyncDispose]();
});

describe('CatalogWatcher', () => {
  it('waits for the bucket to exist, then syncs on an empty bucket', async () => {
    await withWatcher(async (watcher) => {
      await sleep(600);
      expect(watcher.hasSynced).toBe(false);
      await new Kvm(hub).create(CATALOG_BUCKET);
      await watcher.synced();
      expect(watcher.size).toBe(0);
    });
  });

  it('applies the snapshot and every later change, skipping malformed values', async () => {
    const kv = await new Kvm(hub).open(CATALOG_BUCKET);
    await put(kv, entry('a', 'one'));
    await put(kv, entry('a', 'two'));
    await put(kv, entry('a', 'gone'));
    await kv.delete('a.gone');
    await kv.put('a.bad', '{"not":"an entry"}');
    await kv.put('a.mismatch', JSON.stringify(entry('b', 'other')));
    await withWatcher(async (watcher, changes) => {
      await watcher.synced();
      expect(watcher.keys().sort()).toEqual(['a.one', 'a.two']);
      expect(watcher.malformed).toBe(2);
      changes.length = 0;

      await put(kv, entry('a', 'two')); // re-put, unchanged
      await put(kv, entry('a', 'one', 81));
      await kv.put('a.two', 'not json'); // the last valid value stays
      await kv.delete('a.one');
      await put(kv, entry('a', 'three'));
      await kv.purge('a.three');
      await until('purge seen', () => changes.length === 4);
      expect(changes).toEqual(['set a.one:81', 'removed a.one', 'set a.three:80', 'removed a.three']);
      expect(watcher.get('a.two')?.ports[0]?.port).toBe(80);
      expect(watcher.malformed).toBe(3);
    });
    await kv.delete('a.two');
  });

  it('keeps everything while NATS is unreachable and catches up from its last revision after', async () => {
    const kv = await new Kvm(hub).open(CATALOG_BUCKET);
    await put(kv, entry('c', 'stays'));
    await put(kv, entry('c', 'changes'));
    await put(kv, entry('c', 'leaves'));
    await withWatcher(async (watcher, changes) => {
      await watcher.synced();
      changes.length = 0;
      const restarts = watcher.restarts;
      proxy.cut();
      await put(kv, entry('c', 'changes', 8080));
      await kv.delete('c.leaves');
      await put(kv, entry('c', 'arrives'));
      await sleep(1_500); // several reconnect attempts fail meanwhile
      expect(changes).toEqual([]);
      expect(watcher.keys().sort()).toEqual(['c.changes', 'c.leaves', 'c.stays']);
      proxy.restore();
      await until('caught up', () => changes.length === 3);
      expect(changes.sort()).toEqual(['removed c.leaves', 'set c.arrives:80', 'set c.changes:8080']);
      expect(watcher.restarts).toBeGreaterThan(restarts);
      expect(watcher.keys().sort()).toEqual(['c.arrives', 'c.changes', 'c.stays']);
    });
  });

  it('resumes after a forced reconnect without replaying what it has', async () => {
    const kv = await new Kvm(hub).open(CATALOG_BUCKET);
    await withWatcher(async (watcher, changes) => {
      await watcher.synced();
      changes.length = 0;
      await agent.reconnect();
      await put(kv, entry('d', 'after-reconnect'));
      await until('change after reconnect seen', () => changes.length === 1);
      await sleep(300);
      expect(changes).toEqual(['set d.after-reconnect:80']);
    });
  });

  it('reads the bucket again when a deletion it missed left no marker', async () => {
    const kv = await new Kvm(hub).open(CATALOG_BUCKET);
    await put(kv, entry('f', 'vanishes'));
    await withWatcher(async (watcher) => {
      await watcher.synced();
      expect(watcher.get('f.vanishes')).toBeDefined();
      proxy.cut();
      await kv.delete('f.vanishes');
      await (kv as Bucket).purgeDeletes(-1); // every delete marker, however young
      await sleep(300);
      proxy.restore();
      await until('missed deletion noticed', () => watcher.get('f.vanishes') === undefined);
      expect(watcher.get('c.stays')).toBeDefined();
    });
  });

  it('reads a recreated bucket from the start and drops keys it no longer holds', async () => {
    const kvm = new Kvm(hub);
    await withWatcher(async (watcher) => {
      await watcher.synced();
      expect(watcher.size).toBeGreaterThan(1);
      await (await kvm.open(CATALOG_BUCKET)).destroy();
      const kv = await kvm.create(CATALOG_BUCKET);
      await put(kv, entry('e', 'fresh'));
      await until('recreated bucket read', () => watcher.keys().join() === 'e.fresh');
    });
  });
});
