// isthmus-agent: `node spoke-agent/main.ts --config agent.yaml [--set key=value ...]`.
import { runComponent } from '../common/main.ts';
import { processMetricsRegistry } from '../common/status-server.ts';
import { startAgent } from './agent.ts';
import { catalogExtension } from './catalog-extension.ts';
import { agentConfigSchema } from './config.ts';
import { gatewayProvisioner } from './gateway-provisioner.ts';

await runComponent({
  name: 'agent',
  configSchema: agentConfigSchema,
  start: (config, log) =>
    startAgent(config, log, [
      catalogExtension({ log, registry: processMetricsRegistry('spoke-agent'), namespace: config.namespace, gatewayName: config.gatewayName, vanishedGraceMs: config.catalogVanishedGrace }),
      gatewayProvisioner({ log, namespace: config.namespace, gatewayName: config.gatewayName }),
    ]),
});
