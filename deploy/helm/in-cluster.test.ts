// In-cluster configuration: the hub, the agent and the gateway started as the chart starts them (a config
// file without `kubeconfig`), with a service account token, CA and namespace mounted where the
// kubelet mounts them (/var/run/secrets/kubernetes.io/serviceaccount, here a bind mount in a
// private mount namespace) and KUBERNETES_SERVICE_HOST/PORT set, reach the real apiserver as
// their service accounts: client-node's in-cluster loading, not a kubeconfig.
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify as stringifyYaml } from 'yaml';
import { freePort } from '../../local/testbed/ports.ts';
import { startTestbed, waitForProcess, type LocalCluster, type Testbed } from '../../local/testbed/index.ts';
import { MINIMAL_VALUES, RELEASE_NAMESPACE, installChartRbac, renderChart } from './chart.ts';
import { parseAuditLog } from './rbac-usage.ts';

const repo = fileURLToPath(new URL('../../', import.meta.url));
const SYSTEM_NS = RELEASE_NAMESPACE;

// Inside its own mount namespace: an empty /run (so nothing of the host's shows), the service
// account directory bound where client-node looks, then the component itself.
const MOUNT_AND_EXEC = [
  'set -e',
  'mount -t tmpfs -o mode=0755 isthmus-run /run',
  'mkdir -p /run/secrets/kubernetes.io/serviceaccount',
  'mount --bind "$1" /run/secrets/kubernetes.io/serviceaccount',
  'shift',
  'exec "$@"',
].join('\n');

const isRoot = process.getuid?.() === 0;
if (!isRoot) console.info('in-cluster configuration test skipped: mount namespaces need root');

describe.skipIf(!isRoot)('components in a pod-like environment', () => {
  let bed: Testbed;
  let cluster: LocalCluster;
  beforeAll(async () => {
    bed = await startTestbed({ clusters: 1, nats: false, audit: true });
    cluster = bed.clusters[0] as LocalCluster;
    for (const values of [MINIMAL_VALUES.hub, MINIMAL_VALUES.member])
      await installChartRbac(cluster, await renderChart(values));
  });
  afterAll(async () => {
    await bed?.[Symbol.asyncDispose]();
  });

  it.each([
    [
      'hub',
      'hub/main.ts',
      async (dir: string) => {
        // NATS files that exist, for a NATS that does not: the hub's Kubernetes work comes first,
        // then it keeps retrying NATS.
        const natsFile = join(dir, 'nats.pem');
        await writeFile(natsFile, cluster.caPem);
        return {
          grpc: { host: '127.0.0.1', port: await freePort() },
          status: { host: '127.0.0.1', port: await freePort() },
          nats: {
            urls: [`tls://127.0.0.1:${await freePort()}`],
            caFile: natsFile,
            certFile: natsFile,
            keyFile: natsFile,
          },
        };
      },
    ],
    [
      'agent',
      'spoke-agent/main.ts',
      async (_dir: string) => ({
        clusterId: 'cluster-a',
        status: { host: '127.0.0.1', port: await freePort() },
        dns: { host: '127.0.0.1', port: await freePort() },
      }),
    ],
    [
      'gateway',
      'east-west-gateway/main.ts',
      async (_dir: string) => ({
        clusterId: 'cluster-a',
        inbound: { host: '127.0.0.1', port: await freePort() },
        outbound: { address: '127.0.0.1' },
        status: { host: '127.0.0.1', port: await freePort() },
      }),
    ],
  ] as const)('the %s authenticates with its mounted service account token', async (component, main, config) => {
    const account = `isthmus-${component}`;
    const dir = join(bed.dir, `pod-${component}`);
    const serviceAccountDir = join(dir, 'serviceaccount');
    await mkdir(serviceAccountDir, { recursive: true });
    await writeFile(join(serviceAccountDir, 'token'), await cluster.serviceAccountToken(SYSTEM_NS, account));
    await writeFile(join(serviceAccountDir, 'ca.crt'), cluster.caPem);
    await writeFile(join(serviceAccountDir, 'namespace'), SYSTEM_NS);
    const configFile = join(dir, 'config.yaml');
    await writeFile(configFile, stringifyYaml(await config(dir)));
    const { KUBECONFIG: _none, ...env } = process.env;
    const started = await bed.startProcess({
      name: `${component}-in-cluster`,
      command: 'unshare',
      args: [
        '--mount',
        '--propagation',
        'private',
        'sh',
        '-c',
        MOUNT_AND_EXEC,
        'sh',
        serviceAccountDir,
        process.execPath,
        join(repo, main),
        '--config',
        configFile,
      ],
      env: {
        ...env,
        KUBERNETES_SERVICE_HOST: '127.0.0.1',
        KUBERNETES_SERVICE_PORT: new URL(cluster.server).port,
        // No ~/.kube/config to prefer over the mounted token.
        HOME: dir,
      },
    });
    const user = `system:serviceaccount:${SYSTEM_NS}:${account}`;
    const requests = async (): Promise<ReturnType<typeof parseAuditLog>> =>
      parseAuditLog(await readFile(cluster.auditLogPath as string, 'utf8')).filter((r) => r.user === user);
    await waitForProcess(
      started,
      `${component} requests as ${user}`,
      // The apiserver names the user only once the token authenticated; an agent not yet joined
      // also gets 404s (no join request yet), which count.
      async () => (await requests()).length >= 3,
      60_000,
      200,
    );
    expect((await requests()).filter((r) => r.code === 401 || r.code === 403)).toEqual([]);
    await started.stop();
  });
});
