// Lease-based leader election on coordination.k8s.io/v1, as client-go's leaderelection does it:
// candidates try every retryPeriod to create or take over the Lease (optimistic concurrency on
// resourceVersion: a 409 means someone else won); the leader renews it every retryPeriod and
// steps down if it cannot renew within renewDeadline, which is shorter than leaseDuration so it
// stops working before anyone else may take over. Expiry is judged as client-go does: by when this
// candidate last saw the lease record change, on its own clock, never by the holder's timestamps,
// so replicas whose clocks disagree (by any amount) still never take over a lease that is being
// renewed, nor wait for the holder's clock to catch up with theirs after it crashed.
import {
  CoordinationV1Api,
  V1MicroTime,
  type KubeConfig,
  type V1Lease,
  type V1LeaseSpec,
} from '@kubernetes/client-node';
import { IsthmusError } from '../errors.ts';
import { createLogger, type Logger } from '../logger.ts';
import { apiClient } from './clients.ts';
import { describeKubeError, isAlreadyExists, isConflict, isNotFound } from './objects.ts';

export interface LeaderElectionOptions {
  readonly kubeConfig: KubeConfig;
  /** Lease name, e.g. "isthmus-hub". */
  readonly leaseName: string;
  readonly namespace: string;
  /** Unique per candidate, e.g. the pod name. */
  readonly identity: string;
  /** How long a holder's lease is valid after its last renewal. Default 10 s. */
  readonly leaseDurationMs?: number;
  /** A leader that has not renewed for this long steps down. Default 7 s (< leaseDuration). */
  readonly renewDeadlineMs?: number;
  /** Interval between attempts to acquire or renew. Default 2 s (< renewDeadline). */
  readonly retryPeriodMs?: number;
  /**
   * Called on becoming leader. `signal` aborts when leadership ends; a returned promise is
   * awaited (up to renewDeadline) by a graceful `stop()` before the lease is released.
   */
  readonly onStartedLeading?: (signal: AbortSignal) => void | Promise<void>;
  /** Called when this candidate stops being leader (lost the lease, or stop()). */
  readonly onStoppedLeading?: () => void;
  /** Called when the observed holder changes to a new (non-empty) identity, this one included. */
  readonly onNewLeader?: (identity: string) => void;
  readonly logger?: Logger;
  /** This candidate's clock in ms (default Date.now); tests skew it. Timers are not affected. */
  readonly now?: () => number;
}

export interface StopOptions {
  /** Give the lease up (empty holderIdentity) so a standby takes over at once. Default true. */
  readonly release?: boolean;
}

export const LEADER_ELECTION_DEFAULTS = {
  leaseDurationMs: 10_000,
  renewDeadlineMs: 7_000,
  retryPeriodMs: 2_000,
} as const;

type Attempt =
  | { readonly outcome: 'held'; readonly lease: V1Lease }
  | { readonly outcome: 'other'; readonly lease: V1Lease } // someone else holds an unexpired lease
  | { readonly outcome: 'retry'; readonly lease?: V1Lease }; // lost a race or could not tell

/** metav1.MicroTime arrives as a string (client-node types it as a Date subclass). */
function timeOf(value: Date | string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const ms = new Date(value).getTime();
  return Number.isNaN(ms) ? undefined : ms;
}

export class LeaderElector implements AsyncDisposable {
  readonly identity: string;
  readonly leaseName: string;
  readonly namespace: string;
  readonly leaseDurationMs: number;
  readonly renewDeadlineMs: number;
  readonly retryPeriodMs: number;
  readonly #options: LeaderElectionOptions;
  readonly #api: CoordinationV1Api;
  readonly #log: Logger;
  #leading = false;
  #observedHolder: string | undefined;
  /** The lease as this candidate last wrote it (its resourceVersion is our fast renew path). */
  #lease: V1Lease | undefined;
  #lastRenew = 0;
  /** The lease record (spec and resourceVersion) as last seen changed, and when by our clock. */
  #observedRecord: string | undefined;
  #observedAt = 0;
  readonly #now: () => number;
  #leadership: AbortController | undefined;
  #work: Promise<void> | undefined;
  #loop: Promise<void> | undefined;
  #stopping: Promise<void> | undefined;
  #stopped = false;
  #wake: (() => void) | undefined;
  #sleepTimer: NodeJS.Timeout | undefined;

