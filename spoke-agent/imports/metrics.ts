// Prometheus view of the importer, read from its status at scrape time.
import { Counter, Gauge, type Registry } from 'prom-client';
import type { ImportConflict } from './reconciler.ts';

export interface ImporterStatus {
  /** The catalog's first snapshot is applied and the caches are filled: reconciling has begun. */
  readonly synced: boolean;
  readonly entries: number;
  readonly revision: number;
  readonly watchRestarts: number;
  readonly malformedEntries: number;
  /** API writes (create, patch, delete, status) the importer made. */
  readonly writes: number;
  /** Reconciles run (one per key taken from the queue, conflict retries included). */
  readonly reconciles: number;
  /** Keys waiting for or in reconcile (not those waiting for a retry delay). */
  readonly pending: number;
  readonly conflicts: readonly ImportConflict[];
}

/** A counter whose total lives elsewhere. */
function mirroredCounter(registry: Registry, name: string, help: string, read: () => number): void {
  new Counter({
    name,
    help,
    registers: [registry],
    collect() {
      this.reset();
      this.inc(read());
    },
  });
}

function mirroredGauge(registry: Registry, name: string, help: string, read: () => number): void {
  new Gauge({
    name,
    help,
    registers: [registry],
    collect() {
      this.set(read());
    },
  });
}

export function registerImporterMetrics(registry: Registry, status: () => ImporterStatus): void {
  mirroredGauge(registry, 'isthmus_agent_catalog_entries', 'Catalog entries the agent knows.', () => status().entries);
  mirroredGauge(
    registry,
    'isthmus_agent_catalog_revision',
    'Highest catalog bucket revision processed.',
    () => status().revision,
  );
  mirroredGauge(registry, 'isthmus_agent_catalog_synced', '1 once the first catalog snapshot is applied.', () =>
    status().synced ? 1 : 0,
  );
  mirroredCounter(
    registry,
    'isthmus_agent_catalog_watch_restarts_total',
    'Catalog watches started again after they ended or failed.',
    () => status().watchRestarts,
  );
  mirroredCounter(
    registry,
    'isthmus_agent_catalog_malformed_entries_total',
    'Catalog entries skipped as malformed.',
    () => status().malformedEntries,
  );
  mirroredCounter(
    registry,
    'isthmus_agent_import_writes_total',
    'Kubernetes API writes made by the importer.',
    () => status().writes,
  );
  mirroredCounter(
    registry,
    'isthmus_agent_import_reconciles_total',
    'Import reconciles run, retries included.',
    () => status().reconciles,
  );
  mirroredGauge(
    registry,
    'isthmus_agent_import_pending',
    'Catalog keys waiting for or in reconcile.',
    () => status().pending,
  );
  mirroredGauge(
    registry,
    'isthmus_agent_import_conflicts',
    'Objects not imported because one of that name exists that the agent does not own.',
    () => status().conflicts.length,
  );
}
