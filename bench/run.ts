// `npm run bench [-- name ... [--flag value ...]]`: runs the benchmarks in bench/*.bench.ts one
// after another (each in its own process, so one's memory and JIT state does not colour the next)
// and prints their tables; everything from the first flag on goes to each benchmark (e.g.
// `npm run bench -- catalog-scale --clusters 50`). Benchmarks hold the speed and memory targets
// of DESIGN §8; tests never time things.
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const dir = fileURLToPath(new URL('.', import.meta.url));
const args = process.argv.slice(2);
const firstFlag = args.findIndex((a) => a.startsWith('-'));
const wanted = firstFlag < 0 ? args : args.slice(0, firstFlag);
const flags = firstFlag < 0 ? [] : args.slice(firstFlag);
const benches = readdirSync(dir)
  .filter((f) => f.endsWith('.bench.ts'))
  .filter((f) => wanted.length === 0 || wanted.some((w) => f.startsWith(w)))
  .sort();
if (benches.length === 0) {
  process.stderr.write(
    `no benchmark matches ${wanted.join(', ')}; available: ${readdirSync(dir)
      .filter((f) => f.endsWith('.bench.ts'))
      .join(', ')}\n`,
  );
  process.exit(2);
}
let failed = 0;
for (const bench of benches) {
  process.stdout.write(`\n=== ${bench}\n`);
  const result = spawnSync(process.execPath, [`${dir}${bench}`, ...flags], {
    stdio: 'inherit',
    env: { ...process.env, ISTHMUS_LOG_LEVEL: process.env.ISTHMUS_LOG_LEVEL ?? 'warn' },
  });
  if (result.status !== 0) failed++;
}
process.exit(failed > 0 ? 1 : 0);
