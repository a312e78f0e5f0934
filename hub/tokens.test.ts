// Bootstrap tokens and the Join handler's use accounting against a real kube-apiserver: two
// concurrent joins can never both spend the last use, and a refused join costs no use.
import type { KubeConfig } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isIsthmusError } from '../common/errors.ts';
import { ensureNamespace } from '../common/kube/index.ts';
import { createLogger } from '../common/logger.ts';
import { createCertificateRequest, createIntermediateRequest, generateKeyPair } from '../common/pki/index.ts';
import { startTestbed, type Testbed } from '../local/testbed/index.ts';
import { createHubHandlers } from './hub-service.ts';
import { MemberClusterStore } from './members.ts';
import { TokenStore } from './tokens.ts';
import { TrustStore } from './trust-store.ts';

const log = createLogger({ component: 'tokens-test', level: 'silent' });
let bed: Testbed;
let kc: KubeConfig;

beforeAll(async () => {
  bed = await startTestbed({ clusters: 1, nats: false });
  kc = bed.clusters[0]!.kubeConfig();
  await ensureNamespace(kc, 'tokens-test');
  await ensureNamespace(kc, 'tokens-test-trust');
});

afterAll(async () => {
  await bed?.[Symbol.asyncDispose]();
});

async function settle<T>(promises: Promise<T>[]): Promise<{ ok: number; codes: string[] }> {
  const results = await Promise.allSettled(promises);
  return {
    ok: results.filter((r) => r.status === 'fulfilled').length,
    codes: results.flatMap((r) =>
      r.status === 'rejected' ? [isIsthmusError(r.reason) ? r.reason.code : String(r.reason)] : [],
    ),
  };
}

async function joinRequest(clusterId: string, token: string, network = 'net') {
  const [intermediate, agent] = await Promise.all([generateKeyPair(), generateKeyPair()]);
  return {
    token,
    facts: { clusterId, region: 'r', zone: 'z', network, gatewayAddresses: [], labels: {}, agentVersion: 't' },
    intermediateCsr: await createIntermediateRequest(intermediate, clusterId),
    agentCsr: await createCertificateRequest(agent, 'CN=agent'),
  };
}

describe('TokenStore', () => {
  it('two concurrent consumers of a single-use token: exactly one spends it', async () => {
    const tokens = new TokenStore(kc, 'tokens-test');
    const { record } = await tokens.create({ ttlMs: 600_000, maxUses: 1 });
    const outcome = await settle([tokens.consume(record.id), tokens.consume(record.id), tokens.consume(record.id)]);
    expect(outcome.ok).toBe(1);
    expect(outcome.codes).toEqual(['ISTHMUS_TOKEN_EXHAUSTED', 'ISTHMUS_TOKEN_EXHAUSTED']);
    expect((await tokens.list()).find((t) => t.id === record.id)?.usesLeft).toBe(0);
  });

  it('refuses to spend a use of a revoked token', async () => {
    const tokens = new TokenStore(kc, 'tokens-test');
    const { record } = await tokens.create({ ttlMs: 600_000, maxUses: 3 });
    await tokens.revoke(record.id);
    await expect(tokens.consume(record.id)).rejects.toMatchObject({ code: 'ISTHMUS_TOKEN_REVOKED' });
  });
});

describe('Join handler use accounting', () => {
  async function handlers() {
    const trust = await TrustStore.open(kc, 'tokens-test-trust', {
      trustDomain: 'isthmus.local',
      rootTtlMs: 86_400_000,
    });
    const tokens = new TokenStore(kc, 'tokens-test');
    const members = new MemberClusterStore(kc);
    const api = createHubHandlers({
      trust,
      tokens,
      members,
      memberCache: { get: () => undefined, list: () => [] },
      exports: { report: () => Promise.reject(new Error('not in this test')) },
      isLeader: () => true,
      leader: () => 'test',
      log,
      settings: {
        autoAccept: true,
        agentTtlMs: 3_600_000,
        intermediateTtlMs: 86_400_000,
        heartbeatIntervalMs: 1_000,
        acceptanceWaitMs: 5_000,
        hubEndpoints: ['127.0.0.1:1'],
        natsUrls: ['tls://127.0.0.1:2'],
      },
    });
    return { api, tokens, members };
  }

  it('two concurrent joins for different clusters with the last use: one joins, the other leaves no MemberCluster', async () => {
    const { api, tokens, members } = await handlers();
    const { token, record } = await tokens.create({ ttlMs: 600_000, maxUses: 1 });
    const context = { peerCertificate: undefined, peer: 'ipv4:127.0.0.1:1' };
    const outcome = await settle([
      api.Join(await joinRequest('race-a', token), context),
      api.Join(await joinRequest('race-b', token), context),
    ]);
    expect(outcome.ok).toBe(1);
    expect(outcome.codes).toEqual(['ISTHMUS_TOKEN_EXHAUSTED']);
    const left = (await Promise.all(['race-a', 'race-b'].map((id) => members.get(id)))).filter(Boolean);
    expect(left).toHaveLength(1);
    expect((await tokens.list()).find((t) => t.id === record.id)?.usesLeft).toBe(0);
  });

  it('a Join the API server refuses for its facts costs no use (the facts reach the handler unvalidated here)', async () => {
    const { api, tokens, members } = await handlers();
    const { token, record } = await tokens.create({ ttlMs: 600_000, maxUses: 1 });
    const context = { peerCertificate: undefined, peer: 'ipv4:127.0.0.1:1' };
    await expect(api.Join(await joinRequest('bad-network', token, 'Not_A_Label'), context)).rejects.toBeDefined();
    expect((await tokens.list()).find((t) => t.id === record.id)?.usesLeft).toBe(1);
    expect(await members.get('bad-network')).toBeUndefined();
    await api.Join(await joinRequest('good-network', token), context);
    expect((await tokens.list()).find((t) => t.id === record.id)?.usesLeft).toBe(0);
  });
});
