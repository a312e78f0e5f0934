import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { createLogger } from '../logger.ts';
import { WorkQueue } from './work-queue.ts';

const logger = createLogger({ component: 'work-queue-test', level: 'silent' });

/** A promise plus its resolver, to hold a handler in flight. */
function gate(): { promise: Promise<void>; open: () => void } {
  let open!: () => void;
  const promise = new Promise<void>((resolve) => (open = resolve));
  return { promise, open };
}

async function until(what: string, condition: () => boolean, timeoutMs = 2_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(2);
  }
}

function activeTimeouts(): number {
  return process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
}

describe('WorkQueue', () => {
  it('deduplicates keys while they wait', async () => {
    const queue = new WorkQueue({ logger });
    for (const key of ['a', 'b', 'a', 'a', 'b', 'c']) queue.add(key);
    expect(queue.length).toBe(3);
    const handled: string[] = [];
    const done = queue.run(1, (key) => {
      handled.push(key);
    });
    await until('three keys handled', () => handled.length === 3);
    await queue.shutDown({ drain: true });
    await done;
    expect(handled).toEqual(['a', 'b', 'c']);
  });

  it('never hands one key to two workers; a key re-added while in flight is handled again after', async () => {
    const queue = new WorkQueue({ logger });
    const inFlight = new Map<string, number>();
    let maxConcurrentSameKey = 0;
    let maxConcurrent = 0;
    const counts = new Map<string, number>();
    const first = gate();
    const done = queue.run(4, async (key) => {
      const n = (inFlight.get(key) ?? 0) + 1;
      inFlight.set(key, n);
      maxConcurrentSameKey = Math.max(maxConcurrentSameKey, n);
      maxConcurrent = Math.max(
        maxConcurrent,
        [...inFlight.values()].reduce((a, b) => a + b, 0),
      );
      counts.set(key, (counts.get(key) ?? 0) + 1);
      if (key === 'a' && counts.get('a') === 1) await first.promise;
      else await sleep(5);
      inFlight.set(key, (inFlight.get(key) ?? 1) - 1);
    });
    queue.add('a');
    await until('a in flight', () => queue.processing === 1);
    // Re-add while in flight: it waits (once) instead of going to an idle worker.
    for (let i = 0; i < 5; i++) queue.add('a');
    queue.add('b');
    queue.add('c');
    await until('b and c handled', () => counts.get('b') === 1 && counts.get('c') === 1);
    expect(counts.get('a')).toBe(1);
    expect(queue.length).toBe(0); // 'a' is parked until its handler is done
    first.open();
    await until('a handled a second time', () => counts.get('a') === 2);
    await queue.shutDown({ drain: true });
    await done;
    expect(counts.get('a')).toBe(2);
    expect(maxConcurrentSameKey).toBe(1);
    expect(maxConcurrent).toBeGreaterThan(1); // other keys did run in parallel
  });

  it('retries a failing key with exponential backoff, capped, and forgets it on success', async () => {
    const queue = new WorkQueue({ logger, baseDelayMs: 5, maxDelayMs: 40 });
    expect([0, 1, 2, 3, 4, 5].map(() => queue.addRateLimited('x'))).toEqual([5, 10, 20, 40, 40, 40]);
    expect(queue.numRequeues('x')).toBe(6);
    queue.forget('x');
    expect(queue.nextDelay('x')).toBe(5);
    await queue.shutDown();

    const q2 = new WorkQueue({ logger, baseDelayMs: 5, maxDelayMs: 60_000 });
    const attempts: number[] = [];
    const done = q2.run(2, () => {
      attempts.push(performance.now());
      if (attempts.length <= 5) throw new Error(`failure ${attempts.length}`);
    });
    q2.add('k');
    await until('six attempts', () => attempts.length === 6);
    await until('success forgotten', () => q2.numRequeues('k') === 0);
    const gaps = attempts.slice(1).map((t, i) => t - (attempts[i] as number));
    // 5, 10, 20, 40, 80 ms nominal; timers never fire early, allow a little for the clock.
    [5, 10, 20, 40, 80].forEach((nominal, i) => expect(gaps[i]).toBeGreaterThanOrEqual(nominal - 1));
    expect(gaps[4]).toBeGreaterThan(gaps[0] as number);
    await q2.shutDown();
    await done;
  });

  it('addAfter delays a key; the earliest pending delay wins', async () => {
    const queue = new WorkQueue({ logger });
    const handled: { key: string; at: number }[] = [];
    const start = performance.now();
    const done = queue.run(1, (key) => {
      handled.push({ key, at: performance.now() - start });
    });
    queue.addAfter('late', 60);
    queue.addAfter('late', 60_000); // later: ignored (the test would time out waiting for it)
    queue.addAfter('soon', 10);
    expect(queue.delayed).toBe(2);
    await until('both handled', () => handled.length === 2);
    expect(handled.map((h) => h.key)).toEqual(['soon', 'late']);
    expect(handled[1]!.at).toBeGreaterThanOrEqual(59);
    // Nothing of 'late' is left waiting: the 60 s delay was dropped, not queued beside the 60 ms one.
    expect(queue.delayed).toBe(0);
    await queue.shutDown();
    await done;
  });

  it('honours requeueAfterMs from a successful handler', async () => {
    const queue = new WorkQueue({ logger });
    let runs = 0;
    const done = queue.run(1, () => {
      runs++;
      return runs < 3 ? { requeueAfterMs: 5 } : undefined;
    });
    queue.add('ttl');
    await until('three runs', () => runs === 3);
    // Nothing left to run it a fourth time: no delayed key, none waiting.
    await until('third run done', () => queue.processing === 0);
    expect(queue.delayed).toBe(0);
    expect(queue.length).toBe(0);
    expect(runs).toBe(3);
    await queue.shutDown();
    await done;
  });

  it('shutDown with drain handles every waiting key and lets in-flight handlers finish', async () => {
    const queue = new WorkQueue({ logger });
    const handled: string[] = [];
    const aborted: boolean[] = [];
    const done = queue.run(2, async (key, signal) => {
      await sleep(20);
      aborted.push(signal.aborted);
      handled.push(key);
    });
    for (let i = 0; i < 10; i++) queue.add(`k${i}`);
    queue.addAfter('delayed', 10_000);
    await until('two in flight', () => queue.processing === 2);
    const shutDown = queue.shutDown({ drain: true });
    queue.add('too-late');
    await shutDown;
    await done;
    expect(handled.sort()).toEqual(Array.from({ length: 10 }, (_, i) => `k${i}`).sort());
    expect(aborted.every((a) => !a)).toBe(true);
    expect(queue.delayed).toBe(0);
  });

  it('shutDown without drain drops waiting keys, aborts the signal and waits for in-flight handlers', async () => {
    const queue = new WorkQueue({ logger });
    const started: string[] = [];
    const finished: string[] = [];
    const done = queue.run(1, async (key, signal) => {
      started.push(key);
      await sleep(30);
      finished.push(`${key}:${signal.aborted ? 'aborted' : 'clean'}`);
    });
    for (const key of ['a', 'b', 'c']) queue.add(key);
    await until('a in flight', () => started.length === 1);
    await queue.shutDown();
    await done;
    expect(started).toEqual(['a']);
    expect(finished).toEqual(['a:aborted']);
    expect(queue.length).toBe(0);
  });

  it('leaves no timers behind after shutdown', async () => {
    const before = activeTimeouts();
    const queue = new WorkQueue({ logger, baseDelayMs: 1_000 });
    const done = queue.run(3, () => {
      throw new Error('always fails');
    });
    for (let i = 0; i < 20; i++) queue.addAfter(`later-${i}`, 30_000);
    for (let i = 0; i < 5; i++) queue.add(`failing-${i}`);
    await until('failures backed off', () => queue.delayed === 25);
    expect(activeTimeouts()).toBeGreaterThanOrEqual(before + 25);
    await queue.shutDown();
    await done;
    expect(queue.delayed).toBe(0);
    expect(activeTimeouts()).toBe(before);
    // Nothing is accepted any more, so nothing can create a timer again.
    queue.addAfter('x', 10);
    queue.addRateLimited('y');
    expect(activeTimeouts()).toBe(before);
  });

  it('refuses bad configuration', () => {
    expect(() => new WorkQueue({ baseDelayMs: 0 })).toThrow(/baseDelayMs/);
    expect(() => new WorkQueue({ baseDelayMs: 10, maxDelayMs: 5 })).toThrow(/maxDelayMs/);
    expect(() => new WorkQueue().run(0, () => undefined)).toThrow(/concurrency/);
  });
});
