// A full root rotation, driven by the state machine, while cluster B keeps opening mTLS
// connections to cluster A every couple of milliseconds: not one handshake may fail.
import { X509Certificate } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { createTrustBundle, type TrustBundle } from './bundle.ts';
import type { ClusterAuthority } from './cluster-authority.ts';
import type { MtlsCredentials } from './credentials.ts';
import { RootAuthority } from './root-authority.ts';
import {
  advanceRotation,
  beginRotation,
  type RotationAction,
  type RotationObservation,
  type RotationState,
} from './rotation.ts';
import { formatSpiffeId } from './spiffe.ts';
import {
  TEST_EPOCH,
  TRUST_DOMAIN,
  credentialsFor,
  exchange,
  joinCluster,
  presentTo,
  startServer,
  type TestServer,
} from './test-support.ts';
import { RefusalReason } from './verify.ts';

interface Cluster {
  readonly id: string;
  authority: ClusterAuthority;
  readonly credentials: MtlsCredentials;
}

const gatewayOf = (clusterId: string): string =>
  formatSpiffeId({ kind: 'gateway', trustDomain: TRUST_DOMAIN, clusterId, name: 'main' });

/** Opens a connection every `intervalMs` (at most `maxInFlight` at once) until stopped. */
function startTraffic(client: MtlsCredentials, server: TestServer, intervalMs: number, maxInFlight: number) {
  const outcomes = { succeeded: 0, failed: 0, errors: [] as string[] };
  const inFlight = new Set<Promise<void>>();
  const timer = setInterval(() => {
    if (inFlight.size >= maxInFlight) return;
    const attempt = exchange(client, server).then(
      (accepted) => {
        if (accepted) outcomes.succeeded += 1;
        else outcomes.failed += 1;
      },
      (err: unknown) => {
        outcomes.failed += 1;
        outcomes.errors.push(String(err));
      },
    );
    inFlight.add(attempt);
    void attempt.finally(() => inFlight.delete(attempt));
  }, intervalMs);
  return {
    outcomes,
    /** Resolves once `count` more handshakes have succeeded (a barrier, however slow the machine). */
    async succeedMore(count: number) {
      const target = outcomes.succeeded + count;
      while (outcomes.succeeded < target && outcomes.failed === 0) await sleep(5);
    },
    async stop() {
      clearInterval(timer);
      await Promise.all(inFlight);
      return outcomes;
    },
  };
}

describe('root rotation under traffic', () => {
  it('moves every cluster from the old root to the new one with zero failed handshakes', async () => {
    const oldRoot = await RootAuthority.generate({ trustDomain: TRUST_DOMAIN });
    const roots = new Map([[oldRoot.fingerprint, oldRoot]]);
    const initialBundle = createTrustBundle({
      trustDomain: TRUST_DOMAIN,
      sequence: 1,
      roots: [oldRoot.certificatePem],
    });
    const clusters: Cluster[] = await Promise.all(
      ['a', 'b'].map(async (id) => {
        const authority = await joinCluster(oldRoot, id);
        return {
          id,
          authority,
          credentials: credentialsFor(await authority.issueLeaf(gatewayOf(id)), initialBundle, ['a', 'b']),
        };
      }),
    );
    const [a, b] = clusters as [Cluster, Cluster];
    const server = await startServer(a.credentials);
    const traffic = startTraffic(b.credentials, server, 2, 8);
    let hubRootInUse = oldRoot.fingerprint;
    let retired = false;

    const rootSigning = (pem: string): string => {
      const cert = new X509Certificate(pem);
      const issuer = [...roots.values()].find((root) =>
        cert.verify(new X509Certificate(root.certificatePem).publicKey),
      );
      return issuer?.fingerprint ?? 'unknown';
    };
    const observe = (): RotationObservation => ({
      hubRootInUse,
      now: Date.now(),
      members: new Map(
        clusters.map((c) => {
          const root = rootSigning(c.authority.intermediatePem);
          return [
            c.id,
            { report: { bundleSequence: c.credentials.bundle.sequence, rootInUse: root }, issuedRoot: root },
          ];
        }),
      ),
    });
    const rootOf = (fingerprint: string): RootAuthority => {
      const root = roots.get(fingerprint);
      if (root === undefined) throw new Error(`no root ${fingerprint}`);
      return root;
    };
    // What the hub and the agents do for each action; bundles reach the clusters one after the other.
    const perform = async (action: RotationAction): Promise<void> => {
      switch (action.kind) {
        case 'publish-bundle': {
          const bundle: TrustBundle = createTrustBundle({
            trustDomain: TRUST_DOMAIN,
            sequence: action.sequence,
            roots: action.roots.map((fingerprint) => rootOf(fingerprint).certificatePem),
          });
          for (const cluster of clusters) {
            await sleep(20);
            cluster.credentials.updateBundle(bundle);
          }
          return;
        }
        case 'reissue-intermediate': {
          const cluster = clusters.find((c) => c.id === action.clusterId) as Cluster;
          const { certificatePem } = await rootOf(action.root).signIntermediate(
            cluster.id,
            TEST_EPOCH,
            await cluster.authority.createRequest(),
          );
          cluster.authority = await cluster.authority.withIntermediate(certificatePem);
          cluster.credentials.updateSvid(await cluster.authority.issueLeaf(gatewayOf(cluster.id)));
          return;
        }
        case 'reissue-hub-svid':
          hubRootInUse = action.root;
          return;
        case 'retire-root':
          retired = true;
          return;
      }
    };

    // Each stage carries traffic before the next (as propagation to real clusters would take a
    // while): a number of handshakes, not a time, so a slow machine only takes longer.
    const handshakesPerStage = 20;
    await traffic.succeedMore(handshakesPerStage);
    const newRoot = await RootAuthority.generate({ trustDomain: TRUST_DOMAIN });
    roots.set(newRoot.fingerprint, newRoot);
    let state: RotationState = { stage: 'stable', root: oldRoot.fingerprint, bundleSequence: 1 };
    let step = beginRotation(state, newRoot.fingerprint, observe());
    const stages: string[] = [step.state.stage];
    while (!retired) {
      for (const action of step.actions) await perform(action);
      await traffic.succeedMore(handshakesPerStage);
      state = step.state;
      step = advanceRotation(state, observe(), { stageTimeoutMs: 3_600_000 });
      if (stages.at(-1) !== step.state.stage) stages.push(step.state.stage);
    }
    await traffic.succeedMore(handshakesPerStage);
    const outcomes = await traffic.stop();

    expect(stages).toEqual(['distributing', 'reissuing', 'retiring', 'stable']);
    expect(outcomes.errors).toEqual([]);
    expect(outcomes.failed).toBe(0);
    expect(outcomes.succeeded).toBeGreaterThanOrEqual(handshakesPerStage * (stages.length + 1));
    expect(server.accepted.at(-1)?.root).toBe(newRoot.fingerprint);
    expect(a.credentials.bundle.roots.map((root) => root.fingerprint256)).toEqual([newRoot.fingerprint]);

    // The old root is really gone: a leaf still chained to it is refused now.
    const straggler = await (await joinCluster(oldRoot, 'b')).issueLeaf(gatewayOf('b'));
    expect(await presentTo(server, straggler)).toBe(RefusalReason.UNKNOWN_ROOT);
    await server.close();
  });
});
