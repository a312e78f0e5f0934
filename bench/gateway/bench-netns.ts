// Runs the gateway benchmark inside a network namespace of its own whose loopback also holds
// BENCH_ADDRESS. Everything — apiservers, gateways, HAProxy, backend, load client — runs there on
// the same local path, so both topologies are measured alike, and the Isthmus gateways can name the
// backend in an EndpointSlice (which refuses 127.0.0.0/8). Without root or `ip`, the benchmark
// runs on 127.0.0.1 and says so (the Isthmus side then cannot name its backend).
import { execFileSync, spawn } from 'node:child_process';

export const BENCH_ADDRESS = '10.250.0.1';
const MARKER = 'ISTHMUS_BENCH_HOST';

/** The address every bench listener uses. */
export function benchHost(): string {
  return process.env[MARKER] ?? '127.0.0.1';
}

function canMakeNamespaces(): boolean {
  if (process.getuid?.() !== 0) return false;
  try {
    execFileSync('ip', ['-V'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/**
 * In the parent: makes the namespace, re-runs this process inside it, removes it afterwards, and
 * returns the child's exit code. In the child (or where namespaces are unavailable): undefined.
 */
export async function reexecInBenchNamespace(): Promise<number | undefined> {
  if (process.env[MARKER] !== undefined || !canMakeNamespaces()) return undefined;
  // `isth-<pid>-…`: the test bed's reaper removes it should this process die before it does.
  const netns = `isth-${process.pid}-bench`;
  const ip = (...args: string[]): void => void execFileSync('ip', args, { stdio: 'inherit' });
  ip('netns', 'add', netns);
  try {
    ip('-n', netns, 'link', 'set', 'lo', 'up');
    ip('-n', netns, 'addr', 'add', `${BENCH_ADDRESS}/32`, 'dev', 'lo');
    const child = spawn(
      'ip',
      ['netns', 'exec', netns, process.execPath, ...process.execArgv, ...process.argv.slice(1)],
      { stdio: 'inherit', env: { ...process.env, [MARKER]: BENCH_ADDRESS } },
    );
    const forward = (signal: NodeJS.Signals): void => void child.kill(signal);
    process.on('SIGINT', forward);
    process.on('SIGTERM', forward);
    return await new Promise<number>((resolve) => child.once('exit', (code) => resolve(code ?? 1)));
  } finally {
    ip('netns', 'del', netns);
  }
}
