// The reporting loop alone (no Kubernetes involved): debounce timing, coalescing, retries,
// generations and what the hub's answers mean for each export. Everything about timing runs on
// fake timers (the sink answers in microtasks, no I/O), so it holds on any machine; latency
// figures belong to bench/propagation.bench.ts.
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { ExportedService } from '../../common/hub-api/index.ts';
import { createLogger } from '../../common/logger.ts';
import { ExportReporter, REPORT_TIMING_DEFAULTS, type ReportTiming } from './export-reporter.ts';
import { RecordingHub } from './recording-hub.testkit.ts';

const log = createLogger({
  component: 'export-reporter-test',
  level: process.env.ISTHMUS_TEST_LOG === '1' ? 'debug' : 'silent',
});

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
    ipFamilies: ['IPv4'],
    internalTrafficPolicy: 'Cluster',
    trafficDistribution: '',
    exportedLabels: {},
    exportedAnnotations: {},
  };
}

const reporters: ExportReporter[] = [];
afterEach(async () => {
  await Promise.all(reporters.splice(0).map((r) => r.close()));
});

function setUp(timing: Partial<ReportTiming> = {}): {
  hub: RecordingHub;
  reporter: ExportReporter;
  changedViews: string[];
} {
  const hub = new RecordingHub();
  const changedViews: string[] = [];
  const reporter = new ExportReporter({ sink: hub, log, timing, onHubViewChange: (key) => changedViews.push(key) });
  reporters.push(reporter);
  return { hub, reporter, changedViews };
}

const names = (report: { request: { services: ExportedService[] } } | undefined): string[] =>
  report?.request.services.map((s) => s.name) ?? [];

