// A real nats-server with JetStream, TLS and client-certificate authentication, on loopback; or
// a JetStream cluster of several (routes with mutual TLS, each node its own store), where every
// node has the same client TLS and authorization, so a client may be sent to any of them.
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { connect, nkeyAuthenticator, nkeys, type NatsConnection } from '@nats-io/transport-node';
import type { Binaries } from './binaries.ts';
import { TestCa, writePem, type PemFiles } from './certs.ts';
import { freePort } from './ports.ts';
import { httpOk } from './probe.ts';
import type { ManagedProcess, ProcessSupervisor } from './processes.ts';
import { waitForProcess } from './wait.ts';

export interface NatsClientCredentials {
  readonly ca: string;
  readonly cert: string;
  readonly key: string;
}

/** One nats-server of a LocalNats: stopped and started again on the same ports and store. */
export class NatsNode {
  /** Its server_name (what JetStream's cluster reports name, e.g. a stream's leader). */
  readonly name: string;
  readonly url: string;
  readonly monitorUrl: string;
  readonly #launch: () => Promise<ManagedProcess>;
  readonly #healthz: string;
  readonly #timeoutMs: number;
  #process: ManagedProcess | undefined;

  constructor(init: {
    name: string;
    url: string;
    monitorUrl: string;
    launch: () => Promise<ManagedProcess>;
    clustered: boolean;
    timeoutMs: number;
  }) {
    this.name = init.name;
    this.url = init.url;
    this.monitorUrl = init.monitorUrl;
    this.#launch = init.launch;
    // In a cluster, /healthz passes only once the node has a JetStream meta leader and its
    // streams are current: a node brought back has caught up when it says so.
    this.#healthz = `${init.monitorUrl}/healthz${init.clustered ? '' : '?js-enabled-only=true'}`;
    this.#timeoutMs = init.timeoutMs;
  }

