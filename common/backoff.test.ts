// The one exponential backoff: delays computed exactly, and the retry loop driven by fake timers
// (no real waiting).
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { backoffDelay, retryWithBackoff } from './backoff.ts';

describe('backoffDelay', () => {
  const backoff = { initialMs: 100, maxMs: 1_000 };

  it('starts at the initial delay and doubles with each attempt', () => {
    expect([1, 2, 3, 4].map((attempt) => backoffDelay(attempt, backoff))).toEqual([100, 200, 400, 800]);
  });

  it('stops at the maximum', () => {
    expect([5, 6, 20, 2_000].map((attempt) => backoffDelay(attempt, backoff))).toEqual([1_000, 1_000, 1_000, 1_000]);
  });

  it('treats attempts below 1 as the first', () => {
    expect(backoffDelay(0, backoff)).toBe(100);
  });

  it('has no jitter unless asked', () => {
    expect(backoffDelay(3, backoff, () => 0.999)).toBe(400);
  });

  it('draws jitter below the delay, never above it', () => {
    const jittered = { ...backoff, jitter: 0.5 };
    expect(backoffDelay(3, jittered, () => 0)).toBe(400);
    expect(backoffDelay(3, jittered, () => 0.5)).toBe(300);
    // random() < 1: the lowest delay is just above (1 - jitter) of the ceiling.
    expect(backoffDelay(3, jittered, () => 0.999_999)).toBe(200);
    expect(backoffDelay(20, jittered, () => 0.5)).toBe(750);
  });

  it('can jitter all the way down with full jitter', () => {
    expect(backoffDelay(2, { ...backoff, jitter: 1 }, () => 0.25)).toBe(150);
    expect(backoffDelay(2, { ...backoff, jitter: 1 }, () => 0.999_999)).toBe(0);
  });
});

describe('retryWithBackoff', () => {
  beforeEach(() => {
    vi.useFakeTimers({ fakeNodeBuiltins: true });
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('retries until the work succeeds, waiting the doubling delays in between', async () => {
    let calls = 0;
    const work = vi.fn((): Promise<string> => {
      calls++;
      return calls < 4 ? Promise.reject(new Error(`failure ${calls}`)) : Promise.resolve('done');
    });
    const errors: [string, number][] = [];
    const result = retryWithBackoff(work, {
      backoff: { initialMs: 100, maxMs: 250 },
      signal: new AbortController().signal,
      onError: (err, retryInMs) => errors.push([(err as Error).message, retryInMs]),
    });
    await vi.advanceTimersByTimeAsync(0);
    expect(work).toHaveBeenCalledTimes(1);
    await vi.advanceTimersByTimeAsync(99);
    expect(work).toHaveBeenCalledTimes(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(work).toHaveBeenCalledTimes(2);
    await vi.advanceTimersByTimeAsync(199);
    expect(work).toHaveBeenCalledTimes(2);
    await vi.advanceTimersByTimeAsync(1);
    expect(work).toHaveBeenCalledTimes(3);
    await vi.advanceTimersByTimeAsync(250);
    await expect(result).resolves.toBe('done');
    expect(work).toHaveBeenCalledTimes(4);
    expect(errors).toEqual([
      ['failure 1', 100],
      ['failure 2', 200],
      ['failure 3', 250],
    ]);
  });

  it('returns at once what succeeds the first time', async () => {
    await expect(
      retryWithBackoff(() => Promise.resolve(42), {
        backoff: { initialMs: 100, maxMs: 1_000 },
        signal: new AbortController().signal,
      }),
    ).resolves.toBe(42);
  });

  it('stops waiting and resolves undefined when the signal aborts', async () => {
    const controller = new AbortController();
    const work = vi.fn((): Promise<string> => Promise.reject(new Error('down')));
    const result = retryWithBackoff(work, { backoff: { initialMs: 60_000, maxMs: 60_000 }, signal: controller.signal });
    await vi.advanceTimersByTimeAsync(0);
    expect(work).toHaveBeenCalledTimes(1);
    controller.abort();
    // Resolves without the 60 s delay having passed on the fake clock.
    await expect(result).resolves.toBeUndefined();
    expect(work).toHaveBeenCalledTimes(1);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('does not start work when the signal aborted before', async () => {
    const work = vi.fn(() => Promise.resolve('never'));
    await expect(
      retryWithBackoff(work, { backoff: { initialMs: 1, maxMs: 1 }, signal: AbortSignal.abort() }),
    ).resolves.toBeUndefined();
    expect(work).not.toHaveBeenCalled();
  });

  it('stops after the attempt during which the signal aborted', async () => {
    const controller = new AbortController();
    const work = vi.fn((): Promise<string> => {
      controller.abort();
      return Promise.reject(new Error('down'));
    });
    await expect(
      retryWithBackoff(work, { backoff: { initialMs: 60_000, maxMs: 60_000 }, signal: controller.signal }),
    ).resolves.toBeUndefined();
    expect(work).toHaveBeenCalledTimes(1);
  });
});
