// The one exponential backoff of Isthmus: the delay before retry number `attempt` (1-based)
// doubles from initialMs up to maxMs, optionally jittered so a fleet does not retry in step, and
// a retry loop built on it that stops when its signal aborts.
import { setTimeout as sleep } from 'node:timers/promises';

export interface Backoff {
  readonly initialMs: number;
  readonly maxMs: number;
  /** Fraction of the delay drawn at random below it (0 = none, 1 = full jitter). Default 0. */
  readonly jitter?: number;
}

/** Delay before retry `attempt` (1 = first retry). `random` returns [0, 1) like Math.random. */
export function backoffDelay(attempt: number, backoff: Backoff, random: () => number = Math.random): number {
  const ceiling = Math.min(backoff.maxMs, backoff.initialMs * 2 ** Math.max(0, attempt - 1));
  const jitter = backoff.jitter ?? 0;
  return Math.round(ceiling * (1 - jitter * random()));
}

/**
 * Runs `work` until it succeeds, waiting backoffDelay between attempts; resolves undefined when
 * `signal` aborts first. `onError` sees each failure with the delay before the next attempt.
 */
export async function retryWithBackoff<T>(
  work: () => Promise<T>,
  options: {
    readonly backoff: Backoff;
    readonly signal: AbortSignal;
    readonly onError?: (err: unknown, retryInMs: number) => void;
  },
): Promise<T | undefined> {
  for (let attempt = 1; !options.signal.aborted; attempt++) {
    try {
      return await work();
    } catch (err) {
      const delay = backoffDelay(attempt, options.backoff);
      options.onError?.(err, delay);
      await sleep(delay, undefined, { signal: options.signal }).catch(() => undefined);
    }
  }
  return undefined;
}
