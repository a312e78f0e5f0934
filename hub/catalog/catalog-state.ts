// The leader's in-memory catalog: every member cluster's latest export set and the entries
// resolved from them. A report marks only the services whose inputs changed (so does a change of
// a cluster's locality or its removal from the federation); a marked entry is resolved again when
// it is next read, so a burst of reports touching one service resolves it once, not per report.
//
// Generations: an agent numbers its reports above both its last one and the wall clock (ms), so a
// restarted agent's reports are newer than its previous life's. A report is applied when its
// generation is above the last applied one; otherwise it is stale (a retry, or a late delivery)
// and ignored, and the answer names the generation held, which the agent then goes past (an
// earlier process whose clock ran ahead).
//
// What one member cannot do to the others (issue 8, hole 8): win every conflict with an invented
// old timestamp (an export's exportCreatedAt is clamped to no earlier than when this hub first saw
// that cluster's export, and that clamped time is what the bucket keeps across leaders); export
// more services than its quota (the report is refused as a whole, nothing changes); or grow an
// entry past the size NATS can carry (that one export is left as it was and reported back as an
// EntryTooLarge conflict, every other export of the report is applied).
import { catalogKey, parseCatalogKey, type CatalogConflict, type CatalogEntry } from '../../common/catalog.ts';
import { IsthmusError } from '../../common/errors.ts';
import type { ExportConflict, ExportedService, ReportExportsRequest } from '../../common/hub-api/index.ts';
import { resolveEntry, type ClusterExport, type ClusterLocality } from './resolution.ts';

/** A current member's locality; undefined for a cluster that is not (or no longer) a member. */
export type MemberLocality = (clusterId: string) => ClusterLocality | undefined;

/** A restarted agent counts its reports from here again. */

export interface CatalogLimits {
  /** Services one cluster may export. */
  readonly exportsPerCluster: number;
  /** Largest entry JSON in bytes (below NATS's max_payload). */
  readonly entryMaxBytes: number;
}

export const DEFAULT_CATALOG_LIMITS: CatalogLimits = { exportsPerCluster: 5_000, entryMaxBytes: 512 * 1024 };

/** Conflict type of an export refused because its entry would be too large. */
export const ENTRY_TOO_LARGE = 'EntryTooLarge';

export interface CatalogStateOptions {
  readonly limits?: CatalogLimits;
  /** The hub's clock: an export is never older than when the hub first saw it. */
  readonly now?: () => Date;
}

interface ClusterState {
  /** Of the last applied report; undefined for state recovered from the bucket. */
  generation: number | undefined;
  services: Map<string, ExportedService>;
  /** The locality (JSON) the cluster's entries were last resolved with. */
  locality: string;
  /** Exports of the last report left out because their entry would be too large: key → message. */
  rejected: Map<string, string>;
}

interface ResolvedEntry {
  /** The shared view (the exports every member may import); undefined when every export is scoped. */
  readonly json: string | undefined;
  /** Over every export: the entry's largest form, and the conflicts the exporters are told. */
  readonly fullJson: string;
  readonly conflicts: readonly CatalogConflict[];
  /** Each current member some export scopes the service to → its own view (the exports it may import). */
  readonly scoped: ReadonlyMap<string, string>;
}

const NO_SCOPED_VIEWS: ReadonlyMap<string, string> = new Map();

export interface ApplyResult {
  readonly applied: boolean;
  readonly appliedGeneration: number;
  /** Keys whose inputs changed: their entries are due for publishing. */
  readonly dirty: readonly string[];
}

/** Sorted lists, so the same export reported in another order is the same export. */
function normalizeExport(service: ExportedService): ExportedService {
  return {
    namespace: service.namespace,
    name: service.name,
    type: service.type,
    ports: service.ports.map((p) => ({ name: p.name, protocol: p.protocol, port: p.port, appProtocol: p.appProtocol })),
    sessionAffinity: service.sessionAffinity,
    sessionAffinityTimeoutSeconds: service.sessionAffinityTimeoutSeconds,
    exportCreatedAt: service.exportCreatedAt,
    endpoints: service.endpoints
      .map((e) => ({ zone: e.zone, ready: e.ready, total: e.total }))
      .sort((a, b) => (a.zone < b.zone ? -1 : a.zone > b.zone ? 1 : 0)),
    allowedClusters: [...new Set(service.allowedClusters)].sort(),
    ipFamilies: [...service.ipFamilies],
    internalTrafficPolicy: service.internalTrafficPolicy,
    trafficDistribution: service.trafficDistribution,
    exportedLabels: { ...service.exportedLabels },
    exportedAnnotations: { ...service.exportedAnnotations },
  };
}

