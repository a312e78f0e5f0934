// Leader-only: converges the catalog's buckets (the shared one and the members' scoped ones,
// catalog-items.ts) on the resolved entries. Level-based: a work queue of items (a key of one
// bucket), each handled by comparing the entry's canonical JSON with what the bucket holds (as last read, observed or written) and writing only on a difference, with
// several keys in flight at once. Callers can wait until given keys are published, so an
// acknowledged report is in the bucket before a successor hub recovers from it.
//
// No deletion without intent (DESIGN §5): a service whose last export went gets a tombstone, never
// a bare delete; a tombstone is purged once older than its retention. Every write names the
// revision it replaces (update / create on "no key"), so a write computed on a stale view — a
// deposed leader's, or one racing an operator's change — is refused instead of overwriting what it
// never saw; the key is then read again and looked at after conflictRetryMs (time for a deposed
// leader to learn it is one). Changes made by others (a raw delete or purge, a foreign value) are
// observed through the leader's watch and repaired.
import { JetStreamApiCodes, JetStreamApiError } from '@nats-io/jetstream';
import type { KV } from '@nats-io/kv';
import { catalogTombstone, parseCatalogTombstone } from '../../common/catalog.ts';
import { describeError } from '../../common/errors.ts';
import { WorkQueue, type WorkResult } from '../../common/kube/index.ts';
import type { Logger } from '../../common/logger.ts';
import { canonicalValue, type StoredValue } from './catalog-bucket.ts';
import { parseItem } from './catalog-items.ts';

export interface PublisherOptions {
  /** Puts in flight at once. */
  readonly concurrency: number;
  /** An entry larger than this is never put (NATS would refuse it every time): logged and skipped, so it cannot block the queue. */
  readonly maxEntryBytes?: number;
  /** A tombstone older than this is purged. */
  readonly tombstoneRetentionMs: number;
  /** A key whose write was refused (someone else wrote it) is looked at again after this long. */
  readonly conflictRetryMs: number;
  /** The hub's clock (tombstone times). */
  readonly now?: () => Date;
}

/** What the bucket holds under a key as this publisher knows it; value undefined: no value (never written, deleted or purged). */
interface Held {
  readonly value: string | undefined;
  /** 0 when unknown (a purge, or a key read as absent). */
  readonly revision: number;
}

export interface PublisherStats {
  readonly puts: number;
  /** Tombstones written (a service's last export went). */
  readonly tombstones: number;
  /** Tombstones purged after their retention. */
  readonly purges: number;
  /** Writes refused because the key had changed since this publisher last knew it. */
  readonly conflicts: number;
  /** Changes made by someone else, observed and queued for repair. */
  readonly repairs: number;
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
  /** The bucket of a member's own views (undefined: the shared bucket), created on first use. */
  readonly #kvOf: (reader: string | undefined) => KV | Promise<KV>;
  readonly #desired: (key: string) => string | undefined;
  /** What the bucket holds per key, as last read, observed or written. */
  readonly #held = new Map<string, Held>();
  /** Sequence number of each key's latest enqueue, until a handling of it is done. */
  readonly #enqueued = new Map<string, number>();
  readonly #waiters = new Map<string, Map<Waiter, number>>();
  readonly #workers: Promise<void>;
  readonly #log: Logger;
  readonly #maxEntryBytes: number;
  readonly #tombstoneRetentionMs: number;
  readonly #conflictRetryMs: number;
  readonly #now: () => Date;
  #sequence = 0;
  /** Set while writes fail (NATS down), so an outage is logged once rather than per key and retry. */
  #failing = false;
  #writable = true;
  #puts = 0;
  #tombstones = 0;
  #purges = 0;
  #conflicts = 0;
  #repairs = 0;
  #unchanged = 0;

  /** Items are catalog-items.ts names; `stored`: the buckets as read at the start of the term (readCatalog), by item. */
  constructor(
    kvOf: (reader: string | undefined) => KV | Promise<KV>,
    desired: (item: string) => string | undefined,
    stored: ReadonlyMap<string, StoredValue>,
    log: Logger,
    options: PublisherOptions,
  ) {
    this.#kvOf = kvOf;
    this.#desired = desired;
    for (const [key, held] of stored) this.#held.set(key, held);
    this.#log = log;
    this.#maxEntryBytes = options.maxEntryBytes ?? Number.POSITIVE_INFINITY;
    this.#tombstoneRetentionMs = options.tombstoneRetentionMs;
    this.#conflictRetryMs = options.conflictRetryMs;
    this.#now = options.now ?? (() => new Date());
    this.#queue = new WorkQueue<string>({ name: 'catalog-publisher', maxDelayMs: 10_000 });
    this.#workers = this.#queue.run(options.concurrency, (key) => this.#publish(key));
  }

  enqueue(keys: Iterable<string>): void {
    for (const key of keys) {
      this.#enqueued.set(key, ++this.#sequence);
      this.#queue.add(key);
    }
  }

