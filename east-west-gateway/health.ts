// Health of connect targets (a remote cluster's gateway, a local endpoint), learnt from real
// connects: consecutive failures eject a target for a time that doubles with each ejection
// (outlier detection), a success resets the count; and a circuit breaker caps open connections
// per target. Time comes from `now`, so the logic is tested with fake clocks.
import { backoffDelay } from '../common/backoff.ts';

export interface OutlierSettings {
  readonly consecutiveFailures: number;
  readonly baseEjectionTime: number;
  readonly maxEjectionTime: number;
}

interface TargetHealth {
  failures: number;
  ejections: number;
  ejectedUntil: number;
  open: number;
}

export class TargetHealthTable {
  readonly #settings: OutlierSettings;
  readonly #maxConnections: number;
  readonly #now: () => number;
  readonly #targets = new Map<string, TargetHealth>();
  readonly #onEject: (target: string, forMs: number) => void;

  constructor(options: {
    settings: OutlierSettings;
    maxConnections: number;
    now?: () => number;
    onEject?: (target: string, forMs: number) => void;
  }) {
    this.#settings = options.settings;
    this.#maxConnections = options.maxConnections;
    this.#now = options.now ?? Date.now;
    this.#onEject = options.onEject ?? (() => undefined);
  }

  #get(target: string): TargetHealth {
    let health = this.#targets.get(target);
    if (!health) {
      health = { failures: 0, ejections: 0, ejectedUntil: 0, open: 0 };
      this.#targets.set(target, health);
    }
    return health;
  }

  isEjected(target: string): boolean {
    return (this.#targets.get(target)?.ejectedUntil ?? 0) > this.#now();
  }

  /** Whether the circuit breaker lets one more connection go to `target`. */
  hasCapacity(target: string): boolean {
    return (this.#targets.get(target)?.open ?? 0) < this.#maxConnections;
  }

  recordSuccess(target: string): void {
    const health = this.#get(target);
    health.failures = 0;
    // A target that served again after its ejection ran out starts its next ejection short.
    if (health.ejectedUntil <= this.#now()) health.ejections = 0;
  }

  /**
   * A failed connect or a reset before the far side answered; returns whether it ejected the
   * target. `settings` overrides the table's own (a service's FailoverPolicy).
   */
  recordFailure(target: string, settings: OutlierSettings = this.#settings): boolean {
    const health = this.#get(target);
    health.failures++;
    if (health.failures < settings.consecutiveFailures || health.ejectedUntil > this.#now()) return false;
    health.ejections++;
    const forMs = backoffDelay(health.ejections, {
      initialMs: settings.baseEjectionTime,
      maxMs: settings.maxEjectionTime,
    });
    health.ejectedUntil = this.#now() + forMs;
    health.failures = 0;
    this.#onEject(target, forMs);
    return true;
  }

  /** Targets ejected now (for active checks that may reinstate them early). */
  ejectedTargets(): string[] {
    const now = this.#now();
    return [...this.#targets].filter(([, health]) => health.ejectedUntil > now).map(([target]) => target);
  }

  /** An active check succeeded: the target takes traffic again before its ejection runs out. */
  reinstate(target: string): void {
    const health = this.#targets.get(target);
    if (!health) return;
    health.ejectedUntil = 0;
    health.failures = 0;
  }

  opened(target: string): void {
    this.#get(target).open++;
  }

  closed(target: string): void {
    const health = this.#targets.get(target);
    if (health && health.open > 0) health.open--;
  }

  /** Forgets targets that no longer exist (and hold no connection). */
  retain(targets: ReadonlySet<string>): void {
    for (const [target, health] of this.#targets)
      if (!targets.has(target) && health.open === 0) this.#targets.delete(target);
  }
}
