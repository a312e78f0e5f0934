import { setTimeout as sleep } from 'node:timers/promises';

/**
 * Runs `task` every `intervalMs` until `signal` aborts, one run at a time (a slow run delays the
 * next instead of overlapping it); a failed run is reported and the loop goes on.
 */
export function runPeriodically(
  task: () => Promise<void>,
  intervalMs: number,
  signal: AbortSignal,
  onError: (err: unknown) => void,
): Promise<void> {
  return (async () => {
    while (!signal.aborted) {
      await task().catch(onError);
      await sleep(intervalMs, undefined, { signal }).catch(() => undefined);
    }
  })();
}
