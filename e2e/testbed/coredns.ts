// Stock CoreDNS (the pinned build, no external plugins) on loopback, set up as a cluster's DNS
// would be for the clusterset.local zone: a server block that forwards the zone to one upstream.
// It runs under the test bed's supervision, so the test bed's teardown and watchdog remove it.
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
  /** The upstream the zone is forwarded to, `host:port`. */
  readonly forwardTo: string;
  readonly startProcess: (options: StartOptions) => Promise<ManagedProcess>;
}

/** Starts CoreDNS and waits until its `ready` plugin says it serves. */
export async function startCoreDns(options: CoreDnsOptions): Promise<LocalCoreDns> {
  const [port, readyPort, binaries] = await Promise.all([freePort(), freePort(), resolveBinaries()]);
  const corefile = join(options.dir, `${options.name}.Corefile`);
  // The stanza the README gives users, plus bind (loopback only) and ready (a start barrier).
  await writeFile(corefile, `${options.zone}:${port} {\n  bind 127.0.0.1\n  forward . ${options.forwardTo}\n  ready 127.0.0.1:${readyPort}\n  errors\n}\n`);
  const process = await options.startProcess({ name: options.name, command: binaries.coredns, args: ['-conf', corefile] });
  await waitForProcess(process, `${options.name} ready`, () => httpOk(`http://127.0.0.1:${readyPort}/ready`), 30_000, 100);
  return { address: `127.0.0.1:${port}`, process };
}
