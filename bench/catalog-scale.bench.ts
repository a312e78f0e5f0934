// Catalog scale benchmark (DESIGN §8: "200 simulated agents × 1,000 services against the real hub
// + NATS: initial convergence ≤ 10 s, update p99 ≤ 1 s, hub memory per remote cluster ≤ 5 MB").
// The hub is the real one (hub/main.ts as its own process, real leader election, the catalog wired
// in); NATS is a real nats-server with JetStream and TLS; every simulated agent joined
// with a bootstrap token through the real Join RPC, holds its own agent certificate and reports
// over mTLS with the agent's own HubSession. Convergence and updates are observed through a KV watch.
// Run: npx node bench/catalog-scale.bench.ts [--clusters 200] [--services 1000] [--exporters 10]
// (about 1–2 minutes).
import { availableParallelism, cpus, loadavg } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { Kvm, type KV } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import { CATALOG_BUCKET, MEMBERS_BUCKET, catalogEntrySchema, catalogKey, type CatalogEntry } from '../common/catalog.ts';
import { isHubCallError, type ExportedService, type ReportExportsResponse } from '../common/hub-api/index.ts';
import { Federation } from '../e2e/federation/index.ts';
import { waitFor, type ManagedProcess } from '../e2e/testbed/index.ts';
import { HubSession } from '../spoke-agent/hub-session.ts';
import { join } from '../spoke-agent/join.ts';

const TARGETS = { convergenceMs: 10_000, updateP99Ms: 1_000, rssPerClusterMb: 5 } as const;
/** Istio multicluster: ~180 MB of istiod memory per remote cluster (300 services, 4,000 endpoints). */
const ISTIO_MB_PER_CLUSTER = 180;
const JOIN_CONCURRENCY = 8;
const UPDATE_BUDGET_MS = 15_000;
const UPDATE_SAMPLES = 300;
const ZONES = ['eu-west-1a', 'eu-west-1b', 'us-east-1a', 'us-east-1b'];

// --- Simulated agents. ------------------------------------------------------------------------

interface SimulatedAgent {
  readonly clusterId: string;
  readonly session: HubSession;
  readonly services: ExportedService[];
  generation: number;
}

function clusterIdOf(index: number): string {
  return `sim-${String(index).padStart(3, '0')}`;
}

/** Service i is exported by `exporters` clusters spread evenly over all of them. */
function exportersOf(service: number, clusters: number, exporters: number): number[] {
  const stride = Math.max(1, Math.floor(clusters / exporters));
  return Array.from({ length: exporters }, (_, j) => (service + j * stride) % clusters);
}

function serviceExport(service: number, cluster: number): ExportedService {
  return {
    namespace: `team-${service % 20}`,
    name: `svc-${service}`,
    type: 'ClusterSetIP',
    ports: [
      { name: 'http', protocol: 'TCP', port: 80, appProtocol: 'http' },
      { name: 'grpc', protocol: 'TCP', port: 9090, appProtocol: 'kubernetes.io/h2c' },
    ],
    sessionAffinity: 'None',
    sessionAffinityTimeoutSeconds: 0,
    exportCreatedAt: new Date(Date.UTC(2025, 0, 1) + cluster * 60_000).toISOString(),
    endpoints: [
      { zone: ZONES[cluster % ZONES.length] as string, ready: 3, total: 3 },
      { zone: ZONES[(cluster + 1) % ZONES.length] as string, ready: 2, total: 2 },
    ],
    allowedClusters: [],
    ipFamilies: ['IPv4'],
    internalTrafficPolicy: 'Cluster',
    trafficDistribution: '',
    exportedLabels: {},
    exportedAnnotations: {},
  };
}

