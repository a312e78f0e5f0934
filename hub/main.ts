// isthmus-hub: `node hub/main.ts --config hub.yaml [--set key=value ...]`.
import { runComponent } from '../common/main.ts';
import { hubConfigSchema } from './config.ts';
import { startHub } from './hub.ts';

await runComponent({ name: 'hub', configSchema: hubConfigSchema, start: (config, log) => startHub(config, log) });
