// Root rotation across a live federation, driven by one hub command: every stage completes, the
// members end on the new root, and no agent call fails on the way.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Federation } from './federation/index.ts';
import { waitFor } from './testbed/index.ts';

interface TrustStatus {
  stage: string;
  bundleSequence: number;
  bundleRoots: string[];
  targetRoot: string;
  clusters: { clusterId: string; bundleSequence?: number; root: string; onTargetRoot: boolean }[];
}

describe('root rotation', () => {
  let fed: Federation;
  beforeAll(async () => {
    fed = await Federation.start({ members: 2, heartbeatInterval: '1s' });
    const token = await fed.createToken(['--usages', '2']);
    for (const m of fed.members) expect((await fed.join(m.name, token)).code).toBe(0);
  });
  afterAll(async () => {
    await fed?.[Symbol.asyncDispose]();
  });

  async function status(): Promise<TrustStatus> {
    const out = await fed.cli(['trust', 'status', '-o', 'json'], 'hub');
    return JSON.parse(out.stdout) as TrustStatus;
  }

  it('moves every cluster to a new root with no failed call', async () => {
    await waitFor('members report their root', async () => (await status()).clusters.every((c) => c.onTargetRoot), 15_000);
    const before = await status();
    expect(before).toMatchObject({ stage: 'stable', bundleRoots: [before.targetRoot] });

    const pinBefore = (await fed.createToken()).caPin;
    const started = Date.now();
    expect((await fed.cli(['trust', 'rotate'], 'hub')).code).toBe(0);
    const stages = new Set<string>();
    await waitFor('rotation complete', async () => {
      const now = await status();
      stages.add(now.stage);
      return now.stage === 'stable' && now.targetRoot !== before.targetRoot && now.bundleRoots.length === 1 && now.clusters.every((c) => c.onTargetRoot && c.bundleSequence === now.bundleSequence);
    }, 60_000, 200);
    console.info(`rotation took ${Date.now() - started} ms through stages ${[...stages].join(' → ')}`);
    const table = await fed.cli(['trust', 'status'], 'hub');
    console.info(`isthmus trust status:\n${table.stdout}`);
    const after = await status();
    expect(after.bundleSequence).toBe(before.bundleSequence + 2);
    expect(after.bundleRoots).not.toContain(before.targetRoot);

    for (const m of fed.members) {
      const log = fed.agent(m.name)?.logTail(500) ?? '';
      expect(log, `${m.name} agent log`).not.toMatch(/heartbeat failed|renewal failed/);
      expect(log).toMatch(/cluster intermediate renewed/);
      // NATS's own certificates are the operator's (the test bed issued them from the old root),
      // so only the federation checks are expected to pass here.
      const check = await fed.cli(['check'], m.name);
      expect(check.stdout.split('\n').filter((l) => l.startsWith('×') && !l.includes('NATS reachable'))).toEqual([]);
    }
    // Join commands printed from now on pin the new root.
    expect((await fed.createToken()).caPin).not.toBe(pinBefore);
  });
});
