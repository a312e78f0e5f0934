// Watches a whole KV bucket (the catalog by default, DESIGN §5; also the membership) and keeps the last valid entry of every key in
// memory. After any interruption (the watch ending, an error, a reconnect) it watches again from
// the last revision it processed; a watch that stalls without ending makes it read the bucket
// again in full. An outage of the hub or NATS only freezes what it knows: keys go away because
// the bucket says so (a delete, a purge, a full snapshot without them), never because the bucket
// cannot be read.
import { setTimeout as sleep } from 'node:timers/promises';
import { Kvm, KvWatchInclude, type KV, type KvWatchEntry } from '@nats-io/kv';
import type { NatsConnection, QueuedIterator } from '@nats-io/transport-node';
import { ZodError } from 'zod';
import { CATALOG_BUCKET, catalogEntrySchema, catalogKey, type CatalogEntry } from '../../common/catalog.ts';
import { IsthmusError, describeError } from '../../common/errors.ts';
import type { Logger } from '../../common/logger.ts';
import { backoffDelay } from '../../common/backoff.ts';

/** Called after a key's entry changed; `entry` is undefined once the key is gone. Must not block. */
export type CatalogListener<T = CatalogEntry> = (key: string, entry: T | undefined) => void;

/** Which bucket to mirror and how its values are read; a value `parse` throws on is skipped. */
export interface KvSource<T> {
  readonly bucket: string;
  readonly parse: (key: string, value: unknown) => T;
}

/** The federated catalog (the default source). */
export const catalogSource: KvSource<CatalogEntry> = {
  bucket: CATALOG_BUCKET,
  parse: (key, value) => {
    const entry = catalogEntrySchema.parse(value);
    if (catalogKey(entry.namespace, entry.name) !== key) throw new Error(`entry names ${entry.namespace}/${entry.name}`);
    return entry;
  },
};

export interface CatalogWatcherOptions<T = CatalogEntry> {
  readonly nc: NatsConnection;
  /** Default: the catalog bucket. */
  readonly source?: KvSource<T>;
  readonly log: Logger;
  /** Delay before watching again after a short-lived watch: doubles from initialMs up to maxMs. */
  readonly retry?: { readonly initialMs?: number; readonly maxMs?: number };
  /** How often the watch is checked for progress against the bucket's last revision. */
  readonly progressCheckMs?: number;
}

export const CATALOG_WATCHER_DEFAULTS = {
  retry: { initialMs: 250, maxMs: 5_000 },
  /** A watch that lasted this long was healthy: the next retry starts from initialMs again. */
  healthyAfterMs: 10_000,
  progressCheckMs: 10_000,
} as const;

export class CatalogWatcher<T = CatalogEntry> {
  readonly #nc: NatsConnection;
  readonly #source: KvSource<T>;
  readonly #log: Logger;
  readonly #retry: { readonly initialMs: number; readonly maxMs: number };
  readonly #progressCheckMs: number;
  /** Valid entries by key, with their JSON to tell a real change from a re-put. */
  readonly #entries = new Map<string, { readonly entry: T; readonly json: string }>();
  readonly #listeners = new Set<CatalogListener<T>>();
  readonly #syncedPromise: Promise<void>;
  #resolveSynced!: () => void;
  #rejectSynced!: (err: Error) => void;
  #kv: KV | undefined;
  /** Highest revision applied. Once a full snapshot is complete, watches resume after it. */
  #revision = 0;
  #snapshotComplete = false;
  #iterator: QueuedIterator<KvWatchEntry> | undefined;
  /** The bucket's last revision at the previous progress check, when the watch had not reached it. */
  #awaited: number | undefined;
  /** Aborted to cut a retry delay short (a reconnect) or on stop. */
  #wake = new AbortController();
  #loop: Promise<void> | undefined;
  #started = false;
  #stopped = false;
  #synced = false;
  #restarts = 0;
  #malformed = 0;

