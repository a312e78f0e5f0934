// The federated service catalog: the ExportsSink behind ReportExports and the leader-only life
// cycle around it. Each leadership term recovers the per-cluster exports from the bucket (so a
// new leader rewrites nothing that is already right), then applies reports and membership
// changes and publishes what changed. A report is acknowledged once its entries are in the
// bucket; a graceful hand-over flushes the queue while the lease is still held, and no write
// starts after leadership is lost.
import { setTimeout as sleep } from 'node:timers/promises';
import { Kvm, type KV } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import type { MemberCluster } from '../../common/api/isthmus.ts';
import { CATALOG_BUCKET } from '../../common/catalog.ts';
import { IsthmusError, describeError } from '../../common/errors.ts';
import type { ReportExportsRequest, ReportExportsResponse } from '../../common/hub-api/index.ts';
import type { Logger } from '../../common/logger.ts';
import type { ExportsSink } from '../hub-service.ts';
import { isCurrentMember, type MemberCache } from '../membership.ts';
import { readCatalog } from './catalog-bucket.ts';
import { CatalogPublisher, type PublisherStats } from './catalog-publisher.ts';
import { CatalogState, DEFAULT_CATALOG_LIMITS, type CatalogLimits } from './catalog-state.ts';
import type { ClusterLocality } from './resolution.ts';
import { backoffDelay } from '../../common/backoff.ts';

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
  /** How often the leader re-reads the bucket to repair writes it did not make. Default 60 s. */
  readonly rereadIntervalMs?: number;
  /** Per-cluster export quota and entry size limit (defaults: DEFAULT_CATALOG_LIMITS). */
  readonly limits?: CatalogLimits;
  /** The hub's clock (exportCreatedAt is clamped to it). */
  readonly now?: () => Date;
}

export const CATALOG_DEFAULTS = { publishConcurrency: 64, publishTimeoutMs: 5_000, rereadIntervalMs: 60_000 } as const;

export interface CatalogStats extends PublisherStats {
  /** Entries recovered from the bucket at the start of this term. */
  readonly recovered: number;
}

export interface Catalog {
  /** Pass to startHub / createHubHandlers as the ReportExports sink. */
  readonly sink: ExportsSink;
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
  const memberLocality = (clusterId: string): ClusterLocality | undefined => {
    const member = memberCache.get(clusterId);
    return isCurrentMember(member) ? localityOf(member) : undefined;
  };
  let term: Term | undefined;

  async function recover(signal: AbortSignal): Promise<Active | undefined> {
    for (let attempt = 1; !signal.aborted; attempt++) {
      try {
        const kv = await new Kvm(nc).create(CATALOG_BUCKET, { history: 1 });
        const stored = await readCatalog(kv, log);
        const state = new CatalogState(memberLocality, { limits, ...(options.now ? { now: options.now } : {}) });
        const keys = state.restore(stored.entries);
        const publisher = new CatalogPublisher(kv, (key) => state.entryJson(key), new Map(stored.values), log, { concurrency, maxEntryBytes: limits.entryMaxBytes });
        publisher.enqueue(new Set([...keys, ...stored.values.keys()]));
        log.info({ entries: stored.values.size }, 'service catalog recovered from the bucket');
        return { kv, state, publisher, recovered: stored.values.size };
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

  /** The current term's catalog once recovered; refuses when not leading. */
  async function activeCatalog(): Promise<Active> {
    const current = term;
    if (!current || current.signal.aborted) throw new IsthmusError('ISTHMUS_NOT_LEADER', 'the service catalog is not active on this replica; try another hub endpoint');
    const active = current.active ?? (await Promise.race([current.ready, sleep(publishTimeoutMs, undefined, { ref: false })]));
    if (!active || current !== term) throw new IsthmusError('ISTHMUS_HUB_UNAVAILABLE', 'the service catalog is still being recovered from NATS; report again shortly');
    return active;
  }

  const sink: ExportsSink = {
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
      await untilAborted(signal);
      clearInterval(timer);
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
