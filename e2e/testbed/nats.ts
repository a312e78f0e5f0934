// A real nats-server with JetStream, TLS and client-certificate authentication, on loopback.
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

export class LocalNats {
  readonly url: string;
  readonly monitorUrl: string;
  /** Issues the test bed's client certificates. */
  readonly ca: TestCa;
  /** The CA that signed the server's certificate (what clients must trust); changes with reloadTls. */
  serverCaPem: string;
  /** With authorization on: the nkey seed of a user with full permissions (the test bed's own clients). */
  readonly adminSeed: string | undefined;
  readonly #launch: () => Promise<ManagedProcess>;
  readonly #timeoutMs: number;
  /** The files nats.conf names for its serving certificate and the client CAs it trusts. */
  readonly #tlsFiles: { serving: PemFiles; clientCaFile: string };
  #process: ManagedProcess;

  private constructor(init: {
    url: string;
    monitorUrl: string;
    process: ManagedProcess;
    ca: TestCa;
    serverCaPem: string;
    launch: () => Promise<ManagedProcess>;
    timeoutMs: number;
    adminSeed: string | undefined;
    tlsFiles: { serving: PemFiles; clientCaFile: string };
  }) {
    this.url = init.url;
    this.monitorUrl = init.monitorUrl;
    this.#process = init.process;
    this.ca = init.ca;
    this.serverCaPem = init.serverCaPem;
    this.#launch = init.launch;
    this.#timeoutMs = init.timeoutMs;
    this.adminSeed = init.adminSeed;
    this.#tlsFiles = init.tlsFiles;
  }

  get process(): ManagedProcess {
    return this.#process;
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
    },
  ): Promise<LocalNats> {
    const dir = join(supervisor.dir, 'nats');
    await mkdir(dir, { recursive: true });
    const ca = await TestCa.create(dir, 'nats');
    const serving = tls.serverCertificate
      ? await writePem(dir, 'nats-server', tls.serverCertificate)
      : await ca.issue('nats-server', 'CN=nats-server', { dns: ['localhost'], ip: ['127.0.0.1'], server: true });
    const admin = tls.authorization ? nkeys.createUser() : undefined;
    const clientCaFile = join(dir, 'client-cas.pem');
    await writeFile(clientCaFile, [ca.caPem, ...tls.trustedCas].join('\n'));
    for (let attempt = 1; ; attempt++) {
      const [port, monitorPort] = [await freePort(), await freePort()];
      const configFile = join(dir, 'nats.conf');
      await writeFile(configFile, renderConfig({ port, monitorPort, dir, clientCaFile, serving, authorization: admin && tls.authorization?.(admin.getPublicKey()) }));
      const monitorUrl = `http://127.0.0.1:${monitorPort}`;
      const launch = (): Promise<ManagedProcess> => supervisor.start({ name: 'nats-server', command: binaries.natsServer, args: ['-c', configFile] });
      const process = await launch();
      try {
        await waitUntilHealthy(process, monitorUrl, timeoutMs);
        return new LocalNats({
          url: `tls://127.0.0.1:${port}`,
          monitorUrl,
          process,
          ca,
          serverCaPem: tls.serverCertificate?.caPem ?? ca.caPem,
          launch,
          timeoutMs,
          adminSeed: admin && new TextDecoder().decode(admin.getSeed()),
          tlsFiles: { serving, clientCaFile },
        });
      } catch (err) {
        await process.stop();
        if (attempt >= 3) throw err;
      }
    }
  }

  /** Stops the server (an outage, for static-stability tests); its JetStream data stays. */
  async stop(): Promise<void> {
    await this.#process.stop();
  }

  /** Starts it again on the same port with the same JetStream store. */
  async restart(): Promise<void> {
    if (this.#process.running) await this.#process.stop();
    this.#process = await this.#launch();
    await waitUntilHealthy(this.#process, this.monitorUrl, this.#timeoutMs);
  }

  /**
   * Swaps the serving certificate and the client CAs it trusts (the test bed's own CA stays
   * trusted) and has nats-server reload them with SIGHUP, as a config reloader beside NATS does
   * when its mounted Secret changes; resolves once the server reports the reload.
   */
  async reloadTls(tls: { certPem: string; keyPem: string; caPem: string }): Promise<void> {
    const before = await this.#configLoadTime();
    const { serving, clientCaFile } = this.#tlsFiles;
    await writeFile(serving.certFile, tls.certPem);
    await writeFile(serving.keyFile, tls.keyPem, { mode: 0o600 });
    await writeFile(clientCaFile, [this.ca.caPem, tls.caPem].join('\n'));
    this.#process.child.kill('SIGHUP');
    await waitForProcess(this.#process, 'nats-server reloaded its TLS files', async () => (await this.#configLoadTime()) !== before, this.#timeoutMs, 50);
    this.serverCaPem = tls.caPem;
  }

  async #configLoadTime(): Promise<string> {
    const response = await fetch(`${this.monitorUrl}/varz`);
    return String(((await response.json()) as { config_load_time?: string }).config_load_time);
  }

  /** A client certificate the server accepts (it requires one: verify is on), with subject `CN=<name>` unless one is given. */
  async clientCredentials(name: string, subject = `CN=${name}`): Promise<NatsClientCredentials> {
    const files = await this.ca.issue(`nats-client-${name}`, subject, { client: true });
    return { ca: this.serverCaPem, cert: files.certPem, key: files.keyPem };
  }

  async connect(name: string): Promise<NatsConnection> {
    const creds = await this.clientCredentials(name);
    return connect({
      servers: this.url,
      name,
      tls: { ca: creds.ca, cert: creds.cert, key: creds.key },
      ...(this.adminSeed ? { authenticator: nkeyAuthenticator(new TextEncoder().encode(this.adminSeed)) } : {}),
      maxReconnectAttempts: -1,
    });
  }
}

async function waitUntilHealthy(process: ManagedProcess, monitorUrl: string, timeoutMs: number): Promise<void> {
  await waitForProcess(process, 'nats-server /healthz', () => httpOk(`${monitorUrl}/healthz?js-enabled-only=true`), timeoutMs, 50);
}

/** nats-server authorization configuration, and whether certificates map to users (verify_and_map) or are only verified. */
export interface NatsAuthorization {
  readonly config: string;
  readonly mapCertificates: boolean;
}

function renderConfig(c: { port: number; monitorPort: number; dir: string; clientCaFile: string; serving: PemFiles; authorization: NatsAuthorization | undefined }): string {
  return [
    `listen: "127.0.0.1:${c.port}"`,
    `http: "127.0.0.1:${c.monitorPort}"`,
    'server_name: isthmus-testbed',
    `jetstream { store_dir: "${join(c.dir, 'jetstream')}", max_memory_store: 268435456, max_file_store: 1073741824 }`,
    `tls { cert_file: "${c.serving.certFile}", key_file: "${c.serving.keyFile}", ca_file: "${c.clientCaFile}", ${c.authorization?.mapCertificates ? 'verify_and_map' : 'verify'}: true, timeout: 2 }`,
    ...(c.authorization ? [c.authorization.config] : []),
    '',
  ].join('\n');
}
