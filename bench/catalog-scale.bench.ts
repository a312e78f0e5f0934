// Catalog scale benchmark (DESIGN §8: "500 simulated agents × 5,000 services (each exported by 10
// clusters) against the real hub + NATS: initial convergence ≤ 10 s, update p99 ≤ 100 ms, hub
// memory per remote cluster ≤ 2 MB"), and what the idle hub's memory is spent on.
// The hub is the real one (hub/main.ts as its own process, real leader election, the catalog wired
// in); NATS is a real nats-server with JetStream and TLS; every simulated agent joined with a
// bootstrap token through the real Join RPC, holds its own agent certificate and reports over mTLS
// with the agent's own HubSession. Convergence and updates are observed through a KV watch on an
// admin connection (the bench's observer, not an agent: agents read by direct get).
// Bounded on a small machine that plays the hub, NATS, an apiserver and every agent at once: joins,
// first connections and the reconnections after the hub restart go CONNECT_CONCURRENCY at a time
// (hundreds of simultaneous mTLS set-ups starve everything else), every phase has a time limit, and
// everything started (processes, channels, the diagnostics folder) is gone when it ends.
// Run: npm run bench -- catalog-scale [--clusters 500] [--services 5000] [--exporters 10] [--profile-hub]
// (about 2–5 minutes at full size on 2 cores, with the load; --profile-hub keeps the hub's --cpu-prof profiles).
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { readdir, stat } from 'node:fs/promises';
import { availableParallelism, cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs, promisify } from 'node:util';
import { Kvm, type KV } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import { backoffDelay } from '../common/backoff.ts';
import { CATALOG_BUCKET, MEMBERS_BUCKET, catalogKey, type CatalogEntry } from '../common/catalog.ts';
import { isHubCallError, type ExportedService, type ReportExportsResponse } from '../common/hub-api/index.ts';
import { Federation } from '../local/federation/index.ts';
import { waitFor, type ManagedProcess } from '../local/testbed/index.ts';
import { HubSession } from '../spoke-agent/hub-session.ts';
import { generateJoinKeys, isTerminalJoinError, join as joinHub } from '../spoke-agent/join.ts';

const TARGETS = { convergenceMs: 10_000, updateP99Ms: 100, rssPerClusterMb: 2 } as const;
/** Istio multicluster: ~180 MB of istiod memory per remote cluster (300 services, 4,000 endpoints). */
const ISTIO_MB_PER_CLUSTER = 180;
/** Joins, first calls and reconnections in flight at once: each is an mTLS handshake on both ends. */
const CONNECT_CONCURRENCY = 16;
const UPDATE_BUDGET_MS = 15_000;
const UPDATE_SAMPLES = 300;
/** Longest wait for any one phase (joins, connections, convergence, one update, the restart). */
const PHASE_TIMEOUT_MS = 300_000;
const UPDATE_TIMEOUT_MS = 10_000;
/** Twelve times the target: a missed target is still a figure, a stuck catalog fails the run. */
const CONVERGENCE_TIMEOUT_MS = 120_000;
const ZONES = ['eu-west-1a', 'eu-west-1b', 'us-east-1a', 'us-east-1b'];

// --- Bounds. ----------------------------------------------------------------------------------

/** Rejects with a message naming `what` when `promise` takes longer than `ms`. */
async function within<T>(what: string, ms: number, promise: Promise<T>): Promise<T> {
  const timeout = new AbortController();
  try {
    return await Promise.race([
      promise,
      sleep(ms, undefined, { signal: timeout.signal }).then(() => {
        throw new Error(`${what} took longer than ${ms / 1000} s`);
      }),
    ]);
  } finally {
    timeout.abort();
  }
}

/** Runs `fn` over `items`, at most `limit` at a time; results in the items' order. */
async function boundedMap<T, R>(
  items: readonly T[],
  limit: number,
  fn: (item: T, index: number) => Promise<R>,
): Promise<R[]> {
  const results: R[] = new Array<R>(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    for (let i = next++; i < items.length; i = next++) results[i] = await fn(items[i] as T, i);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}

/**
 * Retries `work` as an agent does while the hub catches up (a lost lease on a loaded machine,
 * recovery, membership not yet seen), 0.1 s doubling to 1 s between attempts, at most `attempts`.
 */
async function retrying<T>(work: () => Promise<T>, retryable: (err: unknown) => boolean, attempts = 100): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await work();
    } catch (err) {
      if (!retryable(err) || attempt >= attempts) throw err;
      await sleep(backoffDelay(attempt, { initialMs: 100, maxMs: 1_000 }));
    }
  }
}

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

