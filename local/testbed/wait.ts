import { setTimeout as sleep } from 'node:timers/promises';
import { IsthmusError, describeError } from '../../common/errors.ts';
import type { ManagedProcess } from './processes.ts';

/** Polls `probe` until it returns true; the last probe error is named when time runs out. */
export async function waitFor(
  what: string,
  probe: () => Promise<boolean>,
  timeoutMs: number,
  intervalMs = 100,
): Promise<void> {
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

/** waitFor a process to become ready: fails at once, with its log, if the process exits first. */
export async function waitForProcess(
  process: ManagedProcess,
  what: string,
  probe: () => Promise<boolean>,
  timeoutMs: number,
  intervalMs = 100,
): Promise<void> {
  const exited = process.exited().then(() => {
    throw new IsthmusError('ISTHMUS_PROCESS_FAILED', `${process.name} exited before ${what}:\n${process.logTail()}`);
  });
  const ready = waitFor(what, probe, timeoutMs, intervalMs);
  try {
    await Promise.race([ready, exited]);
  } finally {
    // The loser of the race must not surface as an unhandled rejection.
    ready.catch(() => undefined);
    exited.catch(() => undefined);
  }
}
