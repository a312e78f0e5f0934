// Watches a whole KV bucket (the catalog by default, DESIGN §5; also the membership) and keeps the last valid entry of every key in
// memory. It reads only with requests that cannot write (bucket-reader.ts: stream info and batch
// direct get, no consumer), woken by the bucket's live messages and checked periodically. After
// any interruption (an error, a reconnect) it reads on from the last revision it processed; a
// bucket whose last revision it cannot reach (messages removed without a marker) or that went
// back (recreated) is read again in full. An outage of the hub or NATS only freezes what it knows:
// keys go away because the bucket says so (a delete, a purge, a full snapshot without them), never
// because the bucket cannot be read. For a source with tombstones (the catalog, DESIGN §5) only a
// tombstone removes a key at once; a key that vanishes without one (a raw delete or purge, a
// recreated bucket, a full snapshot without it) is held for a grace period, during which the hub
// is expected to write it back.
import { setTimeout as sleep } from 'node:timers/promises';
import type { NatsConnection } from '@nats-io/transport-node';
import { ZodError } from 'zod';
import {
  CATALOG_BUCKET,
  catalogEntrySchema,
  catalogKey,
  parseCatalogTombstone,
  type CatalogEntry,
} from '../../common/catalog.ts';
import { IsthmusError, describeError, isIsthmusError } from '../../common/errors.ts';
import type { Logger } from '../../common/logger.ts';
import { backoffDelay } from '../../common/backoff.ts';
import { unlessAborted, type Runnable } from '../../common/lifecycle.ts';
import { bucketSubjects } from '../../common/nats-authorization.ts';
import { lastRevision, readFrom, type BucketMessage } from './bucket-reader.ts';

/** Called after a key's entry changed; `entry` is undefined once the key is gone. Must not block. */
export type CatalogListener<T = CatalogEntry> = (key: string, entry: T | undefined) => void;

/** Which bucket to mirror and how its values are read; a value `parse` throws on is skipped. */
export interface KvSource<T> {
  readonly bucket: string;
  readonly parse: (key: string, value: unknown) => T;
  /** Set for a bucket whose writer marks deletions with a tombstone value: then only a tombstone removes a key at once. */
  readonly isTombstone?: (key: string, value: unknown) => boolean;
  /** Set for a bucket the hub creates only once it has something to put in it: until then it reads as empty. */
  readonly mayBeAbsent?: boolean;
}

/** What a watcher knows of a key: an entry (possibly held after it vanished), ended by a tombstone, or never seen. */
export type KeyState = 'present' | 'vanished' | 'tombstoned' | 'unknown';

/** The federated catalog (the default source). */
export const catalogSource: KvSource<CatalogEntry> = {
  bucket: CATALOG_BUCKET,
  parse: (key, value) => {
    const entry = catalogEntrySchema.parse(value);
    if (catalogKey(entry.namespace, entry.name) !== key)
      throw new Error(`entry names ${entry.namespace}/${entry.name}`);
    return entry;
  },
  isTombstone: (key, value) => parseCatalogTombstone(key, value) !== undefined,
};

export interface CatalogWatcherOptions<T = CatalogEntry> {
  readonly nc: NatsConnection;
  /** Default: the catalog bucket. */
  readonly source?: KvSource<T>;
  readonly log: Logger;
  /** Delay before watching again after a short-lived watch: doubles from initialMs up to maxMs. */
  readonly retry?: { readonly initialMs?: number; readonly maxMs?: number };
  /** How often the bucket is read again without a live message saying it changed. */
  readonly progressCheckMs?: number;
  /** How long a key that vanished without a tombstone is kept (sources with tombstones only). */
  readonly vanishedGraceMs?: number;
  /** How long one read request may wait for its reply (default: bucket-reader's). */
  readonly requestTimeoutMs?: number;
}

export const CATALOG_WATCHER_DEFAULTS = {
  retry: { initialMs: 250, maxMs: 5_000 },
  /** A watch that lasted this long was healthy: the next retry starts from initialMs again. */
  healthyAfterMs: 10_000,
  progressCheckMs: 10_000,
  vanishedGraceMs: 24 * 60 * 60 * 1000,
} as const;

