// Failover benchmark (DESIGN §8: "backend or whole cluster refusing connections → zero failed
// client connections; blackholed remote gateway → traffic moved within 1 s; failback within 5 s
// of recovery"), over repeated trials on one Federation: 3 members with gateways in their own
// network namespaces (A and B in eu-west, C in us-east), heartbeat 1 s, a service exported from
// A (2 backends), B (2) and C (1), and no FailoverPolicy (the defaults of DESIGN §6). A client in
// A's namespace dials the clusterset endpoint. Each trial:
//   1. refusing: A's backends are killed while a client opens connections back to back → failed
//      connections, time until the first and until every new connection is served elsewhere;
//   2. blackhole: with B serving, B's gateway is blackholed (a DROP rule: connects hang) while a
//      paced client opens a new connection every 20 ms, each on its own (a back-to-back client
//      would sit in its one hung connection and could not show when new connections move) →
//      time until new connections are served by C without delay, the connections caught in
//      flight and the worst connect time among them, failed connections;
//   3. failback: B healed and serving, A's backends start again → time until the first and until
//      every connection is served by A.
// Between phases and trials the benchmark waits for a state ("A serves 5 of 5"), never a fixed
// time. The client is e2e's timeline (same connection, same record: start offset, backend id or
// "!error", duration), run from this file so that it goes on until told to stop and says when it
// is under way: the fault then comes at a known point and the window after it has a fixed length.
// Unlike netns-tool, it fails a connection the far side ends before its greeting at once (netns-tool
// keeps such a half-open socket until its 15 s timeout).
// Run: npm run bench -- failover   (ISTHMUS_BENCH_TRIALS=N, default 5; directly:
// node bench/failover.bench.ts --trials N). About 4 minutes on 2 cores. ISTHMUS_BENCH_LOGS=<dir>
// keeps the clients' timelines and the gateways' logs (ISTHMUS_LOG_LEVEL=info for their routing decisions).
//
// This file runs inside A's namespace as the client too (`--client`), so it imports only node:* and the
// node:*-only greeting client statically; the test bed, gateway config and scenario helpers load in main().
import { once } from 'node:events';
import { copyFileSync, mkdirSync, readFileSync } from 'node:fs';
import { availableParallelism, cpus, loadavg } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { dialGreeting as dial } from '../local/workloads/greeting-client.ts';
import type { Federation } from '../local/federation/index.ts';
import type { Backend, Timeline } from '../e2e/gateway/scenario.ts';
import type { LocalCluster, ManagedProcess } from '../local/testbed/index.ts';

const SELF = fileURLToPath(import.meta.url);
const CLIENT_FLAG = '--client';
const NS = 'bench-failover';
const SERVICE = 'cart';
const DEFAULT_TRIALS = 5;
/** How long the client goes on opening connections after each fault or recovery (a measurement window, not a barrier). */
const WINDOW_MS = { refusing: 4_000, blackhole: 6_000, failback: 8_000 } as const;
const PACED_PER_SECOND = 50;
/** A connection slower than this was held up (by the blackhole, until the connect timeout and a retry). */
const SLOW_MS = 500;
/** A "from then on every connection …" needs at least this much of the window after it to count as observed. */
const CONFIRM_MS = 1_000;
/** Per-connection timeout of the client: twice the gateway's connect timeout, so a connect retried after it still completes. */
const CLIENT_TIMEOUT_MS = 10_000;

/** DESIGN §8. */
const TARGETS = { refusingFailed: 0, blackholeMovedMs: 1_000, failbackMs: 5_000 } as const;

type Connection = readonly [startOffsetMs: number, outcome: string, durationMs: number];

