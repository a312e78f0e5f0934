// A local federation for e2e tests and the demo: the test bed's clusters (one "hub" cluster plus
// members), hub replicas and one agent per member, each a real process; the isthmus CLI runs
// as a process too. The federation root is generated here and plugged into the hub, so NATS can
// trust it from the start (NATS's serving certificate, spiffe://<td>/nats, is issued by it as well).
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { CoreV1Api, CustomObjectsApi } from '@kubernetes/client-node';
import { stringify as stringifyYaml } from 'yaml';
import { isNotFound } from '../../common/kube/index.ts';
import { ISTHMUS_GROUP, ISTHMUS_VERSION, MEMBER_CLUSTER_PLURAL, type MemberCluster } from '../../common/api/isthmus.ts';
import { freePort } from '../testbed/ports.ts';
import { httpOk } from '../testbed/probe.ts';
import { createToken, joinAllMembers, joinMember, runCli, type CliResult, type JoinToken } from './cli.ts';
import { FederationSecrets, agentConfig, gatewayConfig, hubConfig, memberLocality, memberName } from './config.ts';
import {
  NetworkLab,
  startTestbed,
  waitForProcess,
  type LocalCluster,
  type ManagedProcess,
  type Testbed,
} from '../testbed/index.ts';

const repo = fileURLToPath(new URL('../../', import.meta.url));

export interface FederationOptions {
  readonly members?: number;
  readonly hubReplicas?: number;
  readonly autoAccept?: boolean;
  readonly heartbeatInterval?: string;
  readonly missedBeforeUnknown?: number;
  readonly trustDomain?: string;
  /** Lease timings for hub leader election (defaults: the hub's own). */
  readonly leaderElection?: { leaseDuration: string; renewDeadline: string; retryPeriod: string };
  /**
   * Give each member a network namespace with a real address (NetworkLab) and run an east-west
   * gateway there; catalog entries then carry dialable gateway addresses.
   */
  readonly gateways?: boolean;
  /** Extra settings for every gateway's configuration (e.g. probe timings). */
  readonly gatewaySettings?: Record<string, unknown>;
  /** The hub's staleness bound (heartbeat.staleAfter), e.g. '5s'; the hub's default otherwise. */
  readonly staleAfter?: string;
  /**
   * The hub manages NATS's TLS (nats.serverTlsSecret), and the test bed plays NATS's config
   * reloader: every change of that Secret goes to nats-server's files, then SIGHUP.
   */
  readonly natsTlsFromHub?: boolean;
  /** The hub's rotation.stageTimeout, e.g. '20s'. */
  readonly rotationStageTimeout?: string;
  /** NATS as a 3-node JetStream cluster; the hub is given every node's URL and replicates its buckets 3 times. */
  readonly natsCluster?: boolean;
  /** Extra top-level settings for every hub replica's configuration (e.g. `limits`). */
  readonly hubSettings?: Record<string, unknown>;
  /** Every apiserver writes an audit log (LocalCluster.auditLogPath). */
  readonly audit?: boolean;
  /**
   * The kubeconfig (path) a component runs with in a cluster, e.g. its service account's
   * (LocalCluster.serviceAccountKubeconfig); the cluster's admin kubeconfig otherwise. Called once
   * per component and cluster, before any component starts.
   */
  readonly componentKubeconfig?: (cluster: LocalCluster, component: FederationComponent) => Promise<string>;
}

export type FederationComponent = 'hub' | 'agent' | 'gateway';

/** Where the hub keeps NATS's TLS material when the federation runs with natsTlsFromHub. */
export const NATS_TLS_SECRET = { namespace: 'isthmus-system', name: 'isthmus-nats-tls' } as const;

export type { CliResult, JoinToken } from './cli.ts';

export interface HubReplica {
  readonly name: string;
  readonly configFile: string;
  readonly endpoint: string;
  readonly statusPort: number;
  process: ManagedProcess | undefined;
}

/** Where a member's gateway serves its status (/readyz, /metrics), inside the member's namespace. */
export const GATEWAY_STATUS_PORT = 9093;

