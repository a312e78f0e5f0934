// For tests: runs a Runnable in the background until the returned handle is stopped or disposed
// (`await using`), which aborts its signal and waits until the run has ended.
import type { Runnable } from './lifecycle.ts';

export interface RunningInBackground extends AsyncDisposable {
  readonly stop: () => Promise<void>;
}

export function runInBackground(runnable: Runnable): RunningInBackground {
  const lifetime = new AbortController();
  const running = runnable.run(lifetime.signal);
  const stop = async (): Promise<void> => {
    lifetime.abort();
    await running;
  };
  return { stop, [Symbol.asyncDispose]: stop };
}