async function joinAgents(fed: Federation, clusters: number, services: number, exporters: number): Promise<SimulatedAgent[]> {
  const exportsBy = Array.from({ length: clusters }, () => [] as ExportedService[]);
  for (let s = 0; s < services; s++) for (const c of exportersOf(s, clusters, exporters)) exportsBy[c]?.push(serviceExport(s, c));
  // One token per worker: concurrent joins on one token would fight over its use counter.
  const perWorker = Math.ceil(clusters / JOIN_CONCURRENCY);
  const tokens = await Promise.all(Array.from({ length: JOIN_CONCURRENCY }, () => fed.createToken(['--usages', String(perWorker), '--ttl', '1h'])));
  const agents: SimulatedAgent[] = [];
  await Promise.all(
    tokens.map(async (token, worker) => {
      for (let c = worker; c < clusters; c += JOIN_CONCURRENCY) {
        const clusterId = clusterIdOf(c);
        const zone = ZONES[c % ZONES.length] as string;
        const credentials = await join(token, {
          clusterId,
          region: zone.slice(0, -1),
          zone,
          network: 'loopback',
          gatewayAddresses: [{ address: '127.0.0.1', port: 15443 }],
          labels: { 'bench.isthmus.dev/group': `g${c % 10}` },
          agentVersion: 'bench',
        });
        agents[c] = { clusterId, session: new HubSession(credentials.hubEndpoints, credentials), services: exportsBy[c] ?? [], generation: 0 };
      }
    }),
  );
  return agents;
}

/** The agent's ReportExports, retried while the hub catches up (membership, leadership, recovery). */
async function report(agent: SimulatedAgent): Promise<ReportExportsResponse> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await agent.session.call('ReportExports', { generation: ++agent.generation, services: agent.services }, 30_000);
    } catch (err) {
      const retry = isHubCallError(err) && (err.retryable || err.code === 'ISTHMUS_CLUSTER_NOT_MEMBER');
      if (!retry || attempt >= 100) throw err;
      await sleep(100);
    }
  }
}

// --- Observing the catalog through a KV watch. ------------------------------------------------

class CatalogObserver {
  readonly #exporters: number;
  readonly #waiters = new Map<string, Set<{ matches: (entry: CatalogEntry) => boolean; resolve: (at: number) => void }>>();
  /** Keys whose entry lists every exporter. */
  readonly #complete = new Set<string>();
  #convergence: { expected: number; resolve: (at: number) => void } | undefined;

  private constructor(exporters: number) {
    this.#exporters = exporters;
  }

  static async start(nc: NatsConnection, exporters: number): Promise<{ observer: CatalogObserver; kv: KV }> {
    let kv: KV | undefined;
    await waitFor('the catalog bucket', async () => {
      kv = await new Kvm(nc).open(CATALOG_BUCKET).catch(() => undefined);
      return kv !== undefined;
    }, 60_000, 100);
    const observer = new CatalogObserver(exporters);
    const watch = await (kv as KV).watch();
    void (async () => {
      for await (const update of watch) observer.#apply(update.key, update.operation === 'PUT' ? catalogEntrySchema.parse(update.json()) : undefined);
    })();
    return { observer, kv: kv as KV };
  }

  /** Resolves with the time at which `expected` entries each list every exporter. */
  converged(expected: number): Promise<number> {
    return new Promise((resolve) => {
      if (this.#complete.size >= expected) resolve(performance.now());
      else this.#convergence = { expected, resolve };
    });
  }

  /** Resolves with the time the entry first satisfies `matches`. */
  awaitEntry(key: string, matches: (entry: CatalogEntry) => boolean): Promise<number> {
    return new Promise((resolve) => {
      let forKey = this.#waiters.get(key);
      if (!forKey) this.#waiters.set(key, (forKey = new Set()));
      forKey.add({ matches, resolve });
    });
  }

  #apply(key: string, entry: CatalogEntry | undefined): void {
    const at = performance.now();
    if (entry?.clusters.length === this.#exporters) this.#complete.add(key);
    else this.#complete.delete(key);
    if (this.#convergence && this.#complete.size >= this.#convergence.expected) {
      this.#convergence.resolve(at);
      this.#convergence = undefined;
    }
    for (const waiter of this.#waiters.get(key) ?? []) {
      if (!entry || !waiter.matches(entry)) continue;
      this.#waiters.get(key)?.delete(waiter);
      waiter.resolve(at);
    }
  }
}

// --- The run. ---------------------------------------------------------------------------------

interface Result {
  readonly clusters: number;
  readonly services: number;
  readonly exporters: number;
  readonly joinMs: number;
  readonly convergenceMs: number;
  readonly convergenceWrites: number;
  readonly reportAck: Percentiles;
  readonly update: Percentiles;
  readonly updateAck: Percentiles;
  readonly updateSamples: number;
  readonly rssBeforeMb: number;
  readonly rssAfterMb: number;
  /** The restarted hub's RSS once every cluster reported again: no garbage from 200 joins. */
  readonly rssSteadyMb: number;
  readonly failoverMs: number;
  readonly failoverWrites: number;
}

interface Percentiles {
  readonly p50: number;
  readonly p99: number;
  readonly max: number;
}

function percentiles(samples: readonly number[]): Percentiles {
  const sorted = [...samples].sort((a, b) => a - b);
  const at = (q: number): number => sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * q))] ?? Number.NaN;
  return { p50: at(0.5), p99: at(0.99), max: sorted.at(-1) ?? Number.NaN };
}

