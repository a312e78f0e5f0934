// PKI benchmark (DESIGN §8 "leaf issuance ≤ 5 ms"; §3 "P-256 signs ~30× faster than RSA-2048"):
// leaf issuance and full mTLS handshakes with P-256 and RSA-2048 leaves, side by side.
// Run: npx node bench/pki.bench.ts  (about 30 s).
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { availableParallelism, cpus, loadavg } from 'node:os';
import type { Server, TLSSocket } from 'node:tls';
import {
  ClusterAuthority,
  MtlsCredentials,
  RootAuthority,
  connectMtls,
  createIntermediateRequest,
  createMtlsServer,
  createTrustBundle,
  formatSpiffeId,
  generateKeyPair,
  type KeyAlgorithm,
} from '../common/pki/index.ts';

const TRUST_DOMAIN = 'bench.isthmus';
const ALGORITHMS: readonly KeyAlgorithm[] = ['P-256', 'RSA-2048'];
const ISSUANCE_BUDGET_MS = 4_000;
const HANDSHAKE_BUDGET_MS = 4_000;
const LATENCY_BUDGET_MS = 2_000;
const HANDSHAKE_CONCURRENCY = 8;
const LEAF_ISSUANCE_TARGET_MS = 5;

interface Measurement {
  readonly perSecond: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  /** Process CPU time per operation (all threads): unlike latency, unaffected by other processes. */
  readonly cpuMs: number;
  readonly samples: number;
}

export interface PkiBenchmarkResult {
  readonly issuance: Record<KeyAlgorithm, Measurement>;
  readonly handshakeThroughput: Record<KeyAlgorithm, Measurement>;
  readonly handshakeLatency: Record<KeyAlgorithm, Measurement>;
}

function percentile(sorted: readonly number[], fraction: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * fraction))] ?? Number.NaN;
}

/**
 * Runs each algorithm's operation from `concurrency` loops for `budgetMs` in total, in slices
 * that alternate between the algorithms, so both see the same background load (the ratio is
 * the point of the comparison).
 */
async function measureSideBySide(
  budgetMs: number,
  concurrency: number,
  operations: Record<KeyAlgorithm, () => Promise<void>>,
): Promise<Record<KeyAlgorithm, Measurement>> {
  const sliceMs = 500;
  const runs = ALGORITHMS.map((algorithm) => ({
    algorithm,
    operation: operations[algorithm],
    latencies: [] as number[],
    cpuMicros: 0,
    elapsedMs: 0,
  }));
  for (const run of runs) {
    const warmUpEnd = performance.now() + 300;
    while (performance.now() < warmUpEnd) await run.operation();
  }
  for (let slice = 0; slice < budgetMs / sliceMs; slice++) {
    for (const run of runs) {
      const cpuBefore = process.cpuUsage();
      const start = performance.now();
      const end = start + sliceMs;
      await Promise.all(
        Array.from({ length: concurrency }, async () => {
          while (performance.now() < end) {
            const begun = performance.now();
            await run.operation();
            run.latencies.push(performance.now() - begun);
          }
        }),
      );
      run.elapsedMs += performance.now() - start;
      const cpu = process.cpuUsage(cpuBefore);
      run.cpuMicros += cpu.user + cpu.system;
    }
  }
  const result = {} as Record<KeyAlgorithm, Measurement>;
  for (const run of runs) {
    const latencies = run.latencies.sort((a, b) => a - b);
    result[run.algorithm] = {
      perSecond: latencies.length / (run.elapsedMs / 1000),
      p50Ms: percentile(latencies, 0.5),
      p99Ms: percentile(latencies, 0.99),
      cpuMs: run.cpuMicros / 1000 / latencies.length,
      samples: latencies.length,
    };
  }
  return result;
}

/** The membership epoch of the bench clusters. */
const BENCH_EPOCH = 1;

async function joinCluster(root: RootAuthority, clusterId: string): Promise<ClusterAuthority> {
  const keys = await generateKeyPair('P-256');
  const { certificatePem } = await root.signIntermediate(
    clusterId,
    BENCH_EPOCH,
    await createIntermediateRequest(keys, clusterId),
  );
  return ClusterAuthority.create({
    trustDomain: TRUST_DOMAIN,
    clusterId,
    privateKey: keys.privateKey,
    intermediatePem: certificatePem,
  });
}

/** Resolves when the server has verified us, answered and hung up. */
function awaitServerReply(socket: TLSSocket): Promise<void> {
  return new Promise((resolve, reject) => {
    socket.on('data', () => undefined);
    socket.once('error', reject);
    socket.once('end', () => {
      socket.destroy();
      resolve();
    });
  });
}