/** One trial's figures (ms from the event); a time is undefined when the window did not show it. */
interface TrialResult {
  readonly loadAverage: number;
  readonly refusing: {
    readonly connections: number;
    /** Failed connections that started once both of A's backends had exited: refused by A. */
    readonly failedNew: number;
    /** Failed connections that started before, cut when their backend process exited. */
    readonly failedOpen: number;
    readonly firstElsewhereMs: number | undefined;
    readonly movedMs: number | undefined;
    readonly errors: readonly string[];
  };
  readonly blackhole: {
    readonly connections: number;
    /** Failed connections that started after the blackhole. */
    readonly failedNew: number;
    /** Failed connections that were open when it came (established ones stall: no byte gets through). */
    readonly failedOpen: number;
    readonly movedMs: number | undefined;
    /** From A's gateway log: when it took B out of new connections (its probe failed). */
    readonly markedDownMs: number | undefined;
    readonly caught: number;
    readonly worstCaughtMs: number | undefined;
    /** The last connection not served by C without delay, relative to the blackhole: what "moved" follows. */
    readonly lastHeldUp: string | undefined;
    /** Connections that ended before the fault: the load's own delay, to hold the SLOW_MS cut against. */
    readonly beforeP99Ms: number | undefined;
    readonly beforeMaxMs: number | undefined;
    readonly errors: readonly string[];
  };
  readonly failback: {
    readonly connections: number;
    readonly failed: number;
    readonly firstMs: number | undefined;
    readonly allMs: number | undefined;
    readonly errors: readonly string[];
  };
}

// ---------------------------------------------------------------------------------------------
// The client (runs inside A's namespace).

/**
 * New connections until SIGTERM (or maxSeconds): "sequential" opens the next as soon as the last
 * ended (as e2e's timeline does), "paced" opens one every 1000/perSecond ms, each on its own.
 * Prints {"first": id} once a connection has been served (it is under way), and at the end, after
 * the open connections have finished, one line in the shape of e2e's Timeline.
 */
async function client(mode: string, host: string, port: number, perSecond: number, maxSeconds: number): Promise<void> {
  const startedAt = Date.now();
  const connections: Connection[] = [];
  const open = new Set<Promise<void>>();
  let announced = false;
  let stopping = false;
  const start = (): Promise<void> => {
    const began = Date.now();
    const done: Promise<void> = dial(host, port, CLIENT_TIMEOUT_MS)
      .catch((err: Error) => `!${err.message}`)
      .then((outcome) => {
        connections.push([began - startedAt, outcome, Date.now() - began]);
        if (!announced && !outcome.startsWith('!')) {
          announced = true;
          console.log(JSON.stringify({ first: outcome }));
        }
        open.delete(done);
      });
    open.add(done);
    return done;
  };
  const stop = new AbortController();
  const stopped = Promise.race([
    once(process, 'SIGTERM'),
    sleep(maxSeconds * 1000, undefined, { signal: stop.signal }).catch(() => undefined),
  ]).then(() => {
    stopping = true;
    stop.abort();
  });
  if (mode === 'paced') {
    const timer = setInterval(() => void start(), 1000 / perSecond);
    void start();
    await stopped;
    clearInterval(timer);
  } else {
    while (!stopping) await start();
  }
  await Promise.all(open);
  connections.sort((x, y) => x[0] - y[0]);
  console.log(JSON.stringify({ startedAt, connections }));
}

// ---------------------------------------------------------------------------------------------
// Reading a timeline.

function clusterOf(outcome: string): string {
  return outcome.startsWith('!') ? 'failed' : (outcome.split('-').at(-1)?.[0] ?? '?');
}

const failed = (c: Connection): boolean => c[1].startsWith('!');
const startOf = (t: Timeline, c: Connection): number => t.startedAt + c[0];
const endOf = (t: Timeline, c: Connection): number => t.startedAt + c[0] + c[2];
const errorsOf = (t: Timeline): string[] =>
  [...new Set(t.connections.filter(failed).map((c) => c[1].slice(1)))].slice(0, 3);

/**
 * The start (epoch ms) of the earliest connection from which on every connection satisfies `ok`,
 * provided the timeline goes on for CONFIRM_MS after it; undefined otherwise.
 */
function settledFrom(t: Timeline, ok: (c: Connection) => boolean): number | undefined {
  const connections = t.connections;
  let index = connections.length;
  while (index > 0 && ok(connections[index - 1] as Connection)) index--;
  const first = connections[index];
  const last = connections.at(-1);
  if (!first || !last) return undefined;
  return endOf(t, last) - startOf(t, first) >= CONFIRM_MS ? startOf(t, first) : undefined;
}