/** The later of two RFC 3339 times (the reported one when they are equal). */
function later(reported: string, floor: string): string {
  return Date.parse(reported) >= Date.parse(floor) ? reported : floor;
}

function sameExport(a: ExportedService, b: ExportedService): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

/**
 * A normalized export's JSON length, measured once per export object (never changed once
 * normalized): every report sizes each entry it touches from all of that entry's exports, and
 * serializing them all again was the largest part of applying a report at scale (500 clusters ×
 * 100 exports). Only the number is kept, so the cache costs next to no memory.
 */
const exportSizes = new WeakMap<ExportedService, number>();
function exportSize(service: ExportedService): number {
  let size = exportSizes.get(service);
  if (size === undefined) {
    size = JSON.stringify(service).length;
    exportSizes.set(service, size);
  }
  return size;
}

function isApplicable(generation: number, lastApplied: number | undefined): boolean {
  return lastApplied === undefined || generation > lastApplied;
}

export class CatalogState {
  readonly #memberLocality: MemberLocality;
  readonly #clusters = new Map<string, ClusterState>();
  /** Catalog key → the clusters exporting it. */
  readonly #exporters = new Map<string, Set<string>>();
  readonly #entries = new Map<string, ResolvedEntry>();
  /** Keys whose entry must be resolved again before it is read. */
  readonly #dirty = new Set<string>();
  readonly #limits: CatalogLimits;
  readonly #now: () => Date;

  constructor(memberLocality: MemberLocality, options: CatalogStateOptions = {}) {
    this.#memberLocality = memberLocality;
    this.#limits = options.limits ?? DEFAULT_CATALOG_LIMITS;
    this.#now = options.now ?? (() => new Date());
  }

  /** Applies a cluster's full export set (see the generation rules above). */
  apply(clusterId: string, request: ReportExportsRequest): ApplyResult {
    const locality = this.#memberLocality(clusterId);
    if (!locality) throw new IsthmusError('ISTHMUS_CLUSTER_NOT_MEMBER', `${clusterId} reported exports`);
    const cluster = this.#clusters.get(clusterId);
    if (cluster && !isApplicable(request.generation, cluster.generation)) {
      return { applied: false, appliedGeneration: cluster.generation ?? 0, dirty: [] };
    }
    if (request.services.length > this.#limits.exportsPerCluster) {
      throw new IsthmusError(
        'ISTHMUS_EXPORT_QUOTA_EXCEEDED',
        `${clusterId} reported ${request.services.length} exported services; each cluster may export at most ${this.#limits.exportsPerCluster} (hub limits.exportsPerCluster). Nothing of this report was applied`,
      );
    }
    const seenAt = this.#now().toISOString();
    const next = new Map<string, ExportedService>();
    for (const service of request.services) {
      const key = catalogKey(service.namespace, service.name);
      if (next.has(key))
        throw new IsthmusError(
          'ISTHMUS_INPUT_INVALID',
          `ReportExports lists ${service.namespace}/${service.name} twice`,
        );
      const firstSeen = cluster?.services.get(key)?.exportCreatedAt ?? seenAt;
      next.set(key, normalizeExport({ ...service, exportCreatedAt: later(service.exportCreatedAt, firstSeen) }));
    }
    const state: ClusterState = cluster ?? {
      generation: undefined,
      services: new Map(),
      locality: JSON.stringify(locality),
      rejected: new Map(),
    };
    this.#clusters.set(clusterId, state);
    const touched = this.#relocate(state, locality);
    for (const [key, service] of next) {
      const previous = state.services.get(key);
      if (previous && sameExport(previous, service)) continue;
      touched.push(key);
      if (!previous) this.#addExporter(key, clusterId);
    }
    for (const key of state.services.keys()) {
      if (next.has(key)) continue;
      touched.push(key);
      this.#removeExporter(key, clusterId);
    }
    const previous = state.services;
    state.services = next;
    state.generation = request.generation;
    const dirty = this.#markDirty(touched);
    state.rejected = this.#refuseOversized(clusterId, state, previous, dirty);
    return { applied: true, appliedGeneration: request.generation, dirty };
  }

