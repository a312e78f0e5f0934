import { existsSync } from 'node:fs';
import { KubernetesObjectApi, type KubernetesObject } from '@kubernetes/client-node';
import { jetstreamManager } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { connect } from '@nats-io/transport-node';
import { describe, expect, it } from 'vitest';
import { validObjects } from '../../e2e/crds.fixtures.ts';
import { alive, startTestbed, waitFor } from './index.ts';

describe('local test bed', () => {
  it('runs 3 clusters + NATS, serves every CRD kind and KV over TLS, and leaves nothing behind', async () => {
    let pids: number[];
    let dir: string;
    {
      await using bed = await startTestbed({ clusters: 3 });
      pids = bed.pids();
      dir = bed.dir;
      expect(pids).toHaveLength(7); // 3 × (etcd + kube-apiserver) + nats-server
      console.info(`3 clusters + NATS ready in ${bed.startupMs} ms, RSS ${Math.round(bed.memory().rss / 2 ** 20)} MiB`);

      for (const cluster of bed.clusters) {
        const client = KubernetesObjectApi.makeApiClient(cluster.kubeConfig());
        for (const object of validObjects) {
          const created: KubernetesObject = await client.create(object);
          expect(created.metadata?.uid, `${cluster.name}: ${object.kind} created`).toBeTruthy();
          const read = await client.read<KubernetesObject & { spec?: unknown }>({
            apiVersion: object.apiVersion,
            kind: object.kind,
            metadata: { name: object.metadata.name, namespace: object.metadata.namespace },
          });
          expect(read.metadata?.uid).toBe(created.metadata?.uid);
          expect(read.spec, `${cluster.name}: ${object.kind}/${object.metadata.name} read back`).toMatchObject(
            object.spec as object,
          );
        }
      }

      const nats = bed.nats!;
      const nc = await nats.connect('testbed-test');
      try {
        const kv = await new Kvm(nc).create('isthmus_testbed');
        const revision = await kv.put('default.echo', JSON.stringify({ ports: [80] }));
        const entry = await kv.get('default.echo');
        expect(entry?.revision).toBe(revision);
        expect(entry?.json()).toEqual({ ports: [80] });
      } finally {
        await nc.close();
      }
      // An outage and a restart on the same port keep JetStream's data.
      await nats.restart();
      const again = await nats.connect('testbed-test-after-restart');
      try {
        expect((await (await new Kvm(again).open('isthmus_testbed')).get('default.echo'))?.json()).toEqual({
          ports: [80],
        });
      } finally {
        await again.close();
      }
      pids = [...new Set([...pids, ...bed.pids()])];
      // The server requires a client certificate: TLS alone is not enough.
      await expect(
        connect({ servers: nats.url, tls: { ca: nats.serverCaPem }, reconnect: false, timeout: 3_000 }),
      ).rejects.toThrow();
    }
    expect(pids.filter(alive)).toEqual([]);
    expect(existsSync(dir)).toBe(false);
  });

  it('runs NATS as a 3-node JetStream cluster whose replicated bucket outlives a node, and leaves nothing behind', async () => {
    let pids: number[];
    let dir: string;
    {
      await using bed = await startTestbed({ clusters: 0, natsNodes: 3 });
      const nats = bed.nats!;
      dir = bed.dir;
      expect(nats.urls).toHaveLength(3);
      console.info(`NATS cluster of 3 ready in ${bed.startupMs} ms`);
      const nc = await nats.connect('testbed-cluster-test');
      try {
        const kv = await new Kvm(nc).create('isthmus_testbed', { history: 1, replicas: 3 });
        await kv.put('default.echo', 'one');
        const leader = (await (await jetstreamManager(nc)).streams.info('KV_isthmus_testbed')).cluster?.leader;
        const victim = nats.nodes.find((n) => n.name === leader);
        if (!victim) throw new Error(`no node named ${leader}`);
        await victim.stop('SIGKILL');
        // Writes go on with one node of three down, once the others have elected a new leader
        // (and the client has reconnected, if it was on the dead node).
        let revision = 0;
        await waitFor(
          'a write with the leader down',
          async () => (revision = await kv.put('default.echo', 'two')) > 0,
          30_000,
          200,
        );
        await victim.start();
        // Back on its port with its store, the node catches up: its own copy reaches the write.
        await waitFor(
          `${victim.name} holds revision ${revision}`,
          async () => {
            const jsz = (await (await fetch(`${victim.monitorUrl}/jsz?streams=true`)).json()) as {
              account_details?: Array<{ stream_detail?: Array<{ name: string; state?: { last_seq?: number } }> }>;
            };
            return (
              jsz.account_details?.flatMap((a) => a.stream_detail ?? []).find((d) => d.name === 'KV_isthmus_testbed')
                ?.state?.last_seq === revision
            );
          },
          10_000,
        );
      } finally {
        await nc.close();
      }
      pids = bed.pids();
    }
    expect(pids.filter(alive)).toEqual([]);
    expect(existsSync(dir)).toBe(false);
  });
});
