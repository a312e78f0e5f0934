// Clears what an earlier, killed test bed left: its watchdog normally does this within a second,
// but a machine reboot or a SIGKILLed watchdog can still leave a directory (and in theory a process).
import { existsSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

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

/** Kills processes of test beds whose owner is dead and removes their directories. */
export function reapAbandonedTestbeds(): number {
  if (!existsSync(testbedRoot)) return 0;
  let reaped = 0;
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
  return reaped;
}
