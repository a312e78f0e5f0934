// The README's main command (npm run demo): a local federation on embedded defaults — a hub
// cluster running the hub, member clusters each with an agent, NATS — with every member joined
// through a bootstrap token and a sample service exported from the first member and imported
// into all, then kept running until Ctrl-C.
import { z } from 'zod';
import { runComponent } from '../common/main.ts';
import { ensureNamespace } from '../common/kube/index.ts';
import { exportService, readServiceImport } from '../e2e/catalog/exports.ts';
import { Federation } from '../e2e/federation/index.ts';
import { waitFor } from '../e2e/testbed/index.ts';

const demoConfig = z
  .object({
    members: z.number().int().min(1).max(4).default(3),
    hubReplicas: z.number().int().min(1).max(2).default(1),
    /** Tear down after this many seconds (0 = run until Ctrl-C). */
    exitAfterSeconds: z.number().int().min(0).default(0),
  })
  .strict();

await runComponent({
  name: 'demo',
  configSchema: demoConfig,
  stopTimeoutMs: 30_000,
  start: async (config, log) => {
    const fed = await Federation.start({ members: config.members, hubReplicas: config.hubReplicas, heartbeatInterval: '2s' });
    try {
      const token = await fed.createToken(['--usages', String(config.members), '--ttl', '10m']);
      for (const member of fed.members) {
        const joined = await fed.join(member.name, token);
        if (joined.code !== 0) throw new Error(`${member.name} did not join: ${joined.stderr}`);
        log.info({ cluster: member.name }, 'joined');
      }
      // A sample export: shop/cart in the first member, imported everywhere through the hub.
      const [first] = fed.members;
      for (const member of fed.members) await ensureNamespace(member.kubeConfig(), 'shop');
      if (first) await exportService(first.kubeConfig(), { namespace: 'shop', name: 'cart', ports: [{ name: 'http', port: 8080 }], endpoints: [{ ip: '198.51.100.10', zone: 'eu-west-1a' }] });
      await waitFor('shop/cart imported in every member', async () => (await Promise.all(fed.members.map((m) => readServiceImport(m.kubeConfig(), 'shop', 'cart')))).every(Boolean), 30_000);
      const imports = await Promise.all(
        fed.members.map(async (m) => {
          const imported = await readServiceImport(m.kubeConfig(), 'shop', 'cart');
          return `  ${m.name.padEnd(9)} ServiceImport shop/cart   ips ${(imported?.spec?.ips ?? []).join(',') || '-'}   from ${(imported?.status?.clusters ?? []).map((c) => c.cluster).join(', ')}`;
        }),
      );
      await new Promise((r) => setTimeout(r, 2_500));
      const list = await fed.cli(['cluster', 'list'], 'hub');
      const cli = 'npx isthmus';
      process.stdout.write(
        [
          '',
          `Isthmus local federation: hub + ${fed.members.length} member clusters + NATS (test bed ready in ${fed.bed.startupMs} ms)`,
          '',
          `  hub       ${fed.hubEndpoints.join(', ')}   (gRPC, mTLS)   kubeconfig ${fed.hubCluster.kubeconfigPath}`,
          ...fed.members.map((c) => `  ${c.name.padEnd(9)} ${c.server}   kubeconfig ${c.kubeconfigPath}`),
          `  nats      ${fed.bed.nats?.url ?? ''}`,
          '',
          list.stdout,
          `ServiceExport shop/cart in ${first?.name ?? ''}, imported through the hub:`,
          ...imports,
          '',
          'Try:',
          `  ${cli} cluster list --kubeconfig ${fed.hubCluster.kubeconfigPath}`,
          `  ${cli} check --kubeconfig ${fed.members[0]?.kubeconfigPath ?? ''}`,
          `  kubectl --kubeconfig ${fed.members[1]?.kubeconfigPath ?? ''} get serviceimports,endpointslices -n shop`,
          `  ${cli} trust rotate --kubeconfig ${fed.hubCluster.kubeconfigPath}   (then: trust status)`,
          '',
          config.exitAfterSeconds > 0 ? `Tearing down in ${config.exitAfterSeconds} s.` : 'Press Ctrl-C to tear everything down.',
          '',
        ].join('\n'),
      );
    } catch (err) {
      await fed[Symbol.asyncDispose]();
      throw err;
    }
    let timer: NodeJS.Timeout | undefined;
    if (config.exitAfterSeconds > 0) timer = setTimeout(() => process.kill(process.pid, 'SIGTERM'), config.exitAfterSeconds * 1000);
    return {
      stop: async () => {
        clearTimeout(timer);
        await fed[Symbol.asyncDispose]();
        log.info('federation removed');
      },
    };
  },
});
