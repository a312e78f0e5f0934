// Failover benchmark (DESIGN §8: "backend or whole cluster refusing connections → zero failed
// client connections; blackholed remote gateway → traffic moved within 1 s; failback within 5 s
// of recovery"), over repeated trials on one Federation: 3 members with gateways in their own
// network namespaces (A and B in eu-west, C in us-east), heartbeat 1 s, a service exported from
// A (2 backends), B (2) and C (1), and no FailoverPolicy (the defaults of DESIGN §6). A client in
// A dials the clusterset endpoint. Each trial:
//   1. refusing: A's backends are killed while a client opens connections back to back
//      (e2e timeline) → failed connections, time until the first and until every new connection
//      is served elsewhere;
//   2. blackhole: with B serving, B's gateway is blackholed (a DROP rule: connects hang) while a
//      paced client opens a new connection every few ms, whether or not the earlier ones are done
//      (a back-to-back client would sit in its one hung connection and could not see when new
//      connections move) → time until new connections go to C without delay, the connections
//      caught in flight and their worst connect time, failed connections;
//   3. failback: A's backends are started again (B healed and serving) → time until the first
//      and until every connection is served by A.
// Between phases and trials the benchmark waits for a state ("A serves 5 of 5"), never a fixed time.
// Run: npm run bench -- failover   (ISTHMUS_BENCH_TRIALS=N, default 5; directly:
// node bench/failover.bench.ts --trials N). About 4 minutes on 2 quiet cores.
//
// This file also runs inside A's namespace as the paced client (`--paced-client`), so it imports
// only node:* statically; the test bed, gateway config and scenario helpers load in main().
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { connect as tcpConnect } from 'node:net';
import { availableParallelism, cpus, loadavg } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import type { Federation } from '../e2e/federation/index.ts';
import type { Backend, Timeline } from '../e2e/gateway/scenario.ts';
import type { LocalCluster } from '../e2e/testbed/index.ts';

const SELF = fileURLToPath(import.meta.url);
const PACED_CLIENT = '--paced-client';
const NS = 'bench-failover';
const SERVICE = 'cart';
const DEFAULT_TRIALS = 5;
/** Timeline lengths (the client's own clock, from its start; the fault comes once it is under way). */
const REFUSING_WINDOW_S = 7;
const FAILBACK_WINDOW_S = 12;
/** How long the paced client keeps opening connections after the blackhole (then it waits for the open ones). */
const BLACKHOLE_WINDOW_MS = 6_000;
const PACED_PER_SECOND = 50;
/** A connection slower than this was held up (by the blackhole, or by the connect timeout before a retry). */
const SLOW_MS = 500;
/** A "from then on every connection …" claim needs at least this much timeline after it to count as observed. */
const CONFIRM_MS = 1_000;
/** Per-connection timeout of the clients (as e2e timeline's). */
const CLIENT_TIMEOUT_MS = 15_000;

/** DESIGN §8. */
const TARGETS = { failedConnections: 0, blackholeMovedMs: 1_000, failbackMs: 5_000 } as const;

type Connection = readonly [startOffsetMs: number, outcome: string, durationMs: number];

/** One trial's figures; a time is undefined when the timeline did not show it (within its window). */
interface TrialResult {
  readonly loadAverage: number;
  readonly refusing: {
    readonly connections: number;
    /** Failed connections that started after A's backends had exited: A refused them. */
    readonly failedNew: number;
    /** Failed connections already open (or starting) while A's backends were being stopped. */
    readonly failedInFlight: number;
    readonly firstElsewhereMs: number | undefined;
    readonly movedMs: number | undefined;
  };
  readonly blackhole: {
    readonly connections: number;
    readonly failed: number;
    readonly movedMs: number | undefined;
    readonly caught: number;
    readonly worstInFlightMs: number | undefined;
  };
  readonly failback: {
    readonly connections: number;
    readonly failed: number;
    readonly firstMs: number | undefined;
    readonly allMs: number | undefined;
  };
}

