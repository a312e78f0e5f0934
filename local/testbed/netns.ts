// A network-namespace test network: each simulated cluster gets a namespace of its own with a
// real, routable, distinct address, all joined by a Linux bridge that lives in a further
// namespace. Guarantees:
// - 10.250.0.0/16 exists only inside the lab's namespaces: nothing is added to the root
//   namespace's addresses, routes or firewall (veths are made inside the bridge namespace).
// - Cluster i (0-based) has the gateway address 10.250.<i+1>.1/16 on its `eth0`; further
//   addresses come from 10.250.<i+1>.10 upwards.
// - A portal makes the root namespace's 127.0.0.1:<port> reachable as 127.0.0.1:<port> inside a
//   cluster namespace, through a unix socket (portal.ts), so kubeconfigs work unchanged.
// - Faults (blackhole, partition, link down) are nftables rules or link states inside the lab's
//   namespaces only, and each can be healed.
// - Every namespace is named `isth-<owner pid>-<lab>-…` and recorded before it is made: disposal
//   deletes them, the supervisor's watchdog deletes them if the owner is killed, and
//   reapAbandonedTestbeds deletes any whose owner is dead.
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { IsthmusError, describeError } from '../../common/errors.ts';
import { ProcessSupervisor, type ManagedProcess, type StartOptions } from './processes.ts';
import { testbedRoot } from './reaper.ts';
import { waitForProcess } from './wait.ts';

const execFileAsync = promisify(execFile);
const portalScript = fileURLToPath(new URL('./portal.ts', import.meta.url));

/** The lab's address space; it exists only inside the lab's namespaces. */
export const labNetwork = '10.250.0.0/16';
const firstAllocatedHost = 10;
const lastHost = 254;
const maxUnixSocketPath = 107;

export interface NetworkLabOptions {
  /** Cluster names; cluster i gets the addresses 10.250.<i+1>.x. */
  readonly clusters: readonly string[];
  /** Runs portals and startProcess under this supervisor (and its watchdog); the lab makes its own otherwise. */
  readonly supervisor?: ProcessSupervisor;
}

/** How a TCP connect attempt ended: `timeout` is what a silent drop looks like, `refused` an RST. */
export type ConnectOutcome = 'connected' | 'refused' | 'timeout' | 'unreachable' | `error:${string}`;

/** A fault injected into the lab (nftables rules inside its namespaces); heal() removes it. */
export interface Fault {
  readonly description: string;
  /** The clusters whose namespaces hold the fault's rules. */
  readonly clusters: readonly string[];
  heal(): Promise<void>;
}

/** A root-namespace 127.0.0.1:<port> made reachable as 127.0.0.1:<port> inside one cluster's namespace. */
export interface Portal {
  readonly port: number;
  readonly socketPath: string;
  readonly pids: readonly number[];
  close(): Promise<void>;
}

/** Runs a command to completion; a non-zero exit or a timeout becomes an IsthmusError with its stderr. */
async function runCommand(
  command: string,
  args: readonly string[],
  timeoutMs = 30_000,
): Promise<{ stdout: string; stderr: string }> {
  try {
    return await execFileAsync(command, [...args], { encoding: 'utf8', timeout: timeoutMs, maxBuffer: 16 << 20 });
  } catch (err) {
    const stderr = (err as { stderr?: string }).stderr?.trim();
    throw new IsthmusError('ISTHMUS_PROCESS_FAILED', `${command} ${args.join(' ')}: ${stderr || describeError(err)}`, {
      cause: err,
    });
  }
}

async function listNetns(): Promise<string[]> {
  const { stdout } = await runCommand('ip', ['netns', 'list']);
  return stdout
    .split('\n')
    .map((line) => line.split(' ')[0] ?? '')
    .filter(Boolean);
}

let availability: Promise<{ ok: boolean; reason?: string }> | undefined;

/**
 * Whether this process can build a lab: Linux, root, `ip` and `nft` installed, and a namespace
 * with a bridge and an nftables table can really be made (root in some containers cannot).
 * Suites skip with `reason` when it is not ok. Checked once per process.
 */
