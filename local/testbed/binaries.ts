import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { IsthmusError, describeError } from '../../common/errors.ts';

export interface Binaries {
  readonly kubeApiserver: string;
  readonly etcd: string;
  readonly natsServer: string;
  /** Stock CoreDNS, for the DNS e2e (the cluster DNS that forwards clusterset.local to the agent). */
  readonly coredns: string;
  /** The pinned helm, for the chart's tests (deploy/helm); absent when the script printed none. */
  readonly helm?: string;
}

const script = fileURLToPath(new URL('../../scripts/ensure-binaries.sh', import.meta.url));
let resolved: Promise<Binaries> | undefined;

/**
 * Paths of the pinned binaries. The script finds them on PATH or in the cache and builds them
 * otherwise; ISTHMUS_BINARIES (set by the test global setup) skips the script entirely.
 */
export function resolveBinaries(): Promise<Binaries> {
  resolved ??= (async () => {
    const preset = process.env.ISTHMUS_BINARIES;
    const text = preset ?? (await runScript());
    const found = new Map(
      text
        .split('\n')
        .map((line) => line.trim().split('='))
        .filter((kv): kv is [string, string] => kv.length === 2),
    );
    const pick = (name: string): string => {
      const path = found.get(name);
      if (!path)
        throw new IsthmusError('ISTHMUS_BINARY_MISSING', `${name} (scripts/ensure-binaries.sh printed no path for it)`);
      return path;
    };
    return {
      kubeApiserver: pick('kube-apiserver'),
      etcd: pick('etcd'),
      natsServer: pick('nats-server'),
      coredns: pick('coredns'),
      helm: found.get('helm'),
    };
  })();
  return resolved;
}

async function runScript(): Promise<string> {
  try {
    const { stdout } = await promisify(execFile)('bash', [script], { maxBuffer: 1 << 20, timeout: 60 * 60_000 });
    return stdout;
  } catch (err) {
    throw new IsthmusError('ISTHMUS_BINARY_MISSING', `scripts/ensure-binaries.sh failed: ${describeError(err)}`, {
      cause: err,
    });
  }
}
