// The exporting side of the agent: watches ServiceExport, Service and EndpointSlice in its own
// cluster and keeps the hub's view of this cluster's exports and each ServiceExport's conditions
// level-based. Two queues of `namespace/name` keys: `exports` recomputes a key's ExportedService
// from the informer caches (in memory, so a change reaches the report without waiting on API
// writes); `statuses` writes the ServiceExport's conditions when they changed.
import type { KubeConfig, KubernetesObject, V1EndpointSlice, V1Service } from '@kubernetes/client-node';
import { ENDPOINTSLICE_MANAGED_BY_AGENT, LABEL_ENDPOINTSLICE_MANAGED_BY } from '../../common/api/index.ts';
import type { CatalogConflict } from '../../common/catalog.ts';
import { formatIssues } from '../../common/config.ts';
import { IsthmusError } from '../../common/errors.ts';
import {
  Informer,
  WorkQueue,
  isConflict,
  isNotFound,
  kinds,
  objectKey,
  type WorkResult,
} from '../../common/kube/index.ts';
import { whenAborted, type Runnable } from '../../common/lifecycle.ts';
import type { Logger } from '../../common/logger.ts';
import { exportConditions } from './export-conditions.ts';
import { ExportReporter, type ReportTiming } from './export-reporter.ts';
import { evaluateExport, type ExportVerdict } from './exported-service.ts';
import type { ReportSink } from './report-sink.ts';
import {
  readServiceExport,
  serviceExportResource,
  writeServiceExportConditions,
  type ServiceExportView,
} from './service-exports.ts';

/** The label the EndpointSlice controller puts on a Service's slices. */
const SERVICE_NAME_LABEL = 'kubernetes.io/service-name';
// Slices of imported services (written by this agent) are not this cluster's endpoints.
const LOCAL_SLICES_SELECTOR = `${SERVICE_NAME_LABEL},${LABEL_ENDPOINTSLICE_MANAGED_BY}!=${ENDPOINTSLICE_MANAGED_BY_AGENT}`;
// A status write that lost to a newer object waits for the informer to catch up.
const STALE_CACHE_RETRY_MS = 50;

export interface ExporterOptions {
  /** The agent's own cluster. */
  readonly kc: KubeConfig;
  readonly clusterId: string;
  /** Where reports go: `hubReportSink(session)` in the agent. */
  readonly hub: ReportSink;
  readonly log: Logger;
  readonly timing?: Partial<ReportTiming>;
  /** Concurrent ServiceExport status writes. Default 4. */
  readonly statusWorkers?: number;
}

export interface Exporter extends Runnable {
  /**
   * Watches, reports and writes conditions until `signal` aborts; resolves once everything has
   * stopped. The export set is first reported when the caches are synced (even if empty). An
   * exporter runs once.
   */
  run(signal: AbortSignal): Promise<void>;
  /** Resolves when the caches are synced and the initial export set is complete; rejects if stopped before. */
  synced(): Promise<void>;
  /** Valid exports of this cluster (the heartbeat's exportCount). */
  exportCount(): number;
  /**
   * A conflict verdict the hub published in the catalog after this cluster's report (e.g. another
   * cluster exported the same service later with other ports). Pass the catalog entry's
   * `conflicts` as they are, on every change of the entry (`[]` once it has none, and when the
   * entry is deleted): the ones naming this cluster become the export's Conflict condition.
   * Ignored for services this cluster does not export.
   */
  applyCatalogConflicts(namespace: string, name: string, conflicts: readonly CatalogConflict[]): void;
}

