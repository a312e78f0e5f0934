// The importing side of the spoke agent: catalog entries from the hub's NATS KV become
// ServiceImports, per-cluster EndpointSlices and clusterset Services in this cluster.
export {
  createImporter,
  IMPORTER_DEFAULTS,
  ownedServiceImports,
  type Importer,
  type ImporterOptions,
} from './importer.ts';
export { registerImporterMetrics, type ImporterStatus } from './metrics.ts';
export type { ImportConflict } from './reconciler.ts';
export type { CatalogListener } from './catalog-watcher.ts';
export type { OutboundAddress, OutboundListener } from './desired-objects.ts';
export {
  ANNOTATION_DERIVED_SERVICE,
  ANNOTATION_GATEWAY_ADDRESSES,
  ANNOTATION_LOCALITY,
  ANNOTATION_READY_ENDPOINTS,
  FIELD_MANAGER,
  LABEL_MANAGED_BY,
  derivedServiceName,
  sourceSliceName,
} from './naming.ts';
