// Leader-only: converges the isthmus_catalog bucket on the resolved entries. Level-based: a work
// queue of catalog keys, each handled by comparing the entry's canonical JSON with what the
// bucket holds (as last read or written) and putting or deleting only on a difference, with
// several keys in flight at once. Callers can wait until given keys are published, so an
// acknowledged report is in the bucket before a successor hub recovers from it.
import type { KV } from '@nats-io/kv';
import { describeError } from '../../common/errors.ts';
import { WorkQueue } from '../../common/kube/index.ts';
import type { Logger } from '../../common/logger.ts';

export interface PublisherOptions {
  /** Puts in flight at once. */
  readonly concurrency: number;
  /** An entry larger than this is never put (NATS would refuse it every time): logged and skipped, so it cannot block the queue. */
  readonly maxEntryBytes?: number;
}

export interface PublisherStats {
  readonly puts: number;
  readonly deletes: number;
  /** Keys handled without a write because the bucket already held the entry. */
  readonly unchanged: number;
  /** Keys queued, in flight or waiting for a retry. */
  readonly pending: number;
}

interface Waiter {
  remaining: number;
  readonly resolve: () => void;
}

export class CatalogPublisher {
  readonly #queue: WorkQueue<string>;
  readonly #kv: KV;
  readonly #desired: (key: string) => string | undefined;
  /** What the bucket holds per key, as last read or written. */
  readonly #published: Map<string, string>;
  /** Sequence number of each key's latest enqueue, until a handling of it is done. */
  readonly #enqueued = new Map<string, number>();
  readonly #waiters = new Map<string, Map<Waiter, number>>();
  readonly #workers: Promise<void>;
  readonly #log: Logger;
  readonly #maxEntryBytes: number;
  #sequence = 0;
  /** Set while writes fail (NATS down), so an outage is logged once rather than per key and retry. */
  #failing = false;
  #writable = true;
  #puts = 0;
  #deletes = 0;
  #unchanged = 0;

  constructor(kv: KV, desired: (key: string) => string | undefined, published: Map<string, string>, log: Logger, options: PublisherOptions) {
    this.#kv = kv;
    this.#desired = desired;
    this.#published = published;
    this.#log = log;
    this.#maxEntryBytes = options.maxEntryBytes ?? Number.POSITIVE_INFINITY;
    this.#queue = new WorkQueue<string>({ name: 'catalog-publisher', maxDelayMs: 10_000 });
    this.#workers = this.#queue.run(options.concurrency, (key) => this.#publish(key));
  }

  enqueue(keys: Iterable<string>): void {
    for (const key of keys) {
      this.#enqueued.set(key, ++this.#sequence);
      this.#queue.add(key);
    }
  }

  /** Takes a fresh reading of the bucket: keys whose stored value differs are converged again. */
  reread(stored: ReadonlyMap<string, string>): void {
    const differing = [...new Set([...stored.keys(), ...this.#published.keys()])].filter((key) => stored.get(key) !== this.#published.get(key));
    for (const key of differing) {
      const value = stored.get(key);
      if (value === undefined) this.#published.delete(key);
      else this.#published.set(key, value);
    }
    this.enqueue(differing);
  }

  /** Resolves once every key has been published as of now (true), or after `timeoutMs` (false). */
  published(keys: Iterable<string>, timeoutMs: number): Promise<boolean> {
    const targets = new Map<string, number>();
    for (const key of keys) {
      const target = this.#enqueued.get(key);
      if (target !== undefined) targets.set(key, target);
    }
    if (targets.size === 0) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        for (const key of targets.keys()) this.#waiters.get(key)?.delete(waiter);
        resolve(false);
      }, timeoutMs);
      const waiter: Waiter = {
        remaining: targets.size,
        resolve: () => {
          clearTimeout(timer);
          resolve(true);
        },
      };
      for (const [key, target] of targets) {
        let forKey = this.#waiters.get(key);
        if (!forKey) {
          forKey = new Map();
          this.#waiters.set(key, forKey);
        }
        forKey.set(waiter, target);
      }
    });
  }

  stats(): PublisherStats {
    return { puts: this.#puts, deletes: this.#deletes, unchanged: this.#unchanged, pending: this.#queue.length + this.#queue.processing + this.#queue.delayed };
  }

  /** Finishes what is queued (graceful hand-over while the lease is still ours). */
  async drain(): Promise<void> {
    await this.#queue.shutDown({ drain: true });
    await this.#workers;
  }

  /** No write starts after this (leadership is gone); writes in flight finish. */
  fence(): Promise<void> {
    this.#writable = false;
    return this.#queue.shutDown();
  }

  /** One key; a failure is retried with backoff by the queue. */
  async #publish(key: string): Promise<void> {
    if (!this.#writable) return;
    const sequence = this.#enqueued.get(key) ?? 0;
    try {
      await this.#write(key);
    } catch (err) {
      if (!this.#failing) this.#log.warn({ key, err: describeError(err) }, 'catalog writes to NATS are failing; retrying with backoff');
      this.#failing = true;
      throw err;
    }
    if (this.#failing) this.#log.info('catalog writes to NATS succeed again');
    this.#failing = false;
    this.#markHandled(key, sequence);
  }

  async #write(key: string): Promise<void> {
    const desired = this.#desired(key);
    const current = this.#published.get(key);
    if (desired === current) {
      this.#unchanged++;
    } else if (desired === undefined) {
      await this.#kv.delete(key);
      this.#published.delete(key);
      this.#deletes++;
    } else if (Buffer.byteLength(desired) > this.#maxEntryBytes) {
      this.#log.error({ key, bytes: Buffer.byteLength(desired), limit: this.#maxEntryBytes, code: 'ISTHMUS_CATALOG_ENTRY_TOO_LARGE' }, 'catalog entry too large to publish; the bucket keeps its previous value');
    } else {
      await this.#kv.put(key, desired);
      this.#published.set(key, desired);
      this.#puts++;
    }
  }

  #markHandled(key: string, sequence: number): void {
    if (this.#enqueued.get(key) === sequence) this.#enqueued.delete(key);
    const forKey = this.#waiters.get(key);
    if (!forKey) return;
    for (const [waiter, target] of forKey) {
      if (target > sequence) continue;
      forKey.delete(waiter);
      if (--waiter.remaining === 0) waiter.resolve();
    }
    if (forKey.size === 0) this.#waiters.delete(key);
  }
}
