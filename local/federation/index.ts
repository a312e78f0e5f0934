// A local federation for e2e tests and the demo: the test bed's clusters (one "hub" cluster plus
// members), hub replicas and one agent per member, each a real process; the isthmus CLI runs
// as a process too. The federation root is generated here and plugged into the hub, so NATS can
// trust it from the start (NATS's serving certificate, spiffe://<td>/nats, is issued by it as well).
import { execFile } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import { CoreV1Api, CustomObjectsApi } from '@kubernetes/client-node';
import { nkeys } from '@nats-io/transport-node';
import { stringify as stringifyYaml } from 'yaml';
import { federationNatsAccounts } from '../../common/nats-authorization.ts';
import { ensureNamespace, isNotFound } from '../../common/kube/index.ts';
import { ISTHMUS_GROUP, ISTHMUS_VERSION, MEMBER_CLUSTER_PLURAL, type MemberCluster } from '../../common/api/isthmus.ts';
import { RootAuthority } from '../../common/pki/index.ts';
import { certificateToPem, generateKeyPair, issueCertificate, privateKeyToPem } from '../../common/pki/x509.ts';
import { freePort } from '../testbed/ports.ts';
import { httpOk } from '../testbed/probe.ts';
import { GATEWAY_INBOUND_PORT } from '../../common/gateway-contract.ts';
import {
  NetworkLab,
  startTestbed,
  waitForProcess,
  type LocalCluster,
  type ManagedProcess,
  type Testbed,
} from '../testbed/index.ts';

const repo = fileURLToPath(new URL('../../', import.meta.url));
const day = 24 * 3600_000;

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

export interface CliResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

interface Locality {
  readonly region: string;
  readonly zone: string;
}

