// The federation as containers (issue 9): the image is built (on a local Debian base, no registry
// here), each member cluster runs as containers on a Docker network of its own (etcd,
// kube-apiserver, agent, gateway, a backend, a client), the gateways also on one shared network,
// the hub and NATS on a control network; the components run from the image, read-only and
// non-root, with in-cluster configuration. Checks join, export, import, requests from A through
// A's and B's gateways, failover to C when B's gateway is cut off the shared network and failback
// with no failed request, and a graceful `docker stop` (exit 0) of a component as PID 1.
// Without a Docker engine it says so in one line and skips.
import { execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { promisify } from 'node:util';
import { CustomObjectsApi } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ISTHMUS_GROUP, ISTHMUS_VERSION, MEMBER_CLUSTER_PLURAL, type MemberCluster } from '../common/api/isthmus.ts';
import { ensureNamespace } from '../common/kube/index.ts';
import { BACKEND_PORT, ContainerFederation, buildImage, dockerUnavailable } from '../local/containers/index.ts';
import { exportService } from '../local/exports.ts';
import { DOCKER_OWNER_LABEL, reapAbandonedContainers, waitFor } from '../local/testbed/index.ts';
import { clustersetEndpoint, type ConnectReport } from './gateway/scenario.ts';

const NS = 'shop';
/** Room for the waits inside a test on a loaded machine (each wait has its own, shorter bound). */
const WAITING_TEST_TIMEOUT_MS = 600_000;
const unavailable = await dockerUnavailable();
if (unavailable) console.info(`container e2e skipped: ${unavailable}`);

describe.skipIf(unavailable !== undefined)('the federation in containers', () => {
  let fed: ContainerFederation;
  /** Backend addresses by member; each greets with "backend-<member letter>". */
  const backends = new Map<string, string>();

  beforeAll(async () => {
    const { image, base } = await buildImage();
    fed = await ContainerFederation.start({ image, base });
    await ensureNamespace(fed.hubCluster.kubeConfig(), NS);
    await fed.joinAll(NS);
    await Promise.all(fed.members.map((m) => fed.gatewayReady(m.name)));
    for (const m of fed.members) backends.set(m.name, await fed.startBackend(m.name, `backend-${m.name.at(-1)}`));
  }, 30 * 60_000);
  afterAll(async () => {
    await fed?.[Symbol.asyncDispose]();
  });

  /** Exports `name` from each of `clusters`, served by that member's backend. */
  async function exportFrom(name: string, clusters: readonly string[]): Promise<void> {
    for (const cluster of clusters)
      await exportService(fed.member(cluster).kubeConfig(), {
        namespace: NS,
        name,
        ports: [{ name: 'tcp', port: BACKEND_PORT }],
        endpoints: [{ ip: backends.get(cluster) as string, zone: 'z' }],
      });
  }

  async function connect(target: { address: string; port: number }, count: number): Promise<ConnectReport> {
    return JSON.parse(
      await fed.inCluster('cluster-a', ['connect', target.address, String(target.port), String(count), '20000']),
    ) as ConnectReport;
  }

  it('joins every member through the hub, the components configured in-cluster', async () => {
    const api = fed.hubCluster.kubeConfig().makeApiClient(CustomObjectsApi);
    const list = (await api.listClusterCustomObject({
      group: ISTHMUS_GROUP,
      version: ISTHMUS_VERSION,
      plural: MEMBER_CLUSTER_PLURAL,
    })) as { items: MemberCluster[] };
    const joined = list.items
      .filter((m) => m.status?.conditions?.some((c) => c.type === 'Joined' && c.status === 'True'))
      .map((m) => m.metadata?.name)
      .sort();
    expect(joined).toEqual(['cluster-a', 'cluster-b', 'cluster-c']);
  });

  it(
    'imports into A what B and C export, and serves requests from A through A’s and B’s gateways',
    async () => {
      await exportFrom('cart', ['cluster-b', 'cluster-c']);
      const vip = await clustersetEndpoint(fed.member('cluster-a'), NS, 'cart');
      // B shares A's region: it serves while healthy (C is in another region).
      await waitFor('A reaches B for cart', async () => (await connect(vip, 1)).served['backend-b'] === 1, 60_000, 500);
      expect(await connect(vip, 5)).toEqual({ served: { 'backend-b': 5 }, failed: 0, errors: [] });
    },
    WAITING_TEST_TIMEOUT_MS,
  );

  it(
    'fails over to C while B’s gateway is cut off the shared network, and back, with no failed request',
    async () => {
      await exportFrom('basket', ['cluster-b', 'cluster-c']);
      const vip = await clustersetEndpoint(fed.member('cluster-a'), NS, 'basket');
      await waitFor(
        'A reaches B for basket',
        async () => (await connect(vip, 1)).served['backend-b'] === 1,
        60_000,
        500,
      );
      let failed = 0;
      const errors: string[] = [];
      const servedOnlyBy = async (backend: string): Promise<boolean> => {
        const report = await connect(vip, 5);
        failed += report.failed;
        errors.push(...report.errors);
        return report.served[backend] === 5;
      };
      await fed.setSharedLink('cluster-b', false);
      try {
        await waitFor('C serves while B is cut off', () => servedOnlyBy('backend-c'), 120_000, 250);
      } finally {
        await fed.setSharedLink('cluster-b', true);
      }
      await waitFor('B serves again', () => servedOnlyBy('backend-b'), 120_000, 250);
      expect({ failed, errors }).toEqual({ failed: 0, errors: [] });
    },
    WAITING_TEST_TIMEOUT_MS,
  );

  it(
    'stops a component gracefully on docker stop (PID 1 handles SIGTERM, exit 0), and it comes back',
    async () => {
      expect(await fed.stopComponent('cluster-c', 'gateway')).toBe(0);
      expect(await fed.stopComponent('cluster-c', 'agent')).toBe(0);
      await fed.startComponent('cluster-c', 'agent');
      await fed.startComponent('cluster-c', 'gateway');
      await fed.gatewayReady('cluster-c');
    },
    WAITING_TEST_TIMEOUT_MS,
  );
});

describe.skipIf(unavailable !== undefined)('leftovers of a dead test run', () => {
  it('are swept: a network labelled with an owner pid that is gone is removed', async () => {
    const docker = async (...args: string[]): Promise<string> =>
      (await promisify(execFile)('docker', args)).stdout.trim();
    const exited = spawn('true');
    await once(exited, 'exit');
    const name = `isth-sweep-${exited.pid}`;
    const id = await docker('network', 'create', '--label', `${DOCKER_OWNER_LABEL}=${exited.pid}`, name);
    try {
      expect(reapAbandonedContainers()).toBeGreaterThanOrEqual(1);
      expect(await docker('network', 'ls', '-q', '--filter', `id=${id}`)).toBe('');
    } finally {
      await docker('network', 'rm', name).catch(() => undefined);
    }
  });
});
