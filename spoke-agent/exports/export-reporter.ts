// Keeps this cluster's export set and reports it, whole, to the hub: debounced (a burst of changes
// becomes one report, a lone change leaves after a few ms), one report in flight at a time,
// retried with backoff until the hub applies it. The set only changes through upsert/remove —
// never because the hub is unreachable. The whole set is sent again whenever the hub is reachable
// after it was not, or asks for it (a new leader, a hub that lost its state). Also remembers what the hub said about each export
// (applied, conflicts), which drives the Ready and Conflict conditions.
import { backoffDelay } from '../../common/backoff.ts';
import { describeError, IsthmusError } from '../../common/errors.ts';
import { formatIssues } from '../../common/config.ts';
import type { ExportedService } from '../../common/hub-api/index.ts';
import type { Logger } from '../../common/logger.ts';
import {
  exportConflictSchema,
  reportResponseSchema,
  type ExportConflictVerdict,
  type ReportSink,
} from './report-sink.ts';

export interface ReportTiming {
  /** A report leaves once no change arrived for this long. */
  readonly quietMs: number;
  /** ... but at most this long after the first change it carries (bursts that do not stop). */
  readonly maxDelayMs: number;
  /** First retry delay after a failed report; doubles per failure (jittered). A hub that is reachable again (sink.onReachable) cuts the wait short. */
  readonly retryInitialMs: number;
  readonly retryMaxMs: number;
}

export const REPORT_TIMING_DEFAULTS: ReportTiming = {
  quietMs: 5,
  maxDelayMs: 100,
  retryInitialMs: 200,
  retryMaxMs: 30_000,
};

/** What the hub said about one export. */
export interface HubView {
  /** A report holding this export (this object, continuously valid since) was applied by the hub. */
  readonly exported: boolean;
  /** The hub's latest verdict; undefined until it gave one. */
  readonly conflicts: readonly ExportConflictVerdict[] | undefined;
}

interface Entry {
  readonly uid: string;
  service: ExportedService;
  serialized: string;
  /** Generation of the first report that carried this entry. */
  firstReported: number | undefined;
  conflicts: readonly ExportConflictVerdict[] | undefined;
}

export interface ExportReporterOptions {
  readonly sink: ReportSink;
  readonly log: Logger;
  readonly timing?: Partial<ReportTiming>;
  /** Called with an export's key when its HubView changed. */
  readonly onHubViewChange: (key: string) => void;
}

export class ExportReporter {
  readonly #sink: ReportSink;
  readonly #log: Logger;
  readonly #timing: ReportTiming;
  readonly #onHubViewChange: (key: string) => void;
  /** Keyed `namespace/name`. */
  readonly #entries = new Map<string, Entry>();
  #generation = 0;
  #applied = 0;
  #open = false;
  #closed = false;
  /** The hub has not seen the current set. */
  #dirty = false;
  #firstChangeAt: number | undefined;
  #timer: NodeJS.Timeout | undefined;
  #backingOff = false;
  #failures = 0;
  #inFlight: Promise<void> | undefined;
  readonly #stopListening: () => void;

  constructor(options: ExportReporterOptions) {
    this.#sink = options.sink;
    this.#log = options.log;
    this.#timing = { ...REPORT_TIMING_DEFAULTS, ...options.timing };
    this.#onHubViewChange = options.onHubViewChange;
    // A heartbeat that gets through ends the wait: an export made during an outage leaves as soon as
    // the hub is back, and a hub that lost its state gets the set again without anything changing here.
    this.#stopListening = this.#sink.onReachable?.(() => this.resend()) ?? (() => undefined);
  }

  /** Valid exports in the set. */
  get size(): number {
    return this.#entries.size;
  }

  /** Adds or updates an export; `uid` tells a re-created ServiceExport from an updated one. */
  upsert(key: string, uid: string, service: ExportedService): void {
    const serialized = JSON.stringify(service);
    const entry = this.#entries.get(key);
    if (entry?.uid === uid) {
      if (entry.serialized === serialized) return;
      entry.service = service;
      entry.serialized = serialized;
    } else {
      this.#entries.set(key, { uid, service, serialized, firstReported: undefined, conflicts: undefined });
    }
    this.#changed();
  }

