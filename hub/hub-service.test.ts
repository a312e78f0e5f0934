// The hub's membership checks on mTLS calls (DESIGN §3 membership epoch): real certificates from a
// real root; the MemberCluster cache is a plain list, the stores are stubs that record writes.
import { X509Certificate } from 'node:crypto';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import type { MemberCluster } from '../common/api/isthmus.ts';
import type { CallContext } from '../common/hub-api/index.ts';
import {
  RootAuthority,
  createCertificateRequest,
  createIntermediateRequest,
  generateKeyPair,
  verifyPeer,
} from '../common/pki/index.ts';
import { TRUST_DOMAIN, bundleOf } from '../common/pki/test-support.ts';
import { createAgentVerifier, createHubHandlers, type HubServiceDeps } from './hub-service.ts';
import type { MemberCache } from './membership.ts';

function member(clusterId: string, epoch: number): MemberCluster {
  return {
    apiVersion: 'isthmus.dev/v1alpha1',
    kind: 'MemberCluster',
    metadata: { name: clusterId },
    spec: { clusterId, accepted: true, membershipEpoch: epoch },
    status: {
      conditions: [
        { type: 'Joined', status: 'True', reason: 'Joined', message: '', lastTransitionTime: '2026-01-01T00:00:00Z' },
      ],
    },
  };
}

function cacheOf(members: MemberCluster[]): MemberCache {
  return { get: (id) => members.find((m) => m.spec.clusterId === id), list: () => members };
}

async function agentCall(root: RootAuthority, clusterId: string, epoch: number): Promise<CallContext> {
  const issued = await root.signAgentCertificate(
    clusterId,
    epoch,
    await createCertificateRequest(await generateKeyPair(), 'CN=agent'),
  );
  return { peerCertificate: Buffer.from(new X509Certificate(issued.certificatePem).raw), peer: 'ipv4:127.0.0.1:1' };
}

describe('agent calls and the membership epoch', () => {
  it("admits the current membership's certificate and refuses an earlier one, a later one and a removed cluster's", async () => {
    const root = await RootAuthority.generate({ trustDomain: TRUST_DOMAIN });
    const verify = createAgentVerifier({
      trust: { bundle: bundleOf(1, root) },
      memberCache: cacheOf([member('c', 20)]),
    });
    expect(verify(await agentCall(root, 'c', 20))).toEqual({ clusterId: 'c', epoch: 20 });
    await expect(agentCall(root, 'c', 10).then(verify)).rejects.toMatchObject({
      code: 'ISTHMUS_MEMBERSHIP_SUPERSEDED',
    });
    await expect(agentCall(root, 'c', 30).then(verify)).rejects.toMatchObject({
      code: 'ISTHMUS_PEER_REFUSED',
      message: expect.stringContaining('EPOCH_UNKNOWN') as string,
    });
    await expect(agentCall(root, 'gone', 20).then(verify)).rejects.toMatchObject({
      code: 'ISTHMUS_CLUSTER_NOT_MEMBER',
    });
  });

  it('Renew signs for the epoch of the presented certificate only, and refuses one of an earlier membership', async () => {
    const root = await RootAuthority.generate({ trustDomain: TRUST_DOMAIN });
    const members = [member('c', 20)];
    const deps = {
      trust: { bundle: bundleOf(1, root), signingAuthority: () => root },
      members: { patchStatus: (m: MemberCluster) => Promise.resolve(m) },
      memberCache: cacheOf(members),
      isLeader: () => true,
      leader: () => 'hub-0',
      log: pino({ level: 'silent' }),
      settings: {
        autoAccept: true,
        agentTtlMs: 3_600_000,
        intermediateTtlMs: 3_600_000,
        heartbeatIntervalMs: 1_000,
        acceptanceWaitMs: 0,
        hubEndpoints: [],
        natsUrls: [],
      },
    } as unknown as HubServiceDeps;
    const handlers = createHubHandlers(deps);
    const request = {
      agentCsr: await createCertificateRequest(await generateKeyPair(), 'CN=agent'),
      intermediateCsr: await createIntermediateRequest(await generateKeyPair(), 'c'),
    };

    const renewed = await handlers.Renew(request, await agentCall(root, 'c', 20));
    const context = { bundle: bundleOf(1, root), members: new Map([['c', 20]]) };
    expect(verifyPeer([renewed.credentials.agentCertificate], context)).toMatchObject({
      ok: true,
      peer: { clusterId: 'c', epoch: 20 },
    });
    const later = new Map([['c', 21]]);
    expect(verifyPeer([renewed.credentials.agentCertificate], { ...context, members: later })).toMatchObject({
      ok: false,
      reason: 'EPOCH_SUPERSEDED',
    });

    await expect(handlers.Renew(request, await agentCall(root, 'c', 19))).rejects.toMatchObject({
      code: 'ISTHMUS_MEMBERSHIP_SUPERSEDED',
    });
  });
});
