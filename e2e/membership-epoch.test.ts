// Issue 8, holes 1 and 4, tried as an attacker would against real processes (a hub on its own
// apiserver, NATS with the federation's certificates, and an impostor nats-server):
// - hole 1: a cluster id is removed and joined again; the certificates of the first membership
//   (the reason for the removal may be that they were stolen) are refused by the hub on every
//   call and by a verifier holding the membership the hub publishes;
// - hole 4: a member's intermediate mints a server certificate for the NATS host name, or for
//   spiffe://<td>/nats; the TLS settings agents connect to NATS with refuse a server presenting it.
// Both failed on the code before the fix.
import { Kvm } from '@nats-io/kv';
import { connect as connectNatsServer } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MEMBERS_BUCKET, memberRecordSchema } from '../common/catalog.ts';
import type { HeartbeatRequest } from '../common/hub-api/index.ts';
import { natsTlsOptions } from '../common/nats.ts';
import { ClusterAuthority, formatSpiffeId, parseBundlePem, verifyPeer } from '../common/pki/index.ts';
import {
  certificateToPem,
  generateKeyPair,
  importKeyPair,
  issueCertificate,
  privateKeyToPem,
  validityWindow,
  x509,
  EKU,
} from '../common/pki/x509.ts';
import { HubSession } from '../spoke-agent/hub-session.ts';
import type { AgentCredentials } from '../spoke-agent/credentials.ts';
import { join as joinHub } from '../spoke-agent/join.ts';
import { clusterFacts } from './agent-identity.ts';
import { Federation } from '../local/federation/index.ts';
import { startTestbed, waitFor } from '../local/testbed/index.ts';

type Token = Awaited<ReturnType<Federation['createToken']>>;

function sessionOf(credentials: AgentCredentials): HubSession {
  const { trustDomain, trustBundlePem, agentCertificate, agentKey } = credentials;
  return new HubSession(credentials.hubEndpoints, { trustDomain, trustBundlePem, agentCertificate, agentKey });
}

const heartbeat: HeartbeatRequest = {
  agentVersion: 'e2e',
  trustBundleSequence: 0,
  exportCount: 0,
  intermediateExpiry: '',
  rootInUse: '',
  appliedPolicies: [],
  appliedPoliciesKnown: false,
};

/** The error code a hub call failed with, or 'ok'. */
async function outcomeOf(call: Promise<unknown>): Promise<string> {
  try {
    await call;
    return 'ok';
  } catch (err) {
    return (err as { code?: string }).code ?? String(err);
  }
}

