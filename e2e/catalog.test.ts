// The service catalog end to end on three local clusters: MCS ServiceExport in one cluster →
// hub → NATS KV → ServiceImport and EndpointSlices in every cluster, with conflicts, invalid
// exports, unexport, a 30 s outage of the hub and NATS that must delete nothing, a catalog key
// deleted behind the hub's back and a catalog bucket wiped: neither may touch a single import.
import { Kvm, type KV } from '@nats-io/kv';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CATALOG_BUCKET } from '../common/catalog.ts';
import { readFrom } from '../spoke-agent/imports/bucket-reader.ts';
import { findCondition } from '../common/api/conditions.ts';
import {
  exportService,
  importedSlices,
  readServiceExport,
  readServiceImport,
  unexportService,
} from '../local/exports.ts';
import { agentCredentialsOf, connectAsAgent } from './agent-identity.ts';
import { Federation } from '../local/federation/index.ts';
import { waitFor, type LocalCluster } from '../local/testbed/index.ts';

const NS = 'shop';

describe('service catalog', () => {
  let fed: Federation;
  let a: LocalCluster;
  let b: LocalCluster;
  let c: LocalCluster;

  beforeAll(async () => {
    fed = await Federation.start({ members: 3, heartbeatInterval: '1s' });
    [a, b, c] = fed.members as [LocalCluster, LocalCluster, LocalCluster];
    await fed.joinAll(NS);
  });
  afterAll(async () => {
    await fed?.[Symbol.asyncDispose]();
  });

  async function conditionOf(
    cluster: LocalCluster,
    name: string,
    type: string,
  ): Promise<{ status: string; reason: string; message: string } | undefined> {
    return findCondition((await readServiceExport(cluster.kubeConfig(), NS, name)).status?.conditions, type);
  }

  it('imports an export of cluster A into A, B and C with the right fields', async () => {
    await exportService(a.kubeConfig(), {
      namespace: NS,
      name: 'cart',
      ports: [{ name: 'http', port: 8080 }],
      endpoints: [{ ip: '198.51.100.10', zone: 'eu-west-1a' }],
    });
    for (const cluster of [a, b, c]) {
      // The status (clusters) is written after the spec: wait for both.
      await waitFor(
        `${cluster.name}: cart imported`,
        async () =>
          (await readServiceImport(cluster.kubeConfig(), NS, 'cart'))?.status?.clusters !== undefined &&
          (await importedSlices(cluster.kubeConfig(), NS, 'cart')).has('cluster-a'),
        20_000,
      );
      const imported = await readServiceImport(cluster.kubeConfig(), NS, 'cart');
      expect(imported?.spec).toMatchObject({
        type: 'ClusterSetIP',
        ports: [expect.objectContaining({ name: 'http', port: 8080, protocol: 'TCP' })],
      });
      expect(imported?.status?.clusters).toEqual([{ cluster: 'cluster-a' }]);
    }
    const slice = (await importedSlices(b.kubeConfig(), NS, 'cart')).get('cluster-a');
    expect(slice?.metadata?.labels).toMatchObject({
      'multicluster.kubernetes.io/service-name': 'cart',
      'multicluster.kubernetes.io/source-cluster': 'cluster-a',
      'endpointslice.kubernetes.io/managed-by': 'agent.isthmus.dev',
    });
    // No gateway runs here, so the slice has no endpoint (the local gateway's listener would be
    // named); where cluster A's gateway is travels in an annotation, with A's locality.
    expect(slice?.endpoints ?? []).toEqual([]);
    expect(JSON.parse(slice?.metadata?.annotations?.['isthmus.dev/gateway-addresses'] ?? '[]')).toEqual([
      { address: '192.0.2.10', port: 15443 },
    ]);
    expect(JSON.parse(slice?.metadata?.annotations?.['isthmus.dev/locality'] ?? '{}')).toMatchObject({
      zone: 'eu-west-1a',
    });
    await waitFor('cart export Ready', async () => (await conditionOf(a, 'cart', 'Ready'))?.status === 'True', 10_000);
    expect(await conditionOf(a, 'cart', 'Valid')).toMatchObject({ status: 'True', reason: 'Valid' });
    expect(await conditionOf(a, 'cart', 'Ready')).toMatchObject({ status: 'True', reason: 'Exported' });
    expect(await conditionOf(a, 'cart', 'Conflict')).toMatchObject({ status: 'False', reason: 'NoConflicts' });
    // The real agent's /metrics carries the importer's figures.
    const metrics = await fed.agentMetrics('cluster-b');
    expect(metrics).toMatch(/^isthmus_agent_catalog_synced\{[^}]*\} 1$/m);
    expect(Number(/^isthmus_agent_catalog_entries\{[^}]*\} (\d+)$/m.exec(metrics)?.[1])).toBeGreaterThanOrEqual(1);
    expect(Number(/^isthmus_agent_import_writes_total\{[^}]*\} (\d+)$/m.exec(metrics)?.[1])).toBeGreaterThanOrEqual(1);
  });

  it("reports a port conflict on both exports, and the older export's port wins", async () => {
    await exportService(a.kubeConfig(), { namespace: NS, name: 'basket', ports: [{ name: 'http', port: 8080 }] });
    await importedEverywhere('basket'); // A's export is the older one
    await exportService(b.kubeConfig(), {
      namespace: NS,
      name: 'basket',
      ports: [{ name: 'http', port: 9090 }],
      endpoints: [{ ip: '198.51.100.11', zone: 'eu-west-1b' }],
    });
    for (const cluster of [a, b]) {
      await waitFor(
        `${cluster.name}: Conflict=True`,
        async () => (await conditionOf(cluster, 'basket', 'Conflict'))?.status === 'True',
        20_000,
      );
      expect(await conditionOf(cluster, 'basket', 'Conflict')).toMatchObject({
        status: 'True',
        reason: expect.stringContaining('PortConflict') as string,
      });
    }
    await waitFor(
      'C imports from both',
      async () => (await readServiceImport(c.kubeConfig(), NS, 'basket'))?.status?.clusters?.length === 2,
      20_000,
    );
    const imported = await readServiceImport(c.kubeConfig(), NS, 'basket');
    expect(imported?.spec?.ports.map((p) => p.port)).toEqual([8080]);
    expect((await importedSlices(c.kubeConfig(), NS, 'basket')).has('cluster-b')).toBe(true);
  });

  it('lets agents read the catalog from NATS but never write it', async () => {
    await exportService(a.kubeConfig(), { namespace: NS, name: 'shelf', ports: [{ name: 'http', port: 80 }] });
    await importedEverywhere('shelf');
    const nc = await connectAsAgent(a.name, await agentCredentialsOf(a.kubeConfig(), a.name));
    try {
      // Agents read with batch direct get through their account's imports (no JetStream of their own).
      const values = new Map<string, unknown>();
      await readFrom(nc, CATALOG_BUCKET, 1, (m) =>
        values.set(m.key, m.operation === 'PUT' ? JSON.parse(new TextDecoder().decode(m.value)) : undefined),
      );
      expect(values.get(`${NS}.shelf`)).toMatchObject({ namespace: NS, name: 'shelf' });
      await expect(new Kvm(nc).open(CATALOG_BUCKET).then((kv) => kv.put(`${NS}.forged`, '{}'))).rejects.toThrow();
      await expect(new Kvm(nc).create('isthmus_forged')).rejects.toThrow();
    } finally {
      await nc.close().catch(() => undefined);
    }
  });

  it('refuses an ExternalName export and imports nothing for it', async () => {
    await exportService(a.kubeConfig(), { namespace: NS, name: 'legacy', ports: [], type: 'ExternalName' });
    await waitFor(
      'legacy Valid=False',
      async () => (await conditionOf(a, 'legacy', 'Valid'))?.status === 'False',
      20_000,
    );
    expect(await conditionOf(a, 'legacy', 'Valid')).toMatchObject({ status: 'False', reason: 'InvalidServiceType' });
    // The exporter reports legacy's cluster in full after the refusal: once a later export is
    // imported everywhere, anything of legacy would have been too.
    await agentsCaughtUp('after-legacy');
    for (const cluster of [a, b, c])
      expect(await readServiceImport(cluster.kubeConfig(), NS, 'legacy')).toBeUndefined();
  });

  it('removes the imports everywhere once the service is unexported', async () => {
    for (const cluster of [a, b])
      await exportService(cluster.kubeConfig(), {
        namespace: NS,
        name: 'wishlist',
        ports: [{ name: 'http', port: 80 }],
      });
    await importedEverywhere('wishlist');
    await unexportService(a.kubeConfig(), NS, 'wishlist');
    await unexportService(b.kubeConfig(), NS, 'wishlist');
    for (const cluster of [a, b, c]) {
      await waitFor(
        `${cluster.name}: wishlist gone`,
        async () =>
          (await readServiceImport(cluster.kubeConfig(), NS, 'wishlist')) === undefined &&
          (await importedSlices(cluster.kubeConfig(), NS, 'wishlist')).size === 0,
        20_000,
      );
    }
  });

  /** Each cluster's ServiceImport of `name`: its uid and its IPs (the VIP). */
  async function importIdentities(name: string): Promise<string[]> {
    return Promise.all(
      [a, b, c].map(async (cluster) => {
        const imported = await readServiceImport(cluster.kubeConfig(), NS, name);
        return `${cluster.name}: ${imported?.metadata.uid} ${JSON.stringify(imported?.spec?.ips)}`;
      }),
    );
  }

  async function importedEverywhere(name: string): Promise<void> {
    for (const cluster of [a, b, c]) {
      await waitFor(
        `${cluster.name}: ${name} imported with an IP`,
        async () => ((await readServiceImport(cluster.kubeConfig(), NS, name))?.spec?.ips?.length ?? 0) > 0,
        20_000,
      );
    }
  }

  /**
   * Agents apply the catalog in revision order: once an export made now is imported everywhere,
   * every agent has processed whatever the bucket saw before it.
   */
  async function agentsCaughtUp(barrier: string): Promise<void> {
    await exportService(a.kubeConfig(), { namespace: NS, name: barrier, ports: [{ name: 'http', port: 80 }] });
    await importedEverywhere(barrier);
  }

  /** The catalog bucket through a connection with every permission (what an operator's mistake would use). */
  async function withAdminKv<T>(body: (kv: KV) => Promise<T>): Promise<T> {
    const nc = await fed.bed.nats!.connect('catalog-test-admin');
    try {
      return await body(await new Kvm(nc).open(CATALOG_BUCKET));
    } finally {
      await nc.close();
    }
  }

  it("keeps every import with its VIP when a catalog key is deleted behind the hub's back, and the hub writes the key back", async () => {
    await exportService(a.kubeConfig(), { namespace: NS, name: 'ledger', ports: [{ name: 'http', port: 8081 }] });
    await importedEverywhere('ledger');
    const before = await importIdentities('ledger');
    await withAdminKv(async (kv) => {
      const entry = (await kv.get(`${NS}.ledger`))?.string();
      await kv.delete(`${NS}.ledger`);
      await waitFor(
        'the hub wrote the key back',
        async () => (await kv.get(`${NS}.ledger`))?.string() === entry,
        10_000,
        50,
      );
    });
    await agentsCaughtUp('after-delete');
    expect(await importIdentities('ledger')).toEqual(before);
  });

  it('converges back after the catalog bucket is wiped and the hub restarted, with nothing recreated', async () => {
    await exportService(a.kubeConfig(), { namespace: NS, name: 'journal', ports: [{ name: 'http', port: 8082 }] });
    await importedEverywhere('journal');
    const before = await importIdentities('journal');
    for (const hub of fed.hubs) await fed.stopHub(hub.name);
    await withAdminKv((kv) => kv.destroy());
    for (const hub of fed.hubs) await fed.startHub(hub.name);
    const restarted = performance.now();
    // The hub asks every agent for its export set: the entry comes back as it was.
    const journalStored = (): Promise<boolean> =>
      withAdminKv(async (kv) => (await kv.get(`${NS}.journal`))?.operation === 'PUT').catch(() => false); // no bucket yet
    await waitFor('journal back in the catalog', journalStored, 20_000, 200);
    console.log(
      `journal back in the wiped catalog ${Math.round(performance.now() - restarted)} ms after the hub was ready again`,
    );
    await agentsCaughtUp('after-wipe');
    expect(await importIdentities('journal')).toEqual(before);
  });

  it('deletes nothing while the hub and NATS are down for 30 s, and converges after', async () => {
    await exportService(a.kubeConfig(), { namespace: NS, name: 'orders', ports: [{ name: 'grpc', port: 7000 }] });
    const uids = new Map<string, string | undefined>();
    for (const cluster of [b, c]) {
      await waitFor(
        `${cluster.name}: orders imported`,
        async () => (await readServiceImport(cluster.kubeConfig(), NS, 'orders')) !== undefined,
        20_000,
      );
      uids.set(cluster.name, (await readServiceImport(cluster.kubeConfig(), NS, 'orders'))?.metadata.uid);
    }
    for (const hub of fed.hubs) await fed.stopHub(hub.name);
    await fed.bed.nats!.stop();
    const outageStart = Date.now();
    // Changed during the outage: a new export, which must arrive once the control plane is back.
    await exportService(a.kubeConfig(), { namespace: NS, name: 'payments', ports: [{ name: 'https', port: 8443 }] });
    while (Date.now() - outageStart < 30_000) {
      for (const cluster of [b, c]) {
        expect(
          (await readServiceImport(cluster.kubeConfig(), NS, 'orders'))?.metadata.uid,
          `${cluster.name} keeps orders`,
        ).toBe(uids.get(cluster.name));
        expect((await importedSlices(cluster.kubeConfig(), NS, 'orders')).has('cluster-a')).toBe(true);
      }
      await new Promise((r) => setTimeout(r, 2_000));
    }
    await fed.bed.nats!.restart();
    for (const hub of fed.hubs) await fed.startHub(hub.name);
    // Back: the agents see the hub at their next heartbeat (≤ 1 s while it was unreachable, plus ≤ 1 s of gRPC reconnect backoff) and
    // send what is pending then, instead of after a report backoff of up to 30 s; they are back on NATS once the hub answers
    // the auth callout (a connect made before waits out NATS's 2 s authorization timeout) and read on at once, not after a
    // read sent during the outage timed out.
    const back = performance.now();
    await Promise.all(
      [b, c].map((cluster) =>
        waitFor(
          `${cluster.name}: payments imported within 5 s of the hub's return`,
          async () => (await readServiceImport(cluster.kubeConfig(), NS, 'payments')) !== undefined,
          5_000,
          50,
        ),
      ),
    );
    for (const cluster of [b, c]) {
      expect(
        (await readServiceImport(cluster.kubeConfig(), NS, 'orders'))?.metadata.uid,
        `${cluster.name}: orders not recreated`,
      ).toBe(uids.get(cluster.name));
    }
    console.log(
      `payments imported in B and C ${Math.round(performance.now() - back)} ms after the hub was ready again`,
    );
  });
});
