// NATS as a 3-node JetStream cluster (DESIGN §5: losing one node loses nothing), with real
// processes: the hub replicates its buckets 3 times and is given every node's URL, as are the
// agents. A node dies (SIGKILL), first the catalog stream's leader, then the node the hub is
// connected to: exports made and changed meanwhile reach every importer, every agent connection
// is re-admitted on a surviving node (the auth callout is answered through the cluster), no
// import is deleted or recreated, and the node brought back catches up. Removing a member cuts
// its NATS connections on every node.
import { jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CATALOG_BUCKET, MEMBERS_BUCKET } from '../common/catalog.ts';
import { AGENTS_ACCOUNT } from '../common/nats-authorization.ts';
import { exportService, readServiceImport } from '../local/exports.ts';
import { agentCredentialsOf, connectAsAgent } from './agent-identity.ts';
import { Federation } from '../local/federation/index.ts';
import { waitFor, type LocalCluster, type LocalNats, type NatsNode } from '../local/testbed/index.ts';

const NS = 'shop';
const CATALOG_STREAM = `KV_${CATALOG_BUCKET}`;
/** The hub's main NATS connection (hub/hub.ts names it after the replica). */
const HUB_CONNECTION = 'isthmus-hub-hub-0';

describe('NATS as a 3-node cluster', () => {
  let fed: Federation;
  let nats: LocalNats;
  let members: readonly LocalCluster[];

  beforeAll(async () => {
    fed = await Federation.start({ members: 3, heartbeatInterval: '1s', natsCluster: true });
    nats = fed.bed.nats as LocalNats;
    members = fed.members;
    await fed.joinAll(NS);
  });
  afterAll(async () => {
    await fed?.[Symbol.asyncDispose]();
  });

  async function monitor<T>(node: NatsNode, path: string): Promise<T> {
    const response = await fetch(`${node.monitorUrl}${path}`);
    if (!response.ok) throw new Error(`${node.name} ${path}: HTTP ${response.status}`);
    return (await response.json()) as T;
  }

  /** The client connections a node holds, with the user the hub admitted (the cluster id for agents). */
  async function connections(
    node: NatsNode,
  ): Promise<Array<{ name?: string; account?: string; authorized_user?: string }>> {
    return (
      (
        await monitor<{ connections?: Array<{ name?: string; account?: string; authorized_user?: string }> }>(
          node,
          '/connz?auth=true&limit=10000',
        )
      ).connections ?? []
    );
  }

  /** Agent connections on the running nodes. */
  async function agentConnections(): Promise<Array<{ node: string; cluster: string | undefined }>> {
    const running = nats.nodes.filter((n) => n.running);
    const perNode = await Promise.all(
      running.map(async (n) =>
        (await connections(n))
          .filter((c) => c.account === AGENTS_ACCOUNT)
          .map((c) => ({ node: n.name, cluster: c.authorized_user })),
      ),
    );
    return perNode.flat();
  }

  async function hubNode(): Promise<NatsNode> {
    for (const node of nats.nodes.filter((n) => n.running)) {
      if ((await connections(node)).some((c) => c.name === HUB_CONNECTION)) return node;
    }
    throw new Error('the hub holds no NATS connection');
  }

  function nodeNamed(name: string | undefined): NatsNode {
    const node = nats.nodes.find((n) => n.name === name);
    if (!node) throw new Error(`no NATS node named ${name}`);
    return node;
  }

  /** The catalog stream's last sequence as one node stores it (its monitoring endpoint). */
  async function catalogSequenceOn(node: NatsNode): Promise<number | undefined> {
    const jsz = await monitor<{
      account_details?: Array<{ stream_detail?: Array<{ name: string; state?: { last_seq?: number } }> }>;
    }>(node, '/jsz?streams=true');
    return jsz.account_details?.flatMap((a) => a.stream_detail ?? []).find((s) => s.name === CATALOG_STREAM)?.state
      ?.last_seq;
  }

  /** Each member's ServiceImport of `name`: its uid and its IPs (the VIP), to show nothing was deleted and recreated. */
  async function importIdentities(name: string): Promise<string[]> {
    return Promise.all(
      members.map(async (cluster) => {
        const imported = await readServiceImport(cluster.kubeConfig(), NS, name);
        return `${cluster.name}: ${imported?.metadata.uid} ${JSON.stringify(imported?.spec?.ips)}`;
      }),
    );
  }

  /** Waits until every member imports `name` with an IP from exactly these clusters. */
  async function importedEverywhere(name: string, from: readonly string[], timeoutMs = 30_000): Promise<void> {
    for (const cluster of members) {
      await waitFor(
        `${cluster.name}: ${name} imported from ${from.join(', ')}`,
        async () => {
          const imported = await readServiceImport(cluster.kubeConfig(), NS, name);
          const clusters = (imported?.status?.clusters ?? []).map((c) => c.cluster).sort();
          return (
            (imported?.spec?.ips?.length ?? 0) > 0 && JSON.stringify(clusters) === JSON.stringify([...from].sort())
          );
        },
        timeoutMs,
        200,
      );
    }
  }

  /** Runs `use` with a JetStream manager on one node (any node when none is given), then closes the connection. */
  async function withJsm<T>(node: NatsNode | undefined, use: (jsm: JetStreamManager) => Promise<T>): Promise<T> {
    const admin = await nats.connect('nats-cluster-test', node && nats.nodes.indexOf(node));
    try {
      return await use(await jetstreamManager(admin));
    } finally {
      await admin.close();
    }
  }

  /**
   * Kills `victim`; while it is down, a new service is exported and `changed` gains an exporter;
   * both reach every member, every agent connection is back on a surviving node, and the imports
   * that existed keep their uid and VIP. Then the node returns and catches up. The test's own
   * JetStream questions go to a node that stays up.
   */
  async function survive(
    victim: NatsNode,
    step: { exporter: LocalCluster; added: string; changed: string; changedFrom: readonly string[] },
    kept: readonly string[],
  ): Promise<void> {
    await withJsm(
      nats.nodes.find((n) => n !== victim),
      async (jsm) => {
        const before = new Map(
          await Promise.all(kept.map(async (name) => [name, await importIdentities(name)] as const)),
        );
        const agentsBefore = (await agentConnections()).length;
        console.log(
          `killing ${victim.name}: catalog leader ${(await jsm.streams.info(CATALOG_STREAM)).cluster?.leader}, hub on ${(await hubNode()).name}, agents ${JSON.stringify(await agentConnections())}`,
        );
        const killedAt = performance.now();
        await victim.stop('SIGKILL');

        await exportService(step.exporter.kubeConfig(), {
          namespace: NS,
          name: step.added,
          ports: [{ name: 'http', port: 8080 }],
        });
        await exportService(step.exporter.kubeConfig(), {
          namespace: NS,
          name: step.changed,
          ports: [{ name: 'http', port: 8080 }],
        });
        await importedEverywhere(step.added, [step.exporter.name]);
        await importedEverywhere(step.changed, [...step.changedFrom, step.exporter.name]);
        console.log(
          `${victim.name} down: ${step.added} and the change of ${step.changed} imported everywhere ${Math.round(performance.now() - killedAt)} ms after the kill`,
        );
        // Every agent connection the dead node held was admitted again elsewhere (auth callout across the cluster).
        await waitFor(
          `${agentsBefore} agent connections on the surviving nodes`,
          async () => (await agentConnections()).length >= agentsBefore,
          30_000,
          200,
        );
        expect(new Set((await agentConnections()).map((c) => c.cluster))).toEqual(new Set(members.map((m) => m.name)));
        for (const name of kept)
          expect(await importIdentities(name), `${name} kept its import`).toEqual(before.get(name));
        expect((await jsm.streams.info(CATALOG_STREAM)).cluster?.leader).not.toBe(victim.name);
        const added = await importIdentities(step.added);

        const restartedAt = performance.now();
        await victim.start();
        const leaderSequence = (await jsm.streams.info(CATALOG_STREAM)).state.last_seq;
        await waitFor(
          `${victim.name} caught up to catalog sequence ${leaderSequence}`,
          async () => ((await catalogSequenceOn(victim)) ?? 0) >= leaderSequence,
          30_000,
          200,
        );
        await waitFor(
          `${victim.name} a current replica of the catalog`,
          async () => {
            const cluster = (await jsm.streams.info(CATALOG_STREAM)).cluster;
            return (
              cluster?.leader === victim.name ||
              (cluster?.replicas ?? []).some((r) => r.name === victim.name && r.current)
            );
          },
          30_000,
          200,
        );
        console.log(
          `${victim.name} back and current ${Math.round(performance.now() - restartedAt)} ms after its restart`,
        );
        for (const name of kept)
          expect(await importIdentities(name), `${name} kept its import`).toEqual(before.get(name));
        expect(await importIdentities(step.added)).toEqual(added);
      },
    );
  }

  it("loses nothing and deletes no import when the catalog leader's node, then the hub's node, dies and returns", async () => {
    const [a, b, c] = members as [LocalCluster, LocalCluster, LocalCluster];
    await exportService(a.kubeConfig(), { namespace: NS, name: 'cart', ports: [{ name: 'http', port: 8080 }] });
    await importedEverywhere('cart', ['cluster-a']);
    const cart = await importIdentities('cart');
    const leader = await withJsm(undefined, async (jsm) => {
      // Every bucket the hub made (catalog, members, ...) keeps three copies.
      const buckets = new Map<string, number>();
      for await (const stream of jsm.streams.list()) buckets.set(stream.config.name, stream.config.num_replicas);
      expect(buckets.get(CATALOG_STREAM)).toBe(3);
      expect(buckets.get(`KV_${MEMBERS_BUCKET}`)).toBe(3);
      expect([...buckets].filter(([, replicas]) => replicas !== 3)).toEqual([]);
      // All three copies of the stream agree before anything dies.
      await waitFor(
        'every catalog replica current',
        async () =>
          ((await jsm.streams.info(CATALOG_STREAM)).cluster?.replicas ?? []).filter((r) => r.current).length === 2,
        30_000,
        200,
      );
      return (await jsm.streams.info(CATALOG_STREAM)).cluster?.leader;
    });

    await survive(nodeNamed(leader), { exporter: b, added: 'orders', changed: 'cart', changedFrom: ['cluster-a'] }, [
      'cart',
    ]);
    await survive(
      await hubNode(),
      { exporter: c, added: 'payments', changed: 'cart', changedFrom: ['cluster-a', 'cluster-b'] },
      ['cart', 'orders'],
    );
    expect(await importIdentities('cart')).toEqual(cart);
    await waitFor(
      'every node holds the same catalog',
      async () => new Set(await Promise.all(nats.nodes.map((n) => catalogSequenceOn(n)))).size === 1,
      30_000,
      200,
    );
  });

  it("cuts a removed cluster's NATS connections on every node", async () => {
    const credentials = await agentCredentialsOf(fed.bed.cluster('cluster-c').kubeConfig(), 'cluster-c');
    // One connection to each node, so the hub's kick must reach nodes its system connection is not on.
    const held: NatsConnection[] = await Promise.all(
      nats.nodes.map((n) => connectAsAgent('cluster-c', credentials, { servers: n.url })),
    );
    try {
      const closed = held.map((nc) => nc.closed());
      const removed = await fed.cli(['cluster', 'remove', 'cluster-c'], 'hub');
      expect(removed.stdout).toContain('cluster cluster-c removed');
      await waitFor(
        'cluster-c connections cut on every node',
        async () => (await agentConnections()).every((c) => c.cluster !== 'cluster-c'),
        10_000,
        100,
      );
      await Promise.all(closed);
      expect(new Set((await agentConnections()).map((c) => c.cluster))).toEqual(new Set(['cluster-a', 'cluster-b']));
    } finally {
      await Promise.all(held.map((nc) => nc.close().catch(() => undefined)));
    }
  });
});