export class CatalogWatcher<T = CatalogEntry> implements Runnable {
  readonly #nc: NatsConnection;
  readonly #source: KvSource<T>;
  readonly #log: Logger;
  readonly #retry: { readonly initialMs: number; readonly maxMs: number };
  readonly #progressCheckMs: number;
  readonly #vanishedGraceMs: number;
  readonly #requestTimeoutMs: number | undefined;
  /** Keys whose last value was a tombstone (or that were deleted after one): removable at once. */
  readonly #tombstoned = new Set<string>();
  /** Keys held after vanishing without a tombstone: when they vanished, and the timer that removes them. */
  readonly #vanished = new Map<string, { readonly at: number; readonly timer: NodeJS.Timeout }>();
  /** When the first snapshot completed (performance.now()). */
  #syncedAt: number | undefined;
  /** Valid entries by key, with their JSON to tell a real change from a re-put. */
  readonly #entries = new Map<string, { readonly entry: T; readonly json: string }>();
  readonly #listeners = new Set<CatalogListener<T>>();
  readonly #syncedPromise: Promise<void>;
  #resolveSynced!: () => void;
  #rejectSynced!: (err: Error) => void;
  /** Highest revision applied. Once a full snapshot is complete, reads resume after it. */
  #revision = 0;
  #snapshotComplete = false;
  /** Aborted to end the current watch: the connection came back, or stop. A read in flight is dropped, not awaited. */
  #watch: AbortController | undefined;
  /** Ends the current watch's wait for a change: the bucket changed. */
  #nudge: (() => void) | undefined;
  /** Aborted to cut a retry delay short (a reconnect) or on stop. */
  #wake = new AbortController();
  #started = false;
  #stopped = false;
  #synced = false;
  #restarts = 0;
  /** Watches in a row that ended early (set back by a healthy watch or a reconnect): the retry delay grows with it. */
  #shortLived = 0;
  #malformed = 0;