/** Joins every cluster, CONNECT_CONCURRENCY at a time, one token per worker (concurrent joins on one token would fight over its use counter). */
async function joinAgents(
  fed: Federation,
  clusters: number,
  services: number,
  exporters: number,
): Promise<{ agents: SimulatedAgent[]; tokensMs: number }> {
  const exportsBy = Array.from({ length: clusters }, () => [] as ExportedService[]);
  for (let s = 0; s < services; s++)
    for (const c of exportersOf(s, clusters, exporters)) exportsBy[c]?.push(serviceExport(s, c));
  const workers = Math.min(CONNECT_CONCURRENCY, clusters);
  const perWorker = Math.ceil(clusters / workers);
  const tokensStarted = performance.now();
  const tokens = await Promise.all(
    Array.from({ length: workers }, () => fed.createToken(['--usages', String(perWorker), '--ttl', '1h'])),
  );
  const tokensMs = performance.now() - tokensStarted;
  const agents: SimulatedAgent[] = [];
  await Promise.all(
    tokens.map(async (token, worker) => {
      for (let c = worker; c < clusters; c += workers) {
        const clusterId = clusterIdOf(c);
        const zone = ZONES[c % ZONES.length] as string;
        const facts = {
          clusterId,
          region: zone.slice(0, -1),
          zone,
          network: 'loopback',
          gatewayAddresses: [{ address: '127.0.0.1', port: 15443 }],
          labels: { 'bench.isthmus.dev/group': `g${c % 10}` },
          agentVersion: 'bench',
        };
        const keys = await generateJoinKeys(); // every retry of one join offers the same keys
        const credentials = await retrying(
          () => joinHub(token, facts, keys),
          (err) => !isTerminalJoinError(err),
        );
        agents[c] = {
          clusterId,
          session: new HubSession(credentials.hubEndpoints, credentials),
          services: exportsBy[c] ?? [],
          generation: 0,
        };
      }
    }),
  );
  return { agents, tokensMs };
}

/** An agent's first heartbeat: opens its mTLS channel, as a real agent's does before it reports. */
async function heartbeat(agent: SimulatedAgent): Promise<void> {
  const call = (): Promise<unknown> =>
    agent.session.call('Heartbeat', {
      agentVersion: 'bench',
      trustBundleSequence: 0,
      exportCount: agent.services.length,
      intermediateExpiry: '',
      rootInUse: '',
      appliedPolicies: [],
      appliedPoliciesKnown: false,
    });
  await retrying(call, (err) => isHubCallError(err) && err.retryable);
}

/** The agent's ReportExports, retried while the hub catches up (membership, leadership, recovery). */
async function report(agent: SimulatedAgent): Promise<ReportExportsResponse> {
  return retrying(
    () => agent.session.call('ReportExports', { generation: ++agent.generation, services: agent.services }, 30_000),
    (err) => isHubCallError(err) && (err.retryable || err.code === 'ISTHMUS_CLUSTER_NOT_MEMBER'),
  );
}

// --- Observing the catalog through a KV watch. ------------------------------------------------

class CatalogObserver {
  readonly #exporters: number;
  readonly #waiters = new Map<
    string,
    Set<{ matches: (entry: CatalogEntry) => boolean; resolve: (at: number) => void }>
  >();
  /** Keys whose entry lists every exporter. */
  readonly #complete = new Set<string>();
  readonly #seen = new Set<string>();
  /** The observer's NATS connection events (a slow consumer, a reconnect) by type. */
  readonly #connectionEvents = new Map<string, number>();
  #convergence: { expected: number; resolve: (at: number) => void } | undefined;

  private constructor(exporters: number) {
    this.#exporters = exporters;
  }

  static async start(nc: NatsConnection, exporters: number): Promise<{ observer: CatalogObserver; kv: KV }> {
    let kv: KV | undefined;
    await waitFor(
      'the catalog bucket',
      async () => {
        kv = await new Kvm(nc).open(CATALOG_BUCKET).catch(() => undefined);
        return kv !== undefined;
      },
      60_000,
      100,
    );
    const observer = new CatalogObserver(exporters);
    void (async () => {
      for await (const status of nc.status())
        observer.#connectionEvents.set(status.type, (observer.#connectionEvents.get(status.type) ?? 0) + 1);
    })();
    const watch = await (kv as KV).watch();
    void (async () => {
      // Taken as the hub wrote it, not validated: the observer shares the 2 cores it measures.
      for await (const update of watch)
        observer.#apply(update.key, update.operation === 'PUT' ? update.json<Partial<CatalogEntry>>() : undefined);
    })();
    return { observer, kv: kv as KV };
  }