const mb = (bytes: number): number => bytes / 1024 / 1024;

function hubProcess(fed: Federation): ManagedProcess {
  const hub = fed.hubs[0]?.process;
  if (!hub) throw new Error('the federation has no running hub');
  return hub;
}

async function lastSequence(kv: KV): Promise<number> {
  return (await kv.status()).streamInfo.state.last_seq;
}

async function run(clusters: number, services: number, exporters: number): Promise<Result> {
  await using fed = await Federation.start({ members: 0, hubReplicas: 1, heartbeatInterval: '10m' });
  const nats = fed.bed.nats as NonNullable<typeof fed.bed.nats>;
  const nc = await nats.connect('bench-observer');
  try {
    const { observer, kv } = await CatalogObserver.start(nc, exporters);
    await sleep(1_000); // let the idle hub settle before the baseline
    const rssBefore = hubProcess(fed).memory().rss;

    const joinStarted = performance.now();
    const agents = await joinAgents(fed, clusters, services, exporters);
    const members = await new Kvm(nc).open(MEMBERS_BUCKET);
    await waitFor('every member published', async () => (await members.status()).values >= clusters, 60_000, 100);
    const joinMs = performance.now() - joinStarted;

    const sequenceBefore = await lastSequence(kv);
    const converged = observer.converged(services);
    const reportStarted = performance.now();
    const acks = await Promise.all(
      agents.map(async (agent) => {
        const begun = performance.now();
        await report(agent);
        return performance.now() - begun;
      }),
    );
    const convergenceMs = (await converged) - reportStarted;
    const convergenceWrites = (await lastSequence(kv)) - sequenceBefore;

    // Updates: one cluster's endpoints of one service change; the agent reports its full set.
    const updateLatencies: number[] = [];
    const updateAcks: number[] = [];
    const updatesEnd = performance.now() + UPDATE_BUDGET_MS;
    for (let i = 0; i < UPDATE_SAMPLES && performance.now() < updatesEnd; i++) {
      const agent = agents[(i * 7919) % agents.length] as SimulatedAgent;
      const index = i % agent.services.length;
      const service = agent.services[index] as ExportedService;
      const ready = 1_000 + i;
      agent.services[index] = { ...service, endpoints: [{ zone: ZONES[0] as string, ready, total: ready }] };
      const seen = observer.awaitEntry(catalogKey(service.namespace, service.name), (e) => e.clusters.some((c) => c.clusterId === agent.clusterId && c.endpoints[0]?.ready === ready));
      const begun = performance.now();
      await report(agent);
      updateAcks.push(performance.now() - begun);
      updateLatencies.push((await seen) - begun);
    }
    const rssAfter = hubProcess(fed).memory().rss;

    // Hub restart: a new hub process recovers from the bucket; every agent reports again.
    await fed.stopHub('hub-0');
    const failoverStarted = performance.now();
    const sequenceBeforeFailover = await lastSequence(kv);
    await fed.startHub('hub-0');
    await Promise.all(agents.map((agent) => report(agent)));
    const failoverMs = performance.now() - failoverStarted;
    const failoverWrites = (await lastSequence(kv)) - sequenceBeforeFailover;
    const rssSteady = hubProcess(fed).memory().rss;
    for (const agent of agents) agent.session.close();

    return {
      clusters,
      services,
      exporters,
      joinMs,
      convergenceMs,
      convergenceWrites,
      reportAck: percentiles(acks),
      update: percentiles(updateLatencies),
      updateAck: percentiles(updateAcks),
      updateSamples: updateLatencies.length,
      rssBeforeMb: mb(rssBefore),
      rssAfterMb: mb(rssAfter),
      rssSteadyMb: mb(rssSteady),
      failoverMs,
      failoverWrites,
    };
  } finally {
    await nc.close();
  }
}

