// Per-peer admission for the hub API: a token bucket (burst, then a steady rate) and a cap on
// calls in flight, per key (a cluster id for authenticated calls, a remote address for Join).
// Guarantees: at most `maxInFlight` calls per key run at once and at most `burst + perSecond × t`
// start in any window t; a refused call costs no token and holds no slot. Pure logic with an
// injected clock; the map of idle keys is swept so it cannot grow without bound.

export interface LimitPolicy {
  /** Calls that may start at once after a quiet period. */
  readonly burst: number;
  /** Steady rate the bucket refills at. */
  readonly perSecond: number;
  /** Calls of one key running at the same time. */
  readonly maxInFlight: number;
}

export type Admission =
  { readonly ok: true; release(): void } | { readonly ok: false; readonly reason: 'rate' | 'concurrency' };

interface Bucket {
  tokens: number;
  updatedAt: number;
  inFlight: number;
  policy: LimitPolicy;
}

/** Above this many keys, idle ones (full bucket, nothing in flight) are dropped. */
const SWEEP_ABOVE = 10_000;

export class PeerLimiter {
  readonly #now: () => number;
  readonly #buckets = new Map<string, Bucket>();

  /** `now` in milliseconds (monotonic). */
  constructor(now: () => number = () => performance.now()) {
    this.#now = now;
  }

  acquire(key: string, policy: LimitPolicy): Admission {
    const now = this.#now();
    let bucket = this.#buckets.get(key);
    if (!bucket) {
      bucket = { tokens: policy.burst, updatedAt: now, inFlight: 0, policy };
      if (this.#buckets.size >= SWEEP_ABOVE) this.#sweep(now);
      this.#buckets.set(key, bucket);
    }
    this.#refill(bucket, now);
    // A changed policy applies from now on; what the bucket holds is never more than its burst.
    bucket.policy = policy;
    bucket.tokens = Math.min(bucket.tokens, policy.burst);
    if (bucket.inFlight >= policy.maxInFlight) return { ok: false, reason: 'concurrency' };
    if (bucket.tokens < 1) return { ok: false, reason: 'rate' };
    bucket.tokens -= 1;
    bucket.inFlight += 1;
    const held = bucket;
    let released = false;
    return {
      ok: true,
      release: () => {
        if (released) return;
        released = true;
        held.inFlight -= 1;
      },
    };
  }

  /** Keys currently tracked (for tests and metrics). */
  get size(): number {
    return this.#buckets.size;
  }

  #refill(bucket: Bucket, now: number): void {
    const elapsedSeconds = Math.max(0, now - bucket.updatedAt) / 1000;
    bucket.tokens = Math.min(bucket.policy.burst, bucket.tokens + elapsedSeconds * bucket.policy.perSecond);
    bucket.updatedAt = now;
  }

  #sweep(now: number): void {
    for (const [key, bucket] of this.#buckets) {
      this.#refill(bucket, now);
      if (bucket.inFlight === 0 && bucket.tokens >= bucket.policy.burst) this.#buckets.delete(key);
    }
  }
}
