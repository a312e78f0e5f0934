// Every process the test bed starts is recorded in its directory and watched by a detached
// watchdog, so that even a test runner killed with SIGKILL leaves no kube-apiserver behind.
// Network namespaces recorded with recordNetns are deleted by the same watchdog, and so are Docker
// containers and networks labelled with the owner's pid (ownerLabel) once recordDocker was called.
import { spawn, type ChildProcess } from 'node:child_process';
import { appendFileSync, openSync, closeSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { once } from 'node:events';
import { IsthmusError } from '../../common/errors.ts';

/** The Docker label whose value is the pid of the test run that owns a container or network. */
export const DOCKER_OWNER_LABEL = 'isthmus.dev/testbed-owner';

export interface StartOptions {
  readonly name: string;
  readonly command: string;
  readonly args: readonly string[];
  readonly env?: NodeJS.ProcessEnv;
}

export class ManagedProcess {
  readonly name: string;
  readonly logFile: string;
  readonly child: ChildProcess;
  #exited: Promise<number | null>;

  constructor(name: string, logFile: string, child: ChildProcess) {
    this.name = name;
    this.logFile = logFile;
    this.child = child;
    this.#exited = new Promise((resolve) => {
      if (child.exitCode !== null) resolve(child.exitCode);
      else child.once('exit', (code) => resolve(code));
    });
  }

  get pid(): number {
    return this.child.pid ?? -1;
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** The last lines of the process's output, for error messages. */
  logTail(lines = 30): string {
    try {
      return readFileSync(this.logFile, 'utf8').split('\n').slice(-lines).join('\n');
    } catch {
      return '(no log)';
    }
  }

  /** Resident set size and its peak, in bytes, from /proc. */
  memory(): { rss: number; peak: number } {
    try {
      const status = readFileSync(`/proc/${this.pid}/status`, 'utf8');
      const kb = (key: string): number =>
        Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? 0) * 1024;
      return { rss: kb('VmRSS'), peak: kb('VmHWM') };
    } catch {
      return { rss: 0, peak: 0 };
    }
  }

  /** SIGTERM, then SIGKILL after `graceMs`; resolves once the process is gone. */
  async stop(graceMs = 5_000): Promise<void> {
    if (!this.running) return;
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), graceMs);
    await this.#exited;
    clearTimeout(timer);
  }

  /** Resolves when the process exits for any reason. */
  exited(): Promise<number | null> {
    return this.#exited;
  }
}

export class ProcessSupervisor {
  readonly dir: string;
  readonly #pidFile: string;
  readonly #processes = new Set<ManagedProcess>();
  readonly #watchdog: ChildProcess;
  readonly #onExit = (): void => this.killAllNow();

  constructor(dir: string) {
    this.dir = dir;
    this.#pidFile = join(dir, 'pids');
    appendFileSync(this.#pidFile, '');
    // The watchdog outlives us only until it notices we are gone; then it kills what we started,
    // deletes the network namespaces we made and removes the directory.
    this.#watchdog = spawn(
      'bash',
      [
        '-c',
        'while kill -0 "$1" 2>/dev/null; do sleep 0.5; done; ' +
          'for p in $(cat "$2/pids" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done; ' +
          'for n in $(cat "$2/netns" 2>/dev/null); do ip netns del "$n" 2>/dev/null; done; ' +
          'if [ -e "$2/docker" ]; then ' +
          `docker ps -aq --filter "label=${DOCKER_OWNER_LABEL}=$1" | xargs -r docker rm -f >/dev/null 2>&1; ` +
          `docker network ls -q --filter "label=${DOCKER_OWNER_LABEL}=$1" | xargs -r docker network rm >/dev/null 2>&1; ` +
          'fi; rm -rf "$2"',
        'isthmus-testbed-watchdog',
        String(process.pid),
        dir,
      ],
      { detached: true, stdio: 'ignore' },
    );
    this.#watchdog.unref();
    process.once('exit', this.#onExit);
  }

  async start(options: StartOptions): Promise<ManagedProcess> {
    const logFile = join(this.dir, `${options.name}.log`);
    const fd = openSync(logFile, 'a');
    const child = spawn(options.command, [...options.args], {
      env: options.env ?? process.env,
      stdio: ['ignore', fd, fd],
    });
    closeSync(fd);
    try {
      await Promise.race([once(child, 'spawn'), once(child, 'error').then(([err]) => Promise.reject(err as Error))]);
    } catch (err) {
      throw new IsthmusError('ISTHMUS_PROCESS_FAILED', `cannot start ${options.name} (${options.command})`, {
        cause: err,
      });
    }
    appendFileSync(this.#pidFile, `${child.pid}\n`);
    const managed = new ManagedProcess(options.name, logFile, child);
    this.#processes.add(managed);
    void managed.exited().then(() => this.#processes.delete(managed));
    return managed;
  }

  /** Docker labels that mark a container or network as this test bed's, for the watchdog and the sweep. */
  get ownerLabels(): Record<string, string> {
    appendFileSync(join(this.dir, 'docker'), '');
    return { [DOCKER_OWNER_LABEL]: String(process.pid) };
  }

  /** Records a network namespace (before it is made) for the watchdog to delete if we die. */
  recordNetns(name: string): void {
    appendFileSync(join(this.dir, 'netns'), `${name}\n`);
  }

  get processes(): readonly ManagedProcess[] {
    return [...this.#processes];
  }

  /** Stops every process (gracefully, in parallel) and retires the watchdog. */
  async stopAll(graceMs = 1_000): Promise<void> {
    // Test-bed state is disposable, so a short grace keeps teardown quick.
    await Promise.all([...this.#processes].map((p) => p.stop(graceMs)));
    process.off('exit', this.#onExit);
    if (this.#watchdog.exitCode === null) this.#watchdog.kill('SIGKILL');
  }

  /** Synchronous last resort for process exit: nothing async runs any more. */
  killAllNow(): void {
    for (const p of this.#processes) if (p.running) p.child.kill('SIGKILL');
  }
}