describe('ExportReporter', () => {
  describe('timing, on a fake clock', () => {
    // The reporter's clock: timers for the debounce and retries, performance.now() for maxDelayMs,
    // Date.now() for generations. The recording hub stamps reports with the same fake performance.now().
    beforeEach(() => {
      vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'performance', 'Date'] });
    });
    afterEach(async () => {
      await Promise.all(reporters.splice(0).map((r) => r.close())); // while their timers are still the fake ones
      vi.useRealTimers();
    });
    const advance = (ms: number): Promise<unknown> => vi.advanceTimersByTimeAsync(ms);
    const { quietMs, maxDelayMs } = REPORT_TIMING_DEFAULTS;

    it('reports nothing before the set is complete, then the whole set (also an empty one)', async () => {
      const { hub, reporter } = setUp();
      reporter.upsert('ns/a', 'uid-a', service('a'));
      await advance(10 * maxDelayMs);
      expect(hub.reports).toHaveLength(0);
      reporter.open();
      await advance(quietMs);
      expect(hub.reports.map(names)).toEqual([['a']]);

      const empty = setUp();
      empty.reporter.open();
      await advance(quietMs);
      expect(empty.hub.reports.map((r) => r.request.services)).toEqual([[]]);
    });

    it('sends a lone change after the quiet period, not later', async () => {
      const { hub, reporter } = setUp();
      reporter.open();
      await advance(quietMs);
      expect(hub.reports).toHaveLength(1);
      for (let i = 1; i <= 5; i++) {
        await advance(10 * quietMs);
        const from = hub.reports.length;
        const changedAt = performance.now();
        reporter.upsert('ns/a', 'uid-a', service('a', i));
        await advance(quietMs - 1);
        expect(hub.reports.length, `change ${i} reported before the quiet period`).toBe(from);
        await advance(1);
        // Exactly when the quiet period ends: a debounce that waited for maxDelayMs would not have sent yet.
        expect(
          hub.reports.slice(from).map((r) => [r.request.services[0]?.endpoints[0]?.ready, r.at - changedAt]),
        ).toEqual([[i, quietMs]]);
      }
    });

    it('coalesces a burst into a few reports, the last with every change', async () => {
      const { hub, reporter } = setUp();
      reporter.open();
      await advance(quietMs);
      const from = hub.reports.length;
      const changes = 50;
      for (let i = 0; i < changes; i++) {
        reporter.upsert(`ns/s${i}`, `uid-${i}`, service(`s${i}`));
        await advance(1); // closer together than the quiet period
      }
      await advance(10 * maxDelayMs);
      const burst = hub.reports.slice(from);
      expect(burst.length).toBeGreaterThan(0);
      expect(burst.length).toBeLessThan(changes / 5);
      expect(names(hub.last())).toHaveLength(changes);
    });

    it('does not starve a change stream: reports at least every maxDelayMs', async () => {
      const timing = { quietMs: 5, maxDelayMs: 40 };
      const spacingMs = 2; // < quietMs: the quiet period alone would never end
      const { hub, reporter } = setUp(timing);
      reporter.open();
      await advance(timing.quietMs);
      const from = hub.reports.length;
      const streamStart = performance.now();
      const changes = 100;
      for (let i = 0; i < changes; i++) {
        reporter.upsert('ns/a', 'uid-a', service('a', i));
        await advance(spacingMs);
      }
      const streamEnd = performance.now();
      const during = hub.reports.slice(from).filter((r) => r.at <= streamEnd);
      // The first change after a report comes at most spacingMs later and leaves at most maxDelayMs after that.
      const times = [streamStart, ...during.map((r) => r.at)];
      const gaps = times.slice(1).map((t, i) => t - (times[i] as number));
      expect(gaps.length).toBeGreaterThanOrEqual(
        Math.floor((streamEnd - streamStart) / (timing.maxDelayMs + spacingMs)),
      );
      for (const gap of gaps) expect(gap).toBeLessThanOrEqual(timing.maxDelayMs + spacingMs);
      expect(during.length).toBeLessThan(changes / 5); // still coalescing
    });

    it('retries a failed report with backoff, keeping every export and raising the generation', async () => {
      const retry = { retryInitialMs: 20, retryMaxMs: 60 };
      const { hub, reporter, changedViews } = setUp(retry);
      reporter.upsert('ns/a', 'uid-a', service('a'));
      reporter.open();
      await advance(quietMs);
      expect(hub.reports.map((r) => r.ok)).toEqual([true]);
      expect(reporter.hubView('ns/a')?.exported).toBe(true);

      hub.failNext = 4;
      const from = hub.reports.length;
      reporter.upsert('ns/b', 'uid-b', service('b'));
      await advance(quietMs);
      expect(hub.reports.slice(from).map((r) => r.ok)).toEqual([false]);
      reporter.upsert('ns/c', 'uid-c', service('c')); // arrives while backing off
      await advance(10 * retry.retryMaxMs);
      const attempts = hub.reports.slice(from);
      expect(attempts.map((r) => r.ok)).toEqual([false, false, false, false, true]);
      for (const attempt of attempts) expect(names(attempt)).toContain('a'); // never cleared
      expect(names(attempts.at(-1))).toEqual(['a', 'b', 'c']);
      const generations = hub.reports.map((r) => r.request.generation);
      expect([...generations].sort((x, y) => x - y)).toEqual(generations);
      expect(new Set(generations).size).toBe(generations.length);
      // Each retry waits its base delay, jittered into [base/2, base]; the base doubles per failure up to retryMaxMs.
      const gaps = attempts.slice(1).map((r, i) => r.at - (attempts[i] as { at: number }).at);
      const bases = [20, 40, 60, 60];
      gaps.forEach((gap, i) => {
        expect(gap, `retry ${i + 1}`).toBeGreaterThanOrEqual((bases[i] as number) / 2);
        expect(gap, `retry ${i + 1}`).toBeLessThanOrEqual(bases[i] as number);
      });
      expect(gaps[2]).toBeGreaterThan(gaps[0] as number); // backoff grows
      expect(reporter.hubView('ns/b')?.exported).toBe(true);
      expect(changedViews).toEqual(expect.arrayContaining(['ns/a', 'ns/b', 'ns/c']));
    });

    it('sends a report waiting out its backoff as soon as the hub is reachable again', async () => {
      const { hub, reporter } = setUp({ retryInitialMs: 20_000, retryMaxMs: 20_000 });
      reporter.open();
      await advance(quietMs);
      hub.failNext = 1;
      reporter.upsert('ns/a', 'uid-a', service('a'));
      await advance(quietMs);
      expect(hub.reports.map((r) => r.ok)).toEqual([true, false]); // now waiting 10–20 s
      await advance(1_000);
      expect(hub.reports).toHaveLength(2);
      hub.becomeReachable();
      await advance(0);
      expect(hub.reports.map((r) => r.ok)).toEqual([true, false, true]);
      expect(names(hub.last())).toEqual(['a']);
      expect(reporter.hubView('ns/a')?.exported).toBe(true);
    });

    it('sends the whole set again, nothing changed, when the hub is back or asks for it (a hub that lost its state)', async () => {
      const { hub, reporter } = setUp();
      reporter.upsert('ns/a', 'uid-a', service('a'));
      reporter.upsert('ns/b', 'uid-b', service('b'));
      reporter.open();
      await advance(maxDelayMs);
      expect(hub.reports).toHaveLength(1);
      hub.becomeReachable(); // also what HubSession.exportsWanted() tells these listeners
      await advance(maxDelayMs);
      expect(hub.reports.map((r) => r.ok)).toEqual([true, true]);
      expect(names(hub.last())).toEqual(['a', 'b']);
      expect(hub.last()?.request.generation).toBeGreaterThan(hub.reports[0]?.request.generation as number);
    });
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
    expect(reporter.hubView('ns/b')?.conflicts).toEqual([
      { type: 'SessionAffinityConflict', message: 'ClientIP elsewhere' },
    ]);
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
