// The federated service catalog: the ExportsSink behind ReportExports and the leader-only life
// cycle around it. Each leadership term recovers the per-cluster exports from the bucket (so a
// new leader rewrites nothing that is already right), then applies reports and membership
// changes and publishes what changed. A report is acknowledged once its entries are in the
// bucket; a graceful hand-over flushes the queue while the lease is still held, and no write
// starts after leadership is lost. The leader watches its own bucket, so a key someone else
// deleted or changed is repaired within moments (the periodic re-read is the backstop). A cluster
// that has not reported to this leader yet, or whose heartbeat counts other exports than this
// leader holds, is asked for its full export set (how a wiped bucket is rebuilt from the members).
import { setTimeout as sleep } from 'node:timers/promises';
import type { KV } from '@nats-io/kv';
import { backoffDelay } from '../../common/backoff.ts';
import type { NatsConnection } from '@nats-io/transport-node';
import type { MemberCluster } from '../../common/api/isthmus.ts';
import { CATALOG_BUCKET } from '../../common/catalog.ts';
import { IsthmusError, describeError } from '../../common/errors.ts';
import type { ReportExportsRequest, ReportExportsResponse } from '../../common/hub-api/index.ts';
import type { Logger } from '../../common/logger.ts';
import type { ExportsSink } from '../hub-service.ts';
import { isCurrentMember, type MemberCache } from '../membership.ts';
import { SINGLE_SERVER_BUCKETS, openBucket, type BucketSettings } from '../nats-buckets.ts';
import { readCatalog } from './catalog-bucket.ts';
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

export const CATALOG_DEFAULTS = { publishConcurrency: 64, publishTimeoutMs: 5_000, rereadIntervalMs: 60_000, tombstoneRetentionMs: 24 * 60 * 60 * 1000, conflictRetryMs: 2_000 } as const;

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
  readonly kv: KV;
  readonly state: CatalogState;
  readonly publisher: CatalogPublisher;
  readonly recovered: number;
  /** The bucket's last revision before it was read: the leader's watch resumes after it. */
  readonly revision: number;
}

interface Term {
  readonly signal: AbortSignal;
  /** Resolves with the recovered catalog, or undefined when the term ended first. */
  readonly ready: Promise<Active | undefined>;
  active: Active | undefined;
}

function localityOf(member: MemberCluster): ClusterLocality {
  const { region, zone, network, labels, gatewayAddresses } = member.spec;
  return { region: region ?? '', zone: zone ?? '', network: network ?? '', labels: labels ?? {}, gatewayAddresses: gatewayAddresses ?? [] };
}

function untilAborted(signal: AbortSignal): Promise<void> {
  return signal.aborted ? Promise.resolve() : new Promise((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }));
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
  let term: Term | undefined;

  async function recover(signal: AbortSignal): Promise<Active | undefined> {
    for (let attempt = 1; !signal.aborted; attempt++) {
      try {
        const kv = await openBucket(nc, CATALOG_BUCKET, options.buckets ?? SINGLE_SERVER_BUCKETS, log);
        const revision = (await kv.status()).streamInfo.state.last_seq;
        const stored = await readCatalog(kv, log);
        const state = new CatalogState(memberLocality, { limits, ...(options.now ? { now: options.now } : {}) });
        const keys = state.restore(stored.entries);
        const publisher = new CatalogPublisher(kv, (key) => state.entryJson(key), stored.values, log, publisherOptions);
        publisher.enqueue(new Set([...keys, ...stored.values.keys()]));
        log.info({ entries: stored.entries.length, keys: stored.values.size }, 'service catalog recovered from the bucket');
        return { kv, state, publisher, recovered: stored.entries.length, revision };
      } catch (err) {
        const retryInMs = backoffDelay(attempt, CATALOG_READ_BACKOFF);
        log.warn({ err: describeError(err), attempt, retryInMs }, 'could not read the service catalog from NATS; retrying');
        await sleep(retryInMs, undefined, { signal }).catch(() => undefined);
      }
    }
    return undefined;
  }

  async function reread(active: Active): Promise<void> {
    try {
      active.publisher.reread((await readCatalog(active.kv, log)).values);
    } catch (err) {
      log.warn({ err: describeError(err) }, 'could not re-read the service catalog bucket');
    }
  }

  /** Follows the bucket for the whole term (re-watching after a watch ends), handing every change to the publisher. */
  async function watchOwnBucket(active: Active, signal: AbortSignal): Promise<void> {
    let revision = active.revision;
    for (let failures = 0; !signal.aborted; ) {
      try {
        const watch = await active.kv.watch({ resumeFromRevision: revision + 1 });
        const stop = (): void => watch.stop();
        signal.addEventListener('abort', stop, { once: true });
        try {
          for await (const change of watch) {
            failures = 0;
            revision = Math.max(revision, change.revision);
            active.publisher.observe(change.key, change.operation === 'PUT' ? change.string() : undefined, change.revision);
          }
        } finally {
          signal.removeEventListener('abort', stop);
        }
      } catch (err) {
        log.warn({ err: describeError(err), revision }, 'watch of the catalog bucket failed; watching again');
      }
      if (!signal.aborted) await sleep(backoffDelay(++failures, { initialMs: 250, maxMs: 5_000 }), undefined, { signal }).catch(() => undefined);
    }
  }

  /** The current term's catalog once recovered; refuses when not leading. */
  async function activeCatalog(): Promise<Active> {
    const current = term;
    if (!current || current.signal.aborted) throw new IsthmusError('ISTHMUS_NOT_LEADER', 'the service catalog is not active on this replica; try another hub endpoint');
    const active = current.active ?? (await Promise.race([current.ready, sleep(publishTimeoutMs, undefined, { ref: false })]));
    if (!active || current !== term) throw new IsthmusError('ISTHMUS_HUB_UNAVAILABLE', 'the service catalog is still being recovered from NATS; report again shortly');
    return active;
  }

  const sink: Catalog['sink'] = {
    async report(clusterId: string, request: ReportExportsRequest): Promise<ReportExportsResponse> {
      const { state, publisher } = await activeCatalog();
      const result = state.apply(clusterId, request);
      publisher.enqueue(result.dirty);
      // A repeated report waits for whatever of the cluster's entries is still unpublished.
      const keys = result.applied ? result.dirty : state.exportsOf(clusterId);
      if (!(await publisher.published(keys, publishTimeoutMs))) {
        throw new IsthmusError('ISTHMUS_HUB_UNAVAILABLE', `the catalog did not reach NATS within ${publishTimeoutMs} ms; report again`);
      }
      return { appliedGeneration: result.appliedGeneration, conflicts: state.conflictsOf(clusterId) };
    },

    wantsReport(clusterId, exportCount) {
      const state = term?.active?.state;
      return state !== undefined && (!state.reportedThisTerm(clusterId) || state.exportCount(clusterId) !== exportCount);
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
      active.publisher.enqueue(active.state.syncMembers()); // members may have changed while recovering
      const timer = setInterval(() => void reread(active), rereadIntervalMs);
      const watching = watchOwnBucket(active, signal);
      await untilAborted(signal);
      clearInterval(timer);
      await watching;
      if (current === term) await active.publisher.drain();
    },

    onStoppedLeading() {
      endTerm();
    },

    onMembersChanged() {
      const active = term?.active;
      if (active) active.publisher.enqueue(active.state.syncMembers());
    },

    stats() {
      const active = term?.active;
      return active && { ...active.publisher.stats(), recovered: active.recovered };
    },
  };
}