  /** For a time-out's message: what the watch has seen. */
  describe(): string {
    const events = [...this.#connectionEvents].map(([type, count]) => `${type} ×${count}`).join(', ') || 'none';
    return `the watch saw ${this.#seen.size} keys, ${this.#complete.size} of them listing all ${this.#exporters} exporters; connection events: ${events}`;
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

  /** `value`: a catalog entry, or a tombstone (no clusters), or undefined for a delete. */
  #apply(key: string, value: Partial<CatalogEntry> | undefined): void {
    const at = performance.now();
    this.#seen.add(key);
    const entry = Array.isArray(value?.clusters) ? (value as CatalogEntry) : undefined;
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

// --- The hub's memory. ------------------------------------------------------------------------

interface HubMemory {
  readonly rss: number;
  /** Anonymous pages (heaps, malloc) and file-backed ones (the node binary and libraries). */
  readonly rssAnon: number;
  readonly rssFile: number;
  readonly heapTotal: number;
  readonly heapUsed: number;
  /** Memory of C++ objects bound to JS ones (Buffers, TLS and HTTP/2 state), as V8 is told. */
  readonly external: number;
  /** V8 heap spaces: used bytes. */
  readonly spaces: ReadonlyMap<string, number>;
  /** The longest event-loop delay since the previous reading (prom-client resets it on each scrape). */
  readonly lagMaxMs: number;
}

/** /proc for the process's resident pages, the hub's /metrics (prom-client's default Node metrics) for V8's view. */
async function hubMemory(process: ManagedProcess, statusPort: number): Promise<HubMemory> {
  const status = readFileSync(`/proc/${process.pid}/status`, 'utf8');
  const kb = (key: string): number => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? 0) * 1024;
  const metrics = await (await fetch(`http://127.0.0.1:${statusPort}/metrics`)).text();
  const gauge = (name: string): number =>
    Number(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'm').exec(metrics)?.[1] ?? Number.NaN);
  const spaces = new Map<string, number>();
  for (const m of metrics.matchAll(/^nodejs_heap_space_size_used_bytes\{[^}]*\bspace="([^"]+)"[^}]*\} (\S+)$/gm))
    spaces.set(m[1] as string, Number(m[2]));
  return {
    rss: kb('VmRSS'),
    rssAnon: kb('RssAnon'),
    rssFile: kb('RssFile'),
    heapTotal: gauge('nodejs_heap_size_total_bytes'),
    heapUsed: gauge('nodejs_heap_size_used_bytes'),
    external: gauge('nodejs_external_memory_bytes'),
    spaces,
    lagMaxMs: gauge('nodejs_eventloop_lag_max_seconds') * 1000,
  };
}

/** What loading modules alone costs: a fresh Node process imports them, collects garbage and reports its RSS and heap used. */
async function loadedMemory(modules: readonly string[]): Promise<{ rss: number; heapUsed: number }> {
  const script = `
    const { readFileSync } = await import('node:fs');
    for (const m of JSON.parse(process.argv[1])) await import(m);
    globalThis.gc();
    await new Promise((resolve) => setTimeout(resolve, 300));
    globalThis.gc();
    const rss = Number(/^VmRSS:\\s+(\\d+) kB/m.exec(readFileSync('/proc/self/status', 'utf8'))?.[1]) * 1024;
    console.log(JSON.stringify({ rss, heapUsed: process.memoryUsage().heapUsed }));`;
  const { stdout } = await promisify(execFile)(
    process.execPath,
    ['--expose-gc', '--input-type=module', '-e', script, JSON.stringify(modules)],
    { timeout: 60_000 },
  );
  return JSON.parse(stdout) as { rss: number; heapUsed: number };
}

interface LoadedMemory {
  readonly bareNode: { rss: number; heapUsed: number };
  readonly clientNode: { rss: number; heapUsed: number };
  readonly hubModules: { rss: number; heapUsed: number };
}

async function loadedMemories(): Promise<LoadedMemory> {
  return {
    bareNode: await loadedMemory([]),
    clientNode: await loadedMemory([import.meta.resolve('@kubernetes/client-node')]),
    hubModules: await loadedMemory([new URL('../hub/hub.ts', import.meta.url).href]),
  };
}

interface HeapAnalysis {
  /** Self sizes per heap snapshot node type (code, string, object, ...). */
  readonly byType: ReadonlyMap<string, number>;
  /** Source text held by scripts (their `source` strings), total and per package. */
  readonly sourceTotal: number;
  readonly sourceByPackage: ReadonlyMap<string, number>;
  readonly scripts: number;
  readonly total: number;
}

interface HeapSnapshotFile {
  readonly snapshot: {
    readonly meta: { readonly node_fields: string[]; readonly node_types: [string[]]; readonly edge_fields: string[] };
  };
  readonly nodes: number[];
  readonly edges: number[];
  readonly strings: string[];
}

/** Which package a script's URL belongs to: an npm package, the project itself, or Node's own. */
function packageOf(url: string): string {
  const inModules = /node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(url);
  if (inModules) return inModules[1] as string;
  if (url.startsWith('node:') || !url.includes('/')) return 'node (built in)';
  return 'isthmus';
}

/** Sums a V8 heap snapshot by node type, and the script source strings by package. */
function analyzeHeapSnapshot(file: string): HeapAnalysis {
  const { snapshot, nodes, edges, strings } = JSON.parse(readFileSync(file, 'utf8')) as HeapSnapshotFile;
  const nf = snapshot.meta.node_fields;
  const nodeFields = nf.length;
  const edgeFields = snapshot.meta.edge_fields.length;
  const [typeAt, nameAt, sizeAt, edgeCountAt] = ['type', 'name', 'self_size', 'edge_count'].map((f) =>
    nf.indexOf(f),
  ) as [number, number, number, number];
  const [edgeNameAt, edgeToAt] = ['name_or_index', 'to_node'].map((f) => snapshot.meta.edge_fields.indexOf(f)) as [
    number,
    number,
  ];
  const types = snapshot.meta.node_types[0];
  const typeOf = (node: number): string => types[nodes[node + typeAt] as number] ?? 'unknown';
  const firstEdge = new Int32Array(nodes.length / nodeFields + 1);
  for (let n = 0, e = 0; n < nodes.length; n += nodeFields) {
    firstEdge[n / nodeFields] = e;
    e += (nodes[n + edgeCountAt] as number) * edgeFields;
  }
  const edgesOf = function* (node: number): Generator<{ name: string; to: number }> {
    const start = firstEdge[node / nodeFields] as number;
    const end = start + (nodes[node + edgeCountAt] as number) * edgeFields;
    for (let e = start; e < end; e += edgeFields)
      yield { name: strings[edges[e + edgeNameAt] as number] ?? '', to: edges[e + edgeToAt] as number };
  };
  const counted = new Set<number>();
  /** A string's characters: its own, or a cons string's parts (each counted once). */
  const stringBytes = (node: number): number => {
    if (counted.has(node) || !typeOf(node).includes('string')) return 0;
    counted.add(node);
    let bytes = nodes[node + sizeAt] as number;
    if (typeOf(node) !== 'string') for (const edge of edgesOf(node)) bytes += stringBytes(edge.to);
    return bytes;
  };
  const byType = new Map<string, number>();
  const sourceByPackage = new Map<string, number>();
  let total = 0;
  let sourceTotal = 0;
  let scripts = 0;
  for (let n = 0; n < nodes.length; n += nodeFields) {
    const size = nodes[n + sizeAt] as number;
    total += size;
    byType.set(typeOf(n), (byType.get(typeOf(n)) ?? 0) + size);
    if (typeOf(n) !== 'code') continue;
    // A Script: a code node named by its URL, with an internal `source` edge to its text.
    for (const edge of edgesOf(n)) {
      if (edge.name !== 'source') continue;
      const bytes = stringBytes(edge.to);
      if (bytes === 0) continue;
      scripts++;
      sourceTotal += bytes;
      const pkg = packageOf(strings[nodes[n + nameAt] as number] ?? '');
      sourceByPackage.set(pkg, (sourceByPackage.get(pkg) ?? 0) + bytes);
    }
  }
  return { byType, sourceTotal, sourceByPackage, scripts, total };
}

/** Has the hub (started with --heapsnapshot-signal) write a heap snapshot into `dir`, and analyzes it. */
async function hubHeapSnapshot(process: ManagedProcess, dir: string): Promise<HeapAnalysis> {
  const before = new Set(readdirSync(dir));
  process.child.kill('SIGUSR2');
  let file: string | undefined;
  let analysis: HeapAnalysis | undefined;
  let lastSize = -1;
  // Written by the hub's main thread, so complete once its size stops changing and it parses.
  await waitFor(
    'the hub heap snapshot',
    async () => {
      file ??= (await readdir(dir)).find((f) => f.endsWith('.heapsnapshot') && !before.has(f));
      if (!file) return false;
      const { size } = await stat(join(dir, file));
      if (size !== lastSize) {
        lastSize = size;
        return false;
      }
      analysis = analyzeHeapSnapshot(join(dir, file));
      return true;
    },
    60_000,
    500,
  );
  rmSync(join(dir, file as string), { force: true });
  return analysis as HeapAnalysis;
}

// --- The run. ---------------------------------------------------------------------------------

interface Result {
  readonly clusters: number;
  readonly services: number;
  readonly exporters: number;
  readonly joinMs: number;
  /** Of joinMs: creating the tokens with the CLI. */
  readonly tokensMs: number;
  readonly connectMs: number;
  readonly convergenceMs: number;
  readonly convergenceWrites: number;
  readonly convergenceCpu: CpuUse;
  readonly reportAck: Percentiles;
  readonly update: Percentiles;
  readonly updateAck: Percentiles;
  readonly updateSamples: number;
  readonly idle: HubMemory;
  readonly idleHeap: HeapAnalysis;
  readonly loaded: LoadedMemory;
  /** The restarted idle hub, the baseline of the per-cluster figure. */
  readonly before: HubMemory;
  readonly after: HubMemory;
  /** The restarted hub's memory once every cluster reported again: no garbage from the joins. */
  readonly steady: HubMemory;
  readonly failoverMs: number;
  readonly failoverWrites: number;
  /** SIGTERM to exit of the loaded hub. */
  readonly hubStopMs: number;
  /** The hub's longest event-loop delay in each phase. */
  readonly lag: Readonly<Record<'join' | 'connect' | 'convergence' | 'updates' | 'restart', number>>;
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

async function memoryOf(fed: Federation): Promise<HubMemory> {
  return hubMemory(hubProcess(fed), (fed.hubs[0] as (typeof fed.hubs)[number]).statusPort);
}

/** The hub's longest event-loop delay since the previous reading. */
async function lagOf(fed: Federation): Promise<number> {
  return (await memoryOf(fed)).lagMaxMs;
}

/**
 * SIGTERM, and up to the hub's own stop timeout (15 s) for it to exit by itself (a CPU profile is
 * only written then), before the test bed's stop (SIGKILL after 5 s). Returns how long it took.
 */
async function stopHub(fed: Federation): Promise<number> {
  const hub = hubProcess(fed);
  const started = performance.now();
  hub.child.kill('SIGTERM');
  await within('the hub stopping', 20_000, hub.exited()).catch(() => undefined);
  const stopMs = performance.now() - started;
  await fed.stopHub('hub-0');
  return stopMs;
}

/** CPU seconds (user + system) a process has used, from /proc (clock ticks of 10 ms). */
function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

interface CpuUse {
  readonly hub: number;
  readonly nats: number;
  /** This process: every simulated agent's side of the calls, and the observer. */
  readonly bench: number;
}

function cpuNow(fed: Federation): CpuUse {
  const nats = fed.bed.nats?.process.pid;
  return {
    hub: cpuSeconds(hubProcess(fed).pid),
    nats: nats === undefined ? Number.NaN : cpuSeconds(nats),
    bench: process.cpuUsage().user / 1e6 + process.cpuUsage().system / 1e6,
  };
}

function cpuSince(before: CpuUse, after: CpuUse): CpuUse {
  return { hub: after.hub - before.hub, nats: after.nats - before.nats, bench: after.bench - before.bench };
}

async function lastSequence(kv: KV): Promise<number> {
  return (await kv.status()).streamInfo.state.last_seq;
}

async function run(clusters: number, services: number, exporters: number, diagnostics: string): Promise<Result> {
  await using fed = await Federation.start({
    members: 0,
    hubReplicas: 1,
    heartbeatInterval: '10m',
    // Every simulated agent joins from 127.0.0.1: the per-address join limit is for the internet.
    hubSettings: { limits: { join: { burst: clusters, perSecond: 1_000, maxInFlight: CONNECT_CONCURRENCY } } },
    // One replica, measured for its catalog: a lease renewal slowed past the default 6 s by a
    // loaded apiserver (500 joins on a shared 2-core machine) would only add leader recoveries.
    leaderElection: { leaseDuration: '30s', renewDeadline: '20s', retryPeriod: '2s' },
  });
  const nats = fed.bed.nats as NonNullable<typeof fed.bed.nats>;
  const nc = await nats.connect('bench-observer');
  const agents: SimulatedAgent[] = [];
  try {
    const { observer, kv } = await CatalogObserver.start(nc, exporters);
    await sleep(2_000); // let the idle hub settle
    const idle = await memoryOf(fed);
    const idleHeap = await hubHeapSnapshot(hubProcess(fed), diagnostics);
    // The snapshot's own buffers stay in the process: a fresh hub is the baseline.
    await stopHub(fed);
    await fed.startHub('hub-0');
    await sleep(2_000);
    const before = await memoryOf(fed);
    const loaded = await loadedMemories();

    const joinStarted = performance.now();
    const joined = await within(
      'joining every agent',
      PHASE_TIMEOUT_MS,
      joinAgents(fed, clusters, services, exporters),
    );
    agents.push(...joined.agents);
    const members = await new Kvm(nc).open(MEMBERS_BUCKET);
    await waitFor('every member published', async () => (await members.status()).values >= clusters, 60_000, 100);
    const joinMs = performance.now() - joinStarted;
    const lag: Record<'join' | 'connect' | 'convergence' | 'updates' | 'restart', number> = {
      join: await lagOf(fed),
      connect: 0,
      convergence: 0,
      updates: 0,
      restart: 0,
    };
    const connectStarted = performance.now();
    await within('first heartbeats', PHASE_TIMEOUT_MS, boundedMap(agents, CONNECT_CONCURRENCY, heartbeat));
    const connectMs = performance.now() - connectStarted;
    lag.connect = await lagOf(fed);

    // Every connected agent reports at once (as after a leader change that asks them all).
    const sequenceBefore = await lastSequence(kv);
    const converged = observer.converged(services);
    const cpuBefore = cpuNow(fed);
    const reportStarted = performance.now();
    const acks = await within(
      'the initial reports',
      PHASE_TIMEOUT_MS,
      Promise.all(
        agents.map(async (agent) => {
          const begun = performance.now();
          await report(agent);
          return performance.now() - begun;
        }),
      ),
    );
    const convergenceMs =
      (await within('initial convergence', CONVERGENCE_TIMEOUT_MS, converged).catch((err: unknown) => {
        throw new Error(`${String(err)}: ${observer.describe()}; ${services} expected`);
      })) - reportStarted;
    const convergenceCpu = cpuSince(cpuBefore, cpuNow(fed));
    const convergenceWrites = (await lastSequence(kv)) - sequenceBefore;
    lag.convergence = await lagOf(fed);

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
      const seen = observer.awaitEntry(catalogKey(service.namespace, service.name), (e) =>
        e.clusters.some((c) => c.clusterId === agent.clusterId && c.endpoints[0]?.ready === ready),
      );
      const begun = performance.now();
      await within('an update report', UPDATE_TIMEOUT_MS, report(agent));
      updateAcks.push(performance.now() - begun);
      updateLatencies.push((await within('an update to reach the watch', UPDATE_TIMEOUT_MS, seen)) - begun);
    }
    const after = await memoryOf(fed);
    lag.updates = after.lagMaxMs;

    // Hub restart: a new hub process recovers from the bucket; every agent reconnects and reports again.
    const hubStopMs = await stopHub(fed);
    const failoverStarted = performance.now();
    const sequenceBeforeFailover = await lastSequence(kv);
    await fed.startHub('hub-0');
    await within(
      'the re-reports after the hub restart',
      PHASE_TIMEOUT_MS,
      boundedMap(agents, CONNECT_CONCURRENCY, report),
    );
    const failoverMs = performance.now() - failoverStarted;
    const failoverWrites = (await lastSequence(kv)) - sequenceBeforeFailover;
    const steady = await memoryOf(fed);
    lag.restart = steady.lagMaxMs;

    return {
      clusters,
      services,
      exporters,
      joinMs,
      tokensMs: joined.tokensMs,
      connectMs,
      convergenceMs,
      convergenceWrites,
      convergenceCpu,
      reportAck: percentiles(acks),
      update: percentiles(updateLatencies),
      updateAck: percentiles(updateAcks),
      updateSamples: updateLatencies.length,
      idle,
      idleHeap,
      loaded,
      before,
      after,
      steady,
      failoverMs,
      failoverWrites,
      hubStopMs,
      lag,
    };
  } catch (err) {
    throw new Error(`${String(err)}\nthe hub's log:\n${fed.hubs[0]?.process?.logTail(40) ?? '(no hub running)'}`, {
      cause: err,
    });
  } finally {
    for (const agent of agents) agent.session.close();
    await nc.close();
  }
}

function printTable(r: Result): void {
  const perCluster = (m: HubMemory): number => mb(m.rss - r.before.rss) / r.clusters;
  const rssPerCluster = perCluster(r.after);
  const verdict = (ok: boolean): string => (ok ? 'met' : 'MISSED');
  const ms = (value: number): string => (value >= 100 ? `${value.toFixed(0)} ms` : `${value.toFixed(1)} ms`);
  const m = (bytes: number): string => `${mb(bytes).toFixed(1)} MB`;
  const rows: [string, string, string, string][] = [
    [
      'initial convergence (all entries in KV)',
      ms(r.convergenceMs),
      `≤ ${TARGETS.convergenceMs / 1000} s`,
      verdict(r.convergenceMs <= TARGETS.convergenceMs),
    ],
    ['update, report → KV watch: p50', ms(r.update.p50), '', ''],
    [
      'update, report → KV watch: p99',
      ms(r.update.p99),
      `≤ ${TARGETS.updateP99Ms} ms`,
      verdict(r.update.p99 <= TARGETS.updateP99Ms),
    ],
    [
      'hub RSS per remote cluster',
      `${rssPerCluster.toFixed(2)} MB`,
      `≤ ${TARGETS.rssPerClusterMb} MB`,
      verdict(rssPerCluster <= TARGETS.rssPerClusterMb),
    ],
    [
      '  vs Istio ~180 MB per remote cluster',
      `${(ISTIO_MB_PER_CLUSTER / Math.max(rssPerCluster, 0.01)).toFixed(0)}× less`,
      '',
      '',
    ],
  ];
  const width = Math.max(...rows.map(([label]) => label.length)) + 2;
  console.log(`${'metric'.padEnd(width)}${'measured'.padStart(14)}${'DESIGN §8'.padStart(12)}${'verdict'.padStart(9)}`);
  console.log('-'.repeat(width + 35));
  for (const [label, value, target, result] of rows)
    console.log(`${label.padEnd(width)}${value.padStart(14)}${target.padStart(12)}${result.padStart(9)}`);
  const { idle, idleHeap: heap, loaded } = r;
  const spaces = [...idle.spaces]
    .filter(([, used]) => used >= 64 * 1024)
    .sort(([, a], [, b]) => b - a)
    .map(([space, used]) => `${space} ${m(used)}`)
    .join(', ');
  const types = [...heap.byType]
    .sort(([, a], [, b]) => b - a)
    .slice(0, 6)
    .map(([type, bytes]) => `${type} ${m(bytes)}`)
    .join(', ');
  const sources = [...heap.sourceByPackage]
    .sort(([, a], [, b]) => b - a)
    .slice(0, 5)
    .map(([pkg, bytes]) => `${pkg} ${m(bytes)}`)
    .join(', ');
  console.log(`
details
  ${r.clusters} agents joined (real Join RPC, token per worker, ${CONNECT_CONCURRENCY} at once) in ${ms(r.joinMs)} (${ms(r.tokensMs)} of it creating the tokens); first heartbeats (mTLS channels, ${CONNECT_CONCURRENCY} at once) in ${ms(r.connectMs)}
  initial reports: ${r.clusters} concurrent ReportExports, ack p50 ${ms(r.reportAck.p50)} / p99 ${ms(r.reportAck.p99)}; ${r.convergenceWrites} KV writes for ${r.services} entries (${r.services * r.exporters} exports)
    CPU until converged: hub ${r.convergenceCpu.hub.toFixed(1)} s, nats-server ${r.convergenceCpu.nats.toFixed(1)} s, this process (all agents' side, the observer) ${r.convergenceCpu.bench.toFixed(1)} s, on ${availableParallelism()} cores shared with whatever else runs
  updates: ${r.updateSamples} sequential, watch-observed p50 ${ms(r.update.p50)} / p99 ${ms(r.update.p99)} / max ${ms(r.update.max)}; ack p99 ${ms(r.updateAck.p99)}
  hub RSS ${m(r.before.rss)} idle → ${m(r.after.rss)} with ${r.clusters} clusters, their mTLS connections and MemberCluster caches
    (the verdict above; it includes garbage from ${r.clusters} joins not yet collected); V8 heap used ${m(r.before.heapUsed)} → ${m(r.after.heapUsed)},
    ${(mb(r.after.heapUsed - r.before.heapUsed) / r.clusters).toFixed(2)} MB per remote cluster. Restarted hub, every cluster reported again:
    RSS ${m(r.steady.rss)}, ${perCluster(r.steady).toFixed(2)} MB per remote cluster; heap used ${m(r.steady.heapUsed)}
  hub event loop, longest delay: joins ${ms(r.lag.join)}, first heartbeats ${ms(r.lag.connect)}, initial reports ${ms(r.lag.convergence)}, updates ${ms(r.lag.updates)}, restart ${ms(r.lag.restart)}
  hub restart: stop (SIGTERM to exit ${ms(r.hubStopMs)}, not counted), new hub process, all ${r.clusters} reconnections and re-reports (${CONNECT_CONCURRENCY} at once) in ${ms(r.failoverMs)}; KV writes meanwhile: ${r.failoverWrites} (unchanged entries are not rewritten)

idle hub (leader, no members yet), what its memory is spent on
  RSS ${m(idle.rss)}: anonymous ${m(idle.rssAnon)} (V8 heap, malloc), file-backed ${m(idle.rssFile)} (the node binary and libraries)
  V8 heap ${m(idle.heapTotal)} committed, ${m(idle.heapUsed)} used; external (Buffers, TLS, HTTP/2) ${m(idle.external)};
    anonymous RSS outside the V8 heap (malloc, OpenSSL, thread stacks): ${m(idle.rssAnon - idle.heapTotal)}
  heap spaces used: ${spaces}
  heap snapshot ${m(heap.total)}: by node type ${types}
  script source text held by V8: ${m(heap.sourceTotal)} in ${heap.scripts} scripts; by package ${sources}
  loading alone (a fresh Node process, after GC): bare Node RSS ${m(loaded.bareNode.rss)}, heap used ${m(loaded.bareNode.heapUsed)};
    + @kubernetes/client-node: RSS +${m(loaded.clientNode.rss - loaded.bareNode.rss)}, heap used +${m(loaded.clientNode.heapUsed - loaded.bareNode.heapUsed)};
    every hub module (hub/hub.ts, not started): RSS +${m(loaded.hubModules.rss - loaded.bareNode.rss)}, heap used +${m(loaded.hubModules.heapUsed - loaded.bareNode.heapUsed)}`);
}

if (import.meta.main) {
  const { values } = parseArgs({
    options: {
      clusters: { type: 'string', default: '500' },
      services: { type: 'string', default: '5000' },
      exporters: { type: 'string', default: '10' },
      'profile-hub': { type: 'boolean', default: false },
    },
  });
  process.env.ISTHMUS_LOG_LEVEL ??= 'warn'; // the table is the output; the hub's log goes to its file
  const [clusters, services, exporters] = [Number(values.clusters), Number(values.services), Number(values.exporters)];
  const diagnostics = mkdtempSync(join(tmpdir(), 'isthmus-catalog-scale-'));
  // Every Node child (the hub, the CLI) inherits these; only the hub is ever signalled, and with
  // --profile-hub each writes a CPU profile when it exits.
  const diagnosticOptions = [
    `--heapsnapshot-signal=SIGUSR2`,
    `--diagnostic-dir=${diagnostics}`,
    ...(values['profile-hub'] ? ['--cpu-prof'] : []),
  ];
  process.env.NODE_OPTIONS = [process.env.NODE_OPTIONS ?? '', ...diagnosticOptions].join(' ').trim();
  console.log(
    `Isthmus catalog scale benchmark — Node ${process.version}, ${availableParallelism()} × ${cpus()[0]?.model ?? 'unknown CPU'}, load ${loadavg()
      .map((l) => l.toFixed(2))
      .join(' ')}`,
  );
  console.log(
    `${clusters} simulated agents, ${services} services, each exported by ${exporters} clusters; real hub process, real nats-server, mTLS gRPC\n`,
  );
  try {
    printTable(await run(clusters, services, exporters, diagnostics));
  } finally {
    if (values['profile-hub'])
      console.log(`\nCPU profiles (hub-0, then the restarted hub, and the CLI's): ${diagnostics}`);
    else rmSync(diagnostics, { recursive: true, force: true });
  }
  console.log(
    `load at the end: ${loadavg()
      .map((l) => l.toFixed(2))
      .join(' ')}`,
  );
}
