// Each member's own NATS identity (DESIGN §5, issue 8 hole 7), with real processes: the hub admits
// agents to NATS one member at a time (auth callout), and `isthmus cluster remove` cuts a removed
// cluster's NATS connections and refuses its reconnects within 5 s.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MEMBERS_BUCKET } from '../common/catalog.ts';
import type { AgentCredentials } from '../spoke-agent/credentials.ts';
import { lastRevision } from '../spoke-agent/imports/bucket-reader.ts';
import { agentCredentialsOf, connectAsAgent } from './agent-identity.ts';
import { Federation } from '../local/federation/index.ts';
import { waitFor } from '../local/testbed/index.ts';

const CUT_WITHIN_MS = 5_000;

describe('NATS identity per member', () => {
  let fed: Federation;

  beforeAll(async () => {
    fed = await Federation.start({ members: 2, heartbeatInterval: '1s' });
    await fed.joinAll();
  });
  afterAll(async () => {
    await fed?.[Symbol.asyncDispose]();
  });

  function credentialsOf(cluster: string): Promise<AgentCredentials> {
    return agentCredentialsOf(fed.bed.cluster(cluster).kubeConfig(), cluster);
  }

  /** The AGENTS connections NATS holds for a cluster (its monitoring endpoint names each by the user the hub admitted: the cluster id). */
  async function natsConnectionsOf(cluster: string): Promise<number> {
    const connz = (await (await fetch(`${fed.bed.nats!.monitorUrl}/connz?auth=true&acc=AGENTS&limit=1000`)).json()) as {
      connections?: Array<{ authorized_user?: string }>;
    };
    return (connz.connections ?? []).filter((c) => c.authorized_user === cluster).length;
  }

  it("cuts a removed cluster's NATS connections and refuses its reconnects within 5 s", async () => {
    const credentials = await credentialsOf('cluster-b');
    const nc = await connectAsAgent('cluster-b', credentials, { reconnect: true });
    const statuses: string[] = [];
    void (async () => {
      for await (const s of nc.status()) statuses.push(s.type);
    })();
    try {
      expect(await lastRevision(nc, MEMBERS_BUCKET)).toBeGreaterThan(0);
      // The agent process of cluster-b holds its own connection too.
      await waitFor(
        'cluster-b agent connected to NATS',
        async () => (await natsConnectionsOf('cluster-b')) >= 2,
        20_000,
        100,
      );
      expect(await natsConnectionsOf('cluster-a')).toBeGreaterThanOrEqual(1);

      const removed = await fed.cli(['cluster', 'remove', 'cluster-b'], 'hub');
      expect(removed.stdout).toContain('cluster cluster-b removed');
      // From the command's return (the removal is done by then; the CLI process's own start-up under load is not the hub's delay).
      const removedAt = performance.now();
      await waitFor(
        'test connection of cluster-b cut',
        () => Promise.resolve(statuses.includes('disconnect')),
        CUT_WITHIN_MS,
        50,
      );
      await waitFor(
        'agent connection of cluster-b cut',
        async () => (await natsConnectionsOf('cluster-b')) === 0,
        Math.max(1, CUT_WITHIN_MS - (performance.now() - removedAt)),
        50,
      );
      console.log(
        `cluster-b's NATS connections cut ${Math.round(performance.now() - removedAt)} ms after the remove command returned`,
      );
      // Refused on a new connect: a barrier after which any reconnect of the old connection would have been refused as well.
      await expect(connectAsAgent('cluster-b', credentials)).rejects.toThrow(/authori[sz]ation/i);
      expect(statuses).not.toContain('reconnect');
      expect(await natsConnectionsOf('cluster-b')).toBe(0);
      // The other member keeps reading.
      const other = await connectAsAgent('cluster-a', await credentialsOf('cluster-a'));
      try {
        expect(await lastRevision(other, MEMBERS_BUCKET)).toBeGreaterThan(0);
      } finally {
        await other.close();
      }
    } finally {
      await nc.close().catch(() => undefined);
    }
  });
});
