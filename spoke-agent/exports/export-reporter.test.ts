// The reporting loop alone (no Kubernetes involved): debounce timing, coalescing, retries,
// generations and what the hub's answers mean for each export.
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, describe, expect, it } from 'vitest';
import type { ExportedService } from '../../common/hub-api/index.ts';
import { createLogger } from '../../common/logger.ts';
import { ExportReporter, REPORT_TIMING_DEFAULTS, type ReportTiming } from './export-reporter.ts';
import { RecordingHub } from './recording-hub.testkit.ts';

const log = createLogger({ component: 'export-reporter-test', level: process.env.ISTHMUS_TEST_LOG === '1' ? 'debug' : 'silent' });

function service(name: string, ready = 1): ExportedService {
  return {
    namespace: 'ns',
    name,
    type: 'ClusterSetIP',
    ports: [{ name: 'http', protocol: 'TCP', port: 80, appProtocol: '' }],
    sessionAffinity: 'None',
    sessionAffinityTimeoutSeconds: 0,
    exportCreatedAt: '2026-01-01T00:00:00Z',
    endpoints: [{ zone: 'a', ready, total: ready }],
    allowedClusters: [],
  };
}

const reporters: ExportReporter[] = [];
afterEach(async () => {
  await Promise.all(reporters.splice(0).map((r) => r.close()));
});

function setUp(timing: Partial<ReportTiming> = {}): { hub: RecordingHub; reporter: ExportReporter; changedViews: string[] } {
  const hub = new RecordingHub();
  const changedViews: string[] = [];
  const reporter = new ExportReporter({ sink: hub, log, timing, onHubViewChange: (key) => changedViews.push(key) });
  reporters.push(reporter);
  return { hub, reporter, changedViews };
}

const names = (report: { request: { services: ExportedService[] } } | undefined): string[] => report?.request.services.map((s) => s.name) ?? [];