export function netnsAvailable(): Promise<{ ok: boolean; reason?: string }> {
  availability ??= (async () => {
    if (process.platform !== 'linux')
      return { ok: false, reason: `network namespaces need Linux (this is ${process.platform})` };
    if (process.getuid?.() !== 0) return { ok: false, reason: 'network namespaces need root (uid 0)' };
    const tools: [string, string[], string][] = [
      ['ip', ['-V'], 'iproute2'],
      ['nft', ['--version'], 'nftables'],
    ];
    for (const [tool, args, debianPackage] of tools) {
      try {
        await execFileAsync(tool, args);
      } catch {
        return { ok: false, reason: `\`${tool}\` is not installed (Debian package ${debianPackage})` };
      }
    }
    const probe = `isth-${process.pid}-probe`;
    try {
      await runCommand('ip', ['netns', 'del', probe]).catch(() => undefined); // left by an earlier process with our pid
      await runCommand('ip', ['netns', 'add', probe]);
      await runCommand('ip', ['-n', probe, 'link', 'add', 'probe0', 'type', 'bridge']);
      await runCommand('ip', ['netns', 'exec', probe, 'nft', 'add', 'table', 'inet', 'isthmus']);
      return { ok: true };
    } catch (err) {
      return {
        ok: false,
        reason: `cannot make a network namespace with a bridge and an nftables table: ${describeError(err)}`,
      };
    } finally {
      await runCommand('ip', ['netns', 'del', probe]).catch(() => undefined);
    }
  })();
  return availability;
}

// Prints one ConnectOutcome. argv: host port timeoutMs.
const tcpProbeScript = `
const net = require('node:net');
const [host, port, timeoutMs] = process.argv.slice(1);
const socket = net.connect({ host, port: Number(port) });
const done = (outcome) => { console.log(outcome); process.exit(0); };
setTimeout(() => done('timeout'), Number(timeoutMs));
socket.once('connect', () => done('connected'));
socket.once('error', (err) => done(err.code === 'ECONNREFUSED' ? 'refused' : err.code === 'EHOSTUNREACH' || err.code === 'ENETUNREACH' ? 'unreachable' : 'error:' + (err.code ?? err.message)));
`;

/** What a cluster needs from its lab. */
interface LabContext {
  readonly index: number;
  readonly dir: string;
  start(options: StartOptions): Promise<ManagedProcess>;
}

/** One simulated cluster's namespace in the lab. */
export class LabCluster {
  readonly name: string;
  /** 0-based position in the lab. */
  readonly index: number;
  /** The network namespace's name (for `ip netns exec`). */
  readonly netns: string;
  /** 10.250.<index+1>.1: the first address on the namespace's eth0. */
  readonly gatewayAddress: string;
  /** The /24 all of this cluster's addresses come from (the link itself is the lab's /16). */
  readonly addressRange: string;
  /** The bridge-side end of this cluster's veth pair, inside the bridge namespace. */
  readonly bridgePort: string;
  readonly #lab: LabContext;
  readonly #portals = new Map<number, Promise<Portal>>();
  #nextHost = firstAllocatedHost;
  #filterChain: Promise<void> | undefined;

  constructor(lab: LabContext, name: string, index: number, netns: string) {
    this.#lab = lab;
    this.name = name;
    this.index = index;
    this.netns = netns;
    this.gatewayAddress = `10.250.${index + 1}.1`;
    this.addressRange = `10.250.${index + 1}.0/24`;
    this.bridgePort = `c${index}`;
  }

  /** Adds the next free address of this cluster (10.250.<index+1>.10, .11, …) to eth0 and returns it. */
  async allocateAddress(): Promise<string> {
    const host = this.#nextHost++;
    if (host > lastHost)
      throw new IsthmusError('ISTHMUS_INPUT_INVALID', `cluster ${this.name} has no free lab address left`);
    const address = `10.250.${this.index + 1}.${host}`;
    await runCommand('ip', ['-n', this.netns, 'addr', 'add', `${address}/16`, 'dev', 'eth0']);
    return address;
  }

  /** The command line that runs `command args` inside this namespace (for spawn or StartOptions). */
  inNamespace(command: string, args: readonly string[]): { command: string; args: string[] } {
    return { command: 'ip', args: ['netns', 'exec', this.netns, command, ...args] };
  }

  /** Starts a long-running process inside this namespace, supervised (the watchdog kills it) and stopped with the lab. */
  startProcess(options: StartOptions): Promise<ManagedProcess> {
    return this.#lab.start({ ...options, ...this.inNamespace(options.command, options.args) });
  }

  /** Runs a short command to completion inside this namespace; rejects on a non-zero exit. */
  run(
    command: string,
    args: readonly string[],
    options: { timeoutMs?: number } = {},
  ): Promise<{ stdout: string; stderr: string }> {
    const line = this.inNamespace(command, args);
    return runCommand(line.command, line.args, options.timeoutMs);
  }