/** Start (epoch ms) of the first connection that satisfies `ok`. */
function firstStart(t: Timeline, ok: (c: Connection) => boolean): number | undefined {
  const found = t.connections.find(ok);
  return found ? startOf(t, found) : undefined;
}

/** Milliseconds from `t0`; a connection that started just before it counts as 0. */
const since = (at: number | undefined, t0: number): number | undefined =>
  at === undefined ? undefined : Math.max(0, at - t0);

// ---------------------------------------------------------------------------------------------
// The benchmark.

async function loadHarness() {
  const [testbed, scenario, federation, kube, config, policies, picker] = await Promise.all([
    import('../local/testbed/index.ts'),
    import('../e2e/gateway/scenario.ts'),
    import('../local/federation/index.ts'),
    import('../common/kube/index.ts'),
    import('../east-west-gateway/config.ts'),
    import('../east-west-gateway/policies.ts'),
    import('../east-west-gateway/picker.ts'),
  ]);
  return {
    waitFor: testbed.waitFor,
    waitForProcess: testbed.waitForProcess,
    netnsAvailable: testbed.netnsAvailable,
    Federation: federation.Federation,
    ensureNamespace: kube.ensureNamespace,
    gatewayConfigSchema: config.gatewayConfigSchema,
    DEFAULT_FAILBACK_DELAY_MS: policies.DEFAULT_FAILBACK_DELAY_MS,
    DEFAULT_PICKER_POLICY: picker.DEFAULT_PICKER_POLICY,
    ...scenario,
  };
}
type Harness = Awaited<ReturnType<typeof loadHarness>>;

interface Setup {
  readonly h: Harness;
  readonly fed: Federation;
  readonly a: LocalCluster;
  readonly b: LocalCluster;
  readonly backendsA: Backend[];
  readonly vip: { address: string; port: number };
}

function trialCount(): number {
  const flag = process.argv.findIndex((arg) => arg === '--trials' || arg.startsWith('--trials='));
  const raw =
    flag < 0 ? process.env.ISTHMUS_BENCH_TRIALS : (process.argv[flag]?.split('=')[1] ?? process.argv[flag + 1]);
  const trials = Number(raw ?? DEFAULT_TRIALS);
  if (!Number.isInteger(trials) || trials < 1)
    throw new Error(`--trials / ISTHMUS_BENCH_TRIALS must be a positive integer, not ${raw}`);
  return trials;
}

/** Waits until `count` sequential connections from A are all served by `cluster` (a, b or c). */
async function serves({ h, fed, a, vip }: Setup, cluster: string, count = 5): Promise<void> {
  await h.waitFor(
    `${cluster.toUpperCase()} serves ${count} of ${count}`,
    async () => {
      const report = await h.connect(fed, a, vip, count);
      return report.failed === 0 && Object.keys(report.served).every((id) => clusterOf(id) === cluster);
    },
    60_000,
    200,
  );
}

/**
 * Runs the client in A's namespace; once it has been served (by `expected`), runs `act`, which
 * returns the moment the window starts from; stops the client `windowMs` after it and returns
 * what it saw.
 */
async function around(
  setup: Setup,
  name: string,
  mode: 'sequential' | 'paced',
  expected: string,
  windowMs: number,
  act: () => Promise<number>,
): Promise<Timeline> {
  const { h, fed, a, vip } = setup;
  const lab = fed.lab as NonNullable<Federation['lab']>;
  const running: ManagedProcess = await lab.cluster(a.name).startProcess({
    name,
    command: process.execPath,
    args: [SELF, CLIENT_FLAG, mode, vip.address, String(vip.port), String(PACED_PER_SECOND), '300'],
  });
  try {
    await h.waitForProcess(
      running,
      `${name} under way`,
      () => Promise.resolve(running.logTail().includes('{"first"')),
      60_000,
      20,
    );
    const first =
      (
        JSON.parse(
          running
            .logTail()
            .split('\n')
            .find((l) => l.startsWith('{"first"')) ?? '{}',
        ) as { first?: string }
      ).first ?? '';
    if (clusterOf(first) !== expected) throw new Error(`${name}: served by ${first}, expected cluster ${expected}`);
    const t0 = await act();
    await sleep(Math.max(0, t0 + windowMs - Date.now()));
    // SIGTERM: no new connections; the open ones finish (at most the client's timeout), then it prints.
    await running.stop(CLIENT_TIMEOUT_MS + 10_000);
  } finally {
    await running.stop(1_000);
  }
  const keep = process.env.ISTHMUS_BENCH_LOGS;
  if (keep) {
    mkdirSync(keep, { recursive: true });
    copyFileSync(running.logFile, join(keep, `${name}.log`));
  }
  const line = readFileSync(running.logFile, 'utf8')
    .split('\n')
    .find((l) => l.startsWith('{"startedAt"'));
  if (!line) throw new Error(`${name} printed no timeline:\n${running.logTail()}`);
  return JSON.parse(line) as Timeline;
}

