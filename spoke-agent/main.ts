// isthmus-agent: `node spoke-agent/main.ts --config agent.yaml [--set key=value ...]`.
import { runComponent } from '../common/main.ts';
import { processMetricsRegistry } from '../common/status-server.ts';
import { startAgent } from './agent.ts';
import { catalogExtension } from './catalog-extension.ts';
import { agentConfigSchema } from './config.ts';
import { startClustersetDns } from './dns/index.ts';
import { gatewayProvisioner } from './gateway-provisioner.ts';

await runComponent({
  name: 'agent',
  configSchema: agentConfigSchema,
  start: async (config, log) => {
    const registry = processMetricsRegistry('spoke-agent');
    const catalog = catalogExtension({
      log,
      registry,
      namespace: config.namespace,
      gatewayName: config.gatewayName,
      vanishedGraceMs: config.catalogVanishedGrace,
    });
    // Listening before the agent joins: until the imports are cached, the zone answers SERVFAIL.
    const dns = config.dns.enabled
      ? await startClustersetDns({
          host: config.dns.host,
          port: config.dns.port,
          serviceImports: () => catalog.serviceImports(),
          log: log.child({ part: 'dns' }),
          registry,
        })
      : undefined;
    try {
      const agent = await startAgent(config, log, [
        catalog,
        gatewayProvisioner({ log, namespace: config.namespace, gatewayName: config.gatewayName }),
      ]);
      return {
        stop: async () => {
          await agent.stop();
          await dns?.close();
        },
      };
    } catch (err) {
      await dns?.close();
      throw err;
    }
  },
});
