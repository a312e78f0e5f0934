// Test helpers for the catalog's reading side: writing the bucket as the hub does, and a barrier
// on a NATS connection's reconnect attempts (instead of sleeping while it is cut).
import type { KV } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import { catalogTombstone, type CatalogEntry } from '../../common/catalog.ts';

/** Writes an entry under its key, as the hub does. */
export async function putEntry(kv: KV, value: CatalogEntry): Promise<number> {
  return kv.put(`${value.namespace}.${value.name}`, JSON.stringify(value));
}

/** Ends a key the way the hub does. */
export async function putTombstone(kv: KV, key: string): Promise<number> {
  return kv.put(key, catalogTombstone(key, new Date()));
}

/** Resolves once `nc` has tried to reconnect `attempts` times (call before cutting it). */
export function reconnectAttempts(nc: NatsConnection, attempts: number): Promise<void> {
  return (async () => {
    let seen = 0;
    for await (const status of nc.status()) {
      if (status.type === 'reconnecting' && ++seen >= attempts) return;
    }
  })();
}