  /** Tries one TCP connect from inside this namespace and says how it ended. */
  async tcpProbe(host: string, port: number, timeoutMs = 1_000): Promise<ConnectOutcome> {
    const { stdout } = await this.run(process.execPath, ['-e', tcpProbeScript, host, String(port), String(timeoutMs)], {
      timeoutMs: timeoutMs + 30_000,
    });
    return stdout.trim() as ConnectOutcome;
  }

  /**
   * Makes the root namespace's 127.0.0.1:<port> reachable as 127.0.0.1:<port> inside this
   * namespace; resolves once the in-namespace listener accepts connections. Idempotent per port.
   */
  portal(port: number): Promise<Portal> {
    let opened = this.#portals.get(port);
    if (!opened) {
      opened = this.#openPortal(port);
      this.#portals.set(port, opened);
      void opened.catch(() => this.#portals.delete(port));
    }
    return opened;
  }

  async #openPortal(port: number): Promise<Portal> {
    const name = `portal-${this.#lab.index}-c${this.index}-${port}`;
    const socketPath = join(this.#lab.dir, `${name}.sock`);
    if (Buffer.byteLength(socketPath) > maxUnixSocketPath) {
      throw new IsthmusError(
        'ISTHMUS_INPUT_INVALID',
        `portal socket path ${socketPath} is longer than a unix socket allows (${maxUnixSocketPath} bytes): use a shorter TMPDIR`,
      );
    }
    const listening = (p: ManagedProcess) => (): Promise<boolean> =>
      Promise.resolve(p.logTail().includes('portal listening'));
    const processes: ManagedProcess[] = [];
    const close = async (): Promise<void> => {
      this.#portals.delete(port);
      await Promise.all(processes.map((p) => p.stop(1_000)));
    };
    try {
      const rootSide = await this.#lab.start({
        name: `${name}-root`,
        command: process.execPath,
        args: [portalScript, `unix:${socketPath}`, `tcp:127.0.0.1:${port}`],
      });
      processes.push(rootSide);
      await waitForProcess(rootSide, `${rootSide.name} listening`, listening(rootSide), 30_000, 50);
      const namespaceSide = await this.startProcess({
        name: `${name}-netns`,
        command: process.execPath,
        args: [portalScript, `tcp:127.0.0.1:${port}`, `unix:${socketPath}`],
      });
      processes.push(namespaceSide);
      await waitForProcess(namespaceSide, `${namespaceSide.name} listening`, listening(namespaceSide), 30_000, 50);
      const outcome = await this.tcpProbe('127.0.0.1', port, 10_000);
      if (outcome !== 'connected')
        throw new IsthmusError(
          'ISTHMUS_PROCESS_FAILED',
          `portal ${name}: connect to 127.0.0.1:${port} inside ${this.netns} ended ${outcome}`,
        );
    } catch (err) {
      await close();
      throw err;
    }
    return { port, socketPath, pids: processes.map((p) => p.pid), close };
  }

  /** Adds an nftables rule to this namespace's `inet isthmus` input chain; returns its handle. */
  async addInputRule(rule: readonly string[]): Promise<number> {
    this.#filterChain ??= (async () => {
      await this.run('nft', ['add', 'table', 'inet', 'isthmus']);
      await this.run('nft', [
        'add',
        'chain',
        'inet',
        'isthmus',
        'input',
        '{ type filter hook input priority 0; policy accept; }',
      ]);
    })();
    await this.#filterChain;
    const { stdout } = await this.run('nft', ['-a', '-e', 'add', 'rule', 'inet', 'isthmus', 'input', ...rule]);
    const handle = Number(/# handle (\d+)/.exec(stdout)?.[1] ?? NaN);
    if (!Number.isInteger(handle))
      throw new IsthmusError(
        'ISTHMUS_PROCESS_FAILED',
        `nft printed no rule handle for "${rule.join(' ')}" in ${this.netns}: ${stdout}`,
      );
    return handle;
  }

  /** Removes a rule addInputRule added (a no-op once the namespace is gone). */
  async deleteInputRule(handle: number): Promise<void> {
    await this.run('nft', ['delete', 'rule', 'inet', 'isthmus', 'input', 'handle', String(handle)]).catch(
      (err: unknown) => {
        if (!this.#gone(err)) throw err;
      },
    );
  }

  #gone(err: unknown): boolean {
    return /No such file|Cannot open network namespace|does not exist/i.test(describeError(err));
  }
}

let labsMade = 0;

