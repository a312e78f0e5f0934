// The one lifecycle shape of the hub's and the agent's loops, as controller-runtime's Runnable:
// `run(signal)` does the loop's work until `signal` aborts, then stops it (no new write starts,
// writes in flight finish) and resolves once everything it started has ended. A loop runs once;
// only a failure to start rejects. Informers and the leader elector are the primitives these loops
// are built from, and keep their own start/stop.

export interface Runnable {
  run(signal: AbortSignal): Promise<void>;
}

/** Resolves when `signal` aborts (at once if it has already). */
export function whenAborted(signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }));
}

/**
 * Settles as `work` does, or resolves undefined as soon as `signal` aborts; `work` then runs on
 * unobserved (its rejection swallowed). Leaves no listener on `signal` once settled, so a loop can
 * call it many times under one long-lived signal.
 */
export function unlessAborted<T>(work: Promise<T>, signal: AbortSignal): Promise<T | undefined> {
  work.catch(() => undefined);
  if (signal.aborted) return Promise.resolve(undefined);
  return new Promise<T | undefined>((resolve, reject) => {
    const onAbort = (): void => resolve(undefined);
    signal.addEventListener('abort', onAbort, { once: true });
    work.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}