function printTable(r: Result): void {
  const rssPerCluster = (r.rssAfterMb - r.rssBeforeMb) / r.clusters;
  const verdict = (ok: boolean): string => (ok ? 'met' : 'MISSED');
  const ms = (value: number): string => (value >= 100 ? `${value.toFixed(0)} ms` : `${value.toFixed(1)} ms`);
  const rows: [string, string, string, string][] = [
    ['initial convergence (all entries in KV)', ms(r.convergenceMs), `≤ ${TARGETS.convergenceMs / 1000} s`, verdict(r.convergenceMs <= TARGETS.convergenceMs)],
    ['update, report → KV watch: p50', ms(r.update.p50), '', ''],
    ['update, report → KV watch: p99', ms(r.update.p99), `≤ ${TARGETS.updateP99Ms / 1000} s`, verdict(r.update.p99 <= TARGETS.updateP99Ms)],
    ['hub RSS per remote cluster', `${rssPerCluster.toFixed(2)} MB`, `≤ ${TARGETS.rssPerClusterMb} MB`, verdict(rssPerCluster <= TARGETS.rssPerClusterMb)],
    ['  vs Istio ~180 MB per remote cluster', `${(ISTIO_MB_PER_CLUSTER / Math.max(rssPerCluster, 0.01)).toFixed(0)}× less`, '', ''],
  ];
  const width = Math.max(...rows.map(([label]) => label.length)) + 2;
  console.log(`${'metric'.padEnd(width)}${'measured'.padStart(14)}${'DESIGN §8'.padStart(12)}${'verdict'.padStart(9)}`);
  console.log('-'.repeat(width + 35));
  for (const [label, value, target, result] of rows) console.log(`${label.padEnd(width)}${value.padStart(14)}${target.padStart(12)}${result.padStart(9)}`);
  console.log(`
details
  ${r.clusters} agents joined (real Join RPC, token per worker, ${JOIN_CONCURRENCY} at once) in ${ms(r.joinMs)}
  initial reports: ${r.clusters} concurrent ReportExports, ack p50 ${ms(r.reportAck.p50)} / p99 ${ms(r.reportAck.p99)}; ${r.convergenceWrites} KV writes for ${r.services} entries (${r.services * r.exporters} exports)
  updates: ${r.updateSamples} sequential, watch-observed p50 ${ms(r.update.p50)} / p99 ${ms(r.update.p99)} / max ${ms(r.update.max)}; ack p99 ${ms(r.updateAck.p99)}
  hub RSS ${r.rssBeforeMb.toFixed(1)} MB idle → ${r.rssAfterMb.toFixed(1)} MB with ${r.clusters} clusters, their mTLS connections and MemberCluster caches
    (the verdict above; it includes garbage from ${r.clusters} joins not yet collected). Restarted hub, every cluster reported again:
    ${r.rssSteadyMb.toFixed(1)} MB, ${((r.rssSteadyMb - r.rssBeforeMb) / r.clusters).toFixed(2)} MB per remote cluster
  hub restart: stop, new hub process, all ${r.clusters} re-reports acknowledged in ${ms(r.failoverMs)}; KV writes meanwhile: ${r.failoverWrites} (unchanged entries are not rewritten)`);
}

if (import.meta.main) {
  const { values } = parseArgs({
    options: { clusters: { type: 'string', default: '200' }, services: { type: 'string', default: '1000' }, exporters: { type: 'string', default: '10' } },
  });
  process.env.ISTHMUS_LOG_LEVEL ??= 'warn'; // the table is the output; the hub's log goes to its file
  const [clusters, services, exporters] = [Number(values.clusters), Number(values.services), Number(values.exporters)];
  console.log(`Isthmus catalog scale benchmark — Node ${process.version}, ${availableParallelism()} × ${cpus()[0]?.model ?? 'unknown CPU'}, load ${loadavg()[0]?.toFixed(2)}`);
  console.log(`${clusters} simulated agents, ${services} services, each exported by ${exporters} clusters; real hub process, real nats-server, mTLS gRPC\n`);
  printTable(await run(clusters, services, exporters));
}
