// isthmus-gateway: `node east-west-gateway/main.ts --config gateway.yaml [--set key=value ...]`.
import { runComponent } from '../common/main.ts';
import { gatewayConfigSchema } from './config.ts';
import { startGateway } from './gateway.ts';

await runComponent({ name: 'gateway', configSchema: gatewayConfigSchema, start: (config, log) => startGateway(config, log), stopTimeoutMs: 60_000 });
