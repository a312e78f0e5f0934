// A whole federation on one machine, for the demo (`npm run demo`), the benchmarks and the e2e
// suites: simulated member clusters (etcd + kube-apiserver processes), NATS, hub replicas, agents
// and gateways as real processes on loopback or in network namespaces, all torn down with
// `await using`. Nothing here is needed to run Isthmus in a real cluster.
export {
  Federation,
  GATEWAY_STATUS_PORT,
  NATS_TLS_SECRET,
  type CliResult,
  type FederationOptions,
  type HubReplica,
} from './federation/index.ts';
export {
  createBackend,
  createServiceExport,
  exportService,
  importedSlices,
  readServiceExport,
  readServiceImport,
  unexportService,
  type BackendSpec,
} from './exports.ts';
export * from './testbed/index.ts';
