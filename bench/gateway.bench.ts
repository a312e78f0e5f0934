// Gateway benchmark (DESIGN §8: "added latency on an open connection p50 ≤ 0.2 ms, p99 ≤ 1 ms;
// new connection p99 ≤ 2 ms; bulk throughput and latency measured against HAProxy in the same
// topology, same run"). Each topology is two hops with mTLS between them (bench/gateway/topology.ts):
//
//   load client → hop 1 outbound (TCP) → mTLS 1.3, P-256, client cert verified → hop 2 inbound → backend
//
// The load client and the echo/sink backend run in this process; "direct" is the same client
// talking to the backend with no proxy, so added latency = proxied − direct. Latency tests run in
// rounds that alternate between direct and every topology, so all see the same background load.
// Run: npm run bench -- gateway   (about 40 s on 2 cores for HAProxy, most of it opening the idle
// connections' TLS sessions; each further topology adds about as much).
import { mkdtempSync, rmSync } from 'node:fs';
import { availableParallelism, cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { ProcessSupervisor } from '../local/testbed/processes.ts';
import { startBackend, type Backend } from './gateway/backend.ts';
import { haproxyTopology, haproxyVersion } from './gateway/haproxy.ts';
// The Isthmus side: bench/gateway/isthmus.ts is a placeholder until the east-west gateway's
// factory replaces it; until then its column shows n/a.
import { isthmusTopology } from './gateway/isthmus.ts';
import { BENCH_ADDRESS, benchHost, reexecInBenchNamespace } from './gateway/bench-netns.ts';
import {
  PingConnection,
  STALL_MS,
  bulkStream,
  connectPingClose,
  cpuSeconds,
  openIdle,
  rssBytes,
} from './gateway/load.ts';
import {
  connectionsWithin,
  createBenchCertificates,
  openFilesFor,
  raiseOpenFileLimit,
  type Endpoint,
  type TopologyFactory,
  type TwoHopTopology,
} from './gateway/topology.ts';

const ROUNDS = 5;
const OPEN_PINGS = 5_000;
const OPEN_WARM_UP = 500;
const NEW_CONNECTIONS = 500;
const NEW_WARM_UP = 25;
/** Per target, over all rounds of one latency test: a slow target stops early, with fewer samples. */
const LATENCY_BUDGET_MS = 15_000;
const MIB = 2 ** 20;
const BULK_BYTES = 256 * MIB;
const BULK_PARALLEL = 4;
const BULK_ROUNDS = 2;
const BULK_WARM_UP_BYTES = 16 * MIB;
/** The figure is per 10,000 idle connections; fewer are opened only where file limits forbid 10,000. */
const IDLE_CONNECTIONS = 10_000;
const IDLE_BATCH = 200;
/** Fewer than this many idle connections would say little: the benchmark refuses to run. */
const IDLE_MINIMUM = 2_000;

/** DESIGN §8. */
const TARGETS = { openP50Ms: 0.2, openP99Ms: 1, newP99Ms: 2 } as const;

/** The placeholder's message: its topology is expected to be missing, anything else is a failure. */
const NOT_BUILT = 'isthmus topology not built yet';

interface Percentiles {
  readonly p50: number;
  readonly p99: number;
  readonly samples: number;
}

interface ProxyFigures {
  readonly rssStartBytes: { readonly outbound: number; readonly inbound: number };
  bulkCpuSeconds?: { outbound: number; inbound: number };
  idle?: { readonly connections: number; readonly outboundBytes: number; readonly inboundBytes: number };
}

export interface TargetResult {
  readonly name: string;
  open?: Percentiles;
  fresh?: Percentiles;
  /** benchCpuSeconds: this process (load client and backend), to tell whether it was the bottleneck. */
  bulk?: { readonly bytes: number; readonly seconds: number; readonly benchCpuSeconds: number };
  /** Absent for "direct". */
  readonly proxy?: ProxyFigures;
  error?: string;
}

export interface GatewayBenchResult {
  readonly targets: readonly TargetResult[];
  /** Topologies whose factory failed: name and why. */
  readonly skipped: readonly { readonly name: string; readonly reason: string; readonly expected: boolean }[];
  /** Where the run departed from the plan, and why. */
  readonly notes: readonly string[];
}

interface Target {
  readonly entry: Endpoint;
  readonly topology?: TwoHopTopology;
  readonly result: TargetResult;
}

function percentiles(values: number[]): Percentiles {
  const sorted = values.sort((a, b) => a - b);
  const at = (fraction: number): number =>
    sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * fraction))] ?? Number.NaN;
  return { p50: at(0.5), p99: at(0.99), samples: sorted.length };
}