  /** Puts back the previous export (or none) of every touched entry that grew too large. */
  #refuseOversized(
    clusterId: string,
    state: ClusterState,
    previous: ReadonlyMap<string, ExportedService>,
    touched: readonly string[],
  ): Map<string, string> {
    const rejected = new Map<string, string>();
    const limit = this.#limits.entryMaxBytes;
    for (const key of touched) {
      const service = state.services.get(key);
      if (!service || !this.#mayExceed(key, limit)) continue;
      const size = Buffer.byteLength(this.#entry(key)?.fullJson ?? '');
      if (size <= limit) continue;
      const before = previous.get(key);
      if (before) {
        state.services.set(key, before);
      } else {
        state.services.delete(key);
        this.#removeExporter(key, clusterId);
      }
      this.#dirty.add(key);
      rejected.set(
        key,
        `the catalog entry of ${service.namespace}/${service.name} would be ${size} bytes with this export, over the hub's limit of ${limit} (limits.catalogEntryMaxBytes); ${before ? 'the previous export is kept' : 'it is not exported'} [ISTHMUS_CATALOG_ENTRY_TOO_LARGE]`,
      );
    }
    return rejected;
  }

  /** Cheap upper estimate first, so the common small entry is not resolved on every report. */
  #mayExceed(key: string, limit: number): boolean {
    let estimate = 0;
    for (const clusterId of this.#exporters.get(key) ?? []) {
      const service = this.#clusters.get(clusterId)?.services.get(key);
      estimate += 2_048 + (service ? exportSize(service) : 2) * 2;
    }
    return estimate > limit;
  }

  /**
   * Takes the per-cluster exports kept in published entries (a new leader's starting point),
   * then drops clusters that are no longer members. Returns every key it touched.
   */
  restore(entries: Iterable<CatalogEntry>): string[] {
    const touched: string[] = [];
    for (const entry of entries) {
      const key = catalogKey(entry.namespace, entry.name);
      touched.push(key);
      for (const cluster of entry.clusters) {
        let state = this.#clusters.get(cluster.clusterId);
        if (!state) {
          state = { generation: undefined, services: new Map(), locality: '', rejected: new Map() };
          this.#clusters.set(cluster.clusterId, state);
        }
        state.services.set(key, normalizeExport({ ...cluster, namespace: entry.namespace, name: entry.name }));
        this.#addExporter(key, cluster.clusterId);
      }
    }
    this.syncMembers();
    return this.#markDirty(touched);
  }

  /**
   * Drops the exports of clusters that left and marks the entries of those that moved, and every
   * scoped service (a member named by it may have joined or left).
   */
  syncMembers(): string[] {
    const touched = [...this.#exporters.keys()].filter(
      (key) => this.hasScopedExport(key) || this.#entries.get(key)?.scoped.size,
    );
    for (const [clusterId, state] of this.#clusters) {
      const locality = this.#memberLocality(clusterId);
      if (locality) {
        touched.push(...this.#relocate(state, locality));
        continue;
      }
      for (const key of state.services.keys()) {
        touched.push(key);
        this.#removeExporter(key, clusterId);
      }
      this.#clusters.delete(clusterId);
    }
    return this.#markDirty(touched);
  }

  /** The shared view's canonical JSON, undefined when no cluster exports the service to every member. */
  entryJson(key: string): string | undefined {
    return this.#entry(key)?.json;
  }

  /**
   * The canonical JSON of what `reader` may import of the service: its own view where an export
   * scopes the service to it, else the shared view; undefined when nothing is left for it (or it
   * is not a member).
   */
  scopedEntryJson(key: string, reader: string): string | undefined {
    const entry = this.#entry(key);
    if (!entry || this.#memberLocality(reader) === undefined) return undefined;
    return entry.scoped.get(reader) ?? entry.json;
  }

  /** The members some export of the service is scoped to. */
  scopedReaders(key: string): string[] {
    return [...(this.#entry(key)?.scoped.keys() ?? [])];
  }

  /** Whether some export of the service is scoped to some clusters (then its views depend on membership too). */
  hasScopedExport(key: string): boolean {
    for (const clusterId of this.#exporters.get(key) ?? []) {
      if ((this.#clusters.get(clusterId)?.services.get(key)?.allowedClusters.length ?? 0) > 0) return true;
    }
    return false;
  }

  /** Conflicts on the cluster's exports that involve the cluster. */
  conflictsOf(clusterId: string): ExportConflict[] {
    const cluster = this.#clusters.get(clusterId);
    const services = cluster?.services;
    if (!services) return [];
    const found: ExportConflict[] = [];
    for (const [key, message] of cluster.rejected) {
      const { namespace, name } = parseCatalogKey(key);
      found.push({ namespace, name, type: ENTRY_TOO_LARGE, message });
    }
    for (const [key, service] of services) {
      for (const c of this.#entry(key)?.conflicts ?? []) {
        if (c.clusters.includes(clusterId))
          found.push({ namespace: service.namespace, name: service.name, type: c.type, message: c.message });
      }
    }
    return found;
  }

  /** Whether a report of the cluster was applied by this state (not only recovered from the bucket). */
  reportedThisTerm(clusterId: string): boolean {
    return this.#clusters.get(clusterId)?.generation !== undefined;
  }

  /** The exports of the cluster's last report, those left out as too large included (what its heartbeat counts). */
  exportCount(clusterId: string): number {
    const cluster = this.#clusters.get(clusterId);
    return cluster ? new Set([...cluster.services.keys(), ...cluster.rejected.keys()]).size : 0;
  }

  /** Keys of the cluster's current exports. */
  exportsOf(clusterId: string): string[] {
    return [...(this.#clusters.get(clusterId)?.services.keys() ?? [])];
  }

  #relocate(state: ClusterState, locality: ClusterLocality): string[] {
    const json = JSON.stringify(locality);
    if (json === state.locality) return [];
    state.locality = json;
    return [...state.services.keys()];
  }

  #addExporter(key: string, clusterId: string): void {
    let exporters = this.#exporters.get(key);
    if (!exporters) {
      exporters = new Set();
      this.#exporters.set(key, exporters);
    }
    exporters.add(clusterId);
  }

  #removeExporter(key: string, clusterId: string): void {
    const exporters = this.#exporters.get(key);
    exporters?.delete(clusterId);
    if (exporters?.size === 0) this.#exporters.delete(key);
  }

  #markDirty(keys: readonly string[]): string[] {
    const unique = [...new Set(keys)];
    for (const key of unique) this.#dirty.add(key);
    return unique;
  }

  #entry(key: string): ResolvedEntry | undefined {
    if (this.#dirty.delete(key)) this.#resolve(key);
    return this.#entries.get(key);
  }

  #resolve(key: string): void {
    const exports: ClusterExport[] = [];
    for (const clusterId of this.#exporters.get(key) ?? []) {
      const service = this.#clusters.get(clusterId)?.services.get(key);
      if (service) exports.push({ clusterId, service });
    }
    const first = exports[0]?.service;
    const view = (visible: readonly ClusterExport[]): string | undefined => {
      const entry = first && resolveEntry(first.namespace, first.name, visible, this.#memberLocality);
      return entry && JSON.stringify(entry);
    };
    const full = first && resolveEntry(first.namespace, first.name, exports, this.#memberLocality);
    if (!full) {
      this.#entries.delete(key);
      return;
    }
    const fullJson = JSON.stringify(full);
    const readers = new Set(
      exports.flatMap((e) => e.service.allowedClusters).filter((reader) => this.#memberLocality(reader) !== undefined),
    );
    if (readers.size === 0 && exports.every((e) => e.service.allowedClusters.length === 0)) {
      this.#entries.set(key, { json: fullJson, fullJson, conflicts: full.conflicts, scoped: NO_SCOPED_VIEWS });
      return;
    }
    const scoped = new Map<string, string>();
    for (const reader of [...readers].sort()) {
      const json = view(
        exports.filter((e) => e.service.allowedClusters.length === 0 || e.service.allowedClusters.includes(reader)),
      );
      if (json) scoped.set(reader, json);
    }
    this.#entries.set(key, {
      json: view(exports.filter((e) => e.service.allowedClusters.length === 0)),
      fullJson,
      conflicts: full.conflicts,
      scoped,
    });
  }
}