const localities: readonly Locality[] = [
  { region: 'eu-west', zone: 'eu-west-1a' },
  { region: 'eu-west', zone: 'eu-west-1b' },
  { region: 'us-east', zone: 'us-east-1a' },
  { region: 'us-east', zone: 'us-east-1b' },
];

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
    const trustDomain = options.trustDomain ?? 'isthmus.local';
    const rootKeys = await generateKeyPair();
    const root = await issueCertificate(
      {
        subject: `CN=isthmus test root,O=isthmus,OU=${trustDomain}`,
        publicKey: rootKeys.publicKey,
        notAfter: new Date(Date.now() + 30 * day),
        isCa: true,
        pathLength: 1,
      },
      rootKeys,
    );
    const rootPem = certificateToPem(root);
    // NATS's identity is spiffe://<td>/nats from the root (what Isthmus clients check); the host
    // names are for the test bed's own clients, which check those.
    const rootAuthority = await RootAuthority.load({
      trustDomain,
      certificatePem: certificateToPem(root),
      privateKeyPem: await privateKeyToPem(rootKeys.privateKey),
    });
    const natsSvid = await rootAuthority.issueNatsSvid({
      lifetimeMs: 30 * day,
      hostNames: { ip: ['127.0.0.1'], dns: ['localhost'] },
    });
    // The hub writes to NATS with an nkey; agents are admitted read-only one member at a time by
    // the hub (auth callout, signed with the issuer's key), and removed ones disconnected through
    // a system account user.
    const hubNkey = nkeys.createUser();
    const calloutIssuer = nkeys.createAccount();
    const systemNkey = nkeys.createUser();
    const names = ['hub', ...Array.from({ length: memberCount }, (_, i) => `cluster-${String.fromCharCode(97 + i)}`)];
    const bed = await startTestbed({
      names,
      natsTrustedCas: [rootPem],
      natsServerCertificate: { certPem: natsSvid.certificateChainPem, keyPem: natsSvid.privateKeyPem, caPem: rootPem },
      natsNodes: options.natsCluster ? 3 : 1,
      audit: options.audit,
      natsAuthorization: (adminNkey) =>
        federationNatsAccounts([hubNkey.getPublicKey(), adminNkey], {
          issuer: calloutIssuer.getPublicKey(),
          systemNkey: systemNkey.getPublicKey(),
        }),
    });
    let lab: NetworkLab | undefined;
    try {
      if (options.gateways) lab = await NetworkLab.create({ clusters: names.slice(1) });
      const dir = join(bed.dir, 'federation');
      mkdirSync(dir, { recursive: true });
      const nats = bed.nats as NonNullable<Testbed['nats']>;
      const hubNats = await nats.clientCredentials('isthmus-hub');
      const files = {
        rootCert: join(dir, 'root.crt'),
        rootKey: join(dir, 'root.key'),
        natsCa: join(dir, 'nats-ca.crt'),
        natsCert: join(dir, 'hub-nats.crt'),
        natsKey: join(dir, 'hub-nats.key'),
        natsSeed: join(dir, 'hub-nats.nk'),
        calloutIssuerSeed: join(dir, 'hub-nats-issuer.nk'),
        systemSeed: join(dir, 'hub-nats-system.nk'),
      };
      writeFileSync(files.natsSeed, new TextDecoder().decode(hubNkey.getSeed()), { mode: 0o600 });
      writeFileSync(files.calloutIssuerSeed, new TextDecoder().decode(calloutIssuer.getSeed()), { mode: 0o600 });
      writeFileSync(files.systemSeed, new TextDecoder().decode(systemNkey.getSeed()), { mode: 0o600 });
      writeFileSync(files.rootCert, rootPem);
      writeFileSync(files.rootKey, await privateKeyToPem(rootKeys.privateKey), { mode: 0o600 });
      writeFileSync(files.natsCa, rootPem);
      writeFileSync(files.natsCert, hubNats.cert);
      writeFileSync(files.natsKey, hubNats.key, { mode: 0o600 });

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
          stringifyYaml({
            trustDomain,
            kubeconfig: hubKubeconfig,
            replicaId: `hub-${i}`,
            grpc: { host: '127.0.0.1', port: p.grpc },
            advertiseEndpoints: endpoints,
            status: { host: '127.0.0.1', port: p.status },
            autoAccept: options.autoAccept ?? true,
            heartbeat: {
              interval: options.heartbeatInterval ?? '1s',
              missedBeforeUnknown: options.missedBeforeUnknown ?? 3,
              ...(options.staleAfter ? { staleAfter: options.staleAfter } : {}),
            },
            certificates: { rootCertFile: files.rootCert, rootKeyFile: files.rootKey },
            nats: {
              urls: nats.urls,
              replicas: options.natsCluster ? 3 : 1,
              caFile: files.natsCa,
              certFile: files.natsCert,
              keyFile: files.natsKey,
              nkeySeedFile: files.natsSeed,
              authCallout: { issuerSeedFile: files.calloutIssuerSeed, systemNkeySeedFile: files.systemSeed },
              ...(options.natsTlsFromHub
                ? { serverTlsSecret: { ...NATS_TLS_SECRET, dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'] } }
                : {}),
            },
            ...(options.rotationStageTimeout ? { rotation: { stageTimeout: options.rotationStageTimeout } } : {}),
            ...(options.leaderElection ? { leaderElection: options.leaderElection } : {}),
            ...options.hubSettings,
          }),
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
        const locality = localities[i % localities.length] as Locality;
        const gatewayAddress = lab?.cluster(member.name).gatewayAddress;
        const agentStatusPort = await freePort();
        federation.#agentStatusPorts.set(member.name, agentStatusPort);
        // Every agent answers clusterset.local; each needs a port of its own (UDP and TCP).
        const agentDnsPort = await freePort();
        federation.#agentDnsPorts.set(member.name, agentDnsPort);
        if (gatewayAddress) {
          const gatewayConfig = join(dir, `gateway-${member.name}.yaml`);
          writeFileSync(
            gatewayConfig,
            stringifyYaml({
              clusterId: member.name,
              kubeconfig: await kubeconfigFor(member, 'gateway'),
              inbound: { host: gatewayAddress, port: GATEWAY_INBOUND_PORT },
              outbound: { address: gatewayAddress },
              status: { host: '127.0.0.1', port: GATEWAY_STATUS_PORT },
              drainTimeout: '5s',
              ...options.gatewaySettings,
            }),
          );
          federation.#gatewayConfigs.set(member.name, gatewayConfig);
        }
        writeFileSync(
          configFile,
          stringifyYaml({
            clusterId: member.name,
            ...locality,
            network: 'loopback',
            // Without gateways, RFC 5737 documentation addresses: they only travel through the
            // catalog (nothing dials them); with gateways, the member's real namespace address.
            gatewayAddresses: [{ address: gatewayAddress ?? `192.0.2.${10 + i}`, port: GATEWAY_INBOUND_PORT }],
            kubeconfig: await kubeconfigFor(member, 'agent'),
            status: { host: '127.0.0.1', port: agentStatusPort },
            dns: { host: '127.0.0.1', port: agentDnsPort },
            joinPollInterval: '200ms',
          }),
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
  async cli(args: readonly string[], kubeconfig: string): Promise<CliResult> {
    const cluster = this.bed.cluster(kubeconfig);
    return promisify(execFile)(
      process.execPath,
      [join(repo, 'cli/isthmus.ts'), ...args, '--kubeconfig', cluster.kubeconfigPath],
      { timeout: 180_000 },
    ).then(
      ({ stdout, stderr }) => ({ code: 0, stdout, stderr }),
      (err: { code?: number; stdout?: string; stderr?: string }) => ({
        code: typeof err.code === 'number' ? err.code : 1,
        stdout: err.stdout ?? '',
        stderr: err.stderr ?? '',
      }),
    );
  }

  /** Creates a token on the hub and returns its join flags. */
  async createToken(flags: readonly string[] = []): Promise<{ token: string; caPin: string; hubEndpoints: string[] }> {
    const result = await this.cli(['token', 'create', ...flags, '-o', 'json'], 'hub');
    if (result.code !== 0) throw new Error(`token create failed: ${result.stderr}`);
    return JSON.parse(result.stdout) as { token: string; caPin: string; hubEndpoints: string[] };
  }

  async join(
    cluster: string,
    token: { token: string; caPin: string; hubEndpoints: string[] },
    wait = '60s',
  ): Promise<CliResult> {
    return this.cli(
      ['join', '--hub', token.hubEndpoints.join(','), '--token', token.token, '--ca-pin', token.caPin, '--wait', wait],
      cluster,
    );
  }

  /** Joins every member with one token (creating `namespace` in each first, when given); throws naming a join that failed. */
  async joinAll(namespace?: string): Promise<void> {
    const token = await this.createToken(['--usages', String(this.members.length)]);
    for (const m of this.members) {
      if (namespace) await ensureNamespace(m.kubeConfig(), namespace);
      const result = await this.join(m.name, token);
      if (result.code !== 0) throw new Error(`join of ${m.name} exited ${result.code}: ${result.stderr}`);
    }
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