describe('ExportReporter', () => {
  it('reports nothing before the set is complete, then the whole set (also an empty one)', async () => {
    const { hub, reporter } = setUp();
    reporter.upsert('ns/a', 'uid-a', service('a'));
    await sleep(30);
    expect(hub.reports).toHaveLength(0);
    reporter.open();
    await hub.waitForReport('first report', () => true);
    expect(names(hub.last())).toEqual(['a']);

    const empty = setUp();
    empty.reporter.open();
    const first = await empty.hub.waitForReport('empty report', () => true);
    expect(first.request.services).toEqual([]);
  });

  it('sends a lone change after the quiet period, not later', async () => {
    const { hub, reporter } = setUp();
    reporter.open();
    await hub.waitForReport('initial report', () => true);
    const latencies: number[] = [];
    for (let i = 1; i <= 20; i++) {
      await sleep(10);
      const from = hub.reports.length;
      const changedAt = performance.now();
      reporter.upsert('ns/a', 'uid-a', service('a', i));
      const report = await hub.waitForReport(`report ${i}`, (r) => r.request.services[0]?.endpoints[0]?.ready === i, from);
      latencies.push(report.at - changedAt);
    }
    latencies.sort((x, y) => x - y);
    const p50 = latencies[10] as number;
    const max = latencies.at(-1) as number;
    console.log(`reporter: lone change → report: p50 ${p50.toFixed(2)} ms, max ${max.toFixed(2)} ms (quiet period ${REPORT_TIMING_DEFAULTS.quietMs} ms)`);
    expect(p50).toBeGreaterThanOrEqual(REPORT_TIMING_DEFAULTS.quietMs - 1);
    // Generous bounds: timers run late on a busy machine; a debounce that waited for maxDelayMs would show ~100 ms.
    expect(p50).toBeLessThan(50);
    expect(max).toBeLessThan(250);
  });

  it('coalesces a burst into a few reports, the last with every change', async () => {
    const { hub, reporter } = setUp();
    reporter.open();
    await hub.waitForReport('initial report', () => true);
    const from = hub.reports.length;
    for (let i = 0; i < 50; i++) {
      reporter.upsert(`ns/s${i}`, `uid-${i}`, service(`s${i}`));
      await sleep(1);
    }
    await hub.waitForReport('the whole burst', (r) => r.request.services.length === 50, from);
    await sleep(30);
    const burst = hub.reports.length - from;
    console.log(`reporter: 50 changes 1 ms apart → ${burst} report(s)`);
    expect(burst).toBeLessThanOrEqual(3);
    expect(names(hub.last())).toHaveLength(50);
  });

  it('does not starve a change stream: reports at least every maxDelayMs', async () => {
    const { hub, reporter } = setUp({ quietMs: 5, maxDelayMs: 40 });
    reporter.open();
    await hub.waitForReport('initial report', () => true);
    const from = hub.reports.length;
    const until = performance.now() + 200;
    for (let i = 0; performance.now() < until; i++) {
      reporter.upsert('ns/a', 'uid-a', service('a', i));
      await sleep(2);
    }
    const during = hub.reports.length - from;
    expect(during).toBeGreaterThanOrEqual(3);
    expect(during).toBeLessThanOrEqual(8);
  });

  it('retries a failed report with backoff, keeping every export and raising the generation', async () => {
    const { hub, reporter, changedViews } = setUp({ retryInitialMs: 20, retryMaxMs: 200 });
    reporter.upsert('ns/a', 'uid-a', service('a'));
    reporter.open();
    await hub.waitForReport('initial report', (r) => r.ok);
    expect(reporter.hubView('ns/a')?.exported).toBe(true);

    hub.failNext = 3;
    const from = hub.reports.length;
    reporter.upsert('ns/b', 'uid-b', service('b'));
    await hub.waitForReport('first failure', () => true, from);
    reporter.upsert('ns/c', 'uid-c', service('c')); // arrives while backing off
    const ok = await hub.waitForReport('retried report', (r) => r.ok, from);
    const attempts = hub.reports.slice(from);
    expect(attempts.map((r) => r.ok)).toEqual([false, false, false, true]);
    for (const attempt of attempts) expect(names(attempt)).toContain('a'); // never cleared
    expect(names(ok)).toEqual(['a', 'b', 'c']);
    const generations = hub.reports.map((r) => r.request.generation);
    expect([...generations].sort((x, y) => x - y)).toEqual(generations);
    expect(new Set(generations).size).toBe(generations.length);
    const gaps = attempts.slice(1).map((r, i) => r.at - (attempts[i] as { at: number }).at);
    expect(gaps[2]).toBeGreaterThan(gaps[0] as number); // backoff grows
    expect(reporter.hubView('ns/b')?.exported).toBe(true);
    expect(changedViews).toEqual(expect.arrayContaining(['ns/a', 'ns/b', 'ns/c']));
  });

  it('goes past a newer generation the hub already holds', async () => {
    const requests: number[] = [];
    const ahead = Date.now() + 60_000;
    const sink = {
      report: (request: { generation: number }) => {
        requests.push(request.generation);
        return Promise.resolve({ appliedGeneration: Math.max(ahead, request.generation), conflicts: [] });
      },
    };
    const stale = new ExportReporter({ sink, log, onHubViewChange: () => undefined, timing: { retryInitialMs: 10 } });
    reporters.push(stale);
    stale.upsert('ns/a', 'uid-a', service('a'));
    stale.open();
    await expect.poll(() => stale.hubView('ns/a')?.exported, { timeout: 5_000, interval: 5 }).toBe(true);
    expect(requests[0]).toBeLessThan(ahead);
    expect(requests.at(-1)).toBeGreaterThan(ahead);
  });

  it('keeps conflicts per export and tells which exports changed', async () => {
    const { hub, reporter, changedViews } = setUp();
    hub.conflicts = [
      { namespace: 'ns', name: 'a', type: 'PortConflict', message: 'port 80 differs' },
      { namespace: 'ns', name: 'a', type: 'TypeConflict', message: 'Headless elsewhere' },
    ];
    reporter.upsert('ns/a', 'uid-a', service('a'));
    reporter.upsert('ns/b', 'uid-b', service('b'));
    expect(reporter.hubView('ns/a')).toEqual({ exported: false, conflicts: undefined });
    reporter.open();
    await expect.poll(() => reporter.hubView('ns/b')?.exported, { interval: 2 }).toBe(true);
    expect(reporter.hubView('ns/a')?.conflicts?.map((c) => c.type)).toEqual(['PortConflict', 'TypeConflict']);
    expect(reporter.hubView('ns/b')?.conflicts).toEqual([]);
    expect(changedViews.sort()).toEqual(['ns/a', 'ns/b']);

    // An answer that changes nothing for an export does not wake its status.
    changedViews.length = 0;
    const from = hub.reports.length;
    reporter.upsert('ns/b', 'uid-b', service('b', 7));
    await hub.waitForReport('update', (r) => r.ok, from);
    await sleep(5);
    expect(changedViews).toEqual([]);

    // From the catalog; a malformed reason is refused.
    reporter.applyConflicts('ns/b', [{ type: 'SessionAffinityConflict', message: 'ClientIP elsewhere' }]);
    reporter.applyConflicts('ns/b', [{ type: 'not a reason', message: 'x' }]);
    reporter.applyConflicts('ns/gone', [{ type: 'PortConflict', message: 'x' }]);
    expect(reporter.hubView('ns/b')?.conflicts).toEqual([{ type: 'SessionAffinityConflict', message: 'ClientIP elsewhere' }]);
    expect(reporter.hubView('ns/gone')).toBeUndefined();
    expect(changedViews).toEqual(['ns/b']);
  });

  it('a ServiceExport re-created while its report is in flight waits for the next answer', async () => {
    const { hub, reporter } = setUp();
    reporter.open();
    await hub.waitForReport('initial report', () => true);
    const release = hub.hold();
    const from = hub.reports.length;
    reporter.upsert('ns/a', 'uid-1', service('a'));
    await hub.waitForReport('held report', () => true, from);
    reporter.upsert('ns/a', 'uid-2', service('a'));
    release();
    await hub.waitForReport('report of the new object', (r) => r.ok, from + 1);
    await expect.poll(() => reporter.hubView('ns/a')?.exported, { interval: 2 }).toBe(true);
    expect(hub.reports.length).toBe(from + 2);
  });
});
