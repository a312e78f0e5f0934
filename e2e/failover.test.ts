// Locality-aware failover end to end (DESIGN §6, issue "failover"): three members in two regions
// (A and B in eu-west, C in us-east), each in its own network namespace with a gateway; clients
// in A dial the clusterset endpoint. Backends die, clusters are blackholed, recover; traffic
// moves by locality with zero failed client connections and comes back; weights and graded
// spill-over split traffic as the policy says; a member that goes silent has its endpoints marked
// not ready everywhere within the staleness bound, and ready again once it is back.
import { DiscoveryV1Api } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LABEL_SERVICE_NAME, LABEL_SOURCE_CLUSTER } from '../common/api/mcs.ts';
import { ensureNamespace } from '../common/kube/index.ts';
import { Federation } from '../local/federation/index.ts';
import {
  applyFailoverPolicy,
  clustersetEndpoint,
  connect,
  exportWithBackends,
  killBackends,
  metric,
  reviveBackends,
  routeShares,
  timeline,
  type Timeline,
} from './gateway/scenario.ts';
import { netnsAvailable, waitFor, type LocalCluster } from '../local/testbed/index.ts';

const NS = 'shop';
const available = await netnsAvailable();
if (!available.ok) console.info(`failover e2e skipped: ${available.reason}`);

/** Served counts per backend id prefix ("<service>-a" → cluster A), failures apart. */
function byCluster(served: Record<string, number>): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const [id, n] of Object.entries(served)) {
    const cluster = id.split('-').at(-1)?.[0] ?? '?';
    counts[cluster] = (counts[cluster] ?? 0) + n;
  }
  return counts;
}

function clusterOf(outcome: string): string {
  return outcome.startsWith('!') ? 'failed' : (outcome.split('-').at(-1)?.[0] ?? '?');
}

function failures(t: Timeline): string[] {
  return t.connections.filter(([, outcome]) => outcome.startsWith('!')).map(([, outcome]) => outcome);
}

