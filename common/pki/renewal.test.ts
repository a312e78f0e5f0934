import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { RENEWAL_WINDOW, renewalTime, startRenewal, type Validity } from './renewal.ts';

const HOUR = 3_600_000;
const DAY = 24 * HOUR;

function validFor(lifetimeMs: number, from = Date.now()): Validity {
  return { notBefore: new Date(from), notAfter: new Date(from + lifetimeMs) };
}

describe('renewal time', () => {
  const issued = validFor(DAY, Date.UTC(2030, 0, 1));
  const at = (kind: 'leaf' | 'authority', random: number): number =>
    renewalTime(issued, kind, () => random).getTime() - issued.notBefore.getTime();

  it('renews a leaf at half-life plus up to a tenth of its life of jitter', () => {
    expect(at('leaf', 0)).toBe(12 * HOUR);
    expect(at('leaf', 0.5)).toBe(13.2 * HOUR);
    expect(at('leaf', 0.999999)).toBeLessThan(14.4 * HOUR);
  });

  it('renews intermediates and agent certificates with at least a quarter of their life left', () => {
    expect(at('authority', 0)).toBe(16 * HOUR);
    expect(at('authority', 0.999999)).toBeLessThan(18 * HOUR);
    expect(RENEWAL_WINDOW.authority.to).toBeLessThan(1);
  });

  it('spreads a fleet issued at the same moment', () => {
    const moments = new Set(Array.from({ length: 50 }, () => renewalTime(issued, 'leaf').getTime()));
    expect(moments.size).toBeGreaterThan(40);
  });
});

describe('renewal scheduler', () => {
  beforeEach(() => {
    vi.useFakeTimers({ now: Date.UTC(2030, 0, 1) });
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('renews at the computed time, then again for the new certificate', async () => {
    const renewedAt: number[] = [];
    const handle = startRenewal({
      kind: 'leaf',
      validity: validFor(DAY),
      random: () => 0,
      renew: () => {
        renewedAt.push(Date.now());
        return Promise.resolve(validFor(DAY));
      },
    });
    const start = Date.now();
    expect(handle.nextAttemptAt().getTime()).toBe(start + 12 * HOUR);
    await vi.advanceTimersByTimeAsync(12 * HOUR - 1);
    expect(renewedAt).toEqual([]);
    await vi.advanceTimersByTimeAsync(1);
    await vi.advanceTimersByTimeAsync(12 * HOUR);
    expect(renewedAt).toEqual([start + 12 * HOUR, start + 24 * HOUR]);
    handle.stop();
  });

  it('retries failures with capped exponential backoff, then resumes the normal rhythm', async () => {
    const retries: number[] = [];
    let attempts = 0;
    const handle = startRenewal({
      kind: 'authority',
      validity: validFor(3 * HOUR),
      random: () => 0,
      backoff: { initialMs: 1_000, maxMs: 4_000 },
      onError: (_err, retryInMs) => retries.push(retryInMs),
      renew: () => {
        attempts += 1;
        return attempts <= 4 ? Promise.reject(new Error('hub unavailable')) : Promise.resolve(validFor(3 * HOUR));
      },
    });
    await vi.advanceTimersByTimeAsync(2 * HOUR);
    // random() = 0 draws no jitter: each delay is its ceiling, 1 s, 2 s, 4 s, 4 s (capped).
    await vi.advanceTimersByTimeAsync(1_000 + 2_000 + 4_000 + 4_000);
    expect(retries).toEqual([1_000, 2_000, 4_000, 4_000]);
    expect(attempts).toBe(5);
    expect(handle.nextAttemptAt().getTime()).toBe(Date.now() + 2 * HOUR);
    handle.stop();
  });

  it('waits longer than setTimeout can hold (intermediates live a year)', async () => {
    let renewed = false;
    const handle = startRenewal({
      kind: 'authority',
      validity: validFor(365 * DAY),
      random: () => 0,
      renew: () => {
        renewed = true;
        return Promise.resolve(validFor(365 * DAY));
      },
    });
    const due = handle.nextAttemptAt().getTime() - Date.now();
    expect(due).toBeGreaterThan(2 ** 31);
    await vi.advanceTimersByTimeAsync(due - 1);
    expect(renewed).toBe(false);
    await vi.advanceTimersByTimeAsync(1);
    expect(renewed).toBe(true);
    handle.stop();
  });

  it('stops: no attempt after stop(), and a renewal in flight schedules nothing', async () => {
    let attempts = 0;
    let finish: (validity: Validity) => void = () => undefined;
    const handle = startRenewal({
      kind: 'leaf',
      validity: validFor(2 * HOUR),
      random: () => 0,
      renew: () => {
        attempts += 1;
        return new Promise<Validity>((resolve) => (finish = resolve));
      },
    });
    await vi.advanceTimersByTimeAsync(HOUR);
    expect(attempts).toBe(1);
    handle.stop();
    finish(validFor(2 * HOUR));
    await vi.advanceTimersByTimeAsync(10 * HOUR);
    expect(attempts).toBe(1);
    expect(vi.getTimerCount()).toBe(0);
  });
});
