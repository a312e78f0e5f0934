// A local federation for e2e tests and the demo: the test bed's clusters (one "hub" cluster plus
// members), hub replicas and one agent per member, each a real process; the isthmus CLI runs
// as a process too. The federation root is generated here and plugged into the hub, so NATS can
// trust it from the start (NATS's serving certificate is issued by it as well).
import { execFile } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { CustomObjectsApi } from '@kubernetes/client-node';
import { nkeys } from '@nats-io/transport-node';
import { stringify as stringifyYaml } from 'yaml';
import { federationNatsUsers } from '../../common/nats-authorization.ts';
import { ISTHMUS_GROUP, ISTHMUS_VERSION, MEMBER_CLUSTER_PLURAL, type MemberCluster } from '../../common/api/isthmus.ts';
import { EKU, certificateToPem, generateKeyPair, issueCertificate, privateKeyToPem } from '../../common/pki/x509.ts';
import { freePort } from '../testbed/ports.ts';
import { httpOk } from '../testbed/probe.ts';
import { startTestbed, waitForProcess, type LocalCluster, type ManagedProcess, type Testbed } from '../testbed/index.ts';

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
}

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

export class Federation implements AsyncDisposable {
  readonly bed: Testbed;
  readonly hubCluster: LocalCluster;
  readonly members: readonly LocalCluster[];
  readonly hubs: readonly HubReplica[];
  readonly dir: string;
  readonly #agentConfigs = new Map<string, string>();
  readonly #agents = new Map<string, ManagedProcess>();

  private constructor(bed: Testbed, hubs: HubReplica[], dir: string) {
    this.bed = bed;
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
      { subject: `CN=isthmus test root,O=isthmus,OU=${trustDomain}`, publicKey: rootKeys.publicKey, notAfter: new Date(Date.now() + 30 * day), isCa: true, pathLength: 1 },
      rootKeys,
    );
    const rootPem = certificateToPem(root);
    const natsKeys = await generateKeyPair();
    const natsCert = await issueCertificate(
      { subject: 'CN=nats', publicKey: natsKeys.publicKey, notAfter: new Date(Date.now() + 30 * day), isCa: false, san: { ip: ['127.0.0.1'], dns: ['localhost'] }, extendedKeyUsages: [EKU.serverAuth] },
      { certificate: root, keys: rootKeys },
    );
    // The hub writes to NATS with an nkey; agents are mapped read-only by their certificate.
    const hubNkey = nkeys.createUser();
    const names = ['hub', ...Array.from({ length: memberCount }, (_, i) => `cluster-${String.fromCharCode(97 + i)}`)];
    const bed = await startTestbed({
      names,
      natsTrustedCas: [rootPem],
      natsServerCertificate: { certPem: certificateToPem(natsCert), keyPem: await privateKeyToPem(natsKeys.privateKey), caPem: rootPem },
      natsUsers: federationNatsUsers(hubNkey.getPublicKey()),
    });
    try {
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
      };
      writeFileSync(files.natsSeed, new TextDecoder().decode(hubNkey.getSeed()), { mode: 0o600 });
      writeFileSync(files.rootCert, rootPem);
      writeFileSync(files.rootKey, await privateKeyToPem(rootKeys.privateKey), { mode: 0o600 });
      writeFileSync(files.natsCa, rootPem);
      writeFileSync(files.natsCert, hubNats.cert);
      writeFileSync(files.natsKey, hubNats.key, { mode: 0o600 });

