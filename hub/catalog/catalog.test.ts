// The catalog against a real nats-server with JetStream: reports from three clusters become KV
// entries, conflicts and withdrawals (tombstones) show up there, a new leader recovers without
// writing and asks the clusters for their export sets, and keys changed behind the leader's back
// are written back.
import { setTimeout as sleep } from 'node:timers/promises';
import { Kvm, type KV } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  CATALOG_BUCKET,
  catalogEntrySchema,
  parseCatalogTombstone,
  scopedCatalogBucket,
  type CatalogEntry,
} from '../../common/catalog.ts';
import { isIsthmusError } from '../../common/errors.ts';
import type { ExportedService } from '../../common/hub-api/index.ts';
import { createLogger } from '../../common/logger.ts';
import { waitFor } from '../../local/testbed/index.ts';
import { createCatalog, type Catalog } from './catalog.ts';
import { FakeMemberCache, exported, lastSequence, locality, startHubNats } from './catalog.testkit.ts';

const log = createLogger({ component: 'catalog-test', level: 'error' });

interface Leadership {
  readonly catalog: Catalog;
  readonly controller: AbortController;
  readonly term: Promise<void>;
}

function lead(nc: NatsConnection, members: FakeMemberCache): Leadership {
  // The hub "first saw" every export at the epoch: the reported timestamps decide, as these cases expect.
  const catalog = createCatalog({ nc, memberCache: members, log, now: () => new Date(0) });
  const controller = new AbortController();
  return { catalog, controller, term: catalog.onStartedLeading(controller.signal) };
}

/** A graceful hand-over: abort, let the term flush, then leadership is gone. */
async function stepDown(leadership: Leadership): Promise<void> {
  leadership.controller.abort();
  await leadership.term;
  leadership.catalog.onStoppedLeading();
}

async function settled(catalog: Catalog): Promise<void> {
  await waitFor('catalog settled', () => Promise.resolve(catalog.stats()?.pending === 0), 10_000, 10);
}

async function read(kv: KV, key: string): Promise<CatalogEntry | undefined> {
  const entry = await kv.get(key);
  return entry?.operation === 'PUT' && !parseCatalogTombstone(key, entry.json())
    ? catalogEntrySchema.parse(entry.json())
    : undefined;
}

const cart = (overrides: Partial<ExportedService> = {}): ExportedService => exported({ name: 'cart', ...overrides });
const shelf = (overrides: Partial<ExportedService> = {}): ExportedService => exported({ name: 'shelf', ...overrides });

/**
 * One test's NATS, member list and leader: every test starts from nothing and sets up what it
 * needs, so none depends on another's state. `succeed` hands over to a new leader.
 */
interface CatalogScene extends AsyncDisposable {
  readonly nc: NatsConnection;
  readonly members: FakeMemberCache;
  readonly leader: Leadership;
  report(cluster: string, generation: number, services: ExportedService[]): ReturnType<Catalog['sink']['report']>;
  /** The shared bucket, once a report created it. */
  bucket(): Promise<KV>;
  /** Steps the leader down, runs `meanwhile`, then a new leader recovers from the bucket. */
  succeed(meanwhile?: () => Promise<unknown>): Promise<void>;
}

async function catalogScene(): Promise<CatalogScene> {
  const hubNats = await startHubNats();
  const members = new FakeMemberCache(['a', 'b', 'c']);
  let leader = lead(hubNats.nc, members);
  return {
    nc: hubNats.nc,
    members,
    get leader() {
      return leader;
    },
    report: (cluster, generation, services) => leader.catalog.sink.report(cluster, { generation, services }),
    bucket: () => new Kvm(hubNats.nc).open(CATALOG_BUCKET),
    async succeed(meanwhile) {
      await stepDown(leader);
      await meanwhile?.();
      leader = lead(hubNats.nc, members);
      await waitFor('recovered', () => Promise.resolve(leader.catalog.stats() !== undefined), 10_000, 10);
      await settled(leader.catalog);
    },
    async [Symbol.asyncDispose]() {
      await stepDown(leader);
      await hubNats[Symbol.asyncDispose]();
    },
  };
}

// cart from a (oldest) and b; shelf from c (oldest) and a.
const cartOfA = (): ExportedService => cart({ exportCreatedAt: '2025-01-01T00:00:00Z' });
const cartOfB = (overrides: Partial<ExportedService> = {}): ExportedService =>
  cart({ exportCreatedAt: '2025-01-02T00:00:00Z', ...overrides });