  remove(key: string): void {
    if (this.#entries.delete(key)) this.#changed();
  }

  hubView(key: string): HubView | undefined {
    const entry = this.#entries.get(key);
    if (!entry) return undefined;
    return {
      exported: entry.firstReported !== undefined && entry.firstReported <= this.#applied,
      conflicts: entry.conflicts,
    };
  }

  /** A conflict verdict that reached this cluster another way (the catalog); ignored for keys not exported. */
  applyConflicts(key: string, conflicts: readonly unknown[]): void {
    const entry = this.#entries.get(key);
    if (!entry) return;
    const parsed = exportConflictSchema.array().safeParse(conflicts);
    if (!parsed.success) {
      this.#log.warn({ key, err: formatIssues(parsed.error) }, 'conflict update refused');
      return;
    }
    if (sameConflicts(entry.conflicts, parsed.data)) return;
    entry.conflicts = parsed.data;
    this.#onHubViewChange(key);
  }

  /** The set is complete (initial sync done): report it, even when empty, and every change after. */
  open(): void {
    if (this.#open || this.#closed) return;
    this.#open = true;
    this.#changed();
  }

  /** The hub is reachable again, or asks for the set: the whole set leaves now (a report waiting out its backoff included). */
  resend(): void {
    if (!this.#open || this.#closed) return;
    this.#dirty = true;
    this.#firstChangeAt ??= performance.now();
    if (!this.#backingOff) {
      this.#schedule();
      return;
    }
    clearTimeout(this.#timer);
    this.#flush();
  }

  /** Stops reporting; waits for a report in flight. The set is kept as it is. */
  async close(): Promise<void> {
    this.#closed = true;
    this.#stopListening();
    clearTimeout(this.#timer);
    this.#timer = undefined;
    await this.#inFlight;
  }

  #changed(): void {
    this.#dirty = true;
    this.#firstChangeAt ??= performance.now();
    this.#schedule();
  }

  /** (Re)arms the debounce timer, unless a report in flight or a retry will pick the change up. */
  #schedule(): void {
    if (!this.#open || this.#closed || this.#inFlight || this.#backingOff || this.#firstChangeAt === undefined) return;
    clearTimeout(this.#timer);
    const { quietMs, maxDelayMs } = this.#timing;
    const delay = Math.max(0, Math.min(quietMs, this.#firstChangeAt + maxDelayMs - performance.now()));
    this.#timer = setTimeout(() => this.#flush(), delay);
  }

  #flush(): void {
    this.#timer = undefined;
    this.#backingOff = false;
    if (!this.#dirty || this.#closed) return;
    // Above the last generation and the wall clock: a restarted agent's reports stay newer than its predecessor's.
    const generation = (this.#generation = Math.max(this.#generation + 1, Date.now()));
    const keys = [...this.#entries.keys()].sort();
    const services = keys.map((key) => {
      const entry = this.#entries.get(key) as Entry;
      entry.firstReported ??= generation;
      return entry.service;
    });
    const waitedMs = performance.now() - (this.#firstChangeAt ?? performance.now());
    this.#dirty = false;
    this.#firstChangeAt = undefined;
    this.#inFlight = this.#send(generation, keys, services, waitedMs).finally(() => {
      this.#inFlight = undefined;
      this.#schedule();
    });
  }

  async #send(
    generation: number,
    keys: readonly string[],
    services: ExportedService[],
    waitedMs: number,
  ): Promise<void> {
    const started = performance.now();
    try {
      const parsed = reportResponseSchema.safeParse(await this.#sink.report({ generation, services }));
      if (!parsed.success)
        throw new IsthmusError('ISTHMUS_INPUT_INVALID', `ReportExports answer: ${formatIssues(parsed.error)}`);
      const { appliedGeneration, conflicts } = parsed.data;
      if (appliedGeneration !== generation) {
        // The hub holds a newer report (an earlier agent process with a clock ahead): go past it.
        this.#generation = Math.max(this.#generation, appliedGeneration);
        throw new IsthmusError(
          'ISTHMUS_STALE_REPORT',
          `generation ${generation} not applied, the hub is at ${appliedGeneration}`,
        );
      }
      this.#failures = 0;
      this.#acknowledged(generation, keys, conflicts);
      this.#log.debug(
        {
          generation,
          services: services.length,
          debounceMs: round(waitedMs),
          roundTripMs: round(performance.now() - started),
        },
        'exports reported',
      );
    } catch (err) {
      if (this.#closed) return;
      this.#failures++;
      this.#dirty = true;
      this.#firstChangeAt ??= performance.now();
      const { retryInitialMs, retryMaxMs } = this.#timing;
      const retryInMs = backoffDelay(this.#failures, { initialMs: retryInitialMs, maxMs: retryMaxMs, jitter: 0.5 });
      this.#log.warn(
        { generation, failures: this.#failures, retryInMs, err: describeError(err) },
        'reporting exports failed; keeping them and retrying',
      );
      this.#backingOff = true;
      clearTimeout(this.#timer);
      this.#timer = setTimeout(() => this.#flush(), retryInMs);
    }
  }

  #acknowledged(
    generation: number,
    keys: readonly string[],
    conflicts: readonly (ExportConflictVerdict & { namespace: string; name: string })[],
  ): void {
    const byKey = new Map<string, ExportConflictVerdict[]>();
    for (const { namespace, name, type, message } of conflicts) {
      const key = `${namespace}/${name}`;
      byKey.set(key, [...(byKey.get(key) ?? []), { type, message }]);
    }
    const before = keys.map((key) => this.hubView(key));
    this.#applied = generation;
    keys.forEach((key, i) => {
      const entry = this.#entries.get(key);
      // Removed or re-created while the report was in flight: the answer is not about this entry.
      if (!entry || entry.firstReported === undefined || entry.firstReported > generation) return;
      entry.conflicts = byKey.get(key) ?? [];
      const was = before[i];
      if (was?.exported !== true || !sameConflicts(was.conflicts, entry.conflicts)) this.#onHubViewChange(key);
    });
  }
}

function sameConflicts(
  a: readonly ExportConflictVerdict[] | undefined,
  b: readonly ExportConflictVerdict[] | undefined,
): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

function round(ms: number): number {
  return Math.round(ms * 100) / 100;
}
