// The catalog watcher against a real nats-server with JetStream and the federation's accounts: the
// test plays the hub and writes the bucket; the watcher reads as an agent does (AGENTS account),
// its connection running through a TCP proxy that can be cut. Deletions come as the hub makes them
// (tombstones); keys that vanish without one are held.
import { Kvm, type Bucket, type KV } from '@nats-io/kv';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestbed, waitFor, type Testbed } from '../../local/testbed/index.ts';
import { CATALOG_BUCKET, type CatalogEntry } from '../../common/catalog.ts';
import { TcpProxy } from '../../common/kube/tcp-proxy.testkit.ts';
import { createLogger } from '../../common/logger.ts';
import { federationNatsAccounts } from '../../common/nats-authorization.ts';
import { AGENT_CERTIFICATE_SUBJECT } from '../../common/pki/index.ts';
import { runInBackground } from '../../common/lifecycle.testkit.ts';
import { CatalogWatcher, type CatalogWatcherOptions } from './catalog-watcher.ts';
import { putEntry, putTombstone, reconnectAttempts } from './catalog.testkit.ts';

const log = createLogger({
  component: 'catalog-watcher-test',
  level: process.env.ISTHMUS_TEST_LOG === '1' ? 'debug' : 'silent',
});

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

function until(what: string, condition: () => boolean, timeoutMs = 10_000): Promise<void> {
  return waitFor(what, () => Promise.resolve(condition()), timeoutMs, 20);
}

/**
 * The catalog bucket as a test starts it: gone (`absent`) or empty, whatever an earlier test left,
 * so no test depends on another.
 */
async function catalogBucket(): Promise<KV>;
async function catalogBucket(absent: 'absent'): Promise<undefined>;
async function catalogBucket(absent?: 'absent'): Promise<KV | undefined> {
  const kvm = new Kvm(hub);
  await (await kvm.create(CATALOG_BUCKET)).destroy();
  return absent ? undefined : kvm.create(CATALOG_BUCKET);
}

/** A watcher over the proxied connection, stopped after the test body. */
async function withWatcher(
  body: (watcher: CatalogWatcher, changes: string[]) => Promise<void>,
  options: Pick<CatalogWatcherOptions, 'vanishedGraceMs' | 'progressCheckMs' | 'requestTimeoutMs'> = {},
): Promise<void> {
  const watcher = new CatalogWatcher({
    nc: agent,
    log,
    retry: { initialMs: 50, maxMs: 500 },
    progressCheckMs: 300,
    ...options,
  });
  const changes: string[] = [];
  watcher.onChange((key, value) =>
    changes.push(`${value ? 'set' : 'removed'} ${key}${value ? `:${value.ports[0]?.port}` : ''}`),
  );
  await using _running = runInBackground(watcher);
  try {
    await body(watcher, changes);
  } finally {
    proxy.restore(); // a test that failed while NATS was cut
  }
}

