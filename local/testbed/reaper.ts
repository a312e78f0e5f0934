// Clears what an earlier, killed test bed left: its watchdog normally does this within a second,
// but a machine reboot or a SIGKILLed watchdog can still leave a directory, a network namespace
// (`isth-<owner pid>-…`), Docker containers and networks labelled with a dead owner, or in theory a
// process.
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DOCKER_OWNER_LABEL } from './processes.ts';

export const testbedRoot = join(tmpdir(), 'isthmus-testbed');

/** Whether a process with this pid exists. */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Deletes network namespaces named `isth-<pid>-…` whose owner pid is dead; returns how many. */
export function reapAbandonedNetns(): number {
  let listing = '';
  try {
    listing = execFileSync('ip', ['netns', 'list'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  } catch {
    return 0; // no `ip` (or no permission): nothing of ours can exist
  }
  let reaped = 0;
  for (const line of listing.split('\n')) {
    const name = line.split(' ')[0] ?? '';
    const owner = Number(/^isth-(\d+)-/.exec(name)?.[1] ?? NaN);
    if (!Number.isFinite(owner) || alive(owner)) continue;
    try {
      execFileSync('ip', ['netns', 'del', name], { stdio: 'ignore' });
      reaped++;
    } catch {
      // already gone
    }
  }
  return reaped;
}

/** Kills processes of test beds whose owner is dead, removes their directories and network namespaces. */
export function reapAbandonedTestbeds(): number {
  let reaped = 0;
  if (!existsSync(testbedRoot)) return reapAbandonedNetns() + reapAbandonedContainers();
  for (const entry of readdirSync(testbedRoot)) {
    const dir = join(testbedRoot, entry);
    const owner = Number(/^tb-(\d+)-/.exec(entry)?.[1] ?? NaN);
    if (Number.isFinite(owner) && alive(owner)) continue;
    let pids: number[] = [];
    try {
      pids = readFileSync(join(dir, 'pids'), 'utf8').split('\n').filter(Boolean).map(Number);
    } catch {
      // no pid file: nothing was started
    }
    for (const pid of pids) {
      // Only kill a pid that still belongs to this test bed (pids are reused).
      let cmdline = '';
      try {
        cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
      } catch {
        continue;
      }
      if (cmdline.includes(dir)) process.kill(pid, 'SIGKILL');
    }
    rmSync(dir, { recursive: true, force: true });
    reaped++;
  }
  // After the processes: a namespace lives on (unnamed) while a process is still inside it.
  return reaped + reapAbandonedNetns() + reapAbandonedContainers();
}

/** Removes Docker containers and networks whose owner (DOCKER_OWNER_LABEL) is dead; returns how many. */
export function reapAbandonedContainers(): number {
  const docker = (args: string[]): string[] => {
    try {
      return execFileSync('docker', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] })
        .split('\n')
        .filter(Boolean);
    } catch {
      return []; // no engine (or no client): nothing of ours can exist
    }
  };
  const format = `{{.ID}} {{.Label "${DOCKER_OWNER_LABEL}"}}`;
  const abandoned = (lines: string[]): string[] =>
    lines
      .map((line) => line.split(' '))
      .filter(([, owner]) => owner && !alive(Number(owner)))
      .map(([id]) => id as string);
  const containers = abandoned(docker(['ps', '-a', '--filter', `label=${DOCKER_OWNER_LABEL}`, '--format', format]));
  if (containers.length > 0) docker(['rm', '-f', ...containers]);
  // After the containers: a network with endpoints cannot be removed.
  const networks = abandoned(docker(['network', 'ls', '--filter', `label=${DOCKER_OWNER_LABEL}`, '--format', format]));
  if (networks.length > 0) docker(['network', 'rm', ...networks]);
  return containers.length + networks.length;
}