      const replicas = options.hubReplicas ?? 1;
      const ports = await Promise.all(Array.from({ length: replicas }, async () => ({ grpc: await freePort(), status: await freePort() })));
      const endpoints = ports.map((p) => `127.0.0.1:${p.grpc}`);
      const hubs: HubReplica[] = ports.map((p, i) => {
        const configFile = join(dir, `hub-${i}.yaml`);
        writeFileSync(
          configFile,
          stringifyYaml({
            trustDomain,
            kubeconfig: bed.cluster('hub').kubeconfigPath,
            replicaId: `hub-${i}`,
            grpc: { host: '127.0.0.1', port: p.grpc },
            advertiseEndpoints: endpoints,
            status: { host: '127.0.0.1', port: p.status },
            autoAccept: options.autoAccept ?? true,
            heartbeat: { interval: options.heartbeatInterval ?? '1s', missedBeforeUnknown: options.missedBeforeUnknown ?? 3 },
            certificates: { rootCertFile: files.rootCert, rootKeyFile: files.rootKey },
            nats: { urls: [nats.url], caFile: files.natsCa, certFile: files.natsCert, keyFile: files.natsKey, nkeySeedFile: files.natsSeed },
            ...(options.leaderElection ? { leaderElection: options.leaderElection } : {}),
          }),
        );
        return { name: `hub-${i}`, configFile, endpoint: endpoints[i] as string, statusPort: p.status, process: undefined };
      });
      const federation = new Federation(bed, hubs, dir);
      for (const [i, member] of federation.members.entries()) {
        const configFile = join(dir, `agent-${member.name}.yaml`);
        const locality = localities[i % localities.length] as Locality;
        writeFileSync(
          configFile,
          stringifyYaml({
            clusterId: member.name,
            ...locality,
            network: 'loopback',
            // RFC 5737 documentation addresses: they only travel through the catalog into
            // EndpointSlices (which refuse loopback); nothing in these tests dials them.
            gatewayAddresses: [{ address: `192.0.2.${10 + i}`, port: 15443 }],
            kubeconfig: member.kubeconfigPath,
            status: { host: '127.0.0.1', port: 0 },
            joinPollInterval: '200ms',
          }),
        );
        federation.#agentConfigs.set(member.name, configFile);
      }
      await Promise.all(hubs.map((h) => federation.startHub(h.name)));
      await Promise.all(federation.members.map((m) => federation.startAgent(m.name)));
      return federation;
    } catch (err) {
      await bed[Symbol.asyncDispose]();
      throw err;
    }
  }

  get hubEndpoints(): string[] {
    return this.hubs.map((h) => h.endpoint);
  }

  async startHub(name: string): Promise<void> {
    const hub = this.hubs.find((h) => h.name === name);
    if (!hub) throw new Error(`no hub replica ${name}`);
    hub.process = await this.bed.startProcess({ name, command: process.execPath, args: [join(repo, 'hub/main.ts'), '--config', hub.configFile] });
    const started = hub.process;
    await waitForProcess(started, `${name} /readyz`, () => httpOk(`http://127.0.0.1:${hub.statusPort}/readyz`), 60_000, 100);
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
    const agent = await this.bed.startProcess({ name: `agent-${cluster}`, command: process.execPath, args: [join(repo, 'spoke-agent/main.ts'), '--config', configFile] });
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

  /** Runs `isthmus <args>` as a process; `kubeconfig` is 'hub' or a member's name. */
  async cli(args: readonly string[], kubeconfig: string): Promise<CliResult> {
    const cluster = this.bed.cluster(kubeconfig);
    return promisify(execFile)(process.execPath, [join(repo, 'cli/isthmus.ts'), ...args, '--kubeconfig', cluster.kubeconfigPath], { timeout: 180_000 }).then(
      ({ stdout, stderr }) => ({ code: 0, stdout, stderr }),
      (err: { code?: number; stdout?: string; stderr?: string }) => ({ code: typeof err.code === 'number' ? err.code : 1, stdout: err.stdout ?? '', stderr: err.stderr ?? '' }),
    );
  }

  /** Creates a token on the hub and returns its join flags. */
  async createToken(flags: readonly string[] = []): Promise<{ token: string; caPin: string; hubEndpoints: string[] }> {
    const result = await this.cli(['token', 'create', ...flags, '-o', 'json'], 'hub');
    if (result.code !== 0) throw new Error(`token create failed: ${result.stderr}`);
    return JSON.parse(result.stdout) as { token: string; caPin: string; hubEndpoints: string[] };
  }

  async join(cluster: string, token: { token: string; caPin: string; hubEndpoints: string[] }, wait = '60s'): Promise<CliResult> {
    return this.cli(['join', '--hub', token.hubEndpoints.join(','), '--token', token.token, '--ca-pin', token.caPin, '--wait', wait], cluster);
  }

  async memberCluster(id: string): Promise<MemberCluster> {
    const api = this.hubCluster.kubeConfig().makeApiClient(CustomObjectsApi);
    return (await api.getClusterCustomObject({ group: ISTHMUS_GROUP, version: ISTHMUS_VERSION, plural: MEMBER_CLUSTER_PLURAL, name: id })) as MemberCluster;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.bed[Symbol.asyncDispose]();
  }
}