beforeAll(async () => {
  bed = await startTestbed({ clusters: 0, natsAuthorization: (adminNkey) => federationNatsAccounts([adminNkey]) });
  const nats = bed.nats!;
  hub = await nats.connect('hub');
  proxy = await TcpProxy.start(nats.url);
  const creds = await nats.clientCredentials('agent', AGENT_CERTIFICATE_SUBJECT);
  agent = await connect({
    servers: `tls://127.0.0.1:${proxy.port}`,
    name: 'agent',
    tls: creds,
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

describe('CatalogWatcher', () => {
  it('waits for the bucket to exist, then syncs on an empty bucket', async () => {
    await catalogBucket('absent');
    await withWatcher(async (watcher) => {
      await until('two attempts to open the missing bucket', () => watcher.restarts >= 2);
      expect(watcher.hasSynced).toBe(false);
      await new Kvm(hub).create(CATALOG_BUCKET);
      await watcher.synced();
      expect(watcher.size).toBe(0);
    });
  });

  it('applies the snapshot and the latest state of every later change, skipping malformed values', async () => {
    const kv = await catalogBucket();
    await putEntry(kv, entry('a', 'one'));
    await putEntry(kv, entry('a', 'two'));
    await putEntry(kv, entry('a', 'gone'));
    await kv.delete('a.gone');
    await kv.put('a.bad', '{"not":"an entry"}');
    await kv.put('a.mismatch', JSON.stringify(entry('b', 'other')));
    await withWatcher(async (watcher, changes) => {
      await watcher.synced();
      expect(watcher.keys().sort()).toEqual(['a.one', 'a.two']);
      expect(watcher.malformed).toBe(2);
      changes.length = 0;

      await putEntry(kv, entry('a', 'two')); // re-put, unchanged
      await putEntry(kv, entry('a', 'one', 81));
      await kv.put('a.two', 'not json'); // the last valid value stays
      await putTombstone(kv, 'a.one');
      await putEntry(kv, entry('a', 'three'));
      await putTombstone(kv, 'a.three');
      // Reads are level-based (batch direct get of what the bucket holds): a value replaced before
      // it was read is never seen, so intermediate states may be skipped, never the final one.
      await until(
        'tombstones seen',
        () =>
          watcher.get('a.one') === undefined &&
          watcher.get('a.three') === undefined &&
          watcher.malformed === 3 &&
          changes.includes('removed a.one'),
      );
      expect(
        changes.every((c) => ['set a.one:81', 'removed a.one', 'set a.three:80', 'removed a.three'].includes(c)),
      ).toBe(true);
      expect(watcher.get('a.two')?.ports[0]?.port).toBe(80);
      expect(watcher.malformed).toBe(3);
    });
  });

  it('keeps everything while NATS is unreachable and catches up from its last revision after', async () => {
    const kv = await catalogBucket();
    await putEntry(kv, entry('c', 'stays'));
    await putEntry(kv, entry('c', 'changes'));
    await putEntry(kv, entry('c', 'leaves'));
    await withWatcher(async (watcher, changes) => {
      await watcher.synced();
      changes.length = 0;
      const restarts = watcher.restarts;
      const attempts = reconnectAttempts(agent, 3);
      proxy.cut();
      await putEntry(kv, entry('c', 'changes', 8080));
      await putTombstone(kv, 'c.leaves');
      await putEntry(kv, entry('c', 'arrives'));
      await attempts; // several reconnects fail meanwhile
      expect(changes).toEqual([]);
      expect(watcher.keys().sort()).toEqual(['c.changes', 'c.leaves', 'c.stays']);
      proxy.restore();
      await until('caught up', () => changes.length === 3);
      expect(changes.sort()).toEqual(['removed c.leaves', 'set c.arrives:80', 'set c.changes:8080']);
      expect(watcher.restarts).toBeGreaterThan(restarts);
      expect(watcher.keys().sort()).toEqual(['c.arrives', 'c.changes', 'c.stays']);
    });
  });

  it('drops a read left hanging by an outage as soon as the connection is back, and reads again at once', async () => {
    const kv = await catalogBucket();
    await putEntry(kv, entry('h', 'before'));
    // Reads that never time out in this test: only the reconnect can end one that the outage left waiting.
    await withWatcher(
      async (watcher, changes) => {
        await watcher.synced();
        changes.length = 0;
        const attempts = reconnectAttempts(agent, 5);
        proxy.cut();
        await putEntry(kv, entry('h', 'during'));
        // Meanwhile the watcher's periodic check (every 20 ms) sent a read that gets no reply.
        await attempts;
        proxy.restore();
        await until('the change made during the outage seen', () => watcher.get('h.during') !== undefined);
        expect(changes).toEqual(['set h.during:80']);
      },
      { progressCheckMs: 20, requestTimeoutMs: 10 * 60_000 },
    );
  });

  it('resumes after a forced reconnect without replaying what it has', async () => {
    const kv = await catalogBucket();
    await withWatcher(async (watcher, changes) => {
      await watcher.synced();
      changes.length = 0;
      await agent.reconnect();
      await putEntry(kv, entry('d', 'after-reconnect'));
      await putEntry(kv, entry('d', 'barrier'));
      await until('changes after reconnect seen', () => changes.includes('set d.barrier:80'));
      expect(changes).toEqual(['set d.after-reconnect:80', 'set d.barrier:80']); // nothing replayed in between
    });
  });

  it('removes a key at once on a tombstone, holds one deleted without, and lets it go when it is written again', async () => {
    const kv = await catalogBucket();
    await putEntry(kv, entry('g', 'ended'));
    await putEntry(kv, entry('g', 'deleted'));
    await withWatcher(async (watcher, changes) => {
      await watcher.synced();
      changes.length = 0;
      await putTombstone(kv, 'g.ended');
      await kv.delete('g.deleted');
      await until('the delete seen', () => watcher.vanished === 1);
      expect(changes).toEqual(['removed g.ended']);
      expect(watcher.removalDelayMs('g.ended')).toBe(0);
      expect(watcher.get('g.deleted')).toBeDefined();
      expect(watcher.removalDelayMs('g.deleted')).toBeGreaterThan(0);
      await putEntry(kv, entry('g', 'deleted'));
      await until('written again', () => watcher.vanished === 0);
      expect(changes).toEqual(['removed g.ended']); // the same entry again: nothing changed for listeners
    });
  });

  it('reads the bucket again when a deletion it missed left no marker, and removes the key after the grace period', async () => {
    const kv = await catalogBucket();
    await putEntry(kv, entry('f', 'vanishes'));
    await putEntry(kv, entry('f', 'stays'));
    await withWatcher(
      async (watcher, changes) => {
        await watcher.synced();
        expect(watcher.get('f.vanishes')).toBeDefined();
        changes.length = 0;
        proxy.cut();
        await kv.delete('f.vanishes');
        await (kv as Bucket).purgeDeletes(-1); // every delete marker, however young
        proxy.restore();
        await until('missed deletion noticed', () => watcher.vanished === 1);
        expect(watcher.get('f.vanishes')).toBeDefined();
        await until('grace period over', () => watcher.get('f.vanishes') === undefined);
        expect(changes).toEqual(['removed f.vanishes']);
        expect(watcher.removalDelayMs('f.vanishes')).toBe(0);
        expect(watcher.get('f.stays')).toBeDefined();
      },
      { vanishedGraceMs: 1_000 },
    );
  });

  it('reads a recreated bucket from the start and holds the keys it lost until the hub writes them again', async () => {
    const kvm = new Kvm(hub);
    const lost = await catalogBucket();
    for (const name of ['stays', 'changes', 'leaves']) await putEntry(lost, entry('c', name));
    await withWatcher(async (watcher, changes) => {
      await watcher.synced();
      const before = watcher.keys().sort();
      expect(before).toEqual(['c.changes', 'c.leaves', 'c.stays']);
      changes.length = 0;
      await (await kvm.open(CATALOG_BUCKET)).destroy();
      const kv = await kvm.create(CATALOG_BUCKET);
      await putEntry(kv, entry('e', 'fresh'));
      await until(
        'recreated bucket read',
        () => watcher.get('e.fresh') !== undefined && watcher.vanished === before.length,
      );
      expect(watcher.keys().sort()).toEqual([...before, 'e.fresh'].sort());
      expect(changes).toEqual(['set e.fresh:80']); // nothing removed
      await putEntry(kv, entry('c', 'stays'));
      await until('a lost key written again', () => watcher.vanished === before.length - 1);
      expect(changes).toEqual(['set e.fresh:80']);
    });
  });
});
