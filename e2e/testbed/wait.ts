import { setTimeout as sleep } from 'node:timers/promises';
import { IsthmusError, describeError } from '../../common/errors.ts';

/** Polls `probe` until it returns true; the last probe error is named when time runs out. */
export async function waitFor(what: string, probe: () => Promise<boolean>, timeoutMs: number, intervalMs = 100): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = 'not ready';
  while (Date.now() < deadline) {
    try {
      if (await probe()) return;
    } catch (err) {
      last = describeError(err);
    }
    await sleep(intervalMs);
  }
  throw new IsthmusError('ISTHMUS_TIMEOUT', `${what} after ${timeoutMs} ms (${last})`);
}