async function refusingPhase(setup: Setup, trial: number): Promise<TrialResult['refusing']> {
  let killed = 0;
  let exited = 0;
  const t = await around(setup, `refusing-client-${trial}`, 'sequential', 'a', WINDOW_MS.refusing, async () => {
    killed = Date.now();
    await setup.h.killBackends(setup.backendsA);
    exited = Date.now();
    return killed;
  });
  const failures = t.connections.filter(failed);
  const elsewhere = (c: Connection): boolean => !failed(c) && clusterOf(c[1]) !== 'a';
  return {
    connections: t.connections.length,
    failedNew: failures.filter((c) => startOf(t, c) >= exited).length,
    failedOpen: failures.filter((c) => startOf(t, c) < exited).length,
    firstElsewhereMs: since(firstStart(t, elsewhere), killed),
    movedMs: since(settledFrom(t, elsewhere), killed),
    errors: errorsOf(t),
  };
}

async function blackholePhase(setup: Setup, trial: number): Promise<TrialResult['blackhole']> {
  const lab = setup.fed.lab as NonNullable<Federation['lab']>;
  let called = 0;
  let blackholed = 0;
  let fault: Awaited<ReturnType<typeof lab.blackhole>> | undefined;
  let t: Timeline;
  try {
    t = await around(setup, `blackhole-client-${trial}`, 'paced', 'b', WINDOW_MS.blackhole, async () => {
      called = Date.now();
      fault = await lab.blackhole(setup.b.name);
      blackholed = Date.now();
      return blackholed;
    });
  } finally {
    await fault?.heal();
  }
  const markedDown = probeFailure(setup, setup.b.name, called);
  const failures = t.connections.filter(failed);
  const atC = (c: Connection): boolean => !failed(c) && clusterOf(c[1]) === 'c' && c[2] < SLOW_MS;
  const moved = settledFrom(t, atC);
  const lastHeldUp = t.connections.findLast((c) => !atC(c));
  // The same client's connections that ended before the fault: how slow the load alone makes one.
  const before = t.connections
    .filter((c) => endOf(t, c) <= blackholed)
    .map((c) => c[2])
    .sort((x, y) => x - y);
  const caught = t.connections.filter(
    (c) => !failed(c) && endOf(t, c) > blackholed && c[2] >= SLOW_MS && (moved === undefined || startOf(t, c) < moved),
  );
  return {
    connections: t.connections.length,
    failedNew: failures.filter((c) => startOf(t, c) >= blackholed).length,
    failedOpen: failures.filter((c) => startOf(t, c) < blackholed).length,
    movedMs: since(moved, blackholed),
    markedDownMs: since(markedDown, blackholed),
    caught: caught.length,
    worstCaughtMs: caught.length > 0 ? Math.max(...caught.map((c) => c[2])) : undefined,
    lastHeldUp: lastHeldUp && `+${startOf(t, lastHeldUp) - blackholed} ms, ${lastHeldUp[1]} in ${lastHeldUp[2]} ms`,
    beforeP99Ms: before[Math.min(before.length - 1, Math.ceil(before.length * 0.99) - 1)],
    beforeMaxMs: before.at(-1),
    errors: errorsOf(t),
  };
}