const describe = (err: unknown): string => (err instanceof Error ? err.message : String(err));
const factoryName = (factory: TopologyFactory, index: number): string =>
  factory.name.replace(/Topology$/, '') || `topology ${index + 1}`;

/** Runs `step` for every target still standing; a proxy's failure retires that proxy, direct's ends the run. */
async function forEachTarget(
  targets: readonly Target[],
  what: string,
  step: (target: Target) => Promise<void>,
): Promise<void> {
  for (const target of targets) {
    if (target.result.error !== undefined) continue;
    try {
      await step(target);
    } catch (err) {
      if (target.topology === undefined)
        throw new Error(`${what}, direct to the backend: ${describe(err)}`, { cause: err });
      target.result.error = `${what}: ${describe(err)}`;
      process.stderr.write(`${target.result.name}: ${target.result.error}\n`);
    }
  }
}

async function measureOpenConnection(targets: readonly Target[]): Promise<void> {
  const connections = new Map<Target, PingConnection>();
  const latencies = new Map<Target, number[]>(targets.map((target) => [target, []]));
  try {
    await forEachTarget(targets, 'open connection', async (target) => {
      const connection = await PingConnection.open(target.entry);
      connections.set(target, connection);
      await connection.run(OPEN_WARM_UP, Number.POSITIVE_INFINITY, []);
    });
    for (let round = 0; round < ROUNDS; round++) {
      await forEachTarget(targets, 'open connection', async (target) => {
        await connections
          .get(target)
          ?.run(OPEN_PINGS / ROUNDS, performance.now() + LATENCY_BUDGET_MS / ROUNDS, latencies.get(target) ?? []);
      });
    }
  } finally {
    for (const connection of connections.values()) connection.close();
  }
  for (const target of targets)
    if (target.result.error === undefined) target.result.open = percentiles(latencies.get(target) ?? []);
}

async function measureNewConnections(targets: readonly Target[]): Promise<void> {
  const latencies = new Map<Target, number[]>(targets.map((target) => [target, []]));
  await forEachTarget(targets, 'new connection', async (target) => {
    for (let i = 0; i < NEW_WARM_UP; i++) await connectPingClose(target.entry);
  });
  for (let round = 0; round < ROUNDS; round++) {
    await forEachTarget(targets, 'new connection', async (target) => {
      const samples = latencies.get(target) ?? [];
      const until = performance.now() + LATENCY_BUDGET_MS / ROUNDS;
      for (let i = 0; i < NEW_CONNECTIONS / ROUNDS && performance.now() < until; i++)
        samples.push(await connectPingClose(target.entry));
    });
  }
  for (const target of targets)
    if (target.result.error === undefined) target.result.fresh = percentiles(latencies.get(target) ?? []);
}