const shelfOfC = (): ExportedService => shelf({ exportCreatedAt: '2024-12-01T00:00:00Z' });
/** b's cart with another port for http than a's: a port conflict. */
const conflictingCartOfB = (): ExportedService =>
  cartOfB({ ports: [{ name: 'http', protocol: 'TCP', port: 8080, appProtocol: '' }] });

async function reportThreeClusters(scene: CatalogScene): Promise<KV> {
  await scene.report('a', 1, [cartOfA(), shelf()]);
  await scene.report('b', 1, [cartOfB()]);
  await scene.report('c', 1, [shelfOfC()]);
  return scene.bucket();
}

describe('service catalog on NATS JetStream KV', () => {
  it('refuses reports while not leading', async () => {
    await using scene = await catalogScene();
    const standby = createCatalog({ nc: scene.nc, memberCache: scene.members, log, now: () => new Date(0) });
    await expect(standby.sink.report('a', { generation: 1, services: [cart()] })).rejects.toSatisfy((err) =>
      isIsthmusError(err, 'ISTHMUS_NOT_LEADER'),
    );
  });

  it('publishes the entries of three clusters with their localities, creating the bucket', async () => {
    await using scene = await catalogScene();
    const reports = await Promise.all([
      scene.report('a', 1, [cartOfA(), shelf()]),
      scene.report('b', 1, [cartOfB({ endpoints: [{ zone: 'z9', ready: 7, total: 7 }] })]),
      scene.report('c', 1, [shelfOfC()]),
    ]);
    expect(reports).toEqual([1, 1, 1].map((appliedGeneration) => ({ appliedGeneration, conflicts: [] })));
    const kv = await scene.bucket();
    expect((await kv.status()).history).toBe(1);
    // Acknowledged means published: no waiting needed.
    const entry = await read(kv, 'shop.cart');
    expect(entry?.clusters.map((c) => c.clusterId)).toEqual(['a', 'b']);
    expect(entry?.clusters[0]).toMatchObject({ ...locality('a') });
    expect(entry?.clusters[1]).toMatchObject({ zone: 'zone-of-b', endpoints: [{ zone: 'z9', ready: 7 }] });
    expect((await read(kv, 'shop.shelf'))?.clusters.map((c) => c.clusterId)).toEqual(['c', 'a']);
  });

  it('records a conflict in the entry and answers the clusters involved with it', async () => {
    await using scene = await catalogScene();
    const kv = await reportThreeClusters(scene);
    const response = await scene.report('b', 2, [conflictingCartOfB()]);
    const conflict = {
      type: 'PortConflict',
      message: 'port http: a (oldest export) has http 80/TCP, which applies; b has http 8080/TCP',
    };
    expect(response).toEqual({ appliedGeneration: 2, conflicts: [{ namespace: 'shop', name: 'cart', ...conflict }] });
    expect((await read(kv, 'shop.cart'))?.conflicts).toEqual([{ ...conflict, clusters: ['a', 'b'] }]);
    expect((await scene.report('a', 2, [cartOfA(), shelf()])).conflicts).toHaveLength(1);
    expect((await scene.report('c', 2, [shelfOfC()])).conflicts).toEqual([]);
  });

  it('ignores a stale report (a retry or a late delivery of an applied generation)', async () => {
    await using scene = await catalogScene();
    const kv = await reportThreeClusters(scene);
    await scene.report('b', 2, [cartOfB()]);
    const before = await lastSequence(kv);
    expect(await scene.report('b', 2, [])).toMatchObject({ appliedGeneration: 2 });
    expect((await read(kv, 'shop.cart'))?.clusters).toHaveLength(2);
    expect(await lastSequence(kv)).toBe(before);
  });

  it('updates an entry when an exporter withdraws and writes a tombstone when the last one does', async () => {
    await using scene = await catalogScene();
    const kv = await reportThreeClusters(scene);
    await scene.report('a', 2, [cartOfA()]);
    expect((await read(kv, 'shop.shelf'))?.clusters.map((c) => c.clusterId)).toEqual(['c']);
    await scene.report('c', 2, []);
    expect(await read(kv, 'shop.shelf')).toBeUndefined();
    expect(parseCatalogTombstone('shop.shelf', (await kv.get('shop.shelf'))?.json())).toMatchObject({
      namespace: 'shop',
      name: 'shelf',
      tombstone: true,
    });
  });

  it('drops the exports of a cluster removed from the federation, and its conflicts with them', async () => {
    await using scene = await catalogScene();
    const kv = await reportThreeClusters(scene);
    await scene.report('b', 2, [conflictingCartOfB()]);
    expect((await read(kv, 'shop.cart'))?.conflicts).toHaveLength(1);
    scene.members.members.delete('b');
    scene.leader.catalog.onMembersChanged();
    await waitFor(
      'b gone from the cart entry',
      async () => (await read(kv, 'shop.cart'))?.clusters.length === 1,
      10_000,
      20,
    );
    const entry = await read(kv, 'shop.cart');
    expect(entry?.clusters.map((c) => c.clusterId)).toEqual(['a']);
    expect(entry?.conflicts).toEqual([]);
  });

  it('lets a new leader recover from the bucket without a single write, then carry on', async () => {
    await using scene = await catalogScene();
    await scene.report('a', 1, [cartOfA()]);
    await scene.report('b', 1, [cartOfB(), shelf({ namespace: 'garden' })]);
    const kv = await scene.bucket();
    const entriesBefore = new Map<string, string | undefined>();
    for (const key of ['shop.cart', 'garden.shelf']) entriesBefore.set(key, (await kv.get(key))?.string());
    const sequence = await lastSequence(kv);

    await scene.succeed();
    expect(scene.leader.catalog.stats()).toMatchObject({ recovered: 2, puts: 0, tombstones: 0 });
    // A new leader knows no generation yet: the agents' unchanged sets write nothing.
    await scene.report('a', 1, [cartOfA()]);
    await scene.report('b', 1, [cartOfB(), shelf({ namespace: 'garden' })]);
    await scene.report('c', 1, []);
    expect(await lastSequence(kv)).toBe(sequence);
    for (const [key, value] of entriesBefore) expect((await kv.get(key))?.string()).toBe(value);

    await scene.report('c', 2, [shelf({ namespace: 'garden', exportCreatedAt: '2020-01-01T00:00:00Z' })]);
    expect((await read(kv, 'garden.shelf'))?.clusters.map((c) => c.clusterId)).toEqual(['c', 'b']);
    expect(scene.leader.catalog.stats()).toMatchObject({ puts: 1, tombstones: 0 });
  });

  it('repairs the bucket on recovery: members removed meanwhile, foreign and invalid entries', async () => {
    await using scene = await catalogScene();
    await scene.report('a', 1, [cartOfA()]);
    await scene.report('b', 1, [cartOfB(), shelf({ namespace: 'garden' })]);
    await scene.report('c', 1, [shelf({ namespace: 'garden', exportCreatedAt: '2020-01-01T00:00:00Z' })]);
    const kv = await scene.bucket();
    await scene.succeed(async () => {
      await kv.put('shop.ghost', JSON.stringify({ namespace: 'shop', name: 'ghost', note: 'not an entry' }));
      scene.members.members.delete('c');
    });
    expect(await read(kv, 'shop.ghost')).toBeUndefined();
    expect((await read(kv, 'garden.shelf'))?.clusters.map((c) => c.clusterId)).toEqual(['b']);
    expect(scene.leader.catalog.stats()).toMatchObject({ puts: 1, tombstones: 1 });
  });

  it('asks a cluster for its export set until it reported to this leader, and whenever the counts disagree', async () => {
    await using scene = await catalogScene();
    await scene.report('a', 1, [cartOfA()]);
    await scene.report('b', 1, [cartOfB(), shelf({ namespace: 'garden' })]);
    await scene.succeed();
    // Recovered from the bucket, not reported: b's two exports are known, but b is asked anyway (a new leader).
    expect(scene.leader.catalog.sink.wantsReport('b', 2)).toBe(true);
    await scene.report('b', 5, [cartOfB(), shelf({ namespace: 'garden' })]);
    expect(scene.leader.catalog.sink.wantsReport('b', 2)).toBe(false);
    expect(scene.leader.catalog.sink.wantsReport('b', 3)).toBe(true); // an export this leader never got
    expect(scene.leader.catalog.sink.wantsReport('a', 1)).toBe(true);
  });

  it('writes back a key deleted or purged behind its back, within moments and unchanged', async () => {
    await using scene = await catalogScene();
    await scene.report('a', 1, [cartOfA()]);
    await scene.report('b', 1, [shelf({ namespace: 'garden' })]);
    const kv = await scene.bucket();
    const cartBefore = (await kv.get('shop.cart'))?.string();
    const shelfBefore = (await kv.get('garden.shelf'))?.string();
    await kv.delete('shop.cart');
    await kv.purge('garden.shelf');
    await waitFor(
      'both keys written back',
      async () =>
        (await kv.get('shop.cart'))?.string() === cartBefore &&
        (await kv.get('garden.shelf'))?.string() === shelfBefore,
      10_000,
      20,
    );
    expect(scene.leader.catalog.stats()).toMatchObject({ repairs: 2 });
  });

  it('ends its term when leadership is lost while it is still setting up the watches of its buckets', async () => {
    await using scene = await catalogScene();
    await scene.report('a', 1, [cartOfA()]);
    await stepDown(scene.leader);
    const next = lead(scene.nc, scene.members);
    // Recovered: the term starts its bucket watches now, and is aborted before they are set up.
    while (!next.catalog.stats()) await new Promise((resolve) => setImmediate(resolve));
    next.controller.abort();
    const ended = await Promise.race([next.term.then(() => 'ended'), sleep(20_000).then(() => 'still running')]);
    next.catalog.onStoppedLeading();
    expect(ended).toBe('ended');
  });

  // That no write starts after leadership is lost, with writes queued, is catalog-publisher.test.ts's.
  it('refuses reports once leadership is lost', async () => {
    await using scene = await catalogScene();
    await scene.report('a', 1, [cartOfA()]);
    await stepDown(scene.leader);
    await expect(scene.report('a', 9, [])).rejects.toSatisfy((err) => isIsthmusError(err, 'ISTHMUS_NOT_LEADER'));
  });
});

