// unlessAborted: a pending piece of work raced against a long-lived signal, without leaking listeners.
import { getEventListeners } from 'node:events';
import { describe, expect, it } from 'vitest';
import { unlessAborted } from './lifecycle.ts';

describe('unlessAborted', () => {
  it('settles as the work does while the signal stays quiet', async () => {
    const signal = new AbortController().signal;
    await expect(unlessAborted(Promise.resolve(7), signal)).resolves.toBe(7);
    await expect(unlessAborted(Promise.reject(new Error('refused')), signal)).rejects.toThrow('refused');
  });

  it('resolves undefined once the signal aborts, and swallows what the abandoned work does later', async () => {
    const controller = new AbortController();
    let fail!: (err: Error) => void;
    const pending = unlessAborted(new Promise<number>((_, reject) => (fail = reject)), controller.signal);
    controller.abort();
    await expect(pending).resolves.toBeUndefined();
    fail(new Error('too late')); // an unhandled rejection would fail the run
    await expect(unlessAborted(Promise.resolve(1), controller.signal)).resolves.toBeUndefined();
  });

  it('leaves no listener on the signal once the work settled', async () => {
    const signal = new AbortController().signal;
    for (let i = 0; i < 100; i++) await unlessAborted(Promise.resolve(i), signal);
    await unlessAborted(Promise.reject(new Error('refused')), signal).catch(() => undefined);
    expect(getEventListeners(signal, 'abort')).toHaveLength(0);
  });
});