async function measureBulk(targets: readonly Target[]): Promise<void> {
  await forEachTarget(targets, 'bulk warm-up', async (target) => {
    await bulkStream(target.entry, BULK_WARM_UP_BYTES, BULK_PARALLEL);
  });
  for (let round = 0; round < BULK_ROUNDS; round++) {
    await forEachTarget(targets, 'bulk', async (target) => {
      const pids = target.topology?.pids;
      const before = pids && { outbound: cpuSeconds(pids.outbound), inbound: cpuSeconds(pids.inbound) };
      const bytes = BULK_BYTES / BULK_ROUNDS;
      const ownBefore = process.cpuUsage();
      const seconds = await bulkStream(target.entry, bytes, BULK_PARALLEL);
      const own = process.cpuUsage(ownBefore);
      const sofar = target.result.bulk ?? { bytes: 0, seconds: 0, benchCpuSeconds: 0 };
      target.result.bulk = {
        bytes: sofar.bytes + bytes,
        seconds: sofar.seconds + seconds,
        benchCpuSeconds: sofar.benchCpuSeconds + (own.user + own.system) / 1e6,
      };
      if (pids && before && target.result.proxy) {
        const cpu = (target.result.proxy.bulkCpuSeconds ??= { outbound: 0, inbound: 0 });
        cpu.outbound += cpuSeconds(pids.outbound) - before.outbound;
        cpu.inbound += cpuSeconds(pids.inbound) - before.inbound;
      }
    });
  }
}

async function measureIdle(targets: readonly Target[], backend: Backend, count: number): Promise<void> {
  await forEachTarget(targets, 'idle connections', async (target) => {
    const pids = target.topology?.pids;
    const proxy = target.result.proxy;
    if (pids === undefined || proxy === undefined) return;
    // Connections of the earlier tests may still be closing through the hops: start from none.
    await backend.waitForOpen('earlier connections closing', (open) => open === 0, STALL_MS);
    const openBefore = backend.open;
    const before = { outbound: rssBytes(pids.outbound), inbound: rssBytes(pids.inbound) };
    // The barrier after each batch: every connection so far has reached the backend through both hops.
    const idle = await openIdle(target.entry, count, IDLE_BATCH, (opened) =>
      backend.waitForOpen(
        `${opened} idle connections through ${target.result.name}`,
        (open) => open >= openBefore + opened,
        STALL_MS,
      ),
    );
    try {
      proxy.idle = {
        connections: count,
        outboundBytes: rssBytes(pids.outbound) - before.outbound,
        inboundBytes: rssBytes(pids.inbound) - before.inbound,
      };
    } finally {
      idle.close();
      // Closed through both hops before the next topology's turn.
      await backend.waitForOpen(
        `closing idle connections through ${target.result.name}`,
        (open) => open <= openBefore,
        STALL_MS,
      );
    }
  });
}

/**
 * Measures direct-to-backend and every topology `factories` build, side by side, and prints the
 * table. A factory that fails is skipped with a note (its column reads n/a).
 */
