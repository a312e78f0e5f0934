// The local test bed: N simulated clusters (etcd + kube-apiserver each, CRDs installed) and a
// nats-server (or a JetStream cluster of them) with TLS, on loopback with free ports. Dispose it
// with `await using`.
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { createLogger } from '../../common/logger.ts';
import { resolveBinaries } from './binaries.ts';
import { LocalCluster } from './cluster.ts';
import { LocalNats, type NatsAuthorization } from './nats.ts';
import { ProcessSupervisor, type ManagedProcess, type StartOptions } from './processes.ts';
import { testbedRoot } from './reaper.ts';

export { LocalCluster } from './cluster.ts';
export { LocalNats, NatsNode, type NatsAuthorization, type NatsClientCredentials } from './nats.ts';
export { DOCKER_OWNER_LABEL, ProcessSupervisor, type ManagedProcess, type StartOptions } from './processes.ts';
export { alive, reapAbandonedContainers, reapAbandonedNetns, reapAbandonedTestbeds, testbedRoot } from './reaper.ts';
export {
  LabCluster,
  NetworkLab,
  labNetwork,
  netnsAvailable,
  type ConnectOutcome,
  type Fault,
  type NetworkLabOptions,
  type Portal,
} from './netns.ts';
export { resolveBinaries, type Binaries } from './binaries.ts';
export { startCoreDns, type CoreDnsOptions, type LocalCoreDns } from './coredns.ts';
export { waitFor, waitForProcess } from './wait.ts';

export interface TestbedOptions {
  /** Number of clusters, named cluster-a, cluster-b, ... unless `names` is given. */
  readonly clusters?: number;
  readonly names?: readonly string[];
  readonly nats?: boolean;
  readonly installCrds?: boolean;
  readonly startTimeoutMs?: number;
  /** Further CAs (PEM) whose client certificates NATS accepts, e.g. the federation root. */
  readonly natsTrustedCas?: readonly string[];
  /** NATS's serving certificate (PEM, with 127.0.0.1 as an IP SAN, and its CA) instead of one from its test CA. */
  readonly natsServerCertificate?: { readonly certPem: string; readonly keyPem: string; readonly caPem: string };
  /** nats-server authorization configuration given the test bed's admin nkey: certificates then map to users (verify_and_map). */
  readonly natsAuthorization?: (adminNkey: string) => NatsAuthorization;
  /** NATS servers: 1 (the default) or a JetStream cluster of that many, on loopback. */
  readonly natsNodes?: number;
  /** Every apiserver writes an audit log (LocalCluster.auditLogPath). */
  readonly audit?: boolean;
}

export class Testbed implements AsyncDisposable {
  readonly dir: string;
  readonly clusters: readonly LocalCluster[];
  readonly nats: LocalNats | undefined;
  /** Wall time from start call to everything ready. */
  readonly startupMs: number;
  readonly #supervisor: ProcessSupervisor;

  constructor(init: {
    supervisor: ProcessSupervisor;
    clusters: LocalCluster[];
    nats: LocalNats | undefined;
    startupMs: number;
  }) {
    this.#supervisor = init.supervisor;
    this.dir = init.supervisor.dir;
    this.clusters = init.clusters;
    this.nats = init.nats;
    this.startupMs = init.startupMs;
  }

  cluster(name: string): LocalCluster {
    const found = this.clusters.find((c) => c.name === name);
    if (!found)
      throw new Error(`no cluster named ${name} in this test bed (${this.clusters.map((c) => c.name).join(', ')})`);
    return found;
  }

  /** Starts a further process (a hub, an agent) under the same supervision and teardown. */
  startProcess(options: StartOptions): Promise<ManagedProcess> {
    return this.#supervisor.start(options);
  }

  /** Every pid the test bed started, for tests that check nothing survives disposal. */
  pids(): number[] {
    return this.#supervisor.processes.map((p) => p.pid);
  }

  /** Summed resident memory of all processes, current and peak, in bytes. */
  memory(): { rss: number; peak: number } {
    return this.#supervisor.processes
      .map((p) => p.memory())
      .reduce((sum, m) => ({ rss: sum.rss + m.rss, peak: sum.peak + m.peak }), { rss: 0, peak: 0 });
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.#supervisor.stopAll();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

export function clusterName(index: number): string {
  return `cluster-${String.fromCharCode(97 + index)}`;
}

export async function startTestbed(options: TestbedOptions = {}): Promise<Testbed> {
  const started = performance.now();
  const log = createLogger({ component: 'testbed' });
  const binaries = await resolveBinaries();
  mkdirSync(testbedRoot, { recursive: true });
  const supervisor = new ProcessSupervisor(mkdtempSync(join(testbedRoot, `tb-${process.pid}-`)));
  const names = options.names ?? Array.from({ length: options.clusters ?? 1 }, (_, i) => clusterName(i));
  const timeoutMs = options.startTimeoutMs ?? 90_000;
  try {
    const [nats, ...clusters] = await Promise.all([
      options.nats === false
        ? Promise.resolve(undefined)
        : LocalNats.start(supervisor, binaries, timeoutMs, {
            trustedCas: options.natsTrustedCas ?? [],
            serverCertificate: options.natsServerCertificate,
            authorization: options.natsAuthorization,
            nodes: options.natsNodes,
          }),
      ...names.map((name) =>
        LocalCluster.start(supervisor, binaries, {
          name,
          installCrds: options.installCrds ?? true,
          startTimeoutMs: timeoutMs,
          audit: options.audit,
        }),
      ),
    ]);
    const startupMs = Math.round(performance.now() - started);
    log.info({ clusters: names, nats: nats?.urls, startupMs, dir: supervisor.dir }, 'test bed ready');
    return new Testbed({ supervisor, clusters: clusters, nats, startupMs });
  } catch (err) {
    await supervisor.stopAll();
    rmSync(supervisor.dir, { recursive: true, force: true });
    throw err;
  }
}