/** A bridge namespace plus one namespace per cluster; dispose it with `await using`. */
export class NetworkLab implements AsyncDisposable {
  /** Distinguishes labs of one process: it is part of every name. */
  readonly index: number;
  /** The directory portal sockets and logs live in (the supervisor's). */
  readonly dir: string;
  readonly bridgeNetns: string;
  readonly clusters: readonly LabCluster[];
  readonly #supervisor: ProcessSupervisor;
  readonly #ownsSupervisor: boolean;
  readonly #processes = new Set<ManagedProcess>();
  readonly #faults = new Set<Fault>();
  #disposed: Promise<void> | undefined;

  /** Use NetworkLab.create. */
  constructor(init: {
    index: number;
    supervisor: ProcessSupervisor;
    ownsSupervisor: boolean;
    clusters: readonly string[];
  }) {
    this.index = init.index;
    this.#supervisor = init.supervisor;
    this.#ownsSupervisor = init.ownsSupervisor;
    this.dir = init.supervisor.dir;
    const prefix = `isth-${process.pid}-${init.index}`;
    this.bridgeNetns = `${prefix}-br`;
    const context: LabContext = { index: init.index, dir: this.dir, start: (options) => this.#start(options) };
    this.clusters = init.clusters.map((name, i) => new LabCluster(context, name, i, `${prefix}-c${i}`));
  }

  /** Builds the lab; throws ISTHMUS_NETNS_UNAVAILABLE (with the reason) where namespaces cannot be made. */
  static async create(options: NetworkLabOptions): Promise<NetworkLab> {
    const available = await netnsAvailable();
    if (!available.ok) throw new IsthmusError('ISTHMUS_NETNS_UNAVAILABLE', available.reason ?? 'unknown reason');
    const names = options.clusters;
    if (names.length === 0 || names.length > 254)
      throw new IsthmusError('ISTHMUS_INPUT_INVALID', `a network lab needs 1 to 254 clusters, got ${names.length}`);
    if (new Set(names).size !== names.length)
      throw new IsthmusError('ISTHMUS_INPUT_INVALID', `cluster names repeat: ${names.join(', ')}`);
    // Skip indexes a dead process with our (reused) pid left behind; the reaper removes those.
    const existing = await listNetns();
    let index = labsMade++;
    while (existing.some((ns) => ns.startsWith(`isth-${process.pid}-${index}-`))) index = labsMade++;
    let supervisor = options.supervisor;
    if (!supervisor) {
      mkdirSync(testbedRoot, { recursive: true });
      supervisor = new ProcessSupervisor(mkdtempSync(join(testbedRoot, `tb-${process.pid}-`)));
    }
    const lab = new NetworkLab({ index, supervisor, ownsSupervisor: !options.supervisor, clusters: names });
    try {
      await lab.#build();
    } catch (err) {
      await lab[Symbol.asyncDispose]();
      throw err;
    }
    return lab;
  }

  async #build(): Promise<void> {
    const bridge = this.bridgeNetns;
    this.#supervisor.recordNetns(bridge);
    await runCommand('ip', ['netns', 'add', bridge]);
    await runCommand('ip', ['-n', bridge, 'link', 'add', 'br0', 'type', 'bridge']);
    await runCommand('ip', ['-n', bridge, 'link', 'set', 'br0', 'up']);
    await Promise.all(
      this.clusters.map(async (cluster) => {
        const ns = cluster.netns;
        this.#supervisor.recordNetns(ns);
        await runCommand('ip', ['netns', 'add', ns]);
        // Made inside the bridge namespace with the peer moved straight into the cluster's: no
        // interface of the lab ever appears in the root namespace.
        await runCommand('ip', [
          '-n',
          bridge,
          'link',
          'add',
          cluster.bridgePort,
          'type',
          'veth',
          'peer',
          'name',
          'eth0',
          'netns',
          ns,
        ]);
        await runCommand('ip', ['-n', bridge, 'link', 'set', cluster.bridgePort, 'master', 'br0', 'up']);
        await runCommand('ip', ['-n', ns, 'addr', 'add', `${cluster.gatewayAddress}/16`, 'dev', 'eth0']);
        await runCommand('ip', ['-n', ns, 'link', 'set', 'eth0', 'up']);
        await runCommand('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
      }),
    );
  }

  cluster(name: string): LabCluster {
    const found = this.clusters.find((c) => c.name === name);
    if (!found)
      throw new Error(`no cluster named ${name} in this network lab (${this.clusters.map((c) => c.name).join(', ')})`);
    return found;
  }

  /** Every namespace the lab makes: the bridge's, then one per cluster. */
  namespaces(): string[] {
    return [this.bridgeNetns, ...this.clusters.map((c) => c.netns)];
  }

  /** Pids of the processes the lab started (portals, startProcess) that are still running. */
  pids(): number[] {
    return [...this.#processes].map((p) => p.pid);
  }

  /**
   * Silently drops incoming TCP to the cluster's gateway address (only to `port` when given):
   * connects hang instead of being refused, and established connections stall.
   */
  async blackhole(cluster: string, options: { port?: number } = {}): Promise<Fault> {
    const target = this.cluster(cluster);
    const match = options.port === undefined ? ['meta', 'l4proto', 'tcp'] : ['tcp', 'dport', String(options.port)];
    const description = `blackhole TCP to ${target.gatewayAddress}${options.port === undefined ? '' : `:${options.port}`} in ${cluster}`;
    const handle = await target.addInputRule([
      'ip',
      'daddr',
      target.gatewayAddress,
      ...match,
      'drop',
      'comment',
      `"${description}"`,
    ]);
    return this.#track(description, [{ cluster: target, handle }]);
  }

  /** Drops all IPv4 traffic between two clusters, both ways (ARP still works, so it looks like a silent path loss). */
  async partition(a: string, b: string): Promise<Fault> {
    const [left, right] = [this.cluster(a), this.cluster(b)];
    if (left === right) throw new IsthmusError('ISTHMUS_INPUT_INVALID', `cannot partition ${a} from itself`);
    const description = `partition ${a} | ${b}`;
    const rules = await Promise.all([
      left
        .addInputRule(['ip', 'saddr', right.addressRange, 'drop', 'comment', `"${description}"`])
        .then((handle) => ({ cluster: left, handle })),
      right
        .addInputRule(['ip', 'saddr', left.addressRange, 'drop', 'comment', `"${description}"`])
        .then((handle) => ({ cluster: right, handle })),
    ]);
    return this.#track(description, rules);
  }

  /** Heals every fault involving `cluster` (every fault when omitted). Links set down stay down: see linkUp. */
  async heal(cluster?: string): Promise<void> {
    if (cluster !== undefined) this.cluster(cluster); // a typo must not silently heal nothing
    await Promise.all(
      [...this.#faults].filter((f) => cluster === undefined || f.clusters.includes(cluster)).map((f) => f.heal()),
    );
  }

  /** Sets the bridge side of the cluster's veth down: like a pulled cable, the cluster keeps its addresses and routes. */
  async linkDown(cluster: string): Promise<void> {
    await runCommand('ip', ['-n', this.bridgeNetns, 'link', 'set', this.cluster(cluster).bridgePort, 'down']);
  }

  async linkUp(cluster: string): Promise<void> {
    await runCommand('ip', ['-n', this.bridgeNetns, 'link', 'set', this.cluster(cluster).bridgePort, 'up']);
  }

  #track(description: string, rules: readonly { cluster: LabCluster; handle: number }[]): Fault {
    let healed: Promise<void> | undefined;
    const fault: Fault = {
      description,
      clusters: [...new Set(rules.map((r) => r.cluster.name))],
      heal: () => {
        healed ??= (async () => {
          this.#faults.delete(fault);
          await Promise.all(rules.map((r) => r.cluster.deleteInputRule(r.handle)));
        })();
        return healed;
      },
    };
    this.#faults.add(fault);
    return fault;
  }

  async #start(options: StartOptions): Promise<ManagedProcess> {
    if (this.#disposed)
      throw new IsthmusError('ISTHMUS_STOPPED', `network lab ${this.index} is disposed; cannot start ${options.name}`);
    const started = await this.#supervisor.start(options);
    this.#processes.add(started);
    void started.exited().then(() => this.#processes.delete(started));
    return started;
  }

  /** Stops the lab's processes, then deletes its namespaces (which takes veths and rules with them). Idempotent. */
  [Symbol.asyncDispose](): Promise<void> {
    this.#disposed ??= (async () => {
      await Promise.all([...this.#processes].map((p) => p.stop(1_000)));
      const deleted = await Promise.allSettled(
        this.namespaces().map((ns) =>
          runCommand('ip', ['netns', 'del', ns]).catch((err: unknown) => {
            if (!/No such file/i.test(describeError(err))) throw err;
          }),
        ),
      );
      if (this.#ownsSupervisor) {
        await this.#supervisor.stopAll();
        rmSync(this.dir, { recursive: true, force: true });
      }
      const failures = deleted.filter((r) => r.status === 'rejected').map((r) => r.reason as unknown);
      if (failures.length > 0)
        throw new AggregateError(failures, `network lab ${this.index}: ${failures.length} namespace(s) not deleted`);
    })();
    return this.#disposed;
  }
}
