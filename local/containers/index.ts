// A local federation of containers (testcontainers on the test command's own Docker engine): a
// control network with the hub cluster's etcd and kube-apiserver, NATS and the hub; per member
// a network of its own with its etcd, kube-apiserver, agent, gateway, a test backend and a client;
// the gateways also on one shared network, the agents also on the control network. Components run
// from the Isthmus image, read-only, as its non-root user, configured in-cluster (service-account
// token, CA and namespace mounted where client-node looks, KUBERNETES_SERVICE_HOST/PORT), each on
// the Helm chart's service account for it with the chart's RBAC. Every
// container and network carries the owner's pid label: disposal removes them, and if the test run
// dies, the test bed's watchdog and the next run's sweep do.
import { execFile } from 'node:child_process';
import {
  chmodSync,
  createWriteStream,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { nkeys } from '@nats-io/transport-node';
import type { KubeConfig } from '@kubernetes/client-node';
import { GenericContainer, getContainerRuntimeClient, type StartedTestContainer } from 'testcontainers';
import { stringify as stringifyYaml } from 'yaml';
import { kubeConfigFromYaml } from '../../common/kubeconfig.ts';
import {
  MINIMAL_VALUES,
  RELEASE_NAMESPACE,
  chartServiceAccount,
  installChartRbac,
  renderChart,
} from '../../deploy/helm/chart.ts';
import { joinAllMembers } from '../federation/cli.ts';
import type { FederationComponent } from '../federation/index.ts';
import {
  FederationSecrets,
  agentConfig,
  gatewayConfig,
  hubConfig,
  memberLocality,
  memberName,
} from '../federation/config.ts';
import {
  APISERVER_DNS_NAMES,
  apiserverArgs,
  etcdArgs,
  installCrds,
  certificateUser,
  renderKubeconfig,
  serviceAccountToken,
  type AdminTarget,
} from '../testbed/cluster.ts';
import { TestCa, writePem, writeServiceAccountKeys } from '../testbed/certs.ts';
import { natsServerConfig } from '../testbed/nats.ts';
import { httpOk } from '../testbed/probe.ts';
import { ProcessSupervisor } from '../testbed/processes.ts';
import { resolveBinaries } from '../testbed/binaries.ts';
import { testbedRoot } from '../testbed/reaper.ts';
import { waitFor } from '../testbed/wait.ts';

const repo = fileURLToPath(new URL('../../', import.meta.url));
const workloads = join(repo, 'local/workloads');

/**
 * Fixed /24s in 172.29.128.0/17, beside the pool the engine allocates from (172.29.0.0/17,
 * scripts/docker-engine.sh): control, shared, then one per member.
 */
const SUBNET_PREFIX = '172.29';
const CONTROL_NET = 128;
const SHARED_NET = 129;
const FIRST_MEMBER_NET = 130;
/** Host parts within a cluster's /24. */
const HOST = { etcd: 2, apiserver: 3, nats: 4, hub: 5, agent: 4, gateway: 5, backend: 6, client: 7 } as const;
const PORT = { apiserver: 6443, etcd: 2379, etcdPeer: 2380, nats: 4222, natsMonitor: 8222, hubGrpc: 9443 } as const;
const STATUS_PORT = { hub: 9090, agent: 9091, gateway: 9093 } as const;
/** Where the test backends listen in their container. */
export const BACKEND_PORT = 8080;
const SA_MOUNT = '/var/run/secrets/kubernetes.io/serviceaccount';
const START_TIMEOUT_MS = 120_000;

const ip = (net: number, host: number): string => `${SUBNET_PREFIX}.${net}.${host}`;

/** Why containers cannot run here, or undefined when a Docker engine answers and the base image can be built. */
export async function dockerUnavailable(): Promise<string | undefined> {
  if (process.getuid?.() !== 0) return 'not root (the local base image is built with debootstrap)';
  try {
    await promisify(execFile)('docker', ['info', '--format', '{{.ServerVersion}}'], { timeout: 15_000 });
    return undefined;
  } catch (err) {
    const detail = (err as { stderr?: string }).stderr?.trim().split('\n')[0] ?? String(err);
    return `no Docker engine (${detail || 'docker info failed'})`;
  }
}

/**
 * The Isthmus image, built by scripts/image.sh on the local base from scripts/base-image.sh
 * (no registry is reachable here); both reuse what is cached. Returns { image, base }.
 */
export async function buildImage(tag = 'isthmus:e2e'): Promise<{ image: string; base: string }> {
  const run = async (args: string[]): Promise<string> =>
    (await promisify(execFile)('bash', args, { cwd: repo, timeout: 20 * 60_000, maxBuffer: 1 << 20 })).stdout.trim();
  const base = await run(['scripts/base-image.sh']);
  const image = await run(['scripts/image.sh', 'build', '--base', base, '--tag', tag]);
  return { image, base };
}

/** A container on fixed addresses: its first network from creation, further ones before it starts. */
class PlacedContainer extends GenericContainer {
  readonly #more: { network: string; address: string }[] = [];

  constructor(image: string, network: string, address: string) {
    super(image);
    this.withNetworkMode(network);
    this.createOpts.NetworkingConfig = { EndpointsConfig: { [network]: { IPAMConfig: { IPv4Address: address } } } };
  }

  alsoOn(network: string, address: string): this {
    this.#more.push({ network, address });
    return this;
  }

  readOnlyRoot(): this {
    this.hostConfig.ReadonlyRootfs = true;
    return this;
  }

  protected override async containerCreated(containerId: string): Promise<void> {
    const client = await getContainerRuntimeClient();
    for (const { network, address } of this.#more)
      await client.network
        .getById(network)
        .connect({ Container: containerId, EndpointConfig: { IPAMConfig: { IPv4Address: address } } });
  }
}

/** One simulated cluster's control plane in containers, and its admin view from the host. */
export class ContainerCluster implements AdminTarget {
  readonly name: string;
  /** The third octet of its network's /24. */
  readonly net: number;
  readonly network: string;
  readonly apiserverAddress: string;
  readonly server: string;
  readonly kubeconfigPath: string;
  readonly #dir: string;
  #admin: { kubeconfigYaml: string; tls: AdminTarget['tls'] } | undefined;

  constructor(dir: string, name: string, net: number, network: string) {
    this.name = name;
    this.net = net;
    this.network = network;
    this.apiserverAddress = ip(net, HOST.apiserver);
    this.server = `https://${this.apiserverAddress}:${PORT.apiserver}`;
    mkdirSync(join(dir, name), { recursive: true });
    this.kubeconfigPath = join(dir, name, 'kubeconfig');
    this.#dir = join(dir, name);
  }

  /** The service-account directory (token, ca.crt, namespace) mounted into `component`'s container. */
  serviceAccountDir(component: FederationComponent): string {
    return join(this.#dir, `serviceaccount-${component}`);
  }

  get tls(): AdminTarget['tls'] {
    if (!this.#admin) throw new Error(`${this.name} is not started`);
    return this.#admin.tls;
  }

  /** A fresh client configuration with admin rights on this cluster. */
  kubeConfig(): KubeConfig {
    if (!this.#admin) throw new Error(`${this.name} is not started`);
    return kubeConfigFromYaml(this.#admin.kubeconfigYaml);
  }

  /** Its admin credentials, once its apiserver container runs; also written to kubeconfigPath for the CLI. */
  setAdmin(kubeconfigYaml: string, tls: AdminTarget['tls']): void {
    writeFileSync(this.kubeconfigPath, kubeconfigYaml, { mode: 0o600 });
    this.#admin = { kubeconfigYaml, tls };
  }
}

type Component = 'agent' | 'gateway';

export class ContainerFederation implements AsyncDisposable {
  readonly image: string;
  readonly hubCluster: ContainerCluster;
  readonly members: readonly ContainerCluster[];
  readonly dir: string;
  readonly #supervisor: ProcessSupervisor;
  readonly #networks: string[];
  readonly #containers = new Map<string, StartedTestContainer>();
  /** How each container was made, so a stopped component can be started again alike. */
  readonly #recipes = new Map<string, () => PlacedContainer>();
  readonly #base: string;

  private constructor(init: {
    image: string;
    base: string;
    supervisor: ProcessSupervisor;
    networks: string[];
    hubCluster: ContainerCluster;
    members: ContainerCluster[];
  }) {
    this.image = init.image;
    this.#base = init.base;
    this.#supervisor = init.supervisor;
    this.dir = init.supervisor.dir;
    this.#networks = init.networks;
    this.hubCluster = init.hubCluster;
    this.members = init.members;
  }

  static async start(options: { image: string; base: string; members?: number }): Promise<ContainerFederation> {
    mkdirSync(testbedRoot, { recursive: true });
    const supervisor = new ProcessSupervisor(mkdtempSync(join(testbedRoot, `tb-${process.pid}-`)));
    const labels = supervisor.ownerLabels;
    const client = await getContainerRuntimeClient();
    const prefix = `isth-${process.pid}`;
    const memberCount = options.members ?? 3;
    const networks: string[] = [];
    const clusterOf = (name: string, net: number, network: string): ContainerCluster =>
      new ContainerCluster(supervisor.dir, name, net, network);
    const federation = new ContainerFederation({
      image: options.image,
      base: options.base,
      supervisor,
      networks,
      hubCluster: clusterOf('hub', CONTROL_NET, `${prefix}-control`),
      members: Array.from({ length: memberCount }, (_, i) =>
        clusterOf(memberName(i), FIRST_MEMBER_NET + i, `${prefix}-${memberName(i)}`),
      ),
    });
    try {
      const nets: [string, number][] = [
        [federation.hubCluster.network, CONTROL_NET],
        [federation.sharedNetwork, SHARED_NET],
        ...federation.members.map((m): [string, number] => [m.network, m.net]),
      ];
      for (const [name, net] of nets) {
        await client.network.create({
          Name: name,
          Driver: 'bridge',
          CheckDuplicate: true,
          Labels: labels,
          IPAM: { Config: [{ Subnet: `${SUBNET_PREFIX}.${net}.0/24`, Gateway: ip(net, 1) }] },
        });
        networks.push(name);
      }
      // The test bed's files are read by the components' non-root user, through bind mounts.
      chmodSync(supervisor.dir, 0o755);
      const clusters = [federation.hubCluster, ...federation.members];
      await Promise.all(clusters.map((c) => federation.#startControlPlane(c)));
      const { secrets, natsCa } = await federation.#startNats();
      await federation.#startHub(secrets, natsCa);
      await Promise.all(federation.members.map((m, i) => federation.#startMember(m, i)));
      return federation;
    } catch (err) {
      await federation[Symbol.asyncDispose]();
      throw err;
    }
  }

  get sharedNetwork(): string {
    return `isth-${process.pid}-shared`;
  }

  member(name: string): ContainerCluster {
    const found = this.members.find((m) => m.name === name);
    if (!found) throw new Error(`no member ${name}`);
    return found;
  }

  /** A member gateway's address on the shared network (what the agent advertises). */
  sharedAddress(cluster: string): string {
    return ip(SHARED_NET, 10 + this.members.indexOf(this.member(cluster)));
  }

  #container(name: string): StartedTestContainer {
    const found = this.#containers.get(name);
    if (!found) throw new Error(`no container ${name}`);
    return found;
  }

  async #run(name: string, recipe: () => PlacedContainer): Promise<StartedTestContainer> {
    this.#recipes.set(name, recipe);
    const log = createWriteStream(join(this.dir, `${name}.log`), { flags: 'a' });
    const started = await recipe()
      .withName(`isth-${process.pid}-${name}`)
      .withLabels(this.#supervisor.ownerLabels)
      .withLogConsumer((stream) => stream.pipe(log))
      .withStartupTimeout(START_TIMEOUT_MS)
      .start();
    this.#containers.set(name, started);
    return started;
  }

  /** etcd and kube-apiserver containers, CRDs, and the chart's service accounts and RBAC for the components. */
  async #startControlPlane(cluster: ContainerCluster): Promise<void> {
    const binaries = await resolveBinaries();
    const dir = join(this.dir, cluster.name);
    const etcdUrl = `http://${ip(cluster.net, HOST.etcd)}:${PORT.etcd}`;
    await this.#run(`${cluster.name}-etcd`, () =>
      new PlacedContainer(this.#base, cluster.network, ip(cluster.net, HOST.etcd))
        .withBindMounts([{ source: binaries.etcd, target: binaries.etcd, mode: 'ro' }])
        .withTmpFs({ '/var/lib/etcd': 'rw' })
        .withEntrypoint([binaries.etcd])
        .withCommand(
          etcdArgs({
            name: cluster.name,
            dataDir: '/var/lib/etcd/data',
            url: etcdUrl,
            peer: `http://${ip(cluster.net, HOST.etcd)}:${PORT.etcdPeer}`,
          }),
        ),
    );
    const ca = await TestCa.create(dir, `${cluster.name}-apiserver`);
    const [serving, admin, sa] = await Promise.all([
      ca.issue('apiserver', 'CN=kube-apiserver', {
        dns: [...APISERVER_DNS_NAMES],
        ip: [cluster.apiserverAddress],
        server: true,
      }),
      ca.issue('admin', 'CN=isthmus-admin,O=system:masters', { client: true }),
      writeServiceAccountKeys(dir),
    ]);
    await this.#run(`${cluster.name}-kube-apiserver`, () =>
      new PlacedContainer(this.#base, cluster.network, cluster.apiserverAddress)
        .withBindMounts([
          { source: binaries.kubeApiserver, target: binaries.kubeApiserver, mode: 'ro' },
          { source: dir, target: dir, mode: 'rw' },
        ])
        .withEntrypoint([binaries.kubeApiserver])
        .withCommand(
          apiserverArgs({
            etcd: etcdUrl,
            address: cluster.apiserverAddress,
            port: PORT.apiserver,
            certDir: join(dir, 'apiserver-certs'),
            serving,
            clientCaFile: ca.caFile,
            sa,
          }),
        ),
    );
    cluster.setAdmin(
      renderKubeconfig(cluster.name, cluster.server, ca.caPem, certificateUser(`${cluster.name}-admin`, admin)),
      {
        ca: ca.caPem,
        cert: admin.certPem,
        key: admin.keyPem,
      },
    );
    await waitFor(
      `${cluster.name}: kube-apiserver /readyz`,
      () => httpOk(`${cluster.server}/readyz`, cluster.tls),
      START_TIMEOUT_MS,
      250,
    );
    await installCrds(cluster, START_TIMEOUT_MS);
    await this.#serviceAccounts(cluster, ca.caPem);
  }

  /**
   * The components' in-cluster identities, as the Helm chart gives them: its ServiceAccounts,
   * Roles, ClusterRoles and bindings for the cluster's role (the least privilege its RBAC audit
   * proves), and per component its service account's token, the CA and the namespace.
   */
  async #serviceAccounts(cluster: ContainerCluster, caPem: string): Promise<void> {
    const role = cluster === this.hubCluster ? 'hub' : 'member';
    await installChartRbac(cluster, await renderChart(MINIMAL_VALUES[role]));
    for (const component of role === 'hub' ? (['hub'] as const) : (['agent', 'gateway'] as const)) {
      const token = await serviceAccountToken(cluster, RELEASE_NAMESPACE, chartServiceAccount(component));
      const dir = cluster.serviceAccountDir(component);
      mkdirSync(dir, { recursive: true });
      writeFileSync(join(dir, 'token'), token);
      writeFileSync(join(dir, 'ca.crt'), caPem);
      writeFileSync(join(dir, 'namespace'), RELEASE_NAMESPACE);
    }
  }

  /** NATS with the federation's accounts; returns the federation's secrets and the CA of NATS's own clients (the hub). */
  async #startNats(): Promise<{ secrets: FederationSecrets; natsCa: TestCa }> {
    const binaries = await resolveBinaries();
    const dir = join(this.dir, 'nats');
    mkdirSync(dir, { recursive: true });
    const address = ip(CONTROL_NET, HOST.nats);
    const secrets = await FederationSecrets.create('isthmus.local', { ip: [address], dns: [] });
    const natsCa = await TestCa.create(dir, 'nats');
    const serving = await writePem(dir, 'nats-server', secrets.natsServing);
    const clientCaFile = join(dir, 'client-cas.pem');
    writeFileSync(clientCaFile, [natsCa.caPem, secrets.rootPem].join('\n'));
    const configFile = join(dir, 'nats.conf');
    writeFileSync(
      configFile,
      natsServerConfig({
        name: 'isthmus-containers',
        host: '0.0.0.0',
        port: PORT.nats,
        monitorPort: PORT.natsMonitor,
        dir: '/var/lib/nats',
        clientCaFile,
        serving,
        authorization: secrets.natsAuthorization(nkeys.createUser().getPublicKey()),
        cluster: undefined,
      }),
    );
    await this.#run('nats', () =>
      new PlacedContainer(this.#base, this.hubCluster.network, address)
        .withBindMounts([
          { source: binaries.natsServer, target: binaries.natsServer, mode: 'ro' },
          { source: dir, target: dir, mode: 'ro' },
        ])
        .withTmpFs({ '/var/lib/nats': 'rw' })
        .withEntrypoint([binaries.natsServer])
        .withCommand(['-c', configFile]),
    );
    await waitFor(
      'nats-server /healthz',
      () => httpOk(`http://${address}:${PORT.natsMonitor}/healthz?js-enabled-only=true`),
      START_TIMEOUT_MS,
      250,
    );
    return { secrets, natsCa };
  }

  /** A component container from the image: read-only, non-root, in-cluster configuration of `cluster`. */
  #component(
    cluster: ContainerCluster,
    component: FederationComponent,
    address: string,
    configDir: string,
    args: string[],
  ): PlacedContainer {
    return new PlacedContainer(this.image, cluster.network, address)
      .readOnlyRoot()
      .withEnvironment({
        KUBERNETES_SERVICE_HOST: cluster.apiserverAddress,
        KUBERNETES_SERVICE_PORT: String(PORT.apiserver),
      })
      .withBindMounts([
        { source: cluster.serviceAccountDir(component), target: SA_MOUNT, mode: 'ro' },
        { source: configDir, target: configDir, mode: 'ro' },
      ])
      .withCommand(args);
  }

  async #startHub(secrets: FederationSecrets, natsCa: TestCa): Promise<void> {
    const dir = join(this.dir, 'hub-config');
    mkdirSync(dir, { recursive: true });
    const natsClient = await natsCa.issue('hub-nats-client', 'CN=isthmus-hub', { client: true });
    const files = secrets.writeHubFiles(dir, {
      cert: natsClient.certPem,
      key: natsClient.keyPem,
    });
    const address = ip(CONTROL_NET, HOST.hub);
    const configFile = join(dir, 'hub.yaml');
    writeFileSync(
      configFile,
      stringifyYaml(
        hubConfig({
          trustDomain: secrets.trustDomain,
          kubeconfig: '',
          replicaId: 'hub-0',
          grpc: { host: '0.0.0.0', port: PORT.hubGrpc },
          advertiseEndpoints: [`${address}:${PORT.hubGrpc}`],
          status: { host: '0.0.0.0', port: STATUS_PORT.hub },
          natsUrls: [`tls://${ip(CONTROL_NET, HOST.nats)}:${PORT.nats}`],
          files,
        }),
      ),
    );
    readableByAll(dir);
    await this.#run('hub', () =>
      this.#component(this.hubCluster, 'hub', address, dir, ['hub', '--config', configFile]),
    );
    await waitFor('hub /readyz', () => httpOk(`http://${address}:${STATUS_PORT.hub}/readyz`), START_TIMEOUT_MS, 250);
  }

  /** A member's gateway (on its network and the shared one), agent (on its network and the control one), backend host and client. */
  async #startMember(member: ContainerCluster, index: number): Promise<void> {
    const dir = join(this.dir, `${member.name}-config`);
    mkdirSync(dir, { recursive: true });
    const gatewayAddress = ip(member.net, HOST.gateway);
    const shared = this.sharedAddress(member.name);
    writeFileSync(
      join(dir, 'gateway.yaml'),
      stringifyYaml(
        gatewayConfig({
          clusterId: member.name,
          kubeconfig: '',
          inboundHost: '0.0.0.0',
          outboundAddress: gatewayAddress,
          status: { host: '0.0.0.0', port: STATUS_PORT.gateway },
        }),
      ),
    );
    writeFileSync(
      join(dir, 'agent.yaml'),
      stringifyYaml(
        agentConfig({
          clusterId: member.name,
          locality: memberLocality(index),
          gatewayAddress: shared,
          kubeconfig: '',
          status: { host: '0.0.0.0', port: STATUS_PORT.agent },
          dns: { host: '0.0.0.0', port: 10053 },
        }),
      ),
    );
    readableByAll(dir);
    await this.#run(`${member.name}-agent`, () =>
      this.#component(member, 'agent', ip(member.net, HOST.agent), dir, [
        'agent',
        '--config',
        join(dir, 'agent.yaml'),
      ]).alsoOn(this.hubCluster.network, ip(CONTROL_NET, 10 + index)),
    );
    await this.#run(`${member.name}-gateway`, () =>
      this.#component(member, 'gateway', gatewayAddress, dir, [
        'gateway',
        '--config',
        join(dir, 'gateway.yaml'),
      ]).alsoOn(this.sharedNetwork, shared),
    );
    await this.#run(`${member.name}-client`, () =>
      new PlacedContainer(this.#base, member.network, ip(member.net, HOST.client))
        .withBindMounts([{ source: workloads, target: '/workloads', mode: 'ro' }])
        .withEntrypoint([
          'node',
          '-e',
          "process.on('SIGTERM', () => process.exit(0)); setInterval(() => {}, 1 << 30);",
        ]),
    );
  }

  /** Starts a test backend (local/workloads/backend.ts) in a member's network; returns its address. */
  async startBackend(cluster: string, id: string): Promise<string> {
    const member = this.member(cluster);
    const address = ip(member.net, HOST.backend);
    await this.#run(`${cluster}-backend`, () =>
      new PlacedContainer(this.#base, member.network, address)
        .withBindMounts([{ source: workloads, target: '/workloads', mode: 'ro' }])
        .withEntrypoint(['node', '/workloads/backend.ts', '0.0.0.0', String(BACKEND_PORT), id]),
    );
    await waitFor(
      `backend ${id} listening`,
      async () => (await this.inCluster(cluster, ['connect', address, String(BACKEND_PORT), '1'])).includes(id),
      START_TIMEOUT_MS,
      250,
    );
    return address;
  }

  /** Runs local/workloads/netns-tool.ts in a member's client container; returns its stdout. */
  async inCluster(cluster: string, args: readonly string[]): Promise<string> {
    const result = await this.#container(`${cluster}-client`).exec(['node', '/workloads/netns-tool.ts', ...args]);
    if (result.exitCode !== 0) throw new Error(`netns-tool ${args.join(' ')} in ${cluster}: ${result.stderr}`);
    return result.stdout;
  }

  /** Waits until a member's gateway says it is ready (joined, certificate and membership in hand). */
  async gatewayReady(cluster: string, timeoutMs = 90_000): Promise<void> {
    const url = `http://${ip(this.member(cluster).net, HOST.gateway)}:${STATUS_PORT.gateway}/readyz`;
    await waitFor(`gateway ${cluster} ready`, () => httpOk(url), timeoutMs, 250);
  }

  /** Cuts a member's gateway off the shared network (what other gateways dial), or reconnects it on the same address. */
  async setSharedLink(cluster: string, up: boolean): Promise<void> {
    const client = await getContainerRuntimeClient();
    const network = client.network.getById(this.sharedNetwork);
    const container = this.#container(`${cluster}-gateway`).getId();
    if (up)
      await network.connect({
        Container: container,
        EndpointConfig: { IPAMConfig: { IPv4Address: this.sharedAddress(cluster) } },
      });
    else await network.disconnect({ Container: container, Force: true });
  }

  /** `docker stop` (SIGTERM, then SIGKILL after `graceSeconds`) of a member's component; returns its exit code. */
  async stopComponent(cluster: string, component: Component, graceSeconds = 30): Promise<number> {
    const name = `${cluster}-${component}`;
    const container = this.#container(name);
    await container.stop({ timeout: graceSeconds * 1000, remove: false });
    const client = await getContainerRuntimeClient();
    const state = await client.container.inspect(client.container.getById(container.getId()));
    await client.container.remove(client.container.getById(container.getId()), { removeVolumes: true });
    this.#containers.delete(name);
    return state.State.ExitCode;
  }

  /** Starts a stopped component of a member again, as it was. */
  async startComponent(cluster: string, component: Component): Promise<void> {
    const name = `${cluster}-${component}`;
    const recipe = this.#recipes.get(name);
    if (!recipe) throw new Error(`no container ${name} was ever started`);
    await this.#run(name, recipe);
  }

  /** Joins every member with one token (creating `namespace` in each first); throws naming a join that failed. */
  joinAll(namespace: string): Promise<void> {
    return joinAllMembers(this.hubCluster.kubeconfigPath, this.members, { namespace, wait: '90s' });
  }

  async [Symbol.asyncDispose](): Promise<void> {
    const client = await getContainerRuntimeClient();
    await Promise.all(
      [...this.#containers.values()].map((c) => c.stop({ timeout: 1_000, remove: true }).catch(() => undefined)),
    );
    this.#containers.clear();
    for (const name of this.#networks.splice(0).reverse())
      await client.network.remove(client.network.getById(name)).catch(() => undefined);
    await this.#supervisor.stopAll();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** Makes a directory's files readable by the components' non-root user (the test bed writes keys 0600). */
function readableByAll(dir: string): void {
  for (const entry of readdirSync(dir)) {
    const path = join(dir, entry);
    if (statSync(path).isFile()) chmodSync(path, 0o644);
  }
}