describe('exports scoped to some clusters', () => {
  let hubNats: Awaited<ReturnType<typeof startHubNats>>;

  beforeAll(async () => {
    hubNats = await startHubNats();
  });
  afterAll(async () => {
    await hubNats?.[Symbol.asyncDispose]();
  });

  it('publishes them only in the buckets of the members they name, keeps those views current, and a new leader recovers them', async () => {
    const { nc } = hubNats;
    const members = new FakeMemberCache(['a', 'b', 'c']);
    let leader = lead(nc, members);
    await leader.catalog.sink.report('a', { generation: 1, services: [cart({ allowedClusters: ['b'] })] });
    const kvm = new Kvm(nc);
    const [shared, ofB] = [await kvm.open(CATALOG_BUCKET), await kvm.open(scopedCatalogBucket('b'))];
    expect(await shared.get('shop.cart')).toBeNull();
    expect((await read(ofB, 'shop.cart'))?.clusters.map((c) => c.clusterId)).toEqual(['a']);
    const buckets: string[] = [];
    for await (const status of kvm.list()) buckets.push(status.bucket);
    expect(buckets.sort()).toEqual([CATALOG_BUCKET, scopedCatalogBucket('b')]);

    // Widened to everyone: b keeps its own view (now the shared one) rather than a tombstone it could act on before the shared write.
    await leader.catalog.sink.report('a', { generation: 2, services: [cart()] });
    expect((await read(shared, 'shop.cart'))?.clusters.map((c) => c.clusterId)).toEqual(['a']);
    expect((await ofB.get('shop.cart'))?.string()).toBe((await shared.get('shop.cart'))?.string());

    // Scoped again, and a new leader: it recovers b's export from b's bucket and writes nothing.
    await leader.catalog.sink.report('a', { generation: 3, services: [cart({ allowedClusters: ['b'] })] });
    expect(parseCatalogTombstone('shop.cart', (await shared.get('shop.cart'))?.json())).toBeDefined();
    await stepDown(leader);
    const [sharedSeq, ofBSeq] = [await lastSequence(shared), await lastSequence(ofB)];
    leader = lead(nc, members);
    await waitFor('recovered', () => Promise.resolve(leader.catalog.stats() !== undefined), 10_000, 10);
    await settled(leader.catalog);
    expect(leader.catalog.stats()).toMatchObject({ recovered: 1, puts: 0, tombstones: 0 });
    expect([await lastSequence(shared), await lastSequence(ofB)]).toEqual([sharedSeq, ofBSeq]);
    expect(leader.catalog.sink.wantsReport('a', 1)).toBe(true);

    // A raw delete in b's bucket is written back; b's removal from the federation ends its view with a tombstone.
    const before = (await ofB.get('shop.cart'))?.string();
    await ofB.delete('shop.cart');
    await waitFor("b's key written back", async () => (await ofB.get('shop.cart'))?.string() === before, 10_000, 20);
    members.members.delete('b');
    leader.catalog.onMembersChanged();
    await waitFor(
      "b's view tombstoned",
      async () => parseCatalogTombstone('shop.cart', (await ofB.get('shop.cart'))?.json()) !== undefined,
      10_000,
      20,
    );
    await stepDown(leader);
  });
});
