// An in-test hub for the exporter: records every ReportExports request with its arrival time and
// answers as the hub does (applied = the request's generation). Tests can make it fail, hold its
// answers, or report conflicts.
import type {
  ExportConflict,
  ExportedService,
  ReportExportsRequest,
  ReportExportsResponse,
} from '../../common/hub-api/index.ts';
import { waitFor } from '../../local/testbed/index.ts';
import type { ReportSink } from './report-sink.ts';

export interface RecordedReport {
  /** performance.now() when the request arrived. */
  readonly at: number;
  readonly request: ReportExportsRequest;
  readonly ok: boolean;
}

export class RecordingHub implements ReportSink {
  readonly reports: RecordedReport[] = [];
  /** Conflicts the answers carry (only those about services in the request). */
  conflicts: ExportConflict[] = [];
  /** Fail this many of the coming calls. */
  failNext = 0;
  #held: Promise<void> | undefined;
  readonly #reachableListeners = new Set<() => void>();

  async report(request: ReportExportsRequest): Promise<ReportExportsResponse> {
    const failing = this.failNext > 0;
    if (failing) this.failNext--;
    this.reports.push({ at: performance.now(), request: structuredClone(request), ok: !failing });
    if (failing) throw new Error('hub unavailable (test)');
    await this.#held;
    const reported = (c: ExportConflict): boolean =>
      request.services.some((s) => s.namespace === c.namespace && s.name === c.name);
    return { appliedGeneration: request.generation, conflicts: this.conflicts.filter(reported) };
  }

  onReachable(listener: () => void): () => void {
    this.#reachableListeners.add(listener);
    return () => this.#reachableListeners.delete(listener);
  }

  /** Tells the sink's listeners the hub is reachable again, as a heartbeat that gets through does. */
  becomeReachable(): void {
    for (const listener of this.#reachableListeners) listener();
  }

  /** Answers wait until the returned function is called. */
  hold(): () => void {
    let release!: () => void;
    this.#held = new Promise<void>((resolve) => (release = resolve));
    return () => {
      this.#held = undefined;
      release();
    };
  }

  last(): RecordedReport | undefined {
    return this.reports.at(-1);
  }

  /** A service as the latest report carried it. */
  service(namespace: string, name: string): ExportedService | undefined {
    return this.last()?.request.services.find((s) => s.namespace === namespace && s.name === name);
  }

  /** The first report from index `from` on that satisfies `match`. */
  async waitForReport(
    what: string,
    match: (report: RecordedReport) => boolean,
    from = 0,
    timeoutMs = 10_000,
  ): Promise<RecordedReport> {
    let found: RecordedReport | undefined;
    await waitFor(
      what,
      () => {
        found = this.reports.slice(from).find(match);
        return Promise.resolve(found !== undefined);
      },
      timeoutMs,
      2,
    );
    return found as RecordedReport;
  }
}
