// isthmus-gateway: `node east-west-gateway/main.ts --config gateway.yaml [--set key=value ...]`.
import { setDefaultHighWaterMark } from 'node:stream';
import { runComponent } from '../common/main.ts';
import { gatewayConfigSchema } from './config.ts';
import { startGateway } from './gateway.ts';

// Bulk transfers move in fewer, larger chunks (a TLS record holds 16 KiB; the 16 KiB default
// buffer made each pipe step one record); memory per idle connection does not grow: buffers fill
// only while data waits.
setDefaultHighWaterMark(false, 128 * 1024);

await runComponent({
  name: 'gateway',
  configSchema: gatewayConfigSchema,
  start: (config, log) => startGateway(config, log),
  stopTimeoutMs: 60_000,
});
