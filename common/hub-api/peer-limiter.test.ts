import { describe, expect, it } from 'vitest';
import { PeerLimiter, type LimitPolicy } from './peer-limiter.ts';

/** A clock the test moves by hand (no wall clock). */
function manualClock(): { now: () => number; advance(ms: number): void } {
  let t = 0;
  return { now: () => t, advance: (ms) => (t += ms) };
}

const policy: LimitPolicy = { burst: 3, perSecond: 2, maxInFlight: 2 };

describe('PeerLimiter', () => {
  it('admits a burst, then refuses by rate until the bucket refills at the steady rate', () => {
    const clock = manualClock();
    const limiter = new PeerLimiter(clock.now);
    const admitted = [1, 2, 3].map(() => limiter.acquire('a', { ...policy, maxInFlight: 10 }));
    expect(admitted.every((a) => a.ok)).toBe(true);
    for (const a of admitted) if (a.ok) a.release();
    const p = { ...policy, maxInFlight: 10 };
    const fresh = new PeerLimiter(clock.now);
    for (let i = 0; i < 3; i++) expect(fresh.acquire('a', p).ok).toBe(true);
    expect(fresh.acquire('a', p)).toEqual({ ok: false, reason: 'rate' });
    clock.advance(499);
    expect(fresh.acquire('a', p).ok).toBe(false);
    clock.advance(1);
    expect(fresh.acquire('a', p).ok).toBe(true);
    expect(fresh.acquire('a', p).ok).toBe(false);
  });

  it('caps calls in flight per key; a release frees the slot; a refusal holds none', () => {
    const limiter = new PeerLimiter(manualClock().now);
    const first = limiter.acquire('a', policy);
    const second = limiter.acquire('a', policy);
    expect(limiter.acquire('a', policy)).toEqual({ ok: false, reason: 'concurrency' });
    if (!first.ok || !second.ok) throw new Error('expected admission');
    first.release();
    first.release(); // twice is harmless
    const third = limiter.acquire('a', policy);
    expect(third.ok).toBe(true);
    expect(limiter.acquire('a', policy)).toEqual({ ok: false, reason: 'concurrency' });
  });

  it('keeps keys apart: one flooding peer does not refuse another', () => {
    const limiter = new PeerLimiter(manualClock().now);
    for (let i = 0; i < 10; i++) limiter.acquire('flooder', { ...policy, maxInFlight: 100 });
    expect(limiter.acquire('flooder', { ...policy, maxInFlight: 100 }).ok).toBe(false);
    expect(limiter.acquire('honest', policy).ok).toBe(true);
  });

  it('forgets idle keys once many are tracked, so the table stays bounded', () => {
    const clock = manualClock();
    const limiter = new PeerLimiter(clock.now);
    for (let i = 0; i < 10_000; i++) {
      const a = limiter.acquire(`peer-${i}`, policy);
      if (a.ok) a.release();
    }
    clock.advance(10_000);
    limiter.acquire('one-more', policy);
    expect(limiter.size).toBeLessThan(100);
  });
});
