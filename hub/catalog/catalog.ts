// The federated service catalog: the ExportsSink behind ReportExports and the leader-only life
// cycle around it. Each leadership term recovers the per-cluster exports from the bucket (so a
// new leader rewrites nothing that is already right), then applies reports and membership
// changes and publishes what changed. A report is acknowledged once its entries are in the
// bucket; a graceful hand-over flushes the queue while the lease is still held, and no write
// starts after leadership is lost. The leader watches its own bucket, so a key someone else
// deleted or changed is repaired within moments (the periodic re-read is the backstop). A cluster
// that has not reported to this leader yet, or whose heartbeat counts other exports than this
// leader holds, is asked for its full export set (how a wiped bucket is rebuilt from the members).
// Exports scoped to some clusters are published apart (DESIGN §5, catalog-items.ts): each member
// they name gets its own bucket with its own view, so other members cannot read them; once a
// member has its own view of a service, the hub keeps that view current (the shared view, if that
// is all it may see) until the service is gone for it, so a change of scope never makes an
// agent drop an import between two buckets' writes.
import { setTimeout as sleep } from 'node:timers/promises';
import { Kvm, type KV } from '@nats-io/kv';
import { backoffDelay } from '../../common/backoff.ts';
import type { NatsConnection } from '@nats-io/transport-node';
import type { MemberCluster } from '../../common/api/isthmus.ts';
import { CATALOG_BUCKET, SCOPED_CATALOG_BUCKET_PREFIX, type CatalogEntry } from '../../common/catalog.ts';
import { IsthmusError, describeError } from '../../common/errors.ts';
import { whenAborted } from '../../common/lifecycle.ts';
import type { ReportExportsRequest, ReportExportsResponse } from '../../common/hub-api/index.ts';
import type { Logger } from '../../common/logger.ts';
import type { ExportsSink } from '../hub-service.ts';
import { isCurrentMember, type MemberCache } from '../membership.ts';
import { SINGLE_SERVER_BUCKETS, openBucket, type BucketSettings } from '../nats-buckets.ts';
import { readCatalog, type StoredValue } from './catalog-bucket.ts';
import { bucketOf, parseItem, scopedItem } from './catalog-items.ts';
import { CatalogPublisher, type PublisherStats } from './catalog-publisher.ts';
import { CatalogState, DEFAULT_CATALOG_LIMITS, type CatalogLimits } from './catalog-state.ts';
import type { ClusterLocality } from './resolution.ts';

/** Reading the catalog back from NATS at start: from 0.5 s up to 30 s between attempts. */
const CATALOG_READ_BACKOFF = { initialMs: 500, maxMs: 30_000 } as const;

export interface CatalogOptions {
  readonly nc: NatsConnection;
  readonly memberCache: MemberCache;
  readonly log: Logger;
  /** KV writes in flight at once. Default 64. */
  readonly publishConcurrency?: number;
  /** How long a report waits for its entries to reach the bucket before the agent is told to retry. Default 5 s. */
  readonly publishTimeoutMs?: number;
  /** How often the leader re-reads the bucket to repair writes it did not make (and purge old tombstones). Default 60 s. */
  readonly rereadIntervalMs?: number;
  /** How long a tombstone stays in the bucket (agents that were away longer fall back on their grace period). Default 24 h. */
  readonly tombstoneRetentionMs?: number;
  /** A refused write (the key changed under this leader) is looked at again after this long. Default 2 s. */
  readonly conflictRetryMs?: number;
  /** Per-cluster export quota and entry size limit (defaults: DEFAULT_CATALOG_LIMITS). */
  readonly limits?: CatalogLimits;
  /** The hub's clock (exportCreatedAt is clamped to it). */
  readonly now?: () => Date;
  /** How the bucket is created (replicas); default SINGLE_SERVER_BUCKETS. */
  readonly buckets?: BucketSettings;
}

export const CATALOG_DEFAULTS = {
  publishConcurrency: 64,
  publishTimeoutMs: 5_000,
  rereadIntervalMs: 60_000,
  tombstoneRetentionMs: 24 * 60 * 60 * 1000,
  conflictRetryMs: 2_000,
} as const;

export interface CatalogStats extends PublisherStats {
  /** Entries recovered from the bucket at the start of this term. */
  readonly recovered: number;
}