describe('membership epoch and server identities (issue 8, holes 1 and 4)', () => {
  let fed: Federation;
  let token: Token;

  const bootstrap = (): { hubEndpoints: string[]; token: string; caPin: string } => ({
    hubEndpoints: token.hubEndpoints,
    token: token.token,
    caPin: token.caPin,
  });

  beforeAll(async () => {
    fed = await Federation.start({ members: 0, hubReplicas: 1, autoAccept: true, heartbeatInterval: '1s' });
    token = await fed.createToken(['--usages', '10']);
  });
  afterAll(async () => {
    await fed?.[Symbol.asyncDispose]();
  });

  it('refuses the certificates of a removed membership after the same cluster id joined again: at the hub on every call, and at a verifier', async () => {
    const first = await joinHub(bootstrap(), clusterFacts('epoch-c'));
    const firstSession = sessionOf(first);
    expect(await outcomeOf(firstSession.call('Heartbeat', heartbeat))).toBe('ok');

    expect((await fed.cli(['cluster', 'remove', 'epoch-c'], 'hub')).code).toBe(0);
    await waitFor(
      'the hub refuses the removed cluster',
      async () => (await outcomeOf(firstSession.call('Heartbeat', heartbeat))) === 'ISTHMUS_CLUSTER_NOT_MEMBER',
      30_000,
      100,
    );

    const second = await joinHub(bootstrap(), clusterFacts('epoch-c'));
    const secondSession = sessionOf(second);
    await waitFor(
      'the hub knows the new membership',
      async () => (await outcomeOf(secondSession.call('Heartbeat', heartbeat))) === 'ok',
      30_000,
      100,
    );

    // The first membership's agent certificate, still valid for weeks, gets nothing from the hub.
    expect(await outcomeOf(firstSession.call('Heartbeat', heartbeat))).toBe('ISTHMUS_MEMBERSHIP_SUPERSEDED');
    const renewal = { agentCsr: '', intermediateCsr: await (await authorityOf(first)).createRequest() };
    expect(await outcomeOf(firstSession.call('Renew', renewal))).toBe('ISTHMUS_MEMBERSHIP_SUPERSEDED');
    expect(await outcomeOf(firstSession.call('ReportExports', { generation: 1, services: [] }))).toBe(
      'ISTHMUS_MEMBERSHIP_SUPERSEDED',
    );
    expect(
      await outcomeOf(firstSession.call('Leave', { reason: 'an old certificate tries to end the new membership' })),
    ).toBe('ISTHMUS_MEMBERSHIP_SUPERSEDED');
    // Nothing of the above touched the new membership.
    expect(await outcomeOf(secondSession.call('Heartbeat', heartbeat))).toBe('ok');
    const member = await fed.memberCluster('epoch-c');
    expect(member.metadata.deletionTimestamp).toBeUndefined();

    // A verifier (a gateway's inbound) judges by the membership the hub publishes in NATS.
    const nats = fed.bed.nats as NonNullable<typeof fed.bed.nats>;
    const nc = await nats.connect('membership-reader');
    try {
      const kv = await new Kvm(nc).open(MEMBERS_BUCKET);
      const published = async (): Promise<ReturnType<typeof memberRecordSchema.parse> | undefined> => {
        const entry = await kv.get('epoch-c');
        return entry?.operation === 'PUT' ? memberRecordSchema.parse(entry.json()) : undefined;
      };
      await waitFor(
        'the new membership is published',
        async () => (await published())?.epoch === member.spec.membershipEpoch,
        30_000,
        100,
      );
      const record = (await published()) as ReturnType<typeof memberRecordSchema.parse>;
      const context = {
        bundle: parseBundlePem(second.trustBundlePem, second.trustDomain, second.trustBundleSequence),
        members: new Map([[record.clusterId, record.epoch]]),
      };
      const gateway = formatSpiffeId({
        kind: 'gateway',
        trustDomain: second.trustDomain,
        clusterId: 'epoch-c',
        name: 'east-west',
      });
      const chainOf = async (credentials: AgentCredentials): Promise<string[]> => {
        const svid = await (await authorityOf(credentials)).issueLeaf(gateway);
        return svid.certificateChainPem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n?/g) ?? [];
      };
      expect(verifyPeer([first.agentCertificate], context)).toMatchObject({ ok: false, reason: 'EPOCH_SUPERSEDED' });
      expect(verifyPeer(await chainOf(first), context)).toMatchObject({ ok: false, reason: 'EPOCH_SUPERSEDED' });
      expect(verifyPeer([second.agentCertificate], context)).toMatchObject({
        ok: true,
        peer: { clusterId: 'epoch-c' },
      });
      expect(verifyPeer(await chainOf(second), context)).toMatchObject({ ok: true, peer: { clusterId: 'epoch-c' } });
    } finally {
      await nc.close();
      firstSession.close();
      secondSession.close();
    }
  });

  it("refuses a NATS server presenting a certificate a member's intermediate minted, for the NATS host name or as spiffe://<td>/nats", async () => {
    const forger = await joinHub(bootstrap(), clusterFacts('forger'));
    const intermediate = new x509.X509Certificate(forger.intermediateCertificate);
    const stolen = { certificate: intermediate, keys: await importKeyPair(forger.intermediateKey, intermediate) };
    const natsId = `spiffe://${forger.trustDomain}/nats`;
    const rootPem = forger.trustBundlePem;
    const agentTls = { ca: forger.trustBundlePem, cert: forger.agentCertificate, key: forger.agentKey };

    /** One connection attempt with the TLS settings agents use for NATS; no retries. */
    const attempt = async (url: string): Promise<string> => {
      try {
        const nc = await connectNatsServer({
          servers: url,
          tls: natsTlsOptions(forger.trustDomain, agentTls),
          maxReconnectAttempts: 0,
          timeout: 10_000,
        });
        await nc.close();
        return 'connected';
      } catch (err) {
        return (err as Error).message;
      }
    };

    // The agent's credentials do reach the real NATS (so the refusals below are about the server).
    const nats = fed.bed.nats as NonNullable<typeof fed.bed.nats>;
    expect(await attempt(nats.url)).toBe('connected');

    const forgeries = {
      'the NATS host name': {
        uri: [formatSpiffeId({ kind: 'cluster', trustDomain: forger.trustDomain, clusterId: 'forger' }) + '/gateway/x'],
        dns: ['localhost'],
        ip: ['127.0.0.1'],
      },
      'spiffe://<td>/nats': { uri: [natsId] },
      both: { uri: [natsId], dns: ['localhost'], ip: ['127.0.0.1'] },
    };
    for (const [what, san] of Object.entries(forgeries)) {
      const keys = await generateKeyPair();
      const leaf = await issueCertificate(
        {
          subject: 'CN=nats',
          publicKey: keys.publicKey,
          ...validityWindow(new Date(), 3_600_000),
          isCa: false,
          san,
          extendedKeyUsages: [EKU.serverAuth],
        },
        stolen,
      );
      await using impostor = await startTestbed({
        names: [],
        installCrds: false,
        natsTrustedCas: [rootPem],
        natsServerCertificate: {
          certPem: certificateToPem(leaf) + forger.intermediateCertificate,
          keyPem: await privateKeyToPem(keys.privateKey),
          caPem: rootPem,
        },
      });
      const url = (impostor.nats as NonNullable<typeof impostor.nats>).url;
      // OpenSSL applies the intermediate's name constraints; the SPIFFE check refuses what they allow.
      expect(await attempt(url), `a certificate minted for ${what}`).toMatch(
        /excluded subtree violation|CLUSTER_MISMATCH/,
      );
    }
  });
});

async function authorityOf(credentials: AgentCredentials): Promise<ClusterAuthority> {
  return ClusterAuthority.create({
    trustDomain: credentials.trustDomain,
    clusterId: credentials.clusterId,
    privateKey: credentials.intermediateKey,
    intermediatePem: credentials.intermediateCertificate,
  });
}