export function createExporter(options: ExporterOptions): Exporter {
  const { kc, clusterId, hub, log } = options;
  const exportsQueue = new WorkQueue<string>({ name: 'exports', logger: log });
  const statusQueue = new WorkQueue<string>({ name: 'export-status', logger: log });
  const reporter = new ExportReporter({
    sink: hub,
    log,
    timing: options.timing,
    onHubViewChange: (key) => statusQueue.add(key),
  });

  const serviceExports = new Informer<KubernetesObject>({
    kubeConfig: kc,
    resource: serviceExportResource,
    logger: log,
    onEvent: (_type, object) => exportsQueue.add(objectKey(object)),
  });
  // Services and slices matter only for keys that are exported; the export's own events cover the rest.
  const enqueueIfExported = (key: string): void => {
    if (serviceExports.getByKey(key)) exportsQueue.add(key);
  };
  const services = new Informer<V1Service>({
    kubeConfig: kc,
    resource: kinds.services,
    logger: log,
    onEvent: (_type, service) => enqueueIfExported(objectKey(service)),
  });
  const slices = new Informer<V1EndpointSlice>({
    kubeConfig: kc,
    resource: kinds.endpointSlices,
    labelSelector: LOCAL_SLICES_SELECTOR,
    logger: log,
    onEvent: (_type, slice) =>
      enqueueIfExported(`${slice.metadata?.namespace ?? ''}/${slice.metadata?.labels?.[SERVICE_NAME_LABEL] ?? ''}`),
  });
  const informers = [serviceExports, services, slices] as const;

  let resolveSynced!: () => void;
  let rejectSynced!: (err: Error) => void;
  const syncedPromise = new Promise<void>((resolve, reject) => {
    resolveSynced = resolve;
    rejectSynced = reject;
  });
  syncedPromise.catch(() => undefined); // callers that never ask must not see an unhandled rejection
  let started = false;

  /** The export as the caches show it now; undefined when there is none (or it is being deleted). */
  function current(key: string): { view: ServiceExportView; verdict: ExportVerdict } | undefined {
    const object = serviceExports.getByKey(key);
    if (!object) return undefined;
    const read = readServiceExport(object);
    if (!read.ok) {
      log.error({ key, err: formatIssues(read.error) }, 'ServiceExport unreadable; not exported');
      return undefined;
    }
    const { view } = read;
    if (view.deleting) return undefined;
    const { namespace, name } = view;
    const serviceSlices = slices.list(namespace).filter((s) => s.metadata?.labels?.[SERVICE_NAME_LABEL] === name);
    return { view, verdict: evaluateExport(view, services.get(namespace, name), serviceSlices) };
  }

  function refreshExport(key: string): void {
    const now = current(key);
    if (now?.verdict.valid) reporter.upsert(key, now.view.uid, now.verdict.service);
    else reporter.remove(key);
    if (now) statusQueue.add(key);
  }

  async function writeStatus(key: string): Promise<WorkResult> {
    const now = current(key);
    if (!now) return;
    const { view, verdict } = now;
    const { conditions, changed } = exportConditions(
      view.conditions,
      verdict,
      reporter.hubView(key),
      view.generation,
      new Date(),
    );
    if (!changed) return;
    try {
      await writeServiceExportConditions(kc, view, conditions);
    } catch (err) {
      if (isNotFound(err)) return; // deleted meanwhile: its delete event removes it from the set
      if (isConflict(err)) return { requeueAfterMs: STALE_CACHE_RETRY_MS };
      throw err;
    }
  }

  async function run(signal: AbortSignal): Promise<void> {
    const aborted = whenAborted(signal);
    for (const informer of informers) informer.start();
    const workers: Promise<void>[] = [];
    try {
      const synced = await Promise.race([
        Promise.all(informers.map((i) => i.synced())).then(() => true),
        aborted.then(() => false),
      ]);
      if (!synced) return;
      // Report nothing before the whole set is known: a partial report would unexport the rest.
      for (const object of serviceExports.list()) refreshExport(objectKey(object));
      reporter.open();
      log.info({ clusterId, exports: reporter.size }, 'exporter synced');
      resolveSynced();
      workers.push(exportsQueue.run(1, refreshExport), statusQueue.run(options.statusWorkers ?? 4, writeStatus));
      await aborted;
    } finally {
      rejectSynced(new IsthmusError('ISTHMUS_STOPPED', 'exporter stopped before its caches synced'));
      await Promise.all([exportsQueue.shutDown(), statusQueue.shutDown()]);
      await Promise.all(workers);
      await reporter.close();
      await Promise.all(informers.map((i) => i.stop()));
    }
  }

  return {
    run(signal) {
      if (started) return Promise.reject(new IsthmusError('ISTHMUS_INPUT_INVALID', 'an exporter runs once'));
      started = true;
      return run(signal);
    },
    synced: () => syncedPromise,
    exportCount: () => reporter.size,
    applyCatalogConflicts(namespace, name, conflicts) {
      const mine = conflicts
        .filter((c) => c.clusters.includes(clusterId))
        .map(({ type, message }) => ({ type, message }));
      reporter.applyConflicts(`${namespace}/${name}`, mine);
    },
  };
}
