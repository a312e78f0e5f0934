// A rate-limited work queue in the style of client-go's workqueue: informers put keys on it,
// workers take them off. A key waits at most once (dedup), is never handled by two workers at
// once (re-added while in flight → handled again afterwards), and failed keys come back with
// per-key exponential backoff.
import { IsthmusError } from '../errors.ts';
import type { Logger } from '../logger.ts';
import { backoffDelay } from '../backoff.ts';

export interface WorkQueueOptions {
  /** Name used in logs. */
  readonly name?: string;
  readonly logger?: Logger;
  /** First retry delay of a failing key; doubles per consecutive failure. Default 5 ms. */
  readonly baseDelayMs?: number;
  /** Upper bound of the retry delay. Default 60 s. */
  readonly maxDelayMs?: number;
}

/** What a handler may ask for on success: handle the key again after a delay (e.g. a TTL check). */
export type WorkResult = void | { readonly requeueAfterMs?: number };

/**
 * Handles one key. Throwing (or rejecting) requeues the key with backoff; returning forgets its
 * failure count. `signal` is aborted by `shutDown({ drain: false })`.
 */
export type WorkHandler<K> = (key: K, signal: AbortSignal) => WorkResult | Promise<WorkResult>;

export interface ShutDownOptions {
  /**
   * true: workers first handle every key already waiting (not the delayed ones).
   * false (default): waiting keys are dropped. Either way in-flight handlers finish, new keys
   * are refused, and delayed keys and their timers are dropped.
   */
  readonly drain?: boolean;
}

export const WORK_QUEUE_DEFAULTS = { baseDelayMs: 5, maxDelayMs: 60_000 } as const;

export class WorkQueue<K = string> implements AsyncDisposable {
  readonly name: string;
  readonly #log: Logger | undefined;
  readonly #baseDelayMs: number;
  readonly #maxDelayMs: number;
  /** FIFO of ready keys; `#head` avoids O(n) shifts. Every key in it is also in `#dirty`. */
  #items: K[] = [];
  #head = 0;
  /** Keys that need handling (waiting in `#items`, or re-added while in flight). */
  readonly #dirty = new Set<K>();
  readonly #processing = new Set<K>();
  readonly #delayed = new Map<K, { readonly due: number; readonly timer: NodeJS.Timeout }>();
  readonly #failures = new Map<K, number>();
  #waiters: (() => void)[] = [];
  #shuttingDown = false;
  #drain = false;
  readonly #abort = new AbortController();
  #workers: Promise<void> | undefined;