export interface Catalog {
  /** Pass to startHub / createHubHandlers as the ReportExports sink. */
  readonly sink: ExportsSink & {
    /** Whether the cluster should send its full export set (see above); false while not leading. */
    wantsReport(clusterId: string, exportCount: number): boolean;
  };
  /**
   * Runs the catalog for one leadership term: recovers from the bucket (retrying until NATS
   * answers), then publishes until `signal` aborts, then flushes the queue. Resolves when the
   * term is over, so a graceful stop releases the lease only after the flush.
   */
  onStartedLeading(signal: AbortSignal): Promise<void>;
  /** Leadership is gone: no write starts after this. */
  onStoppedLeading(): void;
  /** A MemberCluster changed: drop the exports of clusters that left, re-resolve moved ones. */
  onMembersChanged(): void;
  /** This term's counters; undefined while not leading or still recovering. */
  stats(): CatalogStats | undefined;
}

interface Active {
  readonly buckets: CatalogBuckets;
  readonly state: CatalogState;
  readonly publisher: CatalogPublisher;
  readonly recovered: number;
  /** Per service, every member that has (or had) its own view of it in this term or the bucket. */
  readonly readers: Map<string, Set<string>>;
}

/** A bucket to follow for the whole term from a revision on (the leader's watch of its own writes). */
type BucketFollower = (reader: string | undefined, kv: KV, fromRevision: number) => void;

/** The catalog's buckets in this term: the shared one, and each member's own, opened or created on first use. */
class CatalogBuckets {
  readonly #create: (bucket: string) => Promise<KV>;
  readonly #open = new Map<string | undefined, Promise<KV>>();
  /** Buckets ready, with the revision a watch of them starts after. */
  readonly #ready = new Map<string | undefined, { readonly kv: KV; readonly revision: number }>();
  #follower: BucketFollower | undefined;

  /** `create` opens or creates a bucket; `existing`: the buckets read at recovery, with their last revision then. */
  constructor(
    create: (bucket: string) => Promise<KV>,
    existing: ReadonlyMap<string | undefined, { readonly kv: KV; readonly revision: number }>,
  ) {
    this.#create = create;
    for (const [reader, ready] of existing) {
      this.#ready.set(reader, ready);
      this.#open.set(reader, Promise.resolve(ready.kv));
    }
  }

  get(reader: string | undefined): Promise<KV> {
    let kv = this.#open.get(reader);
    if (!kv) {
      kv = this.#create(bucketOf(reader));
      this.#open.set(reader, kv);
      kv.then(
        (created) => {
          this.#ready.set(reader, { kv: created, revision: 0 });
          this.#follower?.(reader, created, 0);
        },
        () => this.#open.delete(reader), // tried again on the next use
      );
    }
    return kv;
  }