/** When (epoch ms) A's gateway logged that `cluster` failed its probe, first at or after `after`. */
function probeFailure({ fed, a }: Setup, cluster: string, after: number): number | undefined {
  const log = fed.gateway(a.name)?.logFile;
  if (!log) return undefined;
  for (const line of readFileSync(log, 'utf8').split('\n')) {
    if (!line.includes('failed its probe')) continue;
    let entry: { time?: string; cluster?: string };
    try {
      entry = JSON.parse(line) as typeof entry;
    } catch {
      continue;
    }
    const at = Date.parse(entry.time ?? '');
    if (entry.cluster === cluster && at >= after) return at;
  }
  return undefined;
}

/** How many times a backend has said it listens, in its log (one file across restarts). */
function listeningLines(logFile: string): number {
  return readFileSync(logFile, 'utf8')
    .split('\n')
    .filter((line) => line.startsWith('listening ')).length;
}

async function failbackPhase(setup: Setup, trial: number): Promise<TrialResult['failback']> {
  const { h, fed, a, backendsA } = setup;
  let revived = 0;
  const t = await around(setup, `failback-client-${trial}`, 'sequential', 'b', WINDOW_MS.failback, async () => {
    // Both at once (reviveBackends starts them one after the other), and "recovered" is when both
    // listen, read from their logs as it happens (startBackend returns later, after a probe).
    const logs = backendsA.map((backend) => backend.process.logFile);
    const before = logs.map(listeningLines);
    await Promise.all([
      ...backendsA.map(async (backend) => {
        backend.process = (await fed.startBackend(a.name, backend.id, backend.port, backend.address)).process;
      }),
      h
        .waitFor(
          "A's backends listen",
          () => Promise.resolve(logs.every((log, i) => listeningLines(log) > (before[i] ?? 0))),
          60_000,
          5,
        )
        .then(() => {
          revived = Date.now();
        }),
    ]);
    return revived;
  });
  const atA = (c: Connection): boolean => !failed(c) && clusterOf(c[1]) === 'a';
  return {
    connections: t.connections.length,
    failed: t.connections.filter(failed).length,
    firstMs: since(firstStart(t, atA), revived),
    allMs: since(settledFrom(t, atA), revived),
    errors: errorsOf(t),
  };
}

async function runTrial(setup: Setup, trial: number): Promise<TrialResult> {
  await serves(setup, 'a');
  const loadAverage = loadavg()[0] ?? Number.NaN;
  const refusing = await refusingPhase(setup, trial);
  await serves(setup, 'b');
  const blackhole = await blackholePhase(setup, trial);
  await serves(setup, 'b');
  const failback = await failbackPhase(setup, trial);
  return { loadAverage, refusing, blackhole, failback };
}

// ---------------------------------------------------------------------------------------------
// Output.

const ms = (value: number | undefined): string => (value === undefined ? 'n/o' : `${Math.round(value)}`);

function median(values: readonly number[]): number {
  const sorted = [...values].sort((x, y) => x - y);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1
    ? (sorted[middle] as number)
    : ((sorted[middle - 1] as number) + (sorted[middle] as number)) / 2;
}

function printTrial(trial: number, r: TrialResult): void {
  const errors = (list: readonly string[]): string => (list.length > 0 ? `; errors: ${list.join('; ')}` : '');
  console.log(`trial ${trial} (load ${r.loadAverage.toFixed(1)})`);
  console.log(
    `  refusing   failed ${r.refusing.failedNew} new + ${r.refusing.failedOpen} open; first elsewhere ${ms(r.refusing.firstElsewhereMs)} ms, all ${ms(r.refusing.movedMs)} ms; ${r.refusing.connections} connections${errors(r.refusing.errors)}`,
  );
  console.log(
    `  blackhole  new connections at C ${ms(r.blackhole.movedMs)} ms (B marked down ${ms(r.blackhole.markedDownMs)} ms); caught ${r.blackhole.caught}, worst ${ms(r.blackhole.worstCaughtMs)} ms; failed ${r.blackhole.failedNew} new + ${r.blackhole.failedOpen} open; ${r.blackhole.connections} connections;`,
  );
  console.log(
    `             before the fault p99 ${ms(r.blackhole.beforeP99Ms)} ms, slowest ${ms(r.blackhole.beforeMaxMs)} ms; last held up: ${r.blackhole.lastHeldUp ?? 'none'}${errors(r.blackhole.errors)}`,
  );
  console.log(
    `  failback   first at A ${ms(r.failback.firstMs)} ms, all ${ms(r.failback.allMs)} ms; failed ${r.failback.failed}; ${r.failback.connections} connections${errors(r.failback.errors)}`,
  );
}