export async function runGatewayBench(factories: readonly TopologyFactory[]): Promise<GatewayBenchResult> {
  // The idle test's client and backend sockets both live in this process, and each hop holds two
  // sockets per connection under the hard limit it inherits from here.
  const limits = raiseOpenFileLimit(openFilesFor(IDLE_CONNECTIONS));
  const idleCount = Math.min(IDLE_CONNECTIONS, connectionsWithin(limits.soft));
  const notes: string[] = [];
  if (idleCount < IDLE_MINIMUM) {
    throw new Error(
      `the idle test needs ${openFilesFor(IDLE_CONNECTIONS)} open files per process (${limits.shortfall}); run as root, or raise the hard limit first (ulimit -Hn)`,
    );
  }
  if (idleCount < IDLE_CONNECTIONS) {
    notes.push(
      `idle test: ${idleCount} connections, not ${IDLE_CONNECTIONS}, scaled to 10k — ${limits.shortfall}; 10,000 proxied connections need ${openFilesFor(IDLE_CONNECTIONS)} files in each hop`,
    );
    console.log(`note: ${notes.at(-1)}`);
  }
  await using stack = new AsyncDisposableStack();
  const dir = mkdtempSync(join(tmpdir(), 'isthmus-bench-gateway-'));
  stack.defer(() => rmSync(dir, { recursive: true, force: true }));
  // Starts nothing: its watchdog only removes `dir` should this process be killed.
  const watchdog = new ProcessSupervisor(dir);
  stack.defer(() => watchdog.stopAll());
  const certs = await createBenchCertificates(dir);
  const backend = stack.use(await startBackend(benchHost()));
  const targets: Target[] = [{ entry: backend.endpoint, result: { name: 'direct' } }];
  const skipped: { name: string; reason: string; expected: boolean }[] = [];
  for (const [index, factory] of factories.entries()) {
    try {
      const topology = stack.use(await factory(backend.endpoint, certs));
      if (topology.pids.outbound === topology.pids.inbound)
        throw new Error(
          `both hops are pid ${topology.pids.outbound}: per-gateway CPU and memory need one process per hop`,
        );
      const rssStartBytes = { outbound: rssBytes(topology.pids.outbound), inbound: rssBytes(topology.pids.inbound) };
      targets.push({ entry: topology.entry, topology, result: { name: topology.name, proxy: { rssStartBytes } } });
    } catch (err) {
      const reason = describe(err);
      skipped.push({ name: factoryName(factory, index), reason, expected: reason === NOT_BUILT });
      console.log(`${factoryName(factory, index)}: skipped — ${reason}`);
    }
  }
  const phase = async (what: string, run: () => Promise<void>): Promise<void> => {
    const start = performance.now();
    await run();
    console.log(`  ${what}: ${((performance.now() - start) / 1000).toFixed(1)} s`);
  };
  await phase('open-connection latency', () => measureOpenConnection(targets));
  await phase('new-connection latency', () => measureNewConnections(targets));
  await phase('bulk throughput', () => measureBulk(targets));
  await phase(`idle connections (${idleCount})`, () => measureIdle(targets, backend, idleCount));
  return { targets: targets.map((target) => target.result), skipped, notes };
}

type Better = 'lower' | 'higher';
interface Row {
  readonly label: string;
  readonly better: Better;
  readonly decimals: number;
  readonly pick: (result: TargetResult, direct: TargetResult) => number | undefined;
  readonly proxiesOnly?: boolean;
  readonly target?: string;
}

const added = (value: number | undefined, base: number | undefined): number | undefined =>
  value === undefined || base === undefined ? undefined : value - base;
/** MB moved per CPU second of the busier hop: throughput / (its CPU seconds / wall seconds). */
const perGatewayCore = (r: TargetResult): number | undefined => {
  const cpu = r.proxy?.bulkCpuSeconds;
  return r.bulk && cpu ? r.bulk.bytes / 1e6 / Math.max(cpu.outbound, cpu.inbound) : undefined;
};
const perTenThousand = (r: TargetResult, hop: 'outbound' | 'inbound' | 'both'): number | undefined => {
  const idle = r.proxy?.idle;
  if (idle === undefined) return undefined;
  const bytes =
    hop === 'both'
      ? idle.outboundBytes + idle.inboundBytes
      : hop === 'outbound'
        ? idle.outboundBytes
        : idle.inboundBytes;
  return (bytes / MIB) * (10_000 / idle.connections);
};

