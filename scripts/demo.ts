// The README's main command (npm run demo): a local federation on embedded defaults.
// Today it brings up the test bed (clusters + NATS) and prints how to reach each part.
import { z } from 'zod';
import { runComponent } from '../common/main.ts';
import { startTestbed } from '../e2e/testbed/index.ts';

const demoConfig = z
  .object({
    clusters: z.number().int().min(1).max(8).default(3),
    /** Tear down after this many seconds (0 = run until Ctrl-C). */
    exitAfterSeconds: z.number().int().min(0).default(0),
  })
  .strict();

await runComponent({
  name: 'demo',
  configSchema: demoConfig,
  stopTimeoutMs: 30_000,
  start: async (config, log) => {
    const bed = await startTestbed({ clusters: config.clusters });
    const lines = [
      '',
      `Isthmus local federation: ${bed.clusters.length} clusters + NATS, ready in ${bed.startupMs} ms`,
      ...bed.clusters.map((c) => `  ${c.name.padEnd(10)} ${c.server}   kubectl --kubeconfig ${c.kubeconfigPath} get memberclusters,serviceexports -A`),
      `  nats       ${bed.nats?.url ?? '(off)'}   (JetStream, TLS; client certificates from ${bed.dir}/nats)`,
      '',
      config.exitAfterSeconds > 0 ? `Tearing down in ${config.exitAfterSeconds} s.` : 'Press Ctrl-C to tear everything down.',
      '',
    ];
    process.stdout.write(lines.join('\n'));
    let timer: NodeJS.Timeout | undefined;
    if (config.exitAfterSeconds > 0) timer = setTimeout(() => process.kill(process.pid, 'SIGTERM'), config.exitAfterSeconds * 1000);
    return {
      stop: async () => {
        clearTimeout(timer);
        await bed[Symbol.asyncDispose]();
        log.info('test bed removed');
      },
    };
  },
});
