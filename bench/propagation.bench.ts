// Catalog propagation (DESIGN §8): a ServiceExport created in cluster A until the ServiceImport
// and A's EndpointSlice exist in every other cluster, over ≥200 exports on 3 local clusters with
// the real hub, agents and NATS. Target p50 ≤ 100 ms, p99 ≤ 300 ms; Istio debounces 100 ms
// before it even pushes, and production p90 of 1.5–4.5 s has been reported.
// Run: npm run bench -- propagation
import type { KubernetesObject, V1EndpointSlice } from '@kubernetes/client-node';
import {
  LABEL_SERVICE_NAME,
  LABEL_SOURCE_CLUSTER,
  MCS_GROUP,
  MCS_VERSION,
  SERVICE_IMPORT_KIND,
  SERVICE_IMPORT_PLURAL,
} from '../common/api/index.ts';
import { Informer, customResource, ensureNamespace, kinds } from '../common/kube/index.ts';
import { createBackend, createServiceExport } from '../local/exports.ts';
import { Federation } from '../local/federation/index.ts';
import { Kvm } from '@nats-io/kv';
import { CATALOG_BUCKET } from '../common/catalog.ts';
import { waitFor, type LocalCluster } from '../local/testbed/index.ts';

const CHANGES = Number(process.env.ISTHMUS_BENCH_CHANGES ?? 200);
const NS = 'bench';
const serviceImports = customResource({
  group: MCS_GROUP,
  version: MCS_VERSION,
  kind: SERVICE_IMPORT_KIND,
  plural: SERVICE_IMPORT_PLURAL,
  namespaced: true,
});

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? NaN;
}

await using fed = await Federation.start({ members: 3, heartbeatInterval: '2s' });
const [a, ...others] = fed.members as [LocalCluster, ...LocalCluster[]];
const token = await fed.createToken(['--usages', '3']);
for (const m of fed.members) {
  await ensureNamespace(m.kubeConfig(), NS);
  const joined = await fed.join(m.name, token);
  if (joined.code !== 0) throw new Error(`${m.name}: ${joined.stderr}`);
}

// First sighting of "<cluster>/<kind>/<service>" in the importing clusters.
const seen = new Map<string, number>();
const watchers: Informer<KubernetesObject>[] = [];
for (const cluster of others) {
  const kc = cluster.kubeConfig();
  const record =
    (kind: string) =>
    (_type: string, object: KubernetesObject): void => {
      const name =
        kind === 'slice' ? (object as V1EndpointSlice).metadata?.labels?.[LABEL_SERVICE_NAME] : object.metadata?.name;
      const key = `${cluster.name}/${kind}/${name ?? ''}`;
      if (!seen.has(key)) seen.set(key, performance.now());
    };
  watchers.push(
    new Informer<KubernetesObject>({
      kubeConfig: kc,
      resource: serviceImports,
      namespace: NS,
      onEvent: record('import'),
    }),
    new Informer<KubernetesObject>({
      kubeConfig: kc,
      resource: kinds.endpointSlices,
      namespace: NS,
      labelSelector: `${LABEL_SOURCE_CLUSTER}=${a.name}`,
      onEvent: record('slice'),
    }),
  );
}
for (const w of watchers) w.start();
await Promise.all(watchers.map((w) => w.synced()));

// When each catalog entry reached NATS KV, to split the figure into its two halves.
const nc = await fed.bed.nats!.connect('propagation-bench');
const catalog = await new Kvm(nc).open(CATALOG_BUCKET).catch(async () => {
  await new Promise((r) => setTimeout(r, 2_000));
  return new Kvm(nc).open(CATALOG_BUCKET);
});
const inCatalog = new Map<string, number>();
const catalogWatch = await catalog.watch({ include: 'updates' as never });
void (async () => {
  for await (const e of catalogWatch) if (!inCatalog.has(e.key)) inCatalog.set(e.key, performance.now());
})();

const latencies: number[] = [];
const created: number[] = [];
const toCatalog: number[] = [];
const kcA = a.kubeConfig();
const started = performance.now();
for (let i = 0; i < CHANGES; i++) {
  const name = `svc-${i}`;
  await createBackend(kcA, {
    namespace: NS,
    name,
    ports: [{ name: 'http', port: 8000 + (i % 1000) }],
    endpoints: [{ ip: '198.51.100.20', zone: 'eu-west-1a' }],
  });
  // The export is the ServiceExport: the clock starts when it is sent.
  const t0 = performance.now();
  await createServiceExport(kcA, NS, name);
  const t1 = performance.now();
  created.push(t1 - t0);
  const keys = others.flatMap((c) => [`${c.name}/import/${name}`, `${c.name}/slice/${name}`]);
  await waitFor(`${name} imported everywhere`, () => Promise.resolve(keys.every((k) => seen.has(k))), 30_000, 1);
  latencies.push(Math.max(...keys.map((k) => seen.get(k) as number)) - t0);
  toCatalog.push((inCatalog.get(`${NS}.${name}`) ?? NaN) - t1);
}
catalogWatch.stop();
await nc.close();
const wall = performance.now() - started;
for (const w of watchers) await w.stop();

const sorted = [...latencies].sort((x, y) => x - y);
const median = (xs: number[]): number =>
  percentile(
    [...xs].sort((x, y) => x - y),
    50,
  );
const p50 = percentile(sorted, 50);
const p99 = percentile(sorted, 99);
const rows = [
  ['changes', String(CHANGES), '≥ 200', ''],
  ['p50 export→import (ms)', p50.toFixed(1), '≤ 100', `Istio waits 100 ms (debounce) before it starts pushing`],
  ['  of which: POST export', median(created).toFixed(1), '', 'the ServiceExport create call in A, median'],
  ['  ServiceExport → KV', median(toCatalog).toFixed(1), '', 'agent debounce + ReportExports + hub publish, median'],
  [
    'p90 (ms)',
    percentile(sorted, 90).toFixed(1),
    '',
    `Istio production p90 1,500–4,500 ms: ${(1500 / percentile(sorted, 90)).toFixed(0)}–${(4500 / percentile(sorted, 90)).toFixed(0)}× faster`,
  ],
  ['p99 (ms)', p99.toFixed(1), '≤ 300', p99 <= 300 ? 'met' : 'missed'],
  ['max (ms)', (sorted.at(-1) ?? NaN).toFixed(1), '', ''],
  ['wall time (s)', (wall / 1000).toFixed(1), '', 'includes creating each Service and EndpointSlice before its export'],
];
process.stdout.write(
  `Catalog propagation: ServiceExport in ${a.name} → ServiceImport + EndpointSlice in ${others.map((c) => c.name).join(' and ')}\n\n`,
);
const widths = [26, 10, 8];
for (const r of [['metric', 'Isthmus', 'target', 'vs peer'], ...rows])
  process.stdout.write(r.map((c, i) => (i < 3 ? c.padEnd(widths[i] ?? 0) : c)).join('  ') + '\n');
