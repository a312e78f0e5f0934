// The federated service catalog's public entry point (the hub wires createCatalog into its
// leader election and ReportExports).
export { CATALOG_DEFAULTS, createCatalog, type Catalog, type CatalogOptions, type CatalogStats } from './catalog.ts';
export { resolveEntry, type ClusterExport, type ClusterLocality } from './resolution.ts';
