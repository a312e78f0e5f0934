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