export class Federation implements AsyncDisposable {
  readonly bed: Testbed;
  /** The members' network namespaces, when started with `gateways`. */
  readonly lab: NetworkLab | undefined;
  readonly hubCluster: LocalCluster;
  readonly members: readonly LocalCluster[];
  readonly hubs: readonly HubReplica[];
  readonly dir: string;
  readonly #agentConfigs = new Map<string, string>();
  readonly #agentStatusPorts = new Map<string, number>();
  readonly #agentDnsPorts = new Map<string, number>();
  readonly #agents = new Map<string, ManagedProcess>();
  readonly #gatewayConfigs = new Map<string, string>();
  readonly #gateways = new Map<string, ManagedProcess>();
  readonly #stopping = new AbortController();
  #natsReloader: Promise<void> | undefined;
  #natsServingRoot: string | undefined;

  private constructor(bed: Testbed, hubs: HubReplica[], dir: string, lab: NetworkLab | undefined) {
    this.bed = bed;
    this.lab = lab;
    this.hubCluster = bed.cluster('hub');
    this.members = bed.clusters.filter((c) => c.name !== 'hub');
    this.hubs = hubs;
    this.dir = dir;
  }

  static async start(options: FederationOptions = {}): Promise<Federation> {
    const memberCount = options.members ?? 3;
    const secrets = await FederationSecrets.create(options.trustDomain ?? 'isthmus.local', {
      ip: ['127.0.0.1'],
      dns: ['localhost'],
    });
    const names = ['hub', ...Array.from({ length: memberCount }, (_, i) => memberName(i))];
    const bed = await startTestbed({
      names,
      natsTrustedCas: [secrets.rootPem],
      natsServerCertificate: secrets.natsServing,
      natsNodes: options.natsCluster ? 3 : 1,
      audit: options.audit,
      natsAuthorization: (adminNkey) => secrets.natsAuthorization(adminNkey),
    });
    let lab: NetworkLab | undefined;
    try {
      if (options.gateways) lab = await NetworkLab.create({ clusters: names.slice(1) });
      const dir = join(bed.dir, 'federation');
      mkdirSync(dir, { recursive: true });
      const nats = bed.nats as NonNullable<Testbed['nats']>;
      const files = secrets.writeHubFiles(dir, await nats.clientCredentials('isthmus-hub'));

      const kubeconfigFor = (cluster: LocalCluster, component: FederationComponent): Promise<string> =>
        options.componentKubeconfig?.(cluster, component) ?? Promise.resolve(cluster.kubeconfigPath);
      const hubKubeconfig = await kubeconfigFor(bed.cluster('hub'), 'hub');
      const replicas = options.hubReplicas ?? 1;
      const ports = await Promise.all(
        Array.from({ length: replicas }, async () => ({ grpc: await freePort(), status: await freePort() })),
      );
      const endpoints = ports.map((p) => `127.0.0.1:${p.grpc}`);
      const hubs: HubReplica[] = ports.map((p, i) => {
        const configFile = join(dir, `hub-${i}.yaml`);
        writeFileSync(
          configFile,
          stringifyYaml(
            hubConfig({
              trustDomain: secrets.trustDomain,
              kubeconfig: hubKubeconfig,
              replicaId: `hub-${i}`,
              grpc: { host: '127.0.0.1', port: p.grpc },
              advertiseEndpoints: endpoints,
              status: { host: '127.0.0.1', port: p.status },
              natsUrls: nats.urls,
              files,
              natsSettings: {
                replicas: options.natsCluster ? 3 : 1,
                ...(options.natsTlsFromHub
                  ? { serverTlsSecret: { ...NATS_TLS_SECRET, dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'] } }
                  : {}),
              },
              settings: {
                autoAccept: options.autoAccept ?? true,
                heartbeat: {
                  interval: options.heartbeatInterval ?? '1s',
                  missedBeforeUnknown: options.missedBeforeUnknown ?? 3,
                  ...(options.staleAfter ? { staleAfter: options.staleAfter } : {}),
                },
                ...(options.rotationStageTimeout ? { rotation: { stageTimeout: options.rotationStageTimeout } } : {}),
                ...(options.leaderElection ? { leaderElection: options.leaderElection } : {}),
                ...options.hubSettings,
              },
            }),
          ),
        );
        return {
          name: `hub-${i}`,
          configFile,
          endpoint: endpoints[i] as string,
          statusPort: p.status,
          process: undefined,
        };
      });
      const federation = new Federation(bed, hubs, dir, lab);
      for (const [i, member] of federation.members.entries()) {
        const configFile = join(dir, `agent-${member.name}.yaml`);
        const gatewayAddress = lab?.cluster(member.name).gatewayAddress;
        const agentStatusPort = await freePort();
        federation.#agentStatusPorts.set(member.name, agentStatusPort);
        // Every agent answers clusterset.local; each needs a port of its own (UDP and TCP).
        const agentDnsPort = await freePort();
        federation.#agentDnsPorts.set(member.name, agentDnsPort);
        if (gatewayAddress) {
          const gatewayConfigFile = join(dir, `gateway-${member.name}.yaml`);
          writeFileSync(
            gatewayConfigFile,
            stringifyYaml(
              gatewayConfig({
                clusterId: member.name,
                kubeconfig: await kubeconfigFor(member, 'gateway'),
                inboundHost: gatewayAddress,
                outboundAddress: gatewayAddress,
                status: { host: '127.0.0.1', port: GATEWAY_STATUS_PORT },
                settings: options.gatewaySettings,
              }),
            ),
          );
          federation.#gatewayConfigs.set(member.name, gatewayConfigFile);
        }
        writeFileSync(
          configFile,
          stringifyYaml(
            agentConfig({
              clusterId: member.name,
              locality: memberLocality(i),
              // Without gateways, RFC 5737 documentation addresses: they only travel through the
              // catalog (nothing dials them); with gateways, the member's real namespace address.
              gatewayAddress: gatewayAddress ?? `192.0.2.${10 + i}`,
              kubeconfig: await kubeconfigFor(member, 'agent'),
              status: { host: '127.0.0.1', port: agentStatusPort },
              dns: { host: '127.0.0.1', port: agentDnsPort },
            }),
          ),
        );
        federation.#agentConfigs.set(member.name, configFile);
      }
      await Promise.all(hubs.map((h) => federation.startHub(h.name)));
      if (options.natsTlsFromHub) federation.#natsReloader = federation.#reloadNatsTls(nats);
      await Promise.all(federation.members.map((m) => federation.startAgent(m.name)));
      if (lab) await Promise.all(federation.members.map((m) => federation.startGateway(m.name)));
      return federation;
    } catch (err) {
      await lab?.[Symbol.asyncDispose]();
      await bed[Symbol.asyncDispose]();
      throw err;
    }
  }

  /** The root NATS's serving certificate was issued by, as last loaded (natsTlsFromHub). */
  get natsServingRoot(): string | undefined {
    return this.#natsServingRoot;
  }

  /** NATS's config reloader: the hub's NATS TLS Secret, whenever it changes, to nats-server's files. */
  async #reloadNatsTls(nats: NonNullable<Testbed['nats']>): Promise<void> {
    const api = this.hubCluster.kubeConfig().makeApiClient(CoreV1Api);
    let loaded: string | undefined;
    const { signal } = this.#stopping;
    while (!signal.aborted) {
      try {
        const secret = await api.readNamespacedSecret(NATS_TLS_SECRET);
        const version = secret.metadata?.resourceVersion;
        const data = secret.data ?? {};
        const text = (key: string): string => Buffer.from(data[key] ?? '', 'base64').toString('utf8');
        if (version !== loaded) {
          await nats.reloadTls({ certPem: text('tls.crt'), keyPem: text('tls.key'), caPem: text('ca.crt') });
          loaded = version;
          this.#natsServingRoot = secret.metadata?.annotations?.['isthmus.dev/signing-root'];
        }
      } catch (err) {
        if (!isNotFound(err) && !signal.aborted) console.warn(`NATS TLS reload failed, retrying: ${String(err)}`);
      }
      await sleep(200, undefined, { signal }).catch(() => undefined);
    }
  }

  get hubEndpoints(): string[] {
    return this.hubs.map((h) => h.endpoint);
  }

  async startHub(name: string): Promise<void> {
    const hub = this.hubs.find((h) => h.name === name);
    if (!hub) throw new Error(`no hub replica ${name}`);
    hub.process = await this.bed.startProcess({
      name,
      command: process.execPath,
      args: [join(repo, 'hub/main.ts'), '--config', hub.configFile],
    });
    const started = hub.process;
    await waitForProcess(
      started,
      `${name} /readyz`,
      () => httpOk(`http://127.0.0.1:${hub.statusPort}/readyz`),
      60_000,
      100,
    );
  }

  async stopHub(name: string, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    const hub = this.hubs.find((h) => h.name === name);
    if (!hub?.process) return;
    if (signal === 'SIGKILL') hub.process.child.kill('SIGKILL');
    await hub.process.stop();
    hub.process = undefined;
  }

  async startAgent(cluster: string): Promise<ManagedProcess> {
    const configFile = this.#agentConfigs.get(cluster);
    if (!configFile) throw new Error(`no agent configured for ${cluster}`);
    const agent = await this.bed.startProcess({
      name: `agent-${cluster}`,
      command: process.execPath,
      args: [join(repo, 'spoke-agent/main.ts'), '--config', configFile],
    });
    this.#agents.set(cluster, agent);
    return agent;
  }

  agent(cluster: string): ManagedProcess | undefined {
    return this.#agents.get(cluster);
  }

  async stopAgent(cluster: string, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    const agent = this.#agents.get(cluster);
    if (!agent) return;
    if (signal === 'SIGKILL') agent.child.kill('SIGKILL');
    await agent.stop();
    this.#agents.delete(cluster);
  }

  /**
   * Starts a member's gateway inside its namespace, with a portal to its apiserver; it turns ready
   * once the member has joined (its agent writes the certificate). Does not wait for that.
   */
  async startGateway(cluster: string): Promise<ManagedProcess> {
    const configFile = this.#gatewayConfigs.get(cluster);
    const lab = this.lab;
    if (!configFile || !lab)
      throw new Error(`no gateway configured for ${cluster} (start the federation with gateways: true)`);
    const member = this.bed.cluster(cluster);
    await lab.cluster(cluster).portal(Number(new URL(member.server).port));
    const gateway = await lab.cluster(cluster).startProcess({
      name: `gateway-${cluster}`,
      command: process.execPath,
      args: [join(repo, 'east-west-gateway/main.ts'), '--config', configFile],
    });
    this.#gateways.set(cluster, gateway);
    return gateway;
  }

  gateway(cluster: string): ManagedProcess | undefined {
    return this.#gateways.get(cluster);
  }

  async stopGateway(cluster: string, signal: NodeJS.Signals = 'SIGTERM', graceMs = 30_000): Promise<void> {
    const gateway = this.#gateways.get(cluster);
    if (!gateway) return;
    if (signal === 'SIGKILL') gateway.child.kill('SIGKILL');
    await gateway.stop(graceMs);
    this.#gateways.delete(cluster);
  }

  /** Runs local/workloads/netns-tool.ts inside a member's namespace and returns its stdout. */
  async inCluster(cluster: string, args: readonly string[], timeoutMs = 120_000): Promise<string> {
    const lab = this.lab;
    if (!lab) throw new Error('no network namespaces (start the federation with gateways: true)');
    return (
      await lab
        .cluster(cluster)
        .run(process.execPath, [join(repo, 'local/workloads/netns-tool.ts'), ...args], { timeoutMs })
    ).stdout;
  }

  /** Where a member agent answers the clusterset.local zone (UDP and TCP), as `127.0.0.1:<port>`. */
  agentDnsAddress(cluster: string): string {
    const port = this.#agentDnsPorts.get(cluster);
    if (port === undefined) throw new Error(`no agent configured for ${cluster}`);
    return `127.0.0.1:${port}`;
  }

  /** A member agent's /metrics text. */
  async agentMetrics(cluster: string): Promise<string> {
    const port = this.#agentStatusPorts.get(cluster);
    if (port === undefined) throw new Error(`no agent configured for ${cluster}`);
    const response = await fetch(`http://127.0.0.1:${port}/metrics`);
    if (!response.ok) throw new Error(`agent ${cluster} /metrics: HTTP ${response.status}`);
    return response.text();
  }

  /** A member gateway's /metrics text, fetched from inside its namespace. */
  gatewayMetrics(cluster: string): Promise<string> {
    return this.inCluster(cluster, ['get', `http://127.0.0.1:${GATEWAY_STATUS_PORT}/metrics`]);
  }

  /** Waits until a member's gateway says it is ready (joined, certificate and membership in hand). */
  async gatewayReady(cluster: string, timeoutMs = 60_000): Promise<void> {
    const gateway = this.#gateways.get(cluster);
    if (!gateway) throw new Error(`no gateway running in ${cluster}`);
    await waitForProcess(
      gateway,
      `gateway ${cluster} ready`,
      async () =>
        (await this.inCluster(cluster, ['get', `http://127.0.0.1:${GATEWAY_STATUS_PORT}/readyz`])).trim() === 'ready',
      timeoutMs,
      250,
    );
  }

  /** Starts a test backend (local/workloads/backend.ts) in a member's namespace, on a new address unless one is given (a restart). */
  async startBackend(
    cluster: string,
    id: string,
    port = 8080,
    at?: string,
  ): Promise<{ address: string; port: number; process: ManagedProcess }> {
    const lab = this.lab;
    if (!lab) throw new Error('no network namespaces (start the federation with gateways: true)');
    const address = at ?? (await lab.cluster(cluster).allocateAddress());
    const backend = await lab.cluster(cluster).startProcess({
      name: `backend-${id}`,
      command: process.execPath,
      args: [join(repo, 'local/workloads/backend.ts'), address, String(port), id],
    });
    await waitForProcess(
      backend,
      `backend ${id} listening`,
      async () => (await lab.cluster(cluster).tcpProbe(address, port, 2_000)) === 'connected',
      30_000,
      100,
    );
    return { address, port, process: backend };
  }

  /** Runs `isthmus <args>` as a process; `kubeconfig` is 'hub' or a member's name. */
  cli(args: readonly string[], kubeconfig: string): Promise<CliResult> {
    return runCli(args, this.bed.cluster(kubeconfig).kubeconfigPath);
  }

  /** Creates a token on the hub and returns its join flags. */
  createToken(flags: readonly string[] = []): Promise<JoinToken> {
    return createToken(this.hubCluster.kubeconfigPath, flags);
  }

  join(cluster: string, token: JoinToken, wait = '60s'): Promise<CliResult> {
    return joinMember(this.bed.cluster(cluster).kubeconfigPath, token, wait);
  }

  /** Joins every member with one token (creating `namespace` in each first, when given); throws naming a join that failed. */
  joinAll(namespace?: string): Promise<void> {
    return joinAllMembers(this.hubCluster.kubeconfigPath, this.members, {
      ...(namespace ? { namespace } : {}),
      agentLog: (member) => this.agent(member)?.logTail(20) ?? '(no agent process)',
    });
  }

  async memberCluster(id: string): Promise<MemberCluster> {
    const api = this.hubCluster.kubeConfig().makeApiClient(CustomObjectsApi);
    return (await api.getClusterCustomObject({
      group: ISTHMUS_GROUP,
      version: ISTHMUS_VERSION,
      plural: MEMBER_CLUSTER_PLURAL,
      name: id,
    })) as MemberCluster;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.#stopping.abort();
    await this.#natsReloader;
    await this.lab?.[Symbol.asyncDispose]();
    await this.bed[Symbol.asyncDispose]();
  }
}
