// The exporting side of the spoke agent: this cluster's ServiceExports → ReportExports to the hub,
// and the hub's verdict → ServiceExport conditions.
//
//   const exporter = createExporter({ kc, clusterId, hub: hubReportSink(session), log });
//   const stopped = exporter.run(signal);   // runs until `signal` aborts
//   await exporter.synced();                  // optional: the first report is on its way
//   exporter.exportCount();                   // for heartbeats
//   exporter.applyCatalogConflicts(ns, name, entry.conflicts);   // from the catalog watcher
export { createExporter, type Exporter, type ExporterOptions } from './exporter.ts';
export { hubReportSink, type ReportSink } from './report-sink.ts';
export type { ReportTiming } from './export-reporter.ts';