// ---------------------------------------------------------------------------------------------
// The paced client (runs inside A's namespace).

/** One connection as e2e/gateway/netns-tool.ts makes it: greeting "<id>\n", "ping\n" echoed, half-close. */
function dial(host: string, port: number, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = tcpConnect({ host, port, allowHalfOpen: true });
    let text = '';
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`timeout after ${timeoutMs} ms`));
    }, timeoutMs);
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      text += chunk;
      if (text.includes('\n') && !socket.writableEnded) socket.end('ping\n');
    });
    socket.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    socket.on('close', () => {
      clearTimeout(timer);
      const [id, echo] = text.split('\n');
      if (echo === 'ping' && id) resolve(id);
      else reject(new Error(`unexpected reply ${JSON.stringify(text)}`));
    });
  });
}

/**
 * A new connection every 1000/perSecond ms, each on its own, until SIGTERM (or maxSeconds); then
 * no new ones, the open ones finish, and one line in the shape of e2e's Timeline. Before that,
 * one line {"first": id} once a connection has been served, to say it is under way.
 */
async function pacedClient(host: string, port: number, perSecond: number, maxSeconds: number): Promise<void> {
  const startedAt = Date.now();
  const connections: Connection[] = [];
  const open = new Set<Promise<void>>();
  let announced = false;
  const start = (): void => {
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
  };
  const timer = setInterval(start, 1000 / perSecond);
  start();
  const deadline = new AbortController();
  await Promise.race([once(process, 'SIGTERM'), sleep(maxSeconds * 1000, undefined, { signal: deadline.signal }).catch(() => undefined)]);
  deadline.abort();
  clearInterval(timer);
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
const endOf = (t: Timeline, c: Connection): number => t.startedAt + c[0] + c[2];

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
  const from = t.startedAt + first[0];
  return endOf(t, last) - from >= CONFIRM_MS ? from : undefined;
}

/** Earliest end (epoch ms) among connections that satisfy `ok`. */
function firstEnd(t: Timeline, ok: (c: Connection) => boolean): number | undefined {
  const ends = t.connections.filter(ok).map((c) => endOf(t, c));
  return ends.length > 0 ? Math.min(...ends) : undefined;
}

const since = (at: number | undefined, t0: number): number | undefined => (at === undefined ? undefined : Math.max(0, at - t0));

// ---------------------------------------------------------------------------------------------
// The benchmark.