interface Row {
  readonly label: string;
  /** Per trial; undefined = not observed within the window (then it has no worst, and misses any target). */
  readonly values: readonly (number | undefined)[];
  readonly kind: 'ms' | 'count';
  /** Upper bound from DESIGN §8, checked on every trial; undefined: a figure without a target. */
  readonly target?: number;
  readonly note?: string;
}

function printTable(results: readonly TrialResult[]): void {
  const rows: Row[] = [
    {
      label: 'refusing: failed new connections',
      values: results.map((r) => r.refusing.failedNew),
      kind: 'count',
      target: TARGETS.refusingFailed,
    },
    {
      label: 'refusing: failed, open at the kill',
      values: results.map((r) => r.refusing.failedOpen),
      kind: 'count',
      note: "cut by their backend's exit, not refused",
    },
    { label: 'refusing: first served elsewhere', values: results.map((r) => r.refusing.firstElsewhereMs), kind: 'ms' },
    { label: 'refusing: every new one elsewhere', values: results.map((r) => r.refusing.movedMs), kind: 'ms' },
    {
      label: 'blackhole: new connections at C',
      values: results.map((r) => r.blackhole.movedMs),
      kind: 'ms',
      target: TARGETS.blackholeMovedMs,
    },
    {
      label: "blackhole: B's probe fails at A",
      values: results.map((r) => r.blackhole.markedDownMs),
      kind: 'ms',
      note: "A's gateway log: B out of new connections",
    },
    {
      label: 'blackhole: slowest before the fault',
      values: results.map((r) => r.blackhole.beforeMaxMs),
      kind: 'ms',
      note: `the load's own delay, vs the ${SLOW_MS} ms cut`,
    },
    { label: 'blackhole: connections caught', values: results.map((r) => r.blackhole.caught), kind: 'count' },
    {
      label: 'blackhole: worst connect, caught',
      values: results.map((r) => r.blackhole.worstCaughtMs),
      kind: 'ms',
      note: 'held until B is found dead (at most the connect timeout), then C',
    },
    { label: 'blackhole: failed new connections', values: results.map((r) => r.blackhole.failedNew), kind: 'count' },
    {
      label: 'blackhole: failed, open at the fault',
      values: results.map((r) => r.blackhole.failedOpen),
      kind: 'count',
      note: 'established: they stall',
    },
    {
      label: 'failback: first served by A',
      values: results.map((r) => r.failback.firstMs),
      kind: 'ms',
      target: TARGETS.failbackMs,
    },
    {
      label: 'failback: every one served by A',
      values: results.map((r) => r.failback.allMs),
      kind: 'ms',
      target: TARGETS.failbackMs,
    },
    { label: 'failback: failed connections', values: results.map((r) => r.failback.failed), kind: 'count' },
  ];
  const header = ['measurement', 'median', 'worst', 'total', 'DESIGN §8 target', 'verdict'];
  const lines = rows.map((row) => {
    const observed = row.values.filter((v): v is number => v !== undefined);
    const unobserved = row.values.length - observed.length;
    const format = (v: number | undefined): string =>
      v === undefined ? 'n/o' : row.kind === 'ms' ? `${ms(v)} ms` : `${v}`;
    const within = row.values.filter((v) => v !== undefined && row.target !== undefined && v <= row.target).length;
    return [
      row.label,
      observed.length > 0 ? format(median(observed)) + (unobserved > 0 ? ` (${unobserved} n/o)` : '') : 'n/o',
      unobserved > 0 ? 'n/o' : format(Math.max(...observed)),
      row.kind === 'count' ? `${observed.reduce((x, y) => x + y, 0)}` : '',
      row.target === undefined ? '—' : row.kind === 'ms' ? `≤ ${row.target} ms` : `${row.target}`,
      row.target === undefined
        ? (row.note ?? '')
        : within === row.values.length
          ? 'met'
          : `missed (${within} of ${row.values.length} trials met it)`,
    ];
  });
  const widths = header.map((title, i) => Math.max(title.length, ...lines.map((l) => (l[i] ?? '').length)));
  const render = (cells: readonly string[]): string =>
    cells
      .map((c, i) => (i === 0 || i === cells.length - 1 ? c.padEnd(widths[i] ?? 0) : c.padStart(widths[i] ?? 0)))
      .join('  ')
      .trimEnd();
  console.log(`\n${render(header)}\n${'-'.repeat(widths.reduce((x, y) => x + y + 2, -2))}`);
  for (const line of lines) console.log(render(line));
  const count = (pick: (r: TrialResult) => number): number => results.reduce((sum, r) => sum + pick(r), 0);
  console.log(
    `\n${results.length} trials; connections: refusing ${count((r) => r.refusing.connections)}, blackhole ${count((r) => r.blackhole.connections)}, failback ${count((r) => r.failback.connections)}. ` +
      'n/o: not observed within the window (counts as missed).',
  );
}