  /** Takes a fresh reading of the bucket: keys whose stored value differs, and tombstones due for purging, are converged again. */
  reread(stored: ReadonlyMap<string, StoredValue>): void {
    const due: string[] = [];
    for (const key of new Set([...stored.keys(), ...this.#held.keys()])) {
      const read = stored.get(key);
      const held = this.#held.get(key);
      if (read?.value !== held?.value) {
        this.#held.set(key, read ?? { value: undefined, revision: 0 });
        due.push(key);
      } else if (read && this.#tombstoneExpired(key, read.value)) {
        due.push(key);
      }
    }
    this.enqueue(due);
  }

  /**
   * A change the leader's watch saw (value undefined: a delete or purge). Our own writes, and
   * anything older than what is known, change nothing; anything else was written by someone else
   * and is repaired: at once when the key lost its value or holds no valid entry, after
   * conflictRetryMs when it holds a valid entry (possibly a successor's).
   */
  observe(key: string, value: string | undefined, revision: number): void {
    const held = this.#held.get(key);
    if (held && revision <= held.revision) return;
    const read = value === undefined ? undefined : canonicalValue(parseItem(key).key, value, this.#log);
    this.#held.set(key, { value: read?.value, revision });
    if (read?.value === held?.value || this.#desired(key) === read?.value) return;
    this.#repairs++;
    this.#log.warn(
      { key, revision, operation: value === undefined ? 'delete' : 'put' },
      'catalog key changed by someone other than this leader; repairing it',
    );
    if (read?.entry) this.#queue.addAfter(key, this.#conflictRetryMs);
    else this.enqueue([key]);
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
    return {
      puts: this.#puts,
      tombstones: this.#tombstones,
      purges: this.#purges,
      conflicts: this.#conflicts,
      repairs: this.#repairs,
      unchanged: this.#unchanged,
      pending: this.#queue.length + this.#queue.processing + this.#queue.delayed,
    };
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

  /** One key; a failure is retried with backoff by the queue, a refused (fenced) write after conflictRetryMs. */
  async #publish(key: string): Promise<WorkResult> {
    if (!this.#writable) return;
    const sequence = this.#enqueued.get(key) ?? 0;
    try {
      await this.#write(key);
    } catch (err) {
      if (isWrongRevision(err)) return this.#refused(key);
      if (!this.#failing)
        this.#log.warn({ key, err: describeError(err) }, 'catalog writes to NATS are failing; retrying with backoff');
      this.#failing = true;
      throw err;
    }
    if (this.#failing) this.#log.info('catalog writes to NATS succeed again');
    this.#failing = false;
    this.#markHandled(key, sequence);
    return undefined;
  }

  async #write(item: string): Promise<void> {
    const desired = this.#desired(item);
    const held = this.#held.get(item) ?? { value: undefined, revision: 0 };
    const { key } = parseItem(item);
    if (desired === undefined) {
      if (held.value === undefined || (parseTombstone(key, held.value) && !this.#tombstoneExpired(item, held.value))) {
        this.#unchanged++;
      } else if (parseTombstone(key, held.value)) {
        await (await this.#kvOf(parseItem(item).reader)).purge(key, { previousSeq: held.revision });
        this.#held.set(item, { value: undefined, revision: 0 });
        this.#purges++;
      } else {
        await this.#put(item, held, catalogTombstone(key, this.#now()));
        this.#tombstones++;
      }
    } else if (desired === held.value) {
      this.#unchanged++;
    } else if (Buffer.byteLength(desired) > this.#maxEntryBytes) {
      this.#log.error(
        {
          key: item,
          bytes: Buffer.byteLength(desired),
          limit: this.#maxEntryBytes,
          code: 'ISTHMUS_CATALOG_ENTRY_TOO_LARGE',
        },
        'catalog entry too large to publish; the bucket keeps its previous value',
      );
    } else {
      await this.#put(item, held, desired);
      this.#puts++;
    }
  }

  /** A write fenced on the revision it replaces: "no key" when none is known. */
  async #put(item: string, held: Held, value: string): Promise<void> {
    const { reader, key } = parseItem(item);
    const kv = await this.#kvOf(reader);
    const revision = held.revision > 0 ? await kv.update(key, value, held.revision) : await kv.create(key, value);
    const now = this.#held.get(item);
    if (!now || now.revision < revision) this.#held.set(item, { value, revision });
  }

  /** Someone else wrote the key since we last knew it: learn what it holds now, and look again later. */
  async #refused(item: string): Promise<WorkResult> {
    this.#conflicts++;
    const { reader, key } = parseItem(item);
    try {
      const stored = await (await this.#kvOf(reader)).get(key);
      const value = stored?.operation === 'PUT' ? canonicalValue(key, stored.string(), this.#log).value : undefined;
      this.#held.set(item, { value, revision: stored?.revision ?? 0 });
    } catch (err) {
      this.#log.warn({ key, err: describeError(err) }, 'could not read a catalog key after a refused write');
    }
    this.#log.warn(
      { key: item, retryInMs: this.#conflictRetryMs },
      'catalog write refused: the key changed since this leader read it (another writer); looking again later',
    );
    return { requeueAfterMs: this.#conflictRetryMs };
  }

  #tombstoneExpired(item: string, value: string): boolean {
    const tombstone = parseTombstone(parseItem(item).key, value);
    return (
      tombstone !== undefined && this.#now().getTime() - Date.parse(tombstone.deletedAt) >= this.#tombstoneRetentionMs
    );
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

function parseTombstone(key: string, value: string): ReturnType<typeof parseCatalogTombstone> {
  try {
    return parseCatalogTombstone(key, JSON.parse(value));
  } catch {
    return undefined;
  }
}

/** JetStream refused a write whose expected last revision did not match (the key changed). */
function isWrongRevision(err: unknown): boolean {
  return (
    err instanceof JetStreamApiError &&
    (err.code === JetStreamApiCodes.StreamWrongLastSequence ||
      err.code === JetStreamApiCodes.StreamWrongLastSequenceUnknown)
  );
}
