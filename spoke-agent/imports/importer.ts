// The importing side of the agent: the member's catalog (the shared bucket and its own scoped one) feeds catalog keys into a rate-limited work
// queue, and the reconciler writes ServiceImports, EndpointSlices and clusterset Services into
// this cluster. Changes to the importer's own objects and new namespaces queue their keys too.
import type { KubeConfig, KubernetesObject } from '@kubernetes/client-node';
import type { NatsConnection } from '@nats-io/transport-node';
import {
  LABEL_SERVICE_NAME,
  MCS_GROUP,
  MCS_VERSION,
  SERVICE_IMPORT_KIND,
  SERVICE_IMPORT_PLURAL,
} from '../../common/api/mcs.ts';
import { catalogKey, parseCatalogKey, scopedCatalogBucket, type CatalogEntry } from '../../common/catalog.ts';
import { IsthmusError } from '../../common/errors.ts';
import { Informer, WorkQueue, customResource, kinds } from '../../common/kube/index.ts';
import { whenAborted, type Runnable } from '../../common/lifecycle.ts';
import type { Logger } from '../../common/logger.ts';
import type { CatalogListener, CatalogWatcherOptions } from './catalog-watcher.ts';
import type { OutboundListener } from './desired-objects.ts';
import type { ImporterStatus } from './metrics.ts';
import { OWNED_SELECTOR, OWNED_SLICE_SELECTOR } from './naming.ts';
import { ObjectWriter } from './object-writer.ts';
import { ImportReconciler } from './reconciler.ts';
import { MemberCatalog } from './member-catalog.ts';

export interface ImporterOptions {
  /** The agent's own cluster. */
  readonly kc: KubeConfig;
  /** This cluster's id: decides which exports it may import (`mayImport`). */
  readonly clusterId: string;
  /** A connection to the hub's NATS that reconnects forever (`connectNats`). */
  readonly nc: NatsConnection;
  readonly log: Logger;
  /**
   * The local gateway's outbound listener per imported port. Absent or undefined for a port: the
   * clusterset Service has no endpoints for it yet; call `resync()` when listeners change.
   */
  readonly outboundListener?: OutboundListener;
  /** Whether the hub marked a source cluster's endpoints stale (it has been unavailable too long). */
  readonly isStale?: (clusterId: string) => boolean;
  /** Keys reconciled in parallel. Default 4. */
  readonly workers?: number;
  /** How soon a key whose object name is taken by a foreign object is looked at again. Default 30 s. */
  readonly conflictRetryMs?: number;
  readonly watchRetry?: CatalogWatcherOptions['retry'];
  /** How long an import outlives a catalog key that vanished without a tombstone. Default CATALOG_WATCHER_DEFAULTS.vanishedGraceMs. */
  readonly vanishedGraceMs?: number;
  /**
   * The caller's `ownedServiceImports` informer, when it outlives this importer (new credentials
   * mean a new importer) or is read while NATS is unreachable (the clusterset DNS). The importer
   * starts it and never stops it. Default: one of its own.
   */
  readonly serviceImports?: Informer<KubernetesObject>;
}

export interface Importer extends Runnable {
  /**
   * Watches and, once the catalog and caches are synced, reconciles until `signal` aborts; then
   * stops writing and resolves. What it wrote stays. An importer runs once.
   */
  run(signal: AbortSignal): Promise<void>;
  /** Resolves once the catalog's first snapshot is applied and the caches are filled. */
  synced(): Promise<void>;
  /** Tells `listener` of every change of a catalog entry (conflicts included), from the first snapshot on; returns its removal. */
  onEntry(listener: CatalogListener): () => void;
  /** The current catalog entry of a service, if any. */
  entry(namespace: string, name: string): CatalogEntry | undefined;
  /** Reconciles every known key again, e.g. after the gateway's listeners changed. */
  resync(): void;
  status(): ImporterStatus;
}

export const IMPORTER_DEFAULTS = { workers: 4, conflictRetryMs: 30_000 } as const;

export const serviceImportResource = customResource<KubernetesObject>({
  group: MCS_GROUP,
  version: MCS_VERSION,
  kind: SERVICE_IMPORT_KIND,
  plural: SERVICE_IMPORT_PLURAL,
  namespaced: true,
});

/** An informer of the ServiceImports the importer owns (and writes), not started. */
export function ownedServiceImports(kc: KubeConfig, log: Logger): Informer<KubernetesObject> {
  return new Informer({ kubeConfig: kc, resource: serviceImportResource, labelSelector: OWNED_SELECTOR, logger: log });
}

