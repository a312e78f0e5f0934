// Stock CoreDNS (the pinned build, no external plugins) on loopback with one server block for a
// zone, as a cluster's DNS would serve it (e.g. `forward . <agent>` for clusterset.local). It runs
// under the test bed's supervision, so the test bed's teardown and watchdog remove it.
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { resolveBinaries } from './binaries.ts';
import { freePort } from './ports.ts';
import { httpOk } from './probe.ts';
import type { ManagedProcess, StartOptions } from './processes.ts';
import { waitForProcess } from './wait.ts';

export interface LocalCoreDns {
  /** Where it answers, UDP and TCP: `127.0.0.1:<port>`. */
  readonly address: string;
  readonly process: ManagedProcess;
}

export interface CoreDnsOptions {
  readonly name: string;
  /** A directory for its Corefile. */
  readonly dir: string;
  readonly zone: string;
  /** The plugin lines of the server block, e.g. `forward . 127.0.0.1:10053`. */
  readonly plugins: readonly string[];
  readonly startProcess: (options: StartOptions) => Promise<ManagedProcess>;
}

/** Starts CoreDNS and waits until its `ready` plugin says every plugin serves (the kubernetes plugin once synced). */
export async function startCoreDns(options: CoreDnsOptions): Promise<LocalCoreDns> {
  const [port, readyPort, binaries] = await Promise.all([freePort(), freePort(), resolveBinaries()]);
  const corefile = join(options.dir, `${options.name}.Corefile`);
  // Plus bind (loopback only) and ready (the start barrier).
  const lines = ['bind 127.0.0.1', ...options.plugins, `ready 127.0.0.1:${readyPort}`, 'errors'];
  await writeFile(corefile, `${options.zone}:${port} {\n${lines.map((line) => `  ${line}\n`).join('')}}\n`);
  const process = await options.startProcess({
    name: options.name,
    command: binaries.coredns,
    args: ['-conf', corefile],
  });
  await waitForProcess(
    process,
    `${options.name} ready`,
    () => httpOk(`http://127.0.0.1:${readyPort}/ready`),
    30_000,
    100,
  );
  return { address: `127.0.0.1:${port}`, process };
}