  constructor(options: CatalogWatcherOptions<T>) {
    this.#nc = options.nc;
    this.#source = options.source ?? (catalogSource as unknown as KvSource<T>);
    this.#log = options.log;
    this.#retry = { ...CATALOG_WATCHER_DEFAULTS.retry, ...options.retry };
    this.#progressCheckMs = options.progressCheckMs ?? CATALOG_WATCHER_DEFAULTS.progressCheckMs;
    this.#syncedPromise = new Promise<void>((resolve, reject) => {
      this.#resolveSynced = resolve;
      this.#rejectSynced = reject;
    });
    this.#syncedPromise.catch(() => undefined); // callers that never ask must not see an unhandled rejection
  }

  start(): void {
    if (this.#started || this.#stopped) return;
    this.#started = true;
    this.#loop = this.#run();
    void this.#followConnection();
  }

  /** Resolves once the first full snapshot of the bucket is applied; rejects if stopped before. */
  synced(): Promise<void> {
    return this.#syncedPromise;
  }

  get hasSynced(): boolean {
    return this.#synced;
  }

  get(key: string): T | undefined {
    return this.#entries.get(key)?.entry;
  }

  keys(): string[] {
    return [...this.#entries.keys()];
  }

  get size(): number {
    return this.#entries.size;
  }

  /** The highest bucket revision processed. */
  get revision(): number {
    return this.#revision;
  }

  /** How often the watch was started again after it ended or failed. */
  get restarts(): number {
    return this.#restarts;
  }

  /** Entries skipped because they did not parse or validate. */
  get malformed(): number {
    return this.#malformed;
  }

  /** Registers a listener; returns its removal. */
  onChange(listener: CatalogListener<T>): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    this.#iterator?.stop();
    this.#wake.abort();
    await this.#loop;
    if (!this.#synced) this.#rejectSynced(new IsthmusError('ISTHMUS_STOPPED', 'catalog watcher stopped before its first snapshot'));
  }

  async #run(): Promise<void> {
    let shortLived = 0;
    while (!this.#stopped) {
      const began = Date.now();
      try {
        await this.#watchOnce();
        if (!this.#stopped) this.#log.info({ revision: this.#revision }, 'catalog watch ended; watching again');
      } catch (err) {
        if (!this.#stopped) this.#log.warn({ err: describeError(err), revision: this.#revision }, 'catalog watch failed; watching again');
      }
      this.#iterator = undefined;
      if (this.#stopped) return;
      this.#restarts++;
      shortLived = Date.now() - began >= CATALOG_WATCHER_DEFAULTS.healthyAfterMs ? 0 : shortLived + 1;
      await this.#pause(backoffDelay(shortLived, this.#retry));
    }
  }

  /** One watch, until it ends: a full snapshot first (and after a stall), else a resume. */
  async #watchOnce(): Promise<void> {
    this.#kv ??= await new Kvm(this.#nc).open(this.#source.bucket);
    const status = await this.#kv.status();
    const lastSeq = status.streamInfo.state.last_seq;
    if (lastSeq < this.#revision) {
      this.#log.warn({ revision: this.#revision, lastSeq }, 'catalog bucket was recreated; reading it again from the start');
      this.#snapshotComplete = false;
      this.#revision = 0;
    }
    // Keys seen by a full snapshot; undefined when resuming.
    let snapshot: Set<string> | undefined = this.#snapshotComplete ? undefined : new Set();
    const iterator = await this.#kv.watch(snapshot ? { include: KvWatchInclude.LastValue } : { resumeFromRevision: this.#revision + 1 });
    if (this.#stopped) {
      iterator.stop();
      return;
    }
    this.#iterator = iterator;
    this.#awaited = undefined;
    const progressCheck = setInterval(() => void this.#checkProgress(iterator), this.#progressCheckMs);
    try {
      if (snapshot && status.values === 0) {
        this.#completeSnapshot(snapshot, lastSeq);
        snapshot = undefined;
      }
      for await (const entry of iterator) {
        this.#apply(entry);
        snapshot?.add(entry.key);
        // The watch flags the last value of its initial set as the first update.
        if (snapshot && entry.isUpdate) {
          this.#completeSnapshot(snapshot, lastSeq);
          snapshot = undefined;
        }
      }
    } finally {
      clearInterval(progressCheck);
    }
  }

  /**
   * A watch can stall without ending (its consumer vanished with a recreated bucket, or the
   * messages it waits for were removed): one behind the bucket's last revision that has not caught
   * up with it since the previous check, or ahead of it, is ended, and the bucket read again in full.
   */
  async #checkProgress(iterator: QueuedIterator<KvWatchEntry>): Promise<void> {
    let lastSeq: number;
    try {
      lastSeq = (await (this.#kv as KV).status()).streamInfo.state.last_seq;
    } catch {
      return; // unreachable: the reconnect ends the watch anyway
    }
    if (iterator !== this.#iterator) return;
    const stalled = lastSeq < this.#revision || (this.#awaited !== undefined && this.#revision < this.#awaited);
    this.#awaited = lastSeq > this.#revision ? lastSeq : undefined;
    if (!stalled) return;
    this.#log.warn({ revision: this.#revision, lastSeq }, 'catalog watch stalled; reading the bucket again');
    this.#snapshotComplete = false;
    iterator.stop();
  }

  /**
   * A full snapshot is the bucket's whole truth: keys it did not name are gone, and every message
   * up to `lastSeq` (the bucket's last revision before the watch began) is reflected in it.
   */
  #completeSnapshot(seen: ReadonlySet<string>, lastSeq: number): void {
    for (const key of [...this.#entries.keys()]) {
      if (!seen.has(key)) this.#remove(key, this.#revision);
    }
    this.#revision = Math.max(this.#revision, lastSeq);
    this.#snapshotComplete = true;
    if (!this.#synced) {
      this.#synced = true;
      this.#log.info({ entries: this.#entries.size, revision: this.#revision }, 'catalog synced');
      this.#resolveSynced();
    }
  }

  #apply(kvEntry: KvWatchEntry): void {
    const { key, revision } = kvEntry;
    this.#revision = Math.max(this.#revision, revision);
    if (kvEntry.operation !== 'PUT') {
      this.#remove(key, revision);
      return;
    }
    const entry = this.#parse(kvEntry);
    if (!entry) return; // the last valid value stays
    const json = JSON.stringify(entry);
    if (this.#entries.get(key)?.json === json) return;
    this.#entries.set(key, { entry, json });
    this.#notify(key, entry);
  }

  #remove(key: string, revision: number): void {
    if (!this.#entries.delete(key)) return;
    this.#log.info({ key, revision }, 'catalog entry removed');
    this.#notify(key, undefined);
  }

  #parse(kvEntry: KvWatchEntry): T | undefined {
    const { key, revision } = kvEntry;
    let problem: string;
    try {
      return this.#source.parse(key, kvEntry.json());
    } catch (err) {
      problem = err instanceof ZodError ? err.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ') : describeError(err);
    }
    this.#malformed++;
    this.#log.error({ bucket: this.#source.bucket, key, revision, problem }, 'malformed entry skipped');
    return undefined;
  }

  #notify(key: string, entry: T | undefined): void {
    for (const listener of this.#listeners) {
      try {
        listener(key, entry);
      } catch (err) {
        this.#log.error({ key, err: describeError(err) }, 'catalog listener threw');
      }
    }
  }

  /** A reconnect may leave the watch silently stale: watch again from the last revision. */
  async #followConnection(): Promise<void> {
    for await (const status of this.#nc.status()) {
      if (this.#stopped) return;
      if (status.type !== 'reconnect') continue;
      this.#log.info({ revision: this.#revision }, 'NATS reconnected; resuming the catalog watch');
      this.#iterator?.stop();
      this.#wake.abort();
    }
  }

  async #pause(ms: number): Promise<void> {
    const wake = this.#wake;
    if (!wake.signal.aborted) await sleep(ms, undefined, { signal: wake.signal }).catch(() => undefined);
    if (!this.#stopped) this.#wake = new AbortController();
  }
}