  constructor(options: CatalogWatcherOptions<T>) {
    this.#nc = options.nc;
    this.#source = options.source ?? (catalogSource as unknown as KvSource<T>);
    this.#log = options.log;
    this.#retry = { ...CATALOG_WATCHER_DEFAULTS.retry, ...options.retry };
    this.#progressCheckMs = options.progressCheckMs ?? CATALOG_WATCHER_DEFAULTS.progressCheckMs;
    this.#vanishedGraceMs = options.vanishedGraceMs ?? CATALOG_WATCHER_DEFAULTS.vanishedGraceMs;
    this.#requestTimeoutMs = options.requestTimeoutMs;
    this.#syncedPromise = new Promise<void>((resolve, reject) => {
      this.#resolveSynced = resolve;
      this.#rejectSynced = reject;
    });
    this.#syncedPromise.catch(() => undefined); // callers that never ask must not see an unhandled rejection
  }

  /**
   * Watches until `signal` aborts, then resolves once the watch ended; the entries stay readable.
   * A watcher runs once.
   */
  async run(signal: AbortSignal): Promise<void> {
    if (this.#started) throw new IsthmusError('ISTHMUS_INPUT_INVALID', 'a catalog watcher runs once');
    this.#started = true;
    const stop = (): void => {
      this.#stopped = true;
      this.#watch?.abort();
      this.#wake.abort();
    };
    if (signal.aborted) stop();
    else signal.addEventListener('abort', stop, { once: true });
    void this.#followConnection();
    try {
      await this.#run();
    } finally {
      signal.removeEventListener('abort', stop);
      stop();
      for (const { timer } of this.#vanished.values()) clearTimeout(timer);
      this.#vanished.clear();
      if (!this.#synced)
        this.#rejectSynced(new IsthmusError('ISTHMUS_STOPPED', 'catalog watcher stopped before its first snapshot'));
    }
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

  /** Keys held after they vanished without a tombstone (they stay readable through `get`). */
  get vanished(): number {
    return this.#vanished.size;
  }

  /**
   * How long until whatever was made from an absent key may be deleted: 0 after a tombstone (or
   * for a source without tombstones); otherwise what is left of the grace period, counted from
   * when the key vanished, or for a key never seen from the first snapshot (it may have vanished
   * while this process was not watching).
   */
  removalDelayMs(key: string): number {
    if (!this.#source.isTombstone || this.#tombstoned.has(key)) return 0;
    const since = this.#vanished.get(key)?.at ?? this.#syncedAt;
    return since === undefined
      ? this.#vanishedGraceMs
      : Math.max(0, Math.ceil(since + this.#vanishedGraceMs - performance.now()));
  }

  keyState(key: string): KeyState {
    if (this.#vanished.has(key)) return 'vanished';
    if (this.#entries.has(key)) return 'present';
    return this.#tombstoned.has(key) ? 'tombstoned' : 'unknown';
  }

  /** Registers a listener; returns its removal. */
  onChange(listener: CatalogListener<T>): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  async #run(): Promise<void> {
    while (!this.#stopped) {
      const began = Date.now();
      try {
        await this.#watchOnce();
        if (!this.#stopped) this.#log.info({ revision: this.#revision }, 'catalog watch ended; watching again');
      } catch (err) {
        if (!this.#stopped)
          this.#log.warn({ err: describeError(err), revision: this.#revision }, 'catalog watch failed; watching again');
      }
      if (this.#stopped) return;
      this.#restarts++;
      this.#shortLived = Date.now() - began >= CATALOG_WATCHER_DEFAULTS.healthyAfterMs ? 0 : this.#shortLived + 1;
      await this.#pause(backoffDelay(this.#shortLived, this.#retry));
    }
  }

  /**
   * One watch, until the connection comes back from an interruption (or an error): reads the
   * bucket on from the last revision (in full first, and whenever the bucket lost what it had
   * held), then waits for a live message or the periodic check. A reconnect ends the watch at
   * once, even mid-read: a request sent while the connection was down may never be answered, and
   * waiting out its timeout would delay the catch-up by as much.
   */
  async #watchOnce(): Promise<void> {
    const watch = (this.#watch = new AbortController());
    const { signal } = watch;
    let changed = false;
    const live = this.#nc.subscribe(bucketSubjects(this.#source.bucket), {
      callback: () => {
        changed = true;
        this.#nudge?.();
      },
    });
    try {
      while (!signal.aborted) {
        changed = false;
        await unlessAborted(this.#readOnce(signal), signal);
        if (signal.aborted || changed) continue;
        await new Promise<void>((resolve) => {
          const done = (): void => {
            clearTimeout(timer);
            signal.removeEventListener('abort', done);
            this.#nudge = undefined;
            resolve();
          };
          const timer = setTimeout(done, this.#progressCheckMs);
          signal.addEventListener('abort', done, { once: true });
          this.#nudge = done;
        });
      }
    } finally {
      this.#nudge = undefined;
      if (this.#watch === watch) this.#watch = undefined;
      live.unsubscribe();
    }
  }

  /**
   * Reads what the bucket holds beyond the last revision applied (all of it for a snapshot);
   * applies nothing once `signal` aborted (the watch ended and another may be reading).
   */
  async #readOnce(signal: AbortSignal): Promise<void> {
    const lastSeq = await this.#lastRevision();
    if (signal.aborted) return;
    if (lastSeq < this.#revision) {
      this.#log.warn(
        { revision: this.#revision, lastSeq },
        'catalog bucket was recreated; reading it again from the start',
      );
      this.#snapshotComplete = false;
      this.#revision = 0;
    }
    const snapshot: Set<string> | undefined = this.#snapshotComplete ? undefined : new Set();
    if (lastSeq > 0)
      await readFrom(
        this.#nc,
        this.#source.bucket,
        snapshot ? 1 : this.#revision + 1,
        (message) => {
          if (signal.aborted) return;
          this.#apply(message);
          snapshot?.add(message.key);
        },
        this.#requestTimeoutMs,
      );
    if (signal.aborted) return;
    if (snapshot) {
      this.#completeSnapshot(snapshot, lastSeq);
    } else if (this.#revision < lastSeq) {
      // The revisions up to lastSeq existed but are gone without a marker: only a full read tells what remains.
      this.#log.warn({ revision: this.#revision, lastSeq }, 'catalog bucket lost messages; reading it again');
      this.#snapshotComplete = false;
      await this.#readOnce(signal);
    }
  }

  /** The bucket's last revision; 0 for a bucket that may be absent and is. */
  async #lastRevision(): Promise<number> {
    try {
      return await lastRevision(this.#nc, this.#source.bucket, this.#requestTimeoutMs);
    } catch (err) {
      if (this.#source.mayBeAbsent && isIsthmusError(err, 'ISTHMUS_NATS_BUCKET_MISSING')) return 0;
      throw err;
    }
  }

  /**
   * A full snapshot is the bucket's whole truth: keys it did not name are gone, and every message
   * up to `lastSeq` (the bucket's last revision before the watch began) is reflected in it.
   */
  #completeSnapshot(seen: ReadonlySet<string>, lastSeq: number): void {
    for (const key of [...this.#entries.keys()]) {
      if (!seen.has(key)) this.#vanish(key, this.#revision);
    }
    this.#revision = Math.max(this.#revision, lastSeq);
    this.#snapshotComplete = true;
    if (!this.#synced) {
      this.#synced = true;
      this.#syncedAt = performance.now();
      this.#log.info({ entries: this.#entries.size, revision: this.#revision }, 'catalog synced');
      this.#resolveSynced();
    }
  }

  #apply(message: BucketMessage): void {
    const { key, revision } = message;
    this.#revision = Math.max(this.#revision, revision);
    if (message.operation !== 'PUT') {
      this.#vanish(key, revision);
      return;
    }
    if (this.#isTombstone(message)) {
      this.#tombstoned.add(key);
      this.#keep(key);
      this.#remove(key, revision);
      return;
    }
    const entry = this.#parse(message);
    if (!entry) return; // the last valid value stays
    this.#tombstoned.delete(key);
    this.#keep(key);
    const json = JSON.stringify(entry);
    if (this.#entries.get(key)?.json === json) return;
    this.#entries.set(key, { entry, json });
    this.#notify(key, entry);
  }

  #isTombstone(message: BucketMessage): boolean {
    const { isTombstone } = this.#source;
    if (!isTombstone) return false;
    try {
      return isTombstone(message.key, JSON.parse(new TextDecoder().decode(message.value)));
    } catch {
      return false; // not JSON: #parse reports it
    }
  }

  /** A key gone without a tombstone: removed at once only for a source without tombstones, else after the grace period. */
  #vanish(key: string, revision: number): void {
    if (!this.#source.isTombstone || this.#tombstoned.has(key)) {
      this.#remove(key, revision);
      return;
    }
    if (!this.#entries.has(key) || this.#vanished.has(key)) return;
    const timer = setTimeout(() => {
      this.#vanished.delete(key);
      this.#log.warn(
        { key, graceMs: this.#vanishedGraceMs },
        'catalog key still missing after the grace period; removing it',
      );
      this.#remove(key, this.#revision);
    }, this.#vanishedGraceMs);
    timer.unref();
    this.#vanished.set(key, { at: performance.now(), timer });
    this.#log.warn(
      { key, revision, graceMs: this.#vanishedGraceMs },
      'catalog key vanished without a tombstone; kept until the hub writes it again or the grace period ends',
    );
  }

  /** The key was written again (or ended by a tombstone): it is no longer held. */
  #keep(key: string): void {
    const held = this.#vanished.get(key);
    if (!held) return;
    clearTimeout(held.timer);
    this.#vanished.delete(key);
    this.#log.info({ key }, 'vanished catalog key written again by the hub');
  }

  #remove(key: string, revision: number): void {
    if (!this.#entries.delete(key)) return;
    this.#log.info({ key, revision }, 'catalog entry removed');
    this.#notify(key, undefined);
  }

  #parse(message: BucketMessage): T | undefined {
    const { key, revision } = message;
    let problem: string;
    try {
      return this.#source.parse(key, JSON.parse(new TextDecoder().decode(message.value)));
    } catch (err) {
      problem =
        err instanceof ZodError
          ? err.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')
          : describeError(err);
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

  /** Changes made while disconnected sent no live message: read on from the last revision. */
  async #followConnection(): Promise<void> {
    for await (const status of this.#nc.status()) {
      if (this.#stopped) return;
      if (status.type !== 'reconnect') continue;
      this.#log.info({ revision: this.#revision }, 'NATS reconnected; resuming the catalog watch');
      this.#shortLived = 0; // failures during the outage say nothing about the new connection
      this.#watch?.abort();
      this.#wake.abort();
    }
  }

  async #pause(ms: number): Promise<void> {
    const wake = this.#wake;
    if (!wake.signal.aborted) await sleep(ms, undefined, { signal: wake.signal }).catch(() => undefined);
    if (!this.#stopped) this.#wake = new AbortController();
  }
}