function printConfiguration(h: Harness): void {
  const gateway = h.gatewayConfigSchema.parse({ clusterId: 'bench', outbound: { address: '10.250.0.1' } });
  const picker = h.DEFAULT_PICKER_POLICY;
  const lines = [
    'configuration that drives these numbers:',
    `  federation  cluster-a eu-west-1a, cluster-b eu-west-1b, cluster-c us-east-1a; heartbeat 1 s; ${SERVICE} from A (2 backends), B (2), C (1)`,
    `  policy      none (DESIGN §6 defaults): locality ${picker.localityPriority.join(', ')}; minHealthyPercent ${picker.minHealthyPercent}; failback delay ${h.DEFAULT_FAILBACK_DELAY_MS} ms`,
    `  gateway     probe every ${gateway.probe.interval} ms, timeout ${gateway.probe.timeout} ms, out after ${gateway.probe.unhealthyThreshold} failures, back after ${gateway.probe.healthyThreshold} successes; connect timeout ${gateway.connectTimeout} ms;`,
    `              outlier detection after ${gateway.outlierDetection.consecutiveFailures} consecutive failures, ejection ${gateway.outlierDetection.baseEjectionTime} ms doubling, ejected targets re-checked every probe interval`,
    `  client      in cluster-a's namespace, to the clusterset endpoint; connection = greeting, echo, close (as e2e timeline, but EOF before the greeting fails at once); timeout ${CLIENT_TIMEOUT_MS} ms`,
    'definitions (ms from the event to the start of a connection; failed = error or timeout at the client):',
    `  refusing    back-to-back client; event = SIGTERM to A's 2 backends; window ${WINDOW_MS.refusing} ms. First = first connection served outside A;`,
    `              every = first connection from which on all were served outside A. "New" failures started after both backends had exited.`,
    `  blackhole   A dead, B serving; a new connection every ${1000 / PACED_PER_SECOND} ms, each on its own; event = nft DROP rule on B's gateway in place;`,
    `              window ${WINDOW_MS.blackhole} ms. New connections at C = first connection from which on all were served by C in < ${SLOW_MS} ms.`,
    `              Caught = served connections open at the event or started before that which took ≥ ${SLOW_MS} ms (a back-to-back client sits through one).`,
    '              Last held up = the last connection not served by C in time, which "moved" follows; the slowest before the fault = the load\'s own delay.',
    "              B's probe fails at A = when A's gateway logged it (warn level), i.e. took B out of new connections and moved the connects waiting on it.",
    `  failback    B healed and serving; back-to-back client; event = both of A's backends listening again (started together); window ${WINDOW_MS.failback} ms.`,
    '              First = first connection served by A; every = first connection from which on all were served by A.',
    `  both        "from which on all": confirmed by ≥ ${CONFIRM_MS} ms of window after it. Each trial starts once A serves 5 of 5 sequential`,
    '              connections, the blackhole and failback phases once B does.',
  ];
  console.log(lines.join('\n'));
}