const ROWS: readonly Row[] = [
  { label: 'open conn: round trip p50 (ms)', better: 'lower', decimals: 3, pick: (r) => r.open?.p50 },
  { label: 'open conn: round trip p99 (ms)', better: 'lower', decimals: 3, pick: (r) => r.open?.p99 },
  {
    label: 'open conn: added p50 (ms)',
    better: 'lower',
    decimals: 3,
    proxiesOnly: true,
    target: `≤ ${TARGETS.openP50Ms}`,
    pick: (r, d) => added(r.open?.p50, d.open?.p50),
  },
  {
    label: 'open conn: added p99 (ms)',
    better: 'lower',
    decimals: 3,
    proxiesOnly: true,
    target: `≤ ${TARGETS.openP99Ms}`,
    pick: (r, d) => added(r.open?.p99, d.open?.p99),
  },
  { label: 'new conn: connect→echo p50 (ms)', better: 'lower', decimals: 3, pick: (r) => r.fresh?.p50 },
  { label: 'new conn: connect→echo p99 (ms)', better: 'lower', decimals: 3, pick: (r) => r.fresh?.p99 },
  {
    label: 'new conn: added p50 (ms)',
    better: 'lower',
    decimals: 3,
    proxiesOnly: true,
    pick: (r, d) => added(r.fresh?.p50, d.fresh?.p50),
  },
  {
    label: 'new conn: added p99 (ms)',
    better: 'lower',
    decimals: 3,
    proxiesOnly: true,
    target: `≤ ${TARGETS.newP99Ms}`,
    pick: (r, d) => added(r.fresh?.p99, d.fresh?.p99),
  },
  {
    label: `bulk: throughput, ${BULK_PARALLEL} streams (MB/s)`,
    better: 'higher',
    decimals: 0,
    pick: (r) => r.bulk && r.bulk.bytes / 1e6 / r.bulk.seconds,
  },
  {
    label: 'bulk: outbound hop CPU (% of a core)',
    better: 'lower',
    decimals: 0,
    proxiesOnly: true,
    pick: (r) => r.bulk && r.proxy?.bulkCpuSeconds && (100 * r.proxy.bulkCpuSeconds.outbound) / r.bulk.seconds,
  },
  {
    label: 'bulk: inbound hop CPU (% of a core)',
    better: 'lower',
    decimals: 0,
    proxiesOnly: true,
    pick: (r) => r.bulk && r.proxy?.bulkCpuSeconds && (100 * r.proxy.bulkCpuSeconds.inbound) / r.bulk.seconds,
  },
  {
    label: 'bulk: load client + backend CPU (% of a core)',
    better: 'lower',
    decimals: 0,
    pick: (r) => r.bulk && (100 * r.bulk.benchCpuSeconds) / r.bulk.seconds,
  },
  {
    label: 'bulk: MB/s per gateway core (busier hop)',
    better: 'higher',
    decimals: 0,
    proxiesOnly: true,
    pick: perGatewayCore,
  },
  {
    label: 'RSS at start, both hops (MiB)',
    better: 'lower',
    decimals: 1,
    proxiesOnly: true,
    pick: (r) => r.proxy && (r.proxy.rssStartBytes.outbound + r.proxy.rssStartBytes.inbound) / MIB,
  },
  {
    label: 'memory per 10k idle conns, outbound (MiB)',
    better: 'lower',
    decimals: 1,
    proxiesOnly: true,
    pick: (r) => perTenThousand(r, 'outbound'),
  },
  {
    label: 'memory per 10k idle conns, inbound (MiB)',
    better: 'lower',
    decimals: 1,
    proxiesOnly: true,
    pick: (r) => perTenThousand(r, 'inbound'),
  },
  {
    label: 'memory per 10k idle conns, both (MiB)',
    better: 'lower',
    decimals: 1,
    proxiesOnly: true,
    pick: (r) => perTenThousand(r, 'both'),
  },
];

