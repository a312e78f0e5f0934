// Exports scoped to some clusters (`isthmus.dev/allowed-clusters`, DESIGN §5, issue 8 hole 7),
// with real processes: the allowed cluster imports the service; another member can read nothing
// of it from NATS, whatever it asks for — the shared catalog bucket, the allowed cluster's own
// bucket, its live subjects, or the replies NATS delivers to the allowed cluster's inboxes.
import type { NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ALLOWED_CLUSTERS_ANNOTATION, CATALOG_BUCKET, scopedCatalogBucket } from '../common/catalog.ts';
import { agentInboxPrefix, bucketReadRequests, bucketSubjects } from '../common/nats-authorization.ts';
import { readFrom } from '../spoke-agent/imports/bucket-reader.ts';
import { MCS_GROUP, MCS_VERSION, SERVICE_EXPORT_PLURAL } from '../common/api/mcs.ts';
import { mergePatchCustomObject } from '../common/kube/index.ts';
import { exportService, readServiceImport } from '../local/exports.ts';
import { agentCredentialsOf, connectAsAgent } from './agent-identity.ts';
import { Federation } from '../local/federation/index.ts';
import { waitFor, type LocalCluster } from '../local/testbed/index.ts';

const NS = 'bank';

describe('exports scoped to some clusters', () => {
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

  /** A NATS connection with a member's own agent credentials, as its agent makes it. */
  async function connectAs(cluster: string): Promise<NatsConnection> {
    return connectAsAgent(cluster, await agentCredentialsOf(fed.bed.cluster(cluster).kubeConfig(), cluster));
  }

  /** Every value a bucket holds, read the way agents read (batch direct get). */
  async function readBucket(nc: NatsConnection, bucket: string): Promise<Map<string, string>> {
    const values = new Map<string, string>();
    await readFrom(nc, bucket, 1, (m) => values.set(m.key, new TextDecoder().decode(m.value)));
    return values;
  }

  async function imported(cluster: LocalCluster, name: string): Promise<boolean> {
    return ((await readServiceImport(cluster.kubeConfig(), NS, name))?.spec?.ips?.length ?? 0) > 0;
  }

  /** Rejects with what NATS said when the connection is refused a subject. */
  function permissionError(nc: NatsConnection): Promise<string> {
    return (async () => {
      for await (const status of nc.status()) {
        if (status.type === 'error') return String((status as { error?: unknown }).error);
      }
      return 'closed';
    })();
  }

  it('imports a scoped export only where allowed, and other members cannot read it from NATS', async () => {
    await exportService(a.kubeConfig(), {
      namespace: NS,
      name: 'vault',
      ports: [{ name: 'https', port: 8443 }],
      annotations: { [ALLOWED_CLUSTERS_ANNOTATION]: 'cluster-b' },
    });
    // Exported after vault by the same agent, in the same full report: once C imports it, C has
    // seen every catalog write that carried vault.
    await exportService(a.kubeConfig(), { namespace: NS, name: 'lobby', ports: [{ name: 'http', port: 80 }] });
    await waitFor('b imports vault', () => imported(b, 'vault'), 30_000);
    await waitFor('c imports lobby', () => imported(c, 'lobby'), 30_000);
    expect(await readServiceImport(c.kubeConfig(), NS, 'vault')).toBeUndefined();

    const asC = await connectAs('cluster-c');
    try {
      // The shared bucket names the public export and nothing of the scoped one.
      const shared = await readBucket(asC, CATALOG_BUCKET);
      expect([...shared.keys()]).toContain(`${NS}.lobby`);
      expect([...shared.entries()].filter(([key, value]) => key.includes('vault') || value.includes('vault'))).toEqual(
        [],
      );
      // B's own bucket: neither readable nor watchable, and B's inboxes cannot be tapped.
      const refused = permissionError(asC);
      await expect(readBucket(asC, scopedCatalogBucket('cluster-b'))).rejects.toThrow(/permission/i);
      expect(await refused).toMatch(/permissions violation for publish/i);
      for (const subject of [
        bucketSubjects(scopedCatalogBucket('cluster-b')),
        `${agentInboxPrefix('cluster-b')}.>`,
        '_INBOX.>',
        '>',
      ]) {
        const violation = permissionError(asC);
        asC.subscribe(subject);
        expect(await violation).toMatch(
          new RegExp(
            `permissions violation for subscription to "${subject.replaceAll('.', '\\.').replaceAll('$', '\\$').replaceAll('>', '\\>')}"`,
            'i',
          ),
        );
      }
    } finally {
      await asC.close().catch(() => undefined);
    }

    const asB = await connectAs('cluster-b');
    try {
      const own = await readBucket(asB, scopedCatalogBucket('cluster-b'));
      expect(JSON.parse(own.get(`${NS}.vault`) ?? '{}')).toMatchObject({
        namespace: NS,
        name: 'vault',
        clusters: [expect.objectContaining({ clusterId: 'cluster-a' })],
      });
      // B may read its own bucket, and only through its own request subject.
      expect(bucketReadRequests(scopedCatalogBucket('cluster-b')).directGet).toContain('cluster-b');
    } finally {
      await asB.close().catch(() => undefined);
    }
  });

  it('follows a change of the allowed clusters: C imports once allowed and drops the import once no longer allowed', async () => {
    await exportService(a.kubeConfig(), {
      namespace: NS,
      name: 'ledger',
      ports: [{ name: 'http', port: 8080 }],
      annotations: { [ALLOWED_CLUSTERS_ANNOTATION]: 'cluster-b,cluster-c' },
    });
    await waitFor('c imports ledger', () => imported(c, 'ledger'), 30_000);
    await waitFor('b imports ledger', () => imported(b, 'ledger'), 30_000);
    // Narrowed to B: C's own view ends with a tombstone, and C deletes the import at once (no grace period).
    await mergePatchCustomObject(
      a.kubeConfig(),
      { group: MCS_GROUP, version: MCS_VERSION, plural: SERVICE_EXPORT_PLURAL, namespace: NS, name: 'ledger' },
      { metadata: { annotations: { [ALLOWED_CLUSTERS_ANNOTATION]: 'cluster-b' } } },
    );
    await waitFor(
      'c drops ledger',
      async () => (await readServiceImport(c.kubeConfig(), NS, 'ledger')) === undefined,
      30_000,
    );
    expect(await imported(b, 'ledger')).toBe(true);
  });
});