async function main(): Promise<void> {
  const trials = trialCount();
  console.log(
    `Isthmus failover benchmark — Node ${process.version}, ${availableParallelism()} × ${cpus()[0]?.model ?? 'unknown CPU'}`,
  );
  console.log(
    `load average at start ${loadavg()
      .map((l) => l.toFixed(2))
      .join(' ')} (1, 5, 15 min; other work on these cores colours the times); ${trials} trials\n`,
  );
  const h = await loadHarness();
  const available = await h.netnsAvailable();
  if (!available.ok) {
    console.log(`cannot run: ${available.reason ?? 'network namespaces unavailable'}`);
    process.exitCode = 1;
    return;
  }
  const started = performance.now();
  await using fed = await h.Federation.start({ members: 3, heartbeatInterval: '1s', gateways: true });
  // Ctrl-C: the same teardown as at the end (the test bed's watchdog would also kill what is left).
  const onSignal = (signal: NodeJS.Signals): void => {
    console.error(`\n${signal}: removing the federation's processes and namespaces`);
    void fed[Symbol.asyncDispose]().finally(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  const [a, b, c] = fed.members as [LocalCluster, LocalCluster, LocalCluster];
  const token = await fed.createToken(['--usages', '3']);
  await h.ensureNamespace(fed.hubCluster.kubeConfig(), NS);
  for (const member of fed.members) {
    await h.ensureNamespace(member.kubeConfig(), NS);
    const joined = await fed.join(member.name, token);
    if (joined.code !== 0) throw new Error(`${member.name} cannot join: ${joined.stderr}`);
  }
  await Promise.all(fed.members.map((m) => fed.gatewayReady(m.name)));
  const backendsA = await h.exportWithBackends(fed, a, NS, SERVICE, [`${SERVICE}-a1`, `${SERVICE}-a2`]);
  await h.exportWithBackends(fed, b, NS, SERVICE, [`${SERVICE}-b1`, `${SERVICE}-b2`]);
  await h.exportWithBackends(fed, c, NS, SERVICE, [`${SERVICE}-c1`]);
  const vip = await h.clustersetEndpoint(a, NS, SERVICE);
  await h.waitFor(
    'A imports from all three',
    async () => {
      const { shares } = await h.routeShares(fed, a, NS, SERVICE);
      return shares.has(b.name) && shares.has(c.name);
    },
    60_000,
    250,
  );
  const setup: Setup = { h, fed, a, b, backendsA, vip };
  console.log(`federation ready in ${((performance.now() - started) / 1000).toFixed(1)} s\n`);
  printConfiguration(h);
  console.log('');
  const results: TrialResult[] = [];
  try {
    for (let trial = 1; trial <= trials; trial++) {
      const result = await runTrial(setup, trial);
      printTrial(trial, result);
      results.push(result);
    }
  } finally {
    // ISTHMUS_BENCH_LOGS=<dir>: keep the gateways' logs too (the test bed's directory goes with the federation).
    const keep = process.env.ISTHMUS_BENCH_LOGS;
    if (keep) {
      mkdirSync(keep, { recursive: true });
      for (const member of fed.members) {
        const log = fed.gateway(member.name)?.logFile;
        if (log) copyFileSync(log, join(keep, `gateway-${member.name}.log`));
      }
      console.log(`gateway logs in ${keep}`);
    }
  }
  printTable(results);
  console.log(
    `load average at end ${loadavg()
      .map((l) => l.toFixed(2))
      .join(' ')}; ${((performance.now() - started) / 1000).toFixed(0)} s from the federation's start`,
  );
}

if (import.meta.main) {
  const [mode, ...args] = process.argv.slice(2);
  if (mode === CLIENT_FLAG) {
    const [kind = 'sequential', host = '', port = '0', perSecond = String(PACED_PER_SECOND), maxSeconds = '300'] = args;
    await client(kind, host, Number(port), Number(perSecond), Number(maxSeconds));
    process.exit(0);
  } else {
    await main();
  }
}