export function createImporter(options: ImporterOptions): Importer {
  const { kc, clusterId } = options;
  const log = options.log.child({ part: 'importer' });
  const watcher = new MemberCatalog({
    nc: options.nc,
    scopedBucket: scopedCatalogBucket(clusterId),
    log,
    retry: options.watchRetry,
    ...(options.vanishedGraceMs ? { vanishedGraceMs: options.vanishedGraceMs } : {}),
  });
  const queue = new WorkQueue<string>({ name: 'imports', logger: log, maxDelayMs: 30_000 });
  const namespaces = new Informer({ kubeConfig: kc, resource: kinds.namespaces, logger: log });
  const serviceImports = options.serviceImports ?? ownedServiceImports(kc, log);
  const services = new Informer({
    kubeConfig: kc,
    resource: kinds.services,
    labelSelector: OWNED_SELECTOR,
    logger: log,
  });
  const slices = new Informer({
    kubeConfig: kc,
    resource: kinds.endpointSlices,
    labelSelector: OWNED_SLICE_SELECTOR,
    logger: log,
  });
  const owned = [serviceImports, services, slices] as const;
  let writes = 0;
  let reconciles = 0;
  const reconciler = new ImportReconciler({
    clusterId,
    catalog: watcher,
    namespaces,
    serviceImports,
    services,
    slices,
    writer: new ObjectWriter(kc, () => writes++),
    outboundListener: options.outboundListener,
    isStale: options.isStale,
    log,
    conflictRetryMs: options.conflictRetryMs ?? IMPORTER_DEFAULTS.conflictRetryMs,
  });

  const enqueueOwner = (object: KubernetesObject): void => {
    const name = object.metadata?.labels?.[LABEL_SERVICE_NAME];
    const namespace = object.metadata?.namespace;
    if (name && namespace) queue.add(catalogKey(namespace, name));
  };
  const removeHandlers = owned.map((informer) => informer.addEventHandler((_type, object) => enqueueOwner(object)));
  namespaces.addEventHandler((type, namespace) => {
    if (type !== 'add') return;
    for (const key of watcher.keys()) {
      if (parseCatalogKey(key).namespace === namespace.metadata?.name) queue.add(key);
    }
  });
  watcher.onChange((key) => queue.add(key));

  // Catalog keys and the keys of owned objects: an object whose key left the catalog while the
  // agent was away is found this way.
  const resync = (): void => {
    for (const key of watcher.keys()) queue.add(key);
    for (const informer of owned) for (const object of informer.list()) enqueueOwner(object);
  };

  const syncedPromise = Promise.all([
    watcher.synced(),
    namespaces.synced(),
    ...owned.map((informer) => informer.synced()),
  ]).then(() => undefined);
  syncedPromise.catch(() => undefined); // callers that never ask must not see an unhandled rejection
  let started = false;
  let synced = false;

  const status = (): ImporterStatus => ({
    synced,
    entries: watcher.size,
    revision: watcher.revision,
    watchRestarts: watcher.restarts,
    malformedEntries: watcher.malformed,
    writes,
    reconciles,
    pending: queue.length + queue.processing,
    conflicts: reconciler.conflicts(),
  });

  async function run(signal: AbortSignal): Promise<void> {
    if (started) throw new IsthmusError('ISTHMUS_INPUT_INVALID', 'an importer runs once');
    started = true;
    for (const informer of [namespaces, ...owned]) informer.start();
    const watching = watcher.run(signal);
    syncedPromise.then(
      () => {
        if (signal.aborted) return;
        synced = true;
        resync();
        void queue.run(options.workers ?? IMPORTER_DEFAULTS.workers, async (key) => {
          const began = performance.now();
          const result = await reconciler.reconcile(key);
          reconciles++;
          log.debug({ key, ms: Math.round((performance.now() - began) * 10) / 10 }, 'import reconciled');
          return result;
        });
        log.info({ entries: watcher.size }, 'importer synced; reconciling');
      },
      () => undefined,
    );
    await whenAborted(signal);
    await watching;
    await queue.shutDown();
    for (const remove of removeHandlers) remove();
    await Promise.all(
      [namespaces, ...owned]
        .filter((informer) => informer !== options.serviceImports)
        .map((informer) => informer.stop()),
    );
  }

  return {
    run,
    synced: () => syncedPromise,
    onEntry: (listener) => watcher.onChange(listener),
    entry: (namespace, name) => watcher.get(catalogKey(namespace, name)),
    resync,
    status,
  };
}