  constructor(options: LeaderElectionOptions) {
    this.#options = options;
    this.identity = options.identity;
    this.leaseName = options.leaseName;
    this.namespace = options.namespace;
    this.leaseDurationMs = options.leaseDurationMs ?? LEADER_ELECTION_DEFAULTS.leaseDurationMs;
    this.renewDeadlineMs = options.renewDeadlineMs ?? LEADER_ELECTION_DEFAULTS.renewDeadlineMs;
    this.retryPeriodMs = options.retryPeriodMs ?? LEADER_ELECTION_DEFAULTS.retryPeriodMs;
    if (!options.identity)
      throw new IsthmusError('ISTHMUS_CONFIG_INVALID', 'leader election: identity must not be empty');
    if (!(
      this.retryPeriodMs > 0 &&
      this.retryPeriodMs < this.renewDeadlineMs &&
      this.renewDeadlineMs < this.leaseDurationMs
    )) {
      throw new IsthmusError(
        'ISTHMUS_CONFIG_INVALID',
        `leader election: need 0 < retryPeriod (${this.retryPeriodMs} ms) < renewDeadline (${this.renewDeadlineMs} ms) < leaseDuration (${this.leaseDurationMs} ms)`,
      );
    }
    this.#now = options.now ?? Date.now;
    this.#api = apiClient(options.kubeConfig, CoordinationV1Api);
    this.#log = (options.logger ?? createLogger({ component: 'leader-election' })).child({
      lease: `${this.namespace}/${this.leaseName}`,
      identity: this.identity,
    });
  }

  /** Starts campaigning; idempotent. */
  start(): void {
    if (this.#loop || this.#stopped) return;
    this.#loop = this.#run();
  }

  isLeader(): boolean {
    return this.#leading;
  }

  /** The holder last observed on the lease (undefined when none), this candidate included. */
  leader(): string | undefined {
    return this.#observedHolder;
  }

  /** Stops campaigning; a leader stops leading (and by default releases the lease). */
  stop(options: StopOptions = {}): Promise<void> {
    this.#stopping ??= this.#stop(options.release ?? true);
    return this.#stopping;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }

  async #stop(release: boolean): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#sleepTimer);
    this.#wake?.();
    await this.#loop;
    if (!this.#leading) return;
    this.#leadership?.abort(new IsthmusError('ISTHMUS_STOPPED', 'leadership ended: stopped'));
    if (release && this.#work) {
      // Let leader-only work wind down while the lease is still ours, so it never overlaps a successor's.
      let timer: NodeJS.Timeout | undefined;
      const finished = await Promise.race([
        this.#work.then(() => true),
        new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), this.renewDeadlineMs))),
      ]);
      clearTimeout(timer);
      if (!finished)
        this.#log.warn(
          { waitedMs: this.renewDeadlineMs },
          'leader work did not finish after abort; releasing the lease anyway',
        );
    }
    this.#stepDown('stopped');
    if (release) await this.#release();
  }

  async #run(): Promise<void> {
    while (!this.#stopped) {
      await this.#tick();
      if (this.#stopped) break;
      // A leader wakes no later than its renew deadline, to step down on time; candidates spread
      // their attempts a little so they do not hit the API in lock-step.
      await this.#sleep(
        this.#leading
          ? Math.max(0, Math.min(this.retryPeriodMs, this.#lastRenew + this.renewDeadlineMs - this.#now()))
          : this.retryPeriodMs * (1 + Math.random() * 0.2),
      );
    }
  }

  async #tick(): Promise<void> {
    const now = this.#now();
    const timeoutMs = this.#leading ? this.#lastRenew + this.renewDeadlineMs - now : this.renewDeadlineMs;
    let attempt: Attempt;
    try {
      attempt = timeoutMs > 0 ? await this.#withTimeout(this.#tryAcquireOrRenew(now), timeoutMs) : { outcome: 'retry' };
    } catch (err) {
      const fields = { err: describeKubeError(err) };
      if (this.#leading) this.#log.warn(fields, 'could not renew the lease');
      else this.#log.debug(fields, 'could not acquire the lease');
      attempt = { outcome: 'retry' };
    }
    if (attempt.outcome === 'held') {
      this.#observe(attempt.lease);
      this.#lease = attempt.lease;
      this.#lastRenew = now;
      if (!this.#leading) this.#becomeLeader();
      return;
    }
    if (this.#leading) {
      if (attempt.outcome === 'other') {
        this.#stepDown(`lease taken over by ${attempt.lease.spec?.holderIdentity ?? 'another candidate'}`);
      } else if (this.#now() - this.#lastRenew >= this.renewDeadlineMs) {
        this.#stepDown(`could not renew within ${this.renewDeadlineMs} ms`);
      }
    }
    // Announced after stepping down, so callbacks never see two leaders at once.
    if (attempt.lease) this.#observe(attempt.lease);
  }

  /** One attempt; never mutates leadership state (a timed-out attempt may still finish later), only what it observed of the lease. */
  async #tryAcquireOrRenew(now: number): Promise<Attempt> {
    // Fast path for the leader: update the lease as last written; a conflict falls back to a read.
    if (this.#leading && this.#lease) {
      try {
        return { outcome: 'held', lease: await this.#replace(this.#withHolder(this.#lease, now)) };
      } catch (err) {
        if (!isConflict(err)) throw err;
      }
    }
    let current: V1Lease;
    try {
      current = await this.#api.readNamespacedLease({ name: this.leaseName, namespace: this.namespace });
    } catch (err) {
      if (!isNotFound(err)) throw err;
      try {
        const created = await this.#api.createNamespacedLease({
          namespace: this.namespace,
          body: {
            apiVersion: 'coordination.k8s.io/v1',
            kind: 'Lease',
            metadata: { name: this.leaseName, namespace: this.namespace },
            spec: this.#spec(undefined, now),
          },
        });
        return { outcome: 'held', lease: created };
      } catch (createErr) {
        if (isAlreadyExists(createErr) || isConflict(createErr)) return { outcome: 'retry' };
        throw createErr;
      }
    }
    const holder = current.spec?.holderIdentity ?? '';
    if (holder && holder !== this.identity && !this.#expired(current)) return { outcome: 'other', lease: current };
    try {
      return { outcome: 'held', lease: await this.#replace(this.#withHolder(current, now)) };
    } catch (err) {
      if (isConflict(err)) return { outcome: 'retry', lease: current };
      throw err;
    }
  }

  /** Whether the holder let the lease run out: no change of the record for its duration, by our clock since we saw it change. */
  #expired(lease: V1Lease): boolean {
    const spec = lease.spec;
    const now = this.#now();
    const record = JSON.stringify([
      lease.metadata?.resourceVersion,
      spec?.holderIdentity,
      timeOf(spec?.renewTime),
      timeOf(spec?.acquireTime),
      spec?.leaseDurationSeconds,
    ]);
    if (record !== this.#observedRecord) {
      this.#observedRecord = record;
      this.#observedAt = now;
    }
    // The holder's declared duration where it says so (it promised to renew within it), else ours.
    const durationMs = spec?.leaseDurationSeconds ? spec.leaseDurationSeconds * 1000 : this.leaseDurationMs;
    return this.#observedAt + durationMs <= now;
  }

  #spec(previous: V1LeaseSpec | undefined, now: number): V1LeaseSpec {
    const renewing = previous?.holderIdentity === this.identity;
    const time = new V1MicroTime(now);
    return {
      ...previous,
      holderIdentity: this.identity,
      leaseDurationSeconds: Math.max(1, Math.ceil(this.leaseDurationMs / 1000)),
      acquireTime: renewing && previous.acquireTime ? previous.acquireTime : time,
      renewTime: time,
      leaseTransitions: renewing ? (previous.leaseTransitions ?? 0) : (previous?.leaseTransitions ?? -1) + 1,
    };
  }

  #withHolder(lease: V1Lease, now: number): V1Lease {
    return { ...lease, spec: this.#spec(lease.spec, now) };
  }

  #replace(body: V1Lease): Promise<V1Lease> {
    return this.#api.replaceNamespacedLease({ name: this.leaseName, namespace: this.namespace, body });
  }

  async #release(): Promise<void> {
    for (let tries = 0; tries < 2 && this.#lease; tries++) {
      const lease = this.#lease;
      const time = new V1MicroTime(this.#now());
      try {
        await this.#replace({
          ...lease,
          spec: { ...lease.spec, holderIdentity: '', leaseDurationSeconds: 1, acquireTime: time, renewTime: time },
        });
        this.#log.info('released the lease');
        this.#observedHolder = undefined;
        break;
      } catch (err) {
        if (!isConflict(err)) {
          this.#log.warn({ err: describeKubeError(err) }, 'could not release the lease; it expires on its own');
          break;
        }
        // Our copy is stale: release only if the lease is still ours.
        try {
          const current = await this.#api.readNamespacedLease({ name: this.leaseName, namespace: this.namespace });
          this.#lease = current.spec?.holderIdentity === this.identity ? current : undefined;
        } catch {
          this.#lease = undefined;
        }
      }
    }
    this.#lease = undefined;
  }

  #observe(lease: V1Lease): void {
    const holder = lease.spec?.holderIdentity || undefined;
    if (holder === this.#observedHolder) return;
    this.#observedHolder = holder;
    if (holder === undefined) return;
    this.#log.info({ leader: holder }, 'new leader observed');
    this.#callback('onNewLeader', () => this.#options.onNewLeader?.(holder));
  }

  #becomeLeader(): void {
    this.#leading = true;
    this.#log.info('became leader');
    if (this.#stopped) return; // stop() is waiting for this tick: it steps down and releases
    const leadership = new AbortController();
    this.#leadership = leadership;
    this.#work = undefined;
    this.#callback('onStartedLeading', () => {
      const work = this.#options.onStartedLeading?.(leadership.signal);
      if (work) {
        this.#work = work.catch((err: unknown) => this.#log.error({ err }, 'onStartedLeading failed'));
      }
    });
  }

  #stepDown(reason: string): void {
    if (!this.#leading) return;
    const stopping = reason === 'stopped';
    const announced = this.#leadership !== undefined; // onStartedLeading was called
    this.#leading = false;
    if (!stopping) this.#lease = undefined; // stop() still needs it to release
    this.#leadership?.abort(new IsthmusError('ISTHMUS_STOPPED', `leadership ended: ${reason}`));
    this.#leadership = undefined;
    this.#work = undefined;
    if (stopping) this.#log.info({ reason }, 'stopped leading');
    else this.#log.warn({ reason }, 'lost leadership');
    if (announced) this.#callback('onStoppedLeading', () => this.#options.onStoppedLeading?.());
  }

  #callback(name: string, call: () => void): void {
    try {
      call();
    } catch (err) {
      this.#log.error({ err, callback: name }, 'leader election callback threw');
    }
  }

  #sleep(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      this.#wake = resolve;
      this.#sleepTimer = setTimeout(resolve, ms);
    }).finally(() => {
      clearTimeout(this.#sleepTimer);
      this.#sleepTimer = undefined;
      this.#wake = undefined;
    });
  }

  #withTimeout<R>(promise: Promise<R>, ms: number): Promise<R> {
    let timer: NodeJS.Timeout | undefined;
    return Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new IsthmusError('ISTHMUS_TIMEOUT', `lease request after ${ms} ms`)), ms);
      }),
    ]).finally(() => clearTimeout(timer));
  }
}
