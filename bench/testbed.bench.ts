// Test bed start-up: how long 1 and 4 clusters (etcd + kube-apiserver + CRDs each) plus NATS take
// to be ready with cached binaries, how long teardown takes, and the peak memory of 4 clusters.
// Run: npm run bench -- testbed
import { startTestbed } from '../local/testbed/index.ts';

const RUNS = 3;
const rows: string[][] = [];
for (const clusters of [1, 4]) {
  const ready: number[] = [];
  const teardown: number[] = [];
  let peak = 0;
  for (let run = 0; run < RUNS; run++) {
    const bed = await startTestbed({ clusters });
    ready.push(bed.startupMs);
    peak = Math.max(peak, bed.memory().peak);
    const t0 = performance.now();
    await bed[Symbol.asyncDispose]();
    teardown.push(performance.now() - t0);
  }
  const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;
  rows.push([
    `${clusters} cluster(s) + NATS`,
    `${median(ready)} ms`,
    `${Math.round(median(teardown))} ms`,
    `${Math.round(peak / 2 ** 20)} MiB`,
  ]);
}
const header = ['test bed', 'ready (median of 3)', 'teardown', 'peak RSS (all processes)'];
const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
for (const line of [header, ...rows])
  process.stdout.write(line.map((c, i) => c.padEnd(widths[i] ?? 0)).join('   ') + '\n');