  /** Calls `follower` for every bucket ready now and for each one created later, once each. */
  follow(follower: BucketFollower): void {
    this.#follower = follower;
    for (const [reader, { kv, revision }] of this.#ready) follower(reader, kv, revision);
  }

  /** The buckets ready now. */
  opened(): Map<string | undefined, KV> {
    return new Map([...this.#ready].map(([reader, { kv }]) => [reader, kv]));
  }
}

/** Every catalog bucket there is, by reader: the shared one (undefined, created if missing), and the members' own. */
async function openBuckets(create: (bucket: string) => Promise<KV>, kvm: Kvm): Promise<Map<string | undefined, KV>> {
  const buckets = new Map<string | undefined, KV>([[undefined, await create(CATALOG_BUCKET)]]);
  for await (const status of kvm.list()) {
    if (status.bucket.startsWith(SCOPED_CATALOG_BUCKET_PREFIX))
      buckets.set(status.bucket.slice(SCOPED_CATALOG_BUCKET_PREFIX.length), await kvm.open(status.bucket));
  }
  return buckets;
}

/** Every bucket's values by item (catalog-items.ts), and the valid entries. */
async function readAll(
  buckets: ReadonlyMap<string | undefined, KV>,
  log: Logger,
): Promise<{ entries: CatalogEntry[]; values: Map<string, StoredValue> }> {
  const entries: CatalogEntry[] = [];
  const values = new Map<string, StoredValue>();
  for (const [reader, kv] of buckets) {
    const stored = await readCatalog(kv, log);
    entries.push(...stored.entries);
    for (const [key, value] of stored.values) values.set(reader === undefined ? key : scopedItem(reader, key), value);
  }
  return { entries, values };
}

interface Term {
  readonly signal: AbortSignal;
  /** Resolves with the recovered catalog, or undefined when the term ended first. */
  readonly ready: Promise<Active | undefined>;
  active: Active | undefined;
}

function localityOf(member: MemberCluster): ClusterLocality {
  const { region, zone, network, labels, gatewayAddresses } = member.spec;
  return {
    region: region ?? '',
    zone: zone ?? '',
    network: network ?? '',
    labels: labels ?? {},
    gatewayAddresses: gatewayAddresses ?? [],
  };
}

export function createCatalog(options: CatalogOptions): Catalog {
  const { nc, memberCache, log } = options;
  const concurrency = options.publishConcurrency ?? CATALOG_DEFAULTS.publishConcurrency;
  const publishTimeoutMs = options.publishTimeoutMs ?? CATALOG_DEFAULTS.publishTimeoutMs;
  const rereadIntervalMs = options.rereadIntervalMs ?? CATALOG_DEFAULTS.rereadIntervalMs;
  const limits = options.limits ?? DEFAULT_CATALOG_LIMITS;
  const publisherOptions = {
    concurrency,
    maxEntryBytes: limits.entryMaxBytes,
    tombstoneRetentionMs: options.tombstoneRetentionMs ?? CATALOG_DEFAULTS.tombstoneRetentionMs,
    conflictRetryMs: options.conflictRetryMs ?? CATALOG_DEFAULTS.conflictRetryMs,
    ...(options.now ? { now: options.now } : {}),
  };
  const memberLocality = (clusterId: string): ClusterLocality | undefined => {
    const member = memberCache.get(clusterId);
    return isCurrentMember(member) ? localityOf(member) : undefined;
  };
  const bucketSettings = options.buckets ?? SINGLE_SERVER_BUCKETS;
  const createBucket = (bucket: string): Promise<KV> => openBucket(nc, bucket, bucketSettings, log);
  let term: Term | undefined;

  /** The items a change of these services touches: the shared view, and the own view of every member that has or had one. */
  function itemsOf(active: Pick<Active, 'state' | 'readers'>, keys: Iterable<string>): string[] {
    const items: string[] = [];
    for (const key of keys) {
      items.push(key);
      let readers = active.readers.get(key);
      const named = active.state.hasScopedExport(key) ? active.state.scopedReaders(key) : [];
      if (named.length > 0 && !readers) {
        readers = new Set();
        active.readers.set(key, readers);
      }
      for (const reader of named) readers?.add(reader);
      for (const reader of readers ?? []) items.push(scopedItem(reader, key));
    }
    return items;
  }

  /** The items a membership change touches: those of moved or departed exporters, and every member's own views (a reader may have left or joined). */
  function membersChanged(active: Active): string[] {
    return itemsOf(active, new Set([...active.state.syncMembers(), ...active.readers.keys()]));
  }

  /** What an item should hold: the shared view, or a member's own view (see the opening comment). */
  function desiredOf(state: CatalogState, item: string): string | undefined {
    const { reader, key } = parseItem(item);
    return reader === undefined ? state.entryJson(key) : state.scopedEntryJson(key, reader);
  }

  async function recover(signal: AbortSignal): Promise<Active | undefined> {
    for (let attempt = 1; !signal.aborted; attempt++) {
      try {
        const all = await openBuckets(createBucket, new Kvm(nc));
        const existing = new Map<string | undefined, { kv: KV; revision: number }>();
        for (const [reader, kv] of all)
          existing.set(reader, { kv, revision: (await kv.status()).streamInfo.state.last_seq });
        const stored = await readAll(all, log);
        const state = new CatalogState(memberLocality, { limits, ...(options.now ? { now: options.now } : {}) });
        const keys = state.restore(stored.entries);
        const readers = new Map<string, Set<string>>();
        for (const item of stored.values.keys()) {
          const { reader, key } = parseItem(item);
          if (reader === undefined) continue;
          const forKey = readers.get(key) ?? new Set<string>();
          readers.set(key, forKey.add(reader));
        }
        const buckets = new CatalogBuckets(createBucket, existing);
        const publisher = new CatalogPublisher(
          (reader) => buckets.get(reader),
          (item) => desiredOf(state, item),
          stored.values,
          log,
          publisherOptions,
        );
        publisher.enqueue(new Set([...itemsOf({ state, readers }, keys), ...stored.values.keys()]));
        log.info(
          { entries: stored.entries.length, items: stored.values.size, scopedBuckets: all.size - 1 },
          'service catalog recovered from the buckets',
        );
        return { buckets, state, publisher, recovered: stored.entries.length, readers };
      } catch (err) {
        const retryInMs = backoffDelay(attempt, CATALOG_READ_BACKOFF);
        log.warn(
          { err: describeError(err), attempt, retryInMs },
          'could not read the service catalog from NATS; retrying',
        );
        await sleep(retryInMs, undefined, { signal }).catch(() => undefined);
      }
    }
    return undefined;
  }

  async function reread(active: Active): Promise<void> {
    try {
      active.publisher.reread((await readAll(active.buckets.opened(), log)).values);
    } catch (err) {
      log.warn({ err: describeError(err) }, 'could not re-read the service catalog buckets');
    }
  }

  /** Follows one bucket for the whole term (re-watching after a watch ends), handing every change to the publisher. */
  async function watchOwnBucket(
    publisher: CatalogPublisher,
    kv: KV,
    reader: string | undefined,
    from: number,
    signal: AbortSignal,
  ): Promise<void> {
    let revision = from;
    for (let failures = 0; !signal.aborted;) {
      try {
        const watch = await kv.watch({ resumeFromRevision: revision + 1 });
        const stop = (): void => watch.stop();
        signal.addEventListener('abort', stop, { once: true });
        if (signal.aborted) stop(); // aborted while the watch was being set up: the listener never fires
        try {
          for await (const change of watch) {
            failures = 0;
            revision = Math.max(revision, change.revision);
            publisher.observe(
              reader === undefined ? change.key : scopedItem(reader, change.key),
              change.operation === 'PUT' ? change.string() : undefined,
              change.revision,
            );
          }
        } finally {
          signal.removeEventListener('abort', stop);
        }
      } catch (err) {
        log.warn(
          { err: describeError(err), bucket: bucketOf(reader), revision },
          'watch of a catalog bucket failed; watching again',
        );
      }
      if (!signal.aborted)
        await sleep(backoffDelay(++failures, { initialMs: 250, maxMs: 5_000 }), undefined, { signal }).catch(
          () => undefined,
        );
    }
  }

  /** The current term's catalog once recovered; refuses when not leading. */
  async function activeCatalog(): Promise<Active> {
    const current = term;
    if (!current || current.signal.aborted)
      throw new IsthmusError(
        'ISTHMUS_NOT_LEADER',
        'the service catalog is not active on this replica; try another hub endpoint',
      );
    const active =
      current.active ?? (await Promise.race([current.ready, sleep(publishTimeoutMs, undefined, { ref: false })]));
    if (!active || current !== term)
      throw new IsthmusError(
        'ISTHMUS_HUB_UNAVAILABLE',
        'the service catalog is still being recovered from NATS; report again shortly',
      );
    return active;
  }

  const sink: Catalog['sink'] = {
    async report(clusterId: string, request: ReportExportsRequest): Promise<ReportExportsResponse> {
      const active = await activeCatalog();
      const { state, publisher } = active;
      const result = state.apply(clusterId, request);
      const dirty = itemsOf(active, result.dirty);
      publisher.enqueue(dirty);
      // A repeated report waits for whatever of the cluster's entries is still unpublished.
      const items = result.applied ? dirty : itemsOf(active, state.exportsOf(clusterId));
      if (!(await publisher.published(items, publishTimeoutMs))) {
        throw new IsthmusError(
          'ISTHMUS_HUB_UNAVAILABLE',
          `the catalog did not reach NATS within ${publishTimeoutMs} ms; report again`,
        );
      }
      return { appliedGeneration: result.appliedGeneration, conflicts: state.conflictsOf(clusterId) };
    },

    wantsReport(clusterId, exportCount) {
      const state = term?.active?.state;
      return (
        state !== undefined && (!state.reportedThisTerm(clusterId) || state.exportCount(clusterId) !== exportCount)
      );
    },
  };

  function endTerm(): void {
    const ended = term;
    term = undefined;
    void ended?.active?.publisher.fence();
  }

  return {
    sink,

    async onStartedLeading(signal) {
      endTerm();
      const ready = recover(signal);
      const current: Term = { signal, ready, active: undefined };
      term = current;
      const active = await ready;
      if (!active) return;
      if (current !== term) {
        await active.publisher.fence();
        return;
      }
      current.active = active;
      active.publisher.enqueue(membersChanged(active)); // members may have changed while recovering
      const timer = setInterval(() => void reread(active), rereadIntervalMs);
      const watches: Promise<void>[] = [];
      active.buckets.follow((reader, kv, from) =>
        watches.push(watchOwnBucket(active.publisher, kv, reader, from, signal)),
      );
      await whenAborted(signal);
      clearInterval(timer);
      await Promise.all(watches);
      if (current === term) await active.publisher.drain();
    },

    onStoppedLeading() {
      endTerm();
    },

    onMembersChanged() {
      const active = term?.active;
      if (active) active.publisher.enqueue(membersChanged(active));
    },

    stats() {
      const active = term?.active;
      return active && { ...active.publisher.stats(), recovered: active.recovered };
    },
  };
}