  constructor(options: WorkQueueOptions = {}) {
    this.name = options.name ?? 'work-queue';
    this.#log = options.logger;
    this.#baseDelayMs = options.baseDelayMs ?? WORK_QUEUE_DEFAULTS.baseDelayMs;
    this.#maxDelayMs = options.maxDelayMs ?? WORK_QUEUE_DEFAULTS.maxDelayMs;
    if (!(this.#baseDelayMs > 0) || !(this.#maxDelayMs >= this.#baseDelayMs)) {
      throw new IsthmusError('ISTHMUS_CONFIG_INVALID', `work queue ${this.name}: need 0 < baseDelayMs <= maxDelayMs`);
    }
  }

  /** Keys ready and waiting for a worker (neither in flight nor delayed). */
  get length(): number {
    return this.#items.length - this.#head;
  }

  /** Keys a handler is working on right now. */
  get processing(): number {
    return this.#processing.size;
  }

  /** Keys waiting for their `addAfter` / backoff delay. */
  get delayed(): number {
    return this.#delayed.size;
  }

  get shuttingDown(): boolean {
    return this.#shuttingDown;
  }

  /** Queues a key; no-op if it is already waiting, or after shutDown. */
  add(key: K): void {
    if (this.#shuttingDown || this.#dirty.has(key)) return;
    this.#dirty.add(key);
    if (this.#processing.has(key)) return; // queued again when its handler is done
    this.#items.push(key);
    this.#wakeOne();
  }

  /** Queues a key after `ms`; an earlier pending delay for the same key wins. */
  addAfter(key: K, ms: number): void {
    if (this.#shuttingDown) return;
    if (!(ms > 0)) {
      this.add(key);
      return;
    }
    const due = Date.now() + ms;
    const pending = this.#delayed.get(key);
    if (pending) {
      if (pending.due <= due) return;
      clearTimeout(pending.timer);
    }
    const timer = setTimeout(() => {
      this.#delayed.delete(key);
      this.add(key);
    }, ms);
    this.#delayed.set(key, { due, timer });
  }

  /** Queues a key after its backoff delay (base × 2^failures, capped) and counts a failure. */
  addRateLimited(key: K): number {
    const delay = this.nextDelay(key);
    this.#failures.set(key, this.numRequeues(key) + 1);
    this.addAfter(key, delay);
    return delay;
  }

  /** The delay the next `addRateLimited(key)` would use. */
  nextDelay(key: K): number {
    return backoffDelay(this.numRequeues(key) + 1, { initialMs: this.#baseDelayMs, maxMs: this.#maxDelayMs });
  }

  /** Consecutive failures counted for a key since it was last forgotten. */
  numRequeues(key: K): number {
    return this.#failures.get(key) ?? 0;
  }

  /** Resets a key's backoff (it does not remove the key from the queue). */
  forget(key: K): void {
    this.#failures.delete(key);
  }

  /**
   * Starts `concurrency` workers that call `handler` for each key; resolves once they have all
   * stopped after `shutDown`. Handler errors are logged and the key is retried with backoff.
   */
  run(concurrency: number, handler: WorkHandler<K>): Promise<void> {
    if (!Number.isInteger(concurrency) || concurrency < 1) {
      throw new IsthmusError(
        'ISTHMUS_CONFIG_INVALID',
        `work queue ${this.name}: concurrency must be a positive integer`,
      );
    }
    if (this.#workers) throw new IsthmusError('ISTHMUS_INPUT_INVALID', `work queue ${this.name} is already running`);
    this.#workers = Promise.all(Array.from({ length: concurrency }, () => this.#worker(handler))).then(() => undefined);
    return this.#workers;
  }

  /** Refuses new keys, drops delayed ones, and waits for in-flight handlers (and, with drain, waiting keys). */
  async shutDown(options: ShutDownOptions = {}): Promise<void> {
    if (!this.#shuttingDown) {
      this.#shuttingDown = true;
      this.#drain = (options.drain ?? false) && this.#workers !== undefined;
      for (const { timer } of this.#delayed.values()) clearTimeout(timer);
      this.#delayed.clear();
      if (!this.#drain) {
        this.#items = [];
        this.#head = 0;
        this.#dirty.clear();
        this.#abort.abort(new IsthmusError('ISTHMUS_STOPPED', `work queue ${this.name} shut down`));
      }
      this.#failures.clear();
      const waiters = this.#waiters;
      this.#waiters = [];
      for (const wake of waiters) wake();
    }
    await this.#workers;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.shutDown();
  }

  async #worker(handler: WorkHandler<K>): Promise<void> {
    for (;;) {
      const next = await this.#next();
      if (!next) return;
      const { key } = next;
      try {
        const result = await handler(key, this.#abort.signal);
        this.forget(key);
        if (result && result.requeueAfterMs !== undefined) this.addAfter(key, result.requeueAfterMs);
      } catch (err) {
        if (this.#shuttingDown) {
          this.#log?.warn({ queue: this.name, key, err }, 'handler failed during shutdown; not retried');
        } else {
          const attempt = this.numRequeues(key) + 1;
          const retryInMs = this.addRateLimited(key);
          this.#log?.error({ queue: this.name, key, attempt, retryInMs, err }, 'handler failed; retrying with backoff');
        }
      } finally {
        this.#done(key);
      }
    }
  }

  /** The next key to handle, or undefined once the queue is shut down and (if draining) empty. */
  async #next(): Promise<{ key: K } | undefined> {
    for (;;) {
      if (this.#head < this.#items.length) {
        const key = this.#items[this.#head] as K;
        this.#head++;
        if (this.#head > 1024 && this.#head * 2 > this.#items.length) {
          this.#items = this.#items.slice(this.#head);
          this.#head = 0;
        }
        this.#dirty.delete(key);
        this.#processing.add(key);
        return { key };
      }
      if (this.#shuttingDown) return undefined;
      await new Promise<void>((resolve) => this.#waiters.push(resolve));
    }
  }

  #done(key: K): void {
    this.#processing.delete(key);
    if (this.#dirty.has(key)) {
      this.#items.push(key);
      this.#wakeOne();
    }
  }

  #wakeOne(): void {
    this.#waiters.shift()?.();
  }
}
