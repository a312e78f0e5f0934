// The federated service catalog's public entry point: the hub wires createCatalog into its
// leader election, its MemberCluster informer and ReportExports.
export { CATALOG_DEFAULTS, createCatalog, type Catalog, type CatalogOptions, type CatalogStats } from './catalog.ts';