async function loadHarness() {
  const [testbed, scenario, federation, kube, config, policies, picker] = await Promise.all([
    import('../e2e/testbed/index.ts'),
    import('../e2e/gateway/scenario.ts'),
    import('../e2e/federation/index.ts'),
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
  const raw = flag < 0 ? process.env.ISTHMUS_BENCH_TRIALS : (process.argv[flag]?.split('=')[1] ?? process.argv[flag + 1]);
  const trials = Number(raw ?? DEFAULT_TRIALS);
  if (!Number.isInteger(trials) || trials < 1) throw new Error(`--trials / ISTHMUS_BENCH_TRIALS must be a positive integer, not ${raw}`);
  return trials;
}

/** Waits until `count` sequential connections from A are all served by `cluster` (a, b or c). */
async function serves({ h, fed, a, vip }: Setup, cluster: string, count = 5): Promise<void> {
  await h.waitFor(`${cluster.toUpperCase()} serves ${count} of ${count}`, async () => {
    const report = await h.connect(fed, a, vip, count);
    return Object.entries(report.served).every(([id]) => clusterOf(id) === cluster) && Object.values(report.served).reduce((x, y) => x + y, 0) === count;
  }, 60_000, 200);
}

/** Outbound connections A's gateway has made to `destination` for the service (a local endpoint when it is A). */
async function outboundTo({ h, fed, a }: Setup, destination: string): Promise<number> {
  return h.metric(await fed.gatewayMetrics(a.name), 'isthmus_gateway_connections_total', { direction: 'outbound', service: SERVICE, destination_cluster: destination, result: 'connected' });
}

/** Runs e2e's timeline client from A for `seconds`; `act` runs once the client's connections reach `serving`. */
async function timelineAround(setup: Setup, serving: LocalCluster, seconds: number, act: () => Promise<void>): Promise<Timeline> {
  const { h, fed, a, vip } = setup;
  const before = await outboundTo(setup, serving.name);
  const watching = h.timeline(fed, a, vip, seconds);
  try {
    await h.waitFor('the client is under way', async () => (await outboundTo(setup, serving.name)) >= before + 5, 30_000, 100);
    await act();
  } catch (err) {
    await watching.catch(() => undefined);
    throw err;
  }
  return watching;
}

async function refusingPhase(setup: Setup): Promise<TrialResult['refusing']> {
  let killIssued = 0;
  let killed = 0;
  const t = await timelineAround(setup, setup.a, REFUSING_WINDOW_S, async () => {
    killIssued = Date.now();
    await setup.h.killBackends(setup.backendsA);
    killed = Date.now();
  });
  const failures = t.connections.filter(failed);
  const elsewhere = (c: Connection): boolean => !failed(c) && clusterOf(c[1]) !== 'a';
  return {
    connections: t.connections.length,
    failedNew: failures.filter((c) => t.startedAt + c[0] >= killed).length,
    failedInFlight: failures.filter((c) => t.startedAt + c[0] < killed).length,
    firstElsewhereMs: since(firstEnd(t, elsewhere), killIssued),
    movedMs: since(settledFrom(t, elsewhere), killIssued),
  };
}

async function blackholePhase(setup: Setup, trial: number): Promise<TrialResult['blackhole']> {
  const { h, fed, a, b, vip } = setup;
  const lab = fed.lab as NonNullable<Federation['lab']>;
  const client = await lab.cluster(a.name).startProcess({
    name: `paced-client-${trial}`,
    command: process.execPath,
    args: [SELF, PACED_CLIENT, vip.address, String(vip.port), String(PACED_PER_SECOND), '120'],
  });
  let blackholed = 0;
  try {
    await h.waitForProcess(client, 'the paced client is under way', () => Promise.resolve(client.logTail().includes('{"first"')), 30_000, 50);
    const fault = await lab.blackhole(b.name);
    blackholed = Date.now();
    try {
      // The measurement window (not a barrier): new connections keep starting for this long.
      await sleep(BLACKHOLE_WINDOW_MS);
      await client.stop(CLIENT_TIMEOUT_MS + 5_000);
    } finally {
      await fault.heal();
    }
  } finally {
    await client.stop(1_000);
  }
  const line = readFileSync(client.logFile, 'utf8').split('\n').find((l) => l.startsWith('{"startedAt"'));
  if (!line) throw new Error(`the paced client printed no timeline:\n${client.logTail()}`);
  const t = JSON.parse(line) as Timeline;
  const after = t.connections.filter((c) => endOf(t, c) > blackholed);
  const moved = settledFrom(t, (c) => !failed(c) && clusterOf(c[1]) === 'c' && c[2] < SLOW_MS);
  const caught = after.filter((c) => c[2] >= SLOW_MS && (moved === undefined || t.startedAt + c[0] < moved));
  return {
    connections: t.connections.length,
    failed: t.connections.filter(failed).length,
    movedMs: since(moved, blackholed),
    caught: caught.length,
    worstInFlightMs: after.length > 0 ? Math.max(...after.map((c) => c[2])) : undefined,
  };
}

async function failbackPhase(setup: Setup): Promise<TrialResult['failback']> {
  const { fed, a, b, backendsA } = setup;
  let revived = 0;
  const t = await timelineAround(setup, b, FAILBACK_WINDOW_S, async () => {
    // Both at once (reviveBackends starts them one after the other), so "recovered" is one moment:
    // when both listen again.
    await Promise.all(backendsA.map(async (backend) => {
      backend.process = (await fed.startBackend(a.name, backend.id, backend.port, backend.address)).process;
    }));
    revived = Date.now();
  });
  const atA = (c: Connection): boolean => !failed(c) && clusterOf(c[1]) === 'a';
  return {
    connections: t.connections.length,
    failed: t.connections.filter(failed).length,
    firstMs: since(firstEnd(t, atA), revived),
    allMs: since(settledFrom(t, atA), revived),
  };
}

async function runTrial(setup: Setup, trial: number): Promise<TrialResult> {
  await serves(setup, 'a');
  const loadAverage = loadavg()[0] ?? Number.NaN;
  const refusing = await refusingPhase(setup);
  await serves(setup, 'b');
  const blackhole = await blackholePhase(setup, trial);
  await serves(setup, 'b');
  const failback = await failbackPhase(setup);
  return { loadAverage, refusing, blackhole, failback };
}

// ---------------------------------------------------------------------------------------------
// Output.

const ms = (value: number | undefined): string => (value === undefined ? 'n/o' : `${Math.round(value)}`);

function median(values: readonly number[]): number {
  const sorted = [...values].sort((x, y) => x - y);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? (sorted[middle] as number) : ((sorted[middle - 1] as number) + (sorted[middle] as number)) / 2;
}

function printTrial(trial: number, r: TrialResult): void {
  console.log(
    `trial ${trial}: load ${r.loadAverage.toFixed(1)} | refusing: failed ${r.refusing.failedNew} (+${r.refusing.failedInFlight} in flight), first elsewhere ${ms(r.refusing.firstElsewhereMs)} ms, moved ${ms(r.refusing.movedMs)} ms` +
      ` | blackhole: moved ${ms(r.blackhole.movedMs)} ms, caught ${r.blackhole.caught}, worst in flight ${ms(r.blackhole.worstInFlightMs)} ms, failed ${r.blackhole.failed}` +
      ` | failback: first ${ms(r.failback.firstMs)} ms, all ${ms(r.failback.allMs)} ms, failed ${r.failback.failed}`,
  );
}

interface Row {
  readonly label: string;
  /** Per trial; undefined = not observed within the window (counts as worst). */
  readonly values: readonly (number | undefined)[];
  readonly kind: 'ms' | 'count';
  /** Upper bound from DESIGN §8, checked on every trial; undefined = figure without a target. */
  readonly target?: number;
  readonly note?: string;
}

function printTable(results: readonly TrialResult[]): void {
  const rows: Row[] = [
    { label: 'refusing: failed new connections', values: results.map((r) => r.refusing.failedNew), kind: 'count', target: TARGETS.failedConnections },
    { label: 'refusing: failed, open while A stopped', values: results.map((r) => r.refusing.failedInFlight), kind: 'count', note: 'not refusals (see below)' },
    { label: 'refusing: first served elsewhere', values: results.map((r) => r.refusing.firstElsewhereMs), kind: 'ms' },
    { label: 'refusing: every new conn. elsewhere', values: results.map((r) => r.refusing.movedMs), kind: 'ms' },
    { label: 'blackhole: failed connections', values: results.map((r) => r.blackhole.failed), kind: 'count', target: TARGETS.failedConnections },
    { label: 'blackhole: new connections moved', values: results.map((r) => r.blackhole.movedMs), kind: 'ms', target: TARGETS.blackholeMovedMs },
    { label: 'blackhole: connections caught', values: results.map((r) => r.blackhole.caught), kind: 'count' },
    { label: 'blackhole: worst in-flight connect', values: results.map((r) => r.blackhole.worstInFlightMs), kind: 'ms' },
    { label: 'failback: failed connections', values: results.map((r) => r.failback.failed), kind: 'count', target: TARGETS.failedConnections },
    { label: 'failback: first served by A', values: results.map((r) => r.failback.firstMs), kind: 'ms', target: TARGETS.failbackMs },
    { label: 'failback: every conn. served by A', values: results.map((r) => r.failback.allMs), kind: 'ms', target: TARGETS.failbackMs },
  ];
  const header = ['measurement', 'median', 'worst', 'total', 'DESIGN §8 target', 'verdict'];
  const lines = rows.map((row) => {
    const observed = row.values.filter((v): v is number => v !== undefined);
    const unobserved = row.values.length - observed.length;
    const worst = unobserved > 0 ? undefined : Math.max(...observed);
    const unit = row.kind === 'ms' ? ' ms' : '';
    const format = (v: number | undefined): string => (v === undefined ? 'n/o' : row.kind === 'ms' ? ms(v) + unit : `${v}`);
    const within = row.values.filter((v) => v !== undefined && row.target !== undefined && v <= row.target).length;
    const verdict =
      row.target === undefined ? (row.note ?? '') : within === row.values.length ? 'met' : `missed (${within}/${row.values.length} trials within)`;
    return [
      row.label,
      observed.length > 0 ? format(median(observed)) + (unobserved > 0 ? ` (${unobserved} n/o)` : '') : 'n/o',
      format(worst),
      row.kind === 'count' ? `${observed.reduce((x, y) => x + y, 0)}` : '',
      row.target === undefined ? '—' : row.kind === 'ms' ? `≤ ${row.target} ms` : `${row.target}`,
      verdict,
    ];
  });
  const widths = header.map((title, i) => Math.max(title.length, ...lines.map((l) => (l[i] ?? '').length)));
  const render = (cells: readonly string[]): string => cells.map((c, i) => (i === 0 || i === cells.length - 1 ? c.padEnd(widths[i] ?? 0) : c.padStart(widths[i] ?? 0))).join('  ').trimEnd();
  console.log(`\n${render(header)}\n${'-'.repeat(widths.reduce((x, y) => x + y + 2, -2))}`);
  for (const line of lines) console.log(render(line));
  const count = (pick: (r: TrialResult) => number): number => results.reduce((sum, r) => sum + pick(r), 0);
  console.log(
    `\nover ${results.length} trials; connections observed: refusing ${count((r) => r.refusing.connections)}, blackhole ${count((r) => r.blackhole.connections)}, failback ${count((r) => r.failback.connections)}; n/o = not observed within the window`,
  );
}

function printDefinitions(h: Harness): void {
  const gateway = h.gatewayConfigSchema.parse({ clusterId: 'bench', outbound: { address: '10.250.0.1' } });
  const picker = h.DEFAULT_PICKER_POLICY;
  console.log('configuration that drives these numbers:');
  console.log(`  federation   3 members: cluster-a eu-west-1a, cluster-b eu-west-1b, cluster-c us-east-1a; heartbeat 1 s; ${SERVICE} exported from A (2 backends), B (2), C (1)`);
  console.log(`  policy       no FailoverPolicy (DESIGN §6 defaults): locality ${picker.localityPriority.join(', ')}; minHealthyPercent ${picker.minHealthyPercent}; failback delay ${h.DEFAULT_FAILBACK_DELAY_MS} ms`);
  console.log(`  gateway      probe interval ${gateway.probe.interval} ms, timeout ${gateway.probe.timeout} ms, back after ${gateway.probe.healthyThreshold} successes; connect timeout ${gateway.connectTimeout} ms;`);
  console.log(`               outlier detection ${gateway.outlierDetection.consecutiveFailures} consecutive failures, ejection ${gateway.outlierDetection.baseEjectionTime} ms doubling (ejected targets re-checked every probe interval)`);
  console.log(`  clients      in cluster-a's namespace, to the clusterset endpoint; per-connection timeout ${CLIENT_TIMEOUT_MS} ms`);
  console.log('definitions (times in ms; "served elsewhere" = by a backend outside A; failed = error or timeout at the client):');
  console.log(`  refusing     back-to-back client (e2e timeline, ${REFUSING_WINDOW_S} s); t0 = SIGTERM to A's 2 backends. First served elsewhere = end of the first connection`);
  console.log(`               served elsewhere; every new conn. elsewhere = start of the first connection from which on all were (≥ ${CONFIRM_MS} ms of timeline after it).`);
  console.log('               "Failed new" = failed connections started after both backends had exited (A refusing): the target. "Open while A stopped" =');
  console.log('               connections that started before, cut when their backend process exited: a backend dying mid-connection, not a refusal.');
  console.log(`  blackhole    A dead, B serving; paced client: a new connection every ${1000 / PACED_PER_SECOND} ms, each on its own; t0 = nft DROP rule on B's gateway in place;`);
  console.log(`               ${BLACKHOLE_WINDOW_MS} ms of new connections after it. Moved = start of the first connection from which on every connection was served by C in`);
  console.log(`               < ${SLOW_MS} ms. Caught = connections open at t0 or started before "moved" that took ≥ ${SLOW_MS} ms (they wait out the connect timeout, then`);
  console.log('               are retried at C); worst in-flight connect = the longest connection open at or after t0 — what a back-to-back client sits through.');
  console.log(`  failback     B healed and serving; back-to-back client (${FAILBACK_WINDOW_S} s); t0 = both of A's backends listening again (both started at once).`);
  console.log(`               First = end of the first connection served by A; every = start of the first connection from which on all were served by A (≥ ${CONFIRM_MS} ms after).`);
  console.log('  between      each trial starts once A serves 5 of 5 sequential connections; the blackhole and failback phases once B serves 5 of 5.');
}

async function main(): Promise<void> {
  const trials = trialCount();
  const h = await loadHarness();
  console.log(`Isthmus failover benchmark — Node ${process.version}, ${availableParallelism()} × ${cpus()[0]?.model ?? 'unknown CPU'}`);
  console.log(`load average at start ${loadavg().map((l) => l.toFixed(2)).join(' ')} (1, 5, 15 min; other work on these cores colours the times); ${trials} trials\n`);
  const available = await h.netnsAvailable();
  if (!available.ok) {
    console.log(`cannot run: ${available.reason ?? 'network namespaces unavailable'}`);
    process.exitCode = 1;
    return;
  }
  const started = performance.now();
  await using fed = await h.Federation.start({ members: 3, heartbeatInterval: '1s', gateways: true });
  // Ctrl-C: the same teardown as the end of the run (the test bed's watchdog would also kill what is left).
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
  await h.waitFor('A imports from all three', async () => {
    const { shares } = await h.routeShares(fed, a, NS, SERVICE);
    return shares.has(b.name) && shares.has(c.name);
  }, 60_000, 250);
  const setup: Setup = { h, fed, a, b, backendsA, vip };
  console.log(`federation ready in ${((performance.now() - started) / 1000).toFixed(1)} s\n`);
  printDefinitions(h);
  console.log('');
  const results: TrialResult[] = [];
  for (let trial = 1; trial <= trials; trial++) {
    const result = await runTrial(setup, trial);
    printTrial(trial, result);
    results.push(result);
  }
  printTable(results);
  console.log(`load average at end ${loadavg().map((l) => l.toFixed(2)).join(' ')}; ran ${((performance.now() - started) / 1000).toFixed(0)} s after the federation began starting`);
}

if (import.meta.main) {
  const [mode, ...args] = process.argv.slice(2);
  if (mode === PACED_CLIENT) {
    await pacedClient(args[0] as string, Number(args[1]), Number(args[2] ?? PACED_PER_SECOND), Number(args[3] ?? 120));
    process.exit(0);
  } else {
    await main();
  }
}