describe.skipIf(!available.ok)('locality-aware failover', () => {
  let fed: Federation;
  let a: LocalCluster;
  let b: LocalCluster;
  let c: LocalCluster;

  beforeAll(async () => {
    fed = await Federation.start({ members: 3, heartbeatInterval: '1s', gateways: true, staleAfter: '4s' });
    [a, b, c] = fed.members as [LocalCluster, LocalCluster, LocalCluster];
    await ensureNamespace(fed.hubCluster.kubeConfig(), NS);
    await fed.joinAll(NS);
    await Promise.all(fed.members.map((m) => fed.gatewayReady(m.name)));
  });
  afterAll(async () => {
    await fed?.[Symbol.asyncDispose]();
  });

  it('moves from A to B to C as backends die and a gateway is blackholed, with zero failed connections, and fails back', async () => {
    const name = 'cart';
    // Regions first (A, B in eu-west before C in us-east); a short failback delay for the test.
    await applyFailoverPolicy(fed, NS, name, {
      service: name,
      localityPriority: ['region', 'zone', 'cluster'],
      failback: { enabled: true, delay: '1s' },
    });
    const backendsA = await exportWithBackends(fed, a, NS, name, ['cart-a1', 'cart-a2']);
    const backendsB = await exportWithBackends(fed, b, NS, name, ['cart-b1', 'cart-b2']);
    await exportWithBackends(fed, c, NS, name, ['cart-c1']);
    const vip = await clustersetEndpoint(a, NS, name);
    await waitFor(
      'A imports from all three, under the policy',
      async () => {
        const routes = await routeShares(fed, a, NS, name);
        return routes.shares.has(c.name) && routes.policy !== '';
      },
      30_000,
      250,
    );

    // 1. A client in A is served by A.
    expect(byCluster((await connect(fed, a, vip, 20)).served)).toEqual({ a: 20 });

    // 2. A's backends die → B serves, nothing fails.
    await killBackends(backendsA);
    const afterA = await connect(fed, a, vip, 40);
    expect(afterA.failed).toBe(0);
    expect(byCluster(afterA.served)).toEqual({ b: 40 });

    // 3. B's backends die too → C (the other region) serves, nothing fails.
    await killBackends(backendsB);
    const afterB = await connect(fed, a, vip, 40);
    expect(afterB.failed).toBe(0);
    expect(byCluster(afterB.served)).toEqual({ c: 40 });

    // 4. B recovers, then its gateway is blackholed (connections hang): new connections leave B within 1 s.
    await reviveBackends(fed, b, backendsB);
    await waitFor(
      'B serves again',
      async () => byCluster((await connect(fed, a, vip, 5)).served)['b'] === 5,
      30_000,
      500,
    );
    const outboundToB = async (): Promise<number> =>
      metric(await fed.gatewayMetrics(a.name), 'isthmus_gateway_connections_total', {
        direction: 'outbound',
        service: name,
        destination_cluster: b.name,
        result: 'connected',
      });
    const before = await outboundToB();
    // A connection caught mid-way by the blackhole hangs (its packets are dropped): 5 s ends it.
    const watching = timeline(fed, a, vip, 15, 5_000);
    // The client is under way (B has taken some of its connections) before the blackhole.
    await waitFor('the client reaches B', async () => (await outboundToB()) >= before + 5, 20_000, 100);
    const blackholing = Date.now();
    const fault = await fed.lab?.blackhole(b.name);
    const blackholedAt = Date.now();
    let t: Timeline;
    try {
      t = await watching;
    } finally {
      await fault?.heal();
    }
    // Only the one connection in flight when the rule went in may fail (hang).
    const caught = ([start, , duration]: [number, string, number]): boolean =>
      t.startedAt + start < blackholedAt && t.startedAt + start + duration > blackholing;
    const unexpected = t.connections.filter((c) => !caught(c) && c[1].startsWith('!'));
    if (unexpected.length > 0) {
      const log = (fed.gateway(a.name)?.logTail(400) ?? '')
        .split('\n')
        .filter((line) => !line.includes('"access":true'))
        .slice(-40)
        .join('\n');
      throw new Error(
        `failed after the blackhole (at +${blackholedAt - t.startedAt} ms): ${JSON.stringify(unexpected)}\ngateway A:\n${log}`,
      );
    }
    expect(failures(t).length).toBeLessThanOrEqual(1);
    const settled = t.connections.filter(([start]) => t.startedAt + start >= blackholedAt + 1_000);
    expect(settled.length).toBeGreaterThan(0);
    expect(new Set(settled.map(([, outcome]) => clusterOf(outcome)))).toEqual(new Set(['c']));

    // 5. A recovers → traffic returns to A within 5 s.
    await reviveBackends(fed, a, backendsA);
    const recoveredAt = Date.now();
    const back = await timeline(fed, a, vip, 7);
    expect(failures(back).join('; ')).toBe('');
    const firstAtA = back.connections.find(([, outcome]) => clusterOf(outcome) === 'a');
    expect(firstAtA).toBeDefined();
    const [start] = firstAtA as [number, string, number];
    expect(back.startedAt + start - recoveredAt).toBeLessThan(5_000);
    const afterReturn = back.connections.filter(([s]) => s >= start);
    expect(afterReturn.every(([, outcome]) => clusterOf(outcome) === 'a')).toBe(true);
  }, 300_000);

  it("splits by the policy's weights within a level: 90/10 across B and C over 2,000 connections", async () => {
    const name = 'canary';
    await applyFailoverPolicy(fed, NS, name, {
      service: name,
      localityPriority: ['network'],
      weights: [
        { cluster: b.name, weight: 90 },
        { cluster: c.name, weight: 10 },
      ],
    });
    await exportWithBackends(fed, b, NS, name, ['canary-b1']);
    await exportWithBackends(fed, c, NS, name, ['canary-c1']);
    const vip = await clustersetEndpoint(a, NS, name);
    await waitFor(
      'the policy is in force at A',
      async () => (await routeShares(fed, a, NS, name)).shares.get(b.name) === 0.9,
      30_000,
      250,
    );
    const report = await connect(fed, a, vip, 2_000);
    expect(report.failed).toBe(0);
    const shares = byCluster(report.served);
    expect((shares['b'] ?? 0) / 2_000).toBeGreaterThan(0.85);
    expect((shares['b'] ?? 0) / 2_000).toBeLessThan(0.95);
    expect((shares['c'] ?? 0) / 2_000).toBeGreaterThan(0.05);
    expect((shares['c'] ?? 0) / 2_000).toBeLessThan(0.15);
  }, 300_000);

  it('spills over gradually: with 4 of 10 endpoints of A healthy, A takes about 57 %', async () => {
    const name = 'graded';
    await exportWithBackends(fed, a, NS, name, ['graded-a1', 'graded-a2', 'graded-a3', 'graded-a4'], { notReady: 6 });
    await exportWithBackends(fed, b, NS, name, ['graded-b1']);
    const vip = await clustersetEndpoint(a, NS, name);
    await waitFor(
      'A imports from B too',
      async () => (await routeShares(fed, a, NS, name)).shares.has(b.name),
      30_000,
      250,
    );
    const report = await connect(fed, a, vip, 1_000);
    expect(report.failed).toBe(0);
    const atA = (byCluster(report.served)['a'] ?? 0) / 1_000;
    expect(atA).toBeGreaterThan(4 / 7 - 0.05);
    expect(atA).toBeLessThan(4 / 7 + 0.05);
  }, 300_000);

  // Last: it stops C's agent and gateway.
  it("marks a silent member's endpoints not ready everywhere within the staleness bound, and ready again when it returns", async () => {
    const name = 'ledger';
    await exportWithBackends(fed, c, NS, name, ['ledger-c1']);
    const readyInSliceOf = async (cluster: LocalCluster): Promise<boolean | undefined> => {
      const slices = await cluster
        .kubeConfig()
        .makeApiClient(DiscoveryV1Api)
        .listNamespacedEndpointSlice({
          namespace: NS,
          labelSelector: `${LABEL_SERVICE_NAME}=${name},${LABEL_SOURCE_CLUSTER}=${c.name}`,
        });
      return slices.items[0]?.endpoints?.[0]?.conditions?.ready;
    };
    for (const cluster of [a, b])
      await waitFor(
        `${cluster.name} has C's endpoint ready`,
        async () => (await readyInSliceOf(cluster)) === true,
        30_000,
        250,
      );
    await fed.stopAgent(c.name, 'SIGKILL');
    await fed.stopGateway(c.name, 'SIGKILL');
    const silentAt = Date.now();
    // Unknown after 3 missed 1 s heartbeats, then the 4 s bound: well within 20 s.
    for (const cluster of [a, b])
      await waitFor(
        `${cluster.name} marks C's endpoint not ready`,
        async () => (await readyInSliceOf(cluster)) === false,
        20_000,
        250,
      );
    expect(Date.now() - silentAt).toBeGreaterThan(4_000);
    await fed.startAgent(c.name);
    await fed.startGateway(c.name);
    for (const cluster of [a, b])
      await waitFor(
        `${cluster.name} has C's endpoint ready again`,
        async () => (await readyInSliceOf(cluster)) === true,
        30_000,
        250,
      );
  }, 300_000);
});