export function printTable(result: GatewayBenchResult): void {
  const direct = result.targets[0];
  if (direct === undefined) return;
  const columns: { name: string; result?: TargetResult }[] = [
    ...result.targets.map((r) => ({ name: r.name, result: r })),
    ...result.skipped.map((s) => ({ name: s.name })),
  ];
  const byName = (name: string): TargetResult | undefined => result.targets.find((r) => r.name === name);
  const width = Math.max(...ROWS.map((row) => row.label.length)) + 2;
  const cell = (text: string): string => text.padStart(11);
  const format = (value: number | undefined, decimals: number): string =>
    value === undefined || !Number.isFinite(value) ? 'n/a' : value.toFixed(decimals);
  console.log(
    `${'metric'.padEnd(width)}${columns.map((c) => cell(c.name)).join('')}${cell('isthmus/')}${cell('better')}${cell('DESIGN §8')}`,
  );
  console.log(`${''.padEnd(width)}${columns.map(() => cell('')).join('')}${cell('haproxy')}`);
  console.log('-'.repeat(width + 11 * (columns.length + 3)));
  for (const row of ROWS) {
    const values = columns.map((c) =>
      c.result === undefined || (row.proxiesOnly && c.result.proxy === undefined)
        ? undefined
        : row.pick(c.result, direct),
    );
    const texts = columns.map((c, i) =>
      row.proxiesOnly && c.result !== undefined && c.result.proxy === undefined ? '—' : format(values[i], row.decimals),
    );
    const isthmus = byName('isthmus');
    const haproxy = byName('haproxy');
    const ratio =
      isthmus && haproxy
        ? (row.pick(isthmus, direct) ?? Number.NaN) / (row.pick(haproxy, direct) ?? Number.NaN)
        : undefined;
    console.log(
      `${row.label.padEnd(width)}${texts.map(cell).join('')}${cell(ratio === undefined || !Number.isFinite(ratio) ? 'n/a' : `${ratio.toFixed(2)}×`)}${cell(row.better)}${cell(row.target ?? '')}`,
    );
  }
  console.log('');
  for (const r of result.targets) {
    if (r.proxy === undefined) continue;
    if (r.error !== undefined) console.log(`${r.name}: FAILED (figures after the failure read n/a) — ${r.error}`);
    const verdict = (label: string, value: number | undefined, limit: number): string =>
      value === undefined ? `${label} n/a` : `${label} ${format(value, 3)} ms (${value <= limit ? 'met' : 'missed'})`;
    console.log(
      `DESIGN §8 targets, ${r.name}: ${[
        verdict('open added p50', added(r.open?.p50, direct.open?.p50), TARGETS.openP50Ms),
        verdict('p99', added(r.open?.p99, direct.open?.p99), TARGETS.openP99Ms),
        verdict('new-connection added p99', added(r.fresh?.p99, direct.fresh?.p99), TARGETS.newP99Ms),
      ].join(', ')}`,
    );
  }
  for (const s of result.skipped) console.log(`${s.name}: n/a — ${s.reason}`);
  const samples = (pick: (r: TargetResult) => Percentiles | undefined): string =>
    result.targets.map((r) => `${r.name} ${pick(r)?.samples ?? 0}`).join(', ');
  console.log(
    `samples: open-connection ping-pongs ${samples((r) => r.open)}; new connections ${samples((r) => r.fresh)}`,
  );
  console.log(
    `bulk: ${BULK_BYTES / MIB} MiB per target over ${BULK_PARALLEL} connections (after ${BULK_WARM_UP_BYTES / MIB} MiB warm-up); ` +
      `per gateway core = MB moved / CPU seconds of the busier hop. Idle: RSS growth of each hop once all ` +
      `${result.targets.find((r) => r.proxy?.idle)?.proxy?.idle?.connections ?? IDLE_CONNECTIONS} connections reached the backend, per 10,000.`,
  );
  for (const note of result.notes) console.log(`note: ${note}`);
}

const exitCode = import.meta.main ? await reexecInBenchNamespace() : undefined;
if (exitCode !== undefined) {
  process.exitCode = exitCode;
} else if (import.meta.main) {
  const started = performance.now();
  console.log(
    `Isthmus gateway benchmark — Node ${process.version}, ${availableParallelism()} × ${cpus()[0]?.model ?? 'unknown CPU'}, ${haproxyVersion()}`,
  );
  console.log(
    `load client and backend in this process, every hop a separate process, ${benchHost()}${benchHost() === BENCH_ADDRESS ? ' (a network namespace of its own)' : ''}; load average at start ${loadavg()[0]?.toFixed(2)}\n`,
  );
  const result = await runGatewayBench([haproxyTopology, isthmusTopology]);
  console.log('');
  printTable(result);
  console.log(`\ntotal ${((performance.now() - started) / 1000).toFixed(0)} s`);
  const failed = result.targets.some((r) => r.error !== undefined) || result.skipped.some((s) => !s.expected);
  process.exitCode = failed ? 1 : 0;
}
