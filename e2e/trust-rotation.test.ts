// Root rotation across a live federation, driven by one hub command: every stage completes, the
// members end on the new root, and no agent call fails on the way. NATS is carried along: its
// trusted CAs and its certificate follow the hub (the test bed reloads nats-server as a config
// reloader would), agents keep reading the catalog throughout, and a fresh agent connection that
// trusts only the new root works once the old one is gone.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CATALOG_BUCKET } from '../common/catalog.ts';
import { readFrom } from '../spoke-agent/imports/bucket-reader.ts';
import { exportService, importedSlices } from '../local/exports.ts';
import { agentCredentialsOf, connectAsAgent } from './agent-identity.ts';
import { Federation } from '../local/federation/index.ts';
import { waitFor, type LocalCluster } from '../local/testbed/index.ts';

const NS = 'shop';

interface TrustStatus {
  stage: string;
  bundleSequence: number;
  bundleRoots: string[];
  targetRoot: string;
  clusters: { clusterId: string; bundleSequence?: number; root: string; issuedRoot: string; onTargetRoot: boolean }[];
}

/** Exports `name` from `from` and waits until `to` imports it (read from NATS by its agent). */
async function exportAndAwaitImport(from: LocalCluster, to: LocalCluster, name: string): Promise<void> {
  await exportService(from.kubeConfig(), {
    namespace: NS,
    name,
    ports: [{ name: 'http', port: 8080 }],
    endpoints: [{ ip: '198.51.100.10', zone: 'eu-west-1a' }],
  });
  await waitFor(
    `${to.name} imports ${name}`,
    async () => (await importedSlices(to.kubeConfig(), NS, name)).has(from.name),
    60_000,
  );
}

describe('root rotation', () => {
  let fed: Federation;
  beforeAll(async () => {
    fed = await Federation.start({ members: 2, heartbeatInterval: '1s', natsTlsFromHub: true });
    await fed.joinAll(NS);
  });
  afterAll(async () => {
    await fed?.[Symbol.asyncDispose]();
  });

  async function status(): Promise<TrustStatus> {
    const out = await fed.cli(['trust', 'status', '-o', 'json'], 'hub');
    return JSON.parse(out.stdout) as TrustStatus;
  }

  it('moves every cluster to a new root with no failed call', async () => {
    await waitFor(
      'members report their root',
      async () => (await status()).clusters.every((c) => c.onTargetRoot),
      30_000,
    );
    const before = await status();
    expect(before).toMatchObject({ stage: 'stable', bundleRoots: [before.targetRoot] });
    const [a, b] = fed.members as [LocalCluster, LocalCluster];
    await waitFor(
      'NATS serves the certificate the hub issued',
      () => Promise.resolve(fed.natsServingRoot === before.targetRoot),
      30_000,
    );
    await exportAndAwaitImport(a, b, 'before-rotation');

    const pinBefore = (await fed.createToken()).caPin;
    const started = Date.now();
    expect((await fed.cli(['trust', 'rotate'], 'hub')).code).toBe(0);
    const stages = new Set<string>();
    await waitFor(
      'rotation complete',
      async () => {
        const now = await status();
        stages.add(now.stage);
        return (
          now.stage === 'stable' &&
          now.targetRoot !== before.targetRoot &&
          now.bundleRoots.length === 1 &&
          now.clusters.every((c) => c.onTargetRoot && c.bundleSequence === now.bundleSequence)
        );
      },
      120_000,
      200,
    );
    console.info(`rotation took ${Date.now() - started} ms through stages ${[...stages].join(' → ')}`);
    const table = await fed.cli(['trust', 'status'], 'hub');
    console.info(`isthmus trust status:\n${table.stdout}`);
    const after = await status();
    expect(after.bundleSequence).toBe(before.bundleSequence + 2);
    expect(after.bundleRoots).not.toContain(before.targetRoot);
    expect(after.clusters.map((c) => c.issuedRoot)).toEqual([after.targetRoot, after.targetRoot]);

    // NATS moved with the federation: it serves a certificate under the new root, the agents
    // (which now trust only the new root) still read the catalog, and nothing was lost.
    expect(fed.natsServingRoot).toBe(after.targetRoot);
    await exportAndAwaitImport(a, b, 'after-rotation');
    await exportAndAwaitImport(b, a, 'after-rotation-b');
    expect((await importedSlices(b.kubeConfig(), NS, 'before-rotation')).has(a.name)).toBe(true);
    // A fresh connection with an agent's stored credentials: the bundle without the old root, the re-issued certificate.
    const nc = await connectAsAgent(b.name, await agentCredentialsOf(b.kubeConfig(), b.name));
    try {
      // Read as agents do: batch direct get through their account's imports.
      const values = new Map<string, unknown>();
      await readFrom(nc, CATALOG_BUCKET, 1, (m) =>
        values.set(m.key, m.operation === 'PUT' ? JSON.parse(new TextDecoder().decode(m.value)) : undefined),
      );
      expect(values.get(`${NS}.after-rotation`)).toMatchObject({ namespace: NS, name: 'after-rotation' });
    } finally {
      await nc.close();
    }

    for (const m of fed.members) {
      const log = fed.agent(m.name)?.logTail(500) ?? '';
      expect(log, `${m.name} agent log`).not.toMatch(/heartbeat failed|renewal failed/);
      expect(log).toMatch(/cluster intermediate renewed/);
      expect(log, `${m.name} agent log`).not.toMatch(/cannot reconnect the catalog/);
      // Every check passes, NATS reachable included (a fresh connection with the agent's credentials).
      const check = await fed.cli(['check'], m.name);
      expect(check.stdout.split('\n').filter((l) => l.startsWith('×'))).toEqual([]);
    }
    // Join commands printed from now on pin the new root.
    expect((await fed.createToken()).caPin).not.toBe(pinBefore);
  }, 420_000);
});
