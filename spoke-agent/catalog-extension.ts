// The service catalog on top of membership: the exporter reports this cluster's ServiceExports
// to the hub; the importer turns the hub's KV catalog into ServiceImports and EndpointSlices, and
// tells the exporter about conflicts the hub found later (another cluster's export).
import type { Registry } from 'prom-client';
import { parseCatalogKey } from '../common/catalog.ts';
import type { Logger } from '../common/logger.ts';
import { connectNats } from '../common/nats.ts';
import type { MemberExtension } from './agent.ts';
import { createExporter, hubReportSink, type Exporter } from './exports/index.ts';
import { createImporter, type Importer } from './imports/index.ts';

export function catalogExtension(log: Logger, registry?: Registry): MemberExtension {
  let exporter: Exporter | undefined;
  let importer: Importer | undefined;
  let exporterStopped: Promise<void> | undefined;
  let closeNats: (() => Promise<void>) | undefined;
  return {
    async start({ kc, credentials, session, signal }) {
      exporter = createExporter({ kc, clusterId: credentials.clusterId, hub: hubReportSink(session), log: log.child({ part: 'exports' }) });
      exporterStopped = exporter.start(signal).catch((err: unknown) => log.error({ err }, 'exporter stopped with an error'));
      // NATS is optional for membership but needed for imports: while it is unreachable the
      // connection keeps retrying and nothing imported is touched.
      const nc = await connectNats({
        urls: credentials.natsUrls,
        name: `isthmus-agent-${credentials.clusterId}`,
        tls: { ca: credentials.trustBundlePem, cert: credentials.agentCertificate, key: credentials.agentKey },
        log,
      });
      closeNats = () => nc.drain();
      importer = createImporter({ kc, clusterId: credentials.clusterId, nc, log: log.child({ part: 'imports' }), ...(registry ? { registry } : {}) });
      const target = exporter;
      importer.onEntry((key, entry) => {
        const { namespace, name } = entry ?? parseCatalogKey(key);
        target.applyCatalogConflicts(namespace, name, entry?.conflicts ?? []);
      });
      await importer.start(signal);
    },
    exportCount: () => exporter?.exportCount() ?? 0,
    stopped: async () => {
      await exporterStopped;
      await importer?.stop();
      await closeNats?.();
    },
  };
}