  get process(): ManagedProcess {
    if (!this.#process) throw new Error(`nats-server ${this.name} was never started`);
    return this.#process;
  }

  get running(): boolean {
    return this.#process?.running ?? false;
  }

  /** Starts the server (again) and waits until it is healthy. */
  async start(): Promise<void> {
    if (this.#process?.running) await this.#process.stop();
    this.#process = await this.#launch();
    await waitForProcess(
      this.#process,
      `nats-server ${this.name} ${this.#healthz}`,
      () => httpOk(this.#healthz),
      this.#timeoutMs,
      50,
    );
  }

  /** Stops the server (an outage; SIGKILL for a crash); its JetStream data stays. */
  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    if (signal === 'SIGKILL') this.#process?.child.kill('SIGKILL');
    await this.#process?.stop();
  }
}

export class LocalNats {
  /** The first node's URL (the only one, unless started as a cluster). */
  readonly url: string;
  /** Every node's URL, as clients of a cluster are given them. */
  readonly urls: readonly string[];
  readonly monitorUrl: string;
  /** The servers: one, or the members of a JetStream cluster. */
  readonly nodes: readonly NatsNode[];
  /** Issues the test bed's client certificates. */
  readonly ca: TestCa;
  /** The CA that signed the server's certificate (what clients must trust); changes with reloadTls. */
  serverCaPem: string;
  /** With authorization on: the nkey seed of a user with full permissions (the test bed's own clients). */
  readonly adminSeed: string | undefined;
  readonly #timeoutMs: number;
  /** The files every node's nats.conf names for its serving certificate and the client CAs it trusts. */
  readonly #tlsFiles: { serving: PemFiles; clientCaFile: string };

  private constructor(init: {
    nodes: NatsNode[];
    ca: TestCa;
    serverCaPem: string;
    timeoutMs: number;
    adminSeed: string | undefined;
    tlsFiles: { serving: PemFiles; clientCaFile: string };
  }) {
    const first = init.nodes[0] as NatsNode;
    this.nodes = init.nodes;
    this.url = first.url;
    this.urls = init.nodes.map((n) => n.url);
    this.monitorUrl = first.monitorUrl;
    this.ca = init.ca;
    this.serverCaPem = init.serverCaPem;
    this.#timeoutMs = init.timeoutMs;
    this.adminSeed = init.adminSeed;
    this.#tlsFiles = init.tlsFiles;
  }

  /** The first node's process. */
  get process(): ManagedProcess {
    return (this.nodes[0] as NatsNode).process;
  }

  static async start(
    supervisor: ProcessSupervisor,
    binaries: Binaries,
    timeoutMs: number,
    tls: {
      trustedCas: readonly string[];
      serverCertificate?: { certPem: string; keyPem: string; caPem: string } | undefined;
      /**
       * nats-server authorization configuration (e.g. an `accounts` block) given the public nkey of
       * the test bed's admin; when given, certificates map to users (verify_and_map) and the test
       * bed's own clients authenticate with that nkey.
       */
      authorization?: ((adminNkey: string) => NatsAuthorization) | undefined;
      /**
       * Servers: 1 (the default) or a JetStream cluster of that many (routes with mutual TLS from
       * the test bed's CA), each with its own store; client TLS and authorization alike on all.
       */
      nodes?: number | undefined;
    },
  ): Promise<LocalNats> {
    const dir = join(supervisor.dir, 'nats');
    await mkdir(dir, { recursive: true });
    const ca = await TestCa.create(dir, 'nats');
    const serving = tls.serverCertificate
      ? await writePem(dir, 'nats-server', tls.serverCertificate)
      : await ca.issue('nats-server', 'CN=nats-server', { dns: ['localhost'], ip: ['127.0.0.1'], server: true });
    const admin = tls.authorization ? nkeys.createUser() : undefined;
    const authorization = admin && tls.authorization?.(admin.getPublicKey());
    const clientCaFile = join(dir, 'client-cas.pem');
    await writeFile(clientCaFile, [ca.caPem, ...tls.trustedCas].join('\n'));
    const count = tls.nodes ?? 1;
    // Routes dial each other, so a route certificate serves and authenticates as a client.
    const route =
      count > 1
        ? await ca.issue('nats-route', 'CN=nats-route', {
            dns: ['localhost'],
            ip: ['127.0.0.1'],
            server: true,
            client: true,
          })
        : undefined;
    for (let attempt = 1; ; attempt++) {
      const ports = await Promise.all(
        Array.from({ length: count }, async () => ({
          client: await freePort(),
          monitor: await freePort(),
          route: route ? await freePort() : 0,
        })),
      );
      const nodes = await Promise.all(
        ports.map(async (p, i) => {
          const name = count > 1 ? `isthmus-testbed-${i}` : 'isthmus-testbed';
          const nodeDir = count > 1 ? join(dir, name) : dir;
          await mkdir(nodeDir, { recursive: true });
          const configFile = join(nodeDir, 'nats.conf');
          const cluster = route && {
            port: p.route,
            peers: ports.filter((_, j) => j !== i).map((q) => q.route),
            route,
            caFile: ca.caFile,
          };
          await writeFile(
            configFile,
            natsServerConfig({
              name,
              host: '127.0.0.1',
              port: p.client,
              monitorPort: p.monitor,
              dir: nodeDir,
              clientCaFile,
              serving,
              authorization,
              cluster,
            }),
          );
          return new NatsNode({
            name,
            url: `tls://127.0.0.1:${p.client}`,
            monitorUrl: `http://127.0.0.1:${p.monitor}`,
            launch: () =>
              supervisor.start({
                name: count > 1 ? `nats-server-${i}` : 'nats-server',
                command: binaries.natsServer,
                args: ['-c', configFile],
              }),
            clustered: count > 1,
            timeoutMs,
          });
        }),
      );
      try {
        // Together: a cluster's nodes turn healthy only once a quorum has elected a meta leader.
        await Promise.all(nodes.map((n) => n.start()));
        return new LocalNats({
          nodes,
          ca,
          serverCaPem: tls.serverCertificate?.caPem ?? ca.caPem,
          timeoutMs,
          adminSeed: admin && new TextDecoder().decode(admin.getSeed()),
          tlsFiles: { serving, clientCaFile },
        });
      } catch (err) {
        await Promise.all(nodes.map((n) => n.stop()));
        if (attempt >= 3) throw err;
      }
    }
  }

  /** Stops every server (an outage, for static-stability tests); their JetStream data stays. */
  async stop(): Promise<void> {
    await Promise.all(this.nodes.map((n) => n.stop()));
  }

  /** Starts every server again on the same ports with the same JetStream stores. */
  async restart(): Promise<void> {
    await Promise.all(this.nodes.map((n) => n.start()));
  }

  /** One node of a cluster, by index. */
  node(index: number): NatsNode {
    const node = this.nodes[index];
    if (!node) throw new Error(`no NATS node ${index} (there are ${this.nodes.length})`);
    return node;
  }

  /**
   * Swaps the serving certificate and the client CAs it trusts (the test bed's own CA stays
   * trusted) and has every nats-server reload them with SIGHUP, as a config reloader beside NATS
   * does when its mounted Secret changes; resolves once every running server reports the reload.
   */
  async reloadTls(tls: { certPem: string; keyPem: string; caPem: string }): Promise<void> {
    const running = this.nodes.filter((n) => n.running);
    const before = await Promise.all(running.map((n) => configLoadTime(n)));
    const { serving, clientCaFile } = this.#tlsFiles;
    await writeFile(serving.certFile, tls.certPem);
    await writeFile(serving.keyFile, tls.keyPem, { mode: 0o600 });
    await writeFile(clientCaFile, [this.ca.caPem, tls.caPem].join('\n'));
    await Promise.all(
      running.map(async (node, i) => {
        node.process.child.kill('SIGHUP');
        await waitForProcess(
          node.process,
          `nats-server ${node.name} reloaded its TLS files`,
          async () => (await configLoadTime(node)) !== before[i],
          this.#timeoutMs,
          50,
        );
      }),
    );
    this.serverCaPem = tls.caPem;
  }

  /** A client certificate the server accepts (it requires one: verify is on), with subject `CN=<name>` unless one is given. */
  async clientCredentials(name: string, subject = `CN=${name}`): Promise<NatsClientCredentials> {
    const files = await this.ca.issue(`nats-client-${name}`, subject, { client: true });
    return { ca: this.serverCaPem, cert: files.certPem, key: files.keyPem };
  }

  /** A connection with full permissions, to any node (or the one given by index). */
  async connect(name: string, node?: number): Promise<NatsConnection> {
    const creds = await this.clientCredentials(name);
    return connect({
      servers: node === undefined ? [...this.urls] : this.node(node).url,
      name,
      tls: { ca: creds.ca, cert: creds.cert, key: creds.key },
      ...(this.adminSeed ? { authenticator: nkeyAuthenticator(new TextEncoder().encode(this.adminSeed)) } : {}),
      maxReconnectAttempts: -1,
    });
  }
}

async function configLoadTime(node: NatsNode): Promise<string> {
  const response = await fetch(`${node.monitorUrl}/varz`);
  return String(((await response.json()) as { config_load_time?: string }).config_load_time);
}

/** nats-server authorization configuration, and whether certificates map to users (verify_and_map) or are only verified. */
export interface NatsAuthorization {
  readonly config: string;
  readonly mapCertificates: boolean;
}

/** A nats-server configuration: JetStream, client TLS that requires a certificate, optional cluster routes. */
export function natsServerConfig(c: {
  name: string;
  /** The address it listens on (clients, monitoring, routes). */
  host: string;
  port: number;
  monitorPort: number;
  dir: string;
  clientCaFile: string;
  serving: PemFiles;
  authorization: NatsAuthorization | undefined;
  cluster: { port: number; peers: readonly number[]; route: PemFiles; caFile: string } | undefined;
}): string {
  return [
    `listen: "${c.host}:${c.port}"`,
    `http: "${c.host}:${c.monitorPort}"`,
    `server_name: ${c.name}`,
    `jetstream { store_dir: "${join(c.dir, 'jetstream')}", max_memory_store: 268435456, max_file_store: 1073741824 }`,
    `tls { cert_file: "${c.serving.certFile}", key_file: "${c.serving.keyFile}", ca_file: "${c.clientCaFile}", ${c.authorization?.mapCertificates ? 'verify_and_map' : 'verify'}: true, timeout: 2 }`,
    ...(c.cluster
      ? [
          'cluster {',
          '  name: isthmus-testbed',
          `  listen: "${c.host}:${c.cluster.port}"`,
          `  routes: [ ${c.cluster.peers.map((p) => `"nats-route://127.0.0.1:${p}"`).join(', ')} ]`,
          `  tls { cert_file: "${c.cluster.route.certFile}", key_file: "${c.cluster.route.keyFile}", ca_file: "${c.cluster.caFile}", verify: true, timeout: 2 }`,
          '}',
        ]
      : []),
    ...(c.authorization ? [c.authorization.config] : []),
    '',
  ].join('\n');
}