export async function runPkiBenchmark(): Promise<PkiBenchmarkResult> {
  const root = await RootAuthority.generate({ trustDomain: TRUST_DOMAIN });
  const [clusterA, clusterB] = await Promise.all([joinCluster(root, 'a'), joinCluster(root, 'b')]);
  const bundle = createTrustBundle({ trustDomain: TRUST_DOMAIN, sequence: 1, roots: [root.certificatePem] });
  const gateway = (clusterId: string): string =>
    formatSpiffeId({ kind: 'gateway', trustDomain: TRUST_DOMAIN, clusterId, name: 'bench' });

  // The leaf key is generated where the leaf is issued, so issuance includes key generation.
  const issue = (keyAlgorithm: KeyAlgorithm) => async (): Promise<void> => {
    await clusterA.issueLeaf(gateway('a'), { keyAlgorithm });
  };
  const issuance = await measureSideBySide(ISSUANCE_BUDGET_MS, 1, {
    'P-256': issue('P-256'),
    'RSA-2048': issue('RSA-2048'),
  });

  // Server in cluster A, client in cluster B, both with leaves of the algorithm under test.
  const servers: Server[] = [];
  const handshakes = {} as Record<KeyAlgorithm, () => Promise<void>>;
  for (const keyAlgorithm of ALGORITHMS) {
    const credentials = async (cluster: ClusterAuthority): Promise<MtlsCredentials> =>
      new MtlsCredentials({
        svid: await cluster.issueLeaf(gateway(cluster.clusterId), { keyAlgorithm }),
        bundle,
        members: new Map([
          ['a', BENCH_EPOCH],
          ['b', BENCH_EPOCH],
        ]),
      });
    const server = createMtlsServer(await credentials(clusterA), (socket) => socket.end('ok'));
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    servers.push(server);
    const port = (server.address() as AddressInfo).port;
    const client = await credentials(clusterB);
    // No session is offered back, so every connection is a full handshake, verified on both sides.
    handshakes[keyAlgorithm] = async () => {
      const { socket } = await connectMtls(client, { host: '127.0.0.1', port });
      await awaitServerReply(socket);
    };
  }
  const handshakeThroughput = await measureSideBySide(HANDSHAKE_BUDGET_MS, HANDSHAKE_CONCURRENCY, handshakes);
  const handshakeLatency = await measureSideBySide(LATENCY_BUDGET_MS, 1, handshakes);
  await Promise.all(servers.map((server) => new Promise<void>((resolve) => server.close(() => resolve()))));
  return { issuance, handshakeThroughput, handshakeLatency };
}

function printTable(result: PkiBenchmarkResult): void {
  const [ec, rsa] = ALGORITHMS as [KeyAlgorithm, KeyAlgorithm];
  const rows: [string, (m: PkiBenchmarkResult) => [number, number], 'higher' | 'lower'][] = [
    ['leaf issuance / s', (m) => [m.issuance[ec].perSecond, m.issuance[rsa].perSecond], 'higher'],
    ['leaf issuance p50 (ms)', (m) => [m.issuance[ec].p50Ms, m.issuance[rsa].p50Ms], 'lower'],
    ['leaf issuance p99 (ms)', (m) => [m.issuance[ec].p99Ms, m.issuance[rsa].p99Ms], 'lower'],
    ['leaf issuance CPU (ms)', (m) => [m.issuance[ec].cpuMs, m.issuance[rsa].cpuMs], 'lower'],
    [
      `mTLS handshakes / s (${HANDSHAKE_CONCURRENCY} in flight)`,
      (m) => [m.handshakeThroughput[ec].perSecond, m.handshakeThroughput[rsa].perSecond],
      'higher',
    ],
    [
      'mTLS handshake p50 (ms, 1 in flight)',
      (m) => [m.handshakeLatency[ec].p50Ms, m.handshakeLatency[rsa].p50Ms],
      'lower',
    ],
    [
      'mTLS handshake p99 (ms, 1 in flight)',
      (m) => [m.handshakeLatency[ec].p99Ms, m.handshakeLatency[rsa].p99Ms],
      'lower',
    ],
    [
      'mTLS handshake CPU, both sides (ms)',
      (m) => [m.handshakeThroughput[ec].cpuMs, m.handshakeThroughput[rsa].cpuMs],
      'lower',
    ],
  ];
  const width = Math.max(...rows.map(([label]) => label.length)) + 2;
  const cell = (text: string): string => text.padStart(12);
  const format = (value: number): string => (value >= 100 ? value.toFixed(0) : value.toFixed(2));
  console.log(`${'metric'.padEnd(width)}${cell(ec)}${cell(rsa)}${cell('P-256 adv.')}`);
  console.log('-'.repeat(width + 36));
  for (const [label, pick, better] of rows) {
    const [ecValue, rsaValue] = pick(result);
    const advantage = better === 'higher' ? ecValue / rsaValue : rsaValue / ecValue;
    console.log(
      `${label.padEnd(width)}${cell(format(ecValue))}${cell(format(rsaValue))}${cell(`${advantage.toFixed(1)}×`)}`,
    );
  }
  const verdict = (ms: number): string => `${format(ms)} ms (${ms <= LEAF_ISSUANCE_TARGET_MS ? 'met' : 'missed'})`;
  console.log(
    `\nDESIGN §8 target, P-256 leaf issuance ≤ ${LEAF_ISSUANCE_TARGET_MS} ms: p50 ${verdict(result.issuance[ec].p50Ms)}, p99 ${verdict(result.issuance[ec].p99Ms)}`,
  );
  console.log(
    `samples: issuance ${result.issuance[ec].samples}/${result.issuance[rsa].samples}, handshakes ${result.handshakeThroughput[ec].samples}/${result.handshakeThroughput[rsa].samples}`,
  );
}

if (import.meta.main) {
  console.log(
    `Isthmus PKI benchmark — Node ${process.version}, ${availableParallelism()} × ${cpus()[0]?.model ?? 'unknown CPU'}`,
  );
  console.log(
    `client and server share this process over loopback; load average at start ${loadavg()[0]?.toFixed(2)}\n`,
  );
  printTable(await runPkiBenchmark());
}
