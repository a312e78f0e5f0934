// The catalog publisher against a real nats-server with JetStream, each case on a bucket of its
// own: what it writes when a service's last export goes (a tombstone, purged after its retention),
// that its writes are fenced on the revision they replace, and that nothing starts after fence().
import { Kvm, type KV } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { catalogTombstone, parseCatalogTombstone } from '../../common/catalog.ts';
import { createLogger } from '../../common/logger.ts';
import { waitFor } from '../../local/testbed/index.ts';
import { readCatalog } from './catalog-bucket.ts';
import { CatalogPublisher, type PublisherOptions } from './catalog-publisher.ts';
import { lastSequence, startHubNats } from './catalog.testkit.ts';

const log = createLogger({ component: 'catalog-publisher-test', level: 'silent' });
const HOUR = 3_600_000;

let hubNats: Awaited<ReturnType<typeof startHubNats>>;
let nc: NatsConnection;
let buckets = 0;

beforeAll(async () => {
  hubNats = await startHubNats();
  nc = hubNats.nc;
});
afterAll(async () => {
  await hubNats?.[Symbol.asyncDispose]();
});

async function freshBucket(): Promise<KV> {
  return new Kvm(nc).create(`catalog_publisher_test_${++buckets}`, { history: 1 });
}

/** A publisher over what the bucket holds now, converging on `desired`. */
async function publisher(
  kv: KV,
  desired: Map<string, string>,
  options: Partial<PublisherOptions> = {},
): Promise<CatalogPublisher> {
  const stored = await readCatalog(kv, log);
  return new CatalogPublisher(
    () => kv,
    (key) => desired.get(key),
    stored.values,
    log,
    { concurrency: 4, tombstoneRetentionMs: HOUR, conflictRetryMs: HOUR, ...options },
  );
}

const entry = (name: string, port = 80): string => JSON.stringify({ namespace: 'shop', name, port });

describe('CatalogPublisher', () => {
  it('writes a tombstone when an entry goes, keeps it for its retention, then purges it', async () => {
    const kv = await freshBucket();
    await kv.put('shop.cart', entry('cart'));
    let now = new Date('2026-01-01T00:00:00Z');
    const desired = new Map<string, string>();
    const writer = await publisher(kv, desired, { now: () => now });
    writer.enqueue(['shop.cart']);
    expect(await writer.published(['shop.cart'], 10_000)).toBe(true);
    const stored = await kv.get('shop.cart');
    expect(stored?.operation).toBe('PUT');
    expect(parseCatalogTombstone('shop.cart', stored?.json())).toEqual({
      namespace: 'shop',
      name: 'cart',
      tombstone: true,
      deletedAt: '2026-01-01T00:00:00.000Z',
    });

    // Within the retention a re-read leaves it; after it, the tombstone is purged.
    writer.reread((await readCatalog(kv, log)).values);
    await waitFor('settled', () => Promise.resolve(writer.stats().pending === 0), 10_000, 10);
    expect(parseCatalogTombstone('shop.cart', (await kv.get('shop.cart'))?.json())).toBeDefined();
    now = new Date(now.getTime() + HOUR);
    writer.reread((await readCatalog(kv, log)).values);
    await waitFor('tombstone purged', async () => (await kv.get('shop.cart'))?.operation === 'PURGE', 10_000, 20);
    expect(writer.stats()).toMatchObject({ tombstones: 1, purges: 1, puts: 0 });
    await writer.fence();
  });

  it('starts no write after fence(), with writes queued', async () => {
    const kv = await freshBucket();
    const desired = new Map(Array.from({ length: 50 }, (_, i) => [`shop.s${i}`, entry(`s${i}`)] as const));
    const writer = await publisher(kv, desired);
    const before = await lastSequence(kv);
    writer.enqueue(desired.keys());
    expect(writer.stats().pending).toBe(50);
    await writer.fence(); // returns once writes in flight are done
    expect(await lastSequence(kv)).toBe(before);
    expect(writer.stats().puts).toBe(0);
  });

  it('refuses to overwrite what a successor wrote after this leader read the bucket', async () => {
    const kv = await freshBucket();
    await kv.put('shop.cart', entry('cart', 80));
    const deposedView = new Map([['shop.cart', entry('cart', 81)]]);
    const deposed = await publisher(kv, deposedView); // read the bucket, then lost the lease without knowing
    const successor = await publisher(kv, new Map([['shop.cart', entry('cart', 82)]]));
    successor.enqueue(['shop.cart']);
    expect(await successor.published(['shop.cart'], 10_000)).toBe(true);

    deposed.enqueue(['shop.cart']);
    await waitFor('the deposed write refused', () => Promise.resolve(deposed.stats().conflicts === 1), 10_000, 10);
    expect((await kv.get('shop.cart'))?.string()).toBe(entry('cart', 82));
    expect(deposed.stats().puts).toBe(0);
    await deposed.fence();
    await successor.fence();
  });

  it('creates a key only where there is none: a key someone else wrote meanwhile is refused, not overwritten', async () => {
    const kv = await freshBucket();
    const writer = await publisher(kv, new Map([['shop.cart', entry('cart', 81)]]));
    await kv.put('shop.cart', catalogTombstone('shop.cart', new Date(0)));
    writer.enqueue(['shop.cart']);
    await waitFor('the blind create refused', () => Promise.resolve(writer.stats().conflicts === 1), 10_000, 10);
    expect(parseCatalogTombstone('shop.cart', (await kv.get('shop.cart'))?.json())).toBeDefined();
    await writer.fence();
  });
});
