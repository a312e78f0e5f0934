// Peer verification over real TLS sockets: one accepted cross-cluster peer, then one refusal per
// rule, each with its own reason. Forged certificates go through the low-level issueCertificate,
// since the authorities refuse to make them.
import { X509Certificate } from 'node:crypto';
import { connect } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bundleToPem } from './bundle.ts';
import type { ClusterAuthority } from './cluster-authority.ts';
import type { MtlsCredentials } from './credentials.ts';
import { RootAuthority } from './root-authority.ts';
import { formatSpiffeId, type SpiffeId } from './spiffe.ts';
import { svidTemplate, type X509Svid } from './svid.ts';
import {
  TRUST_DOMAIN,
  bundleOf,
  credentialsFor,
  exchange,
  joinCluster,
  pemBlocks,
  presentTo,
  readToEnd,
  startServer,
  type TestServer,
} from './test-support.ts';
import { connectMtls, spiffeServerIdentityCheck } from './tls.ts';
import { PeerRefusedError, RefusalReason, peerVerificationFailures, verifyPeer } from './verify.ts';
import {
  certificateToPem,
  createCertificateRequest,
  generateKeyPair,
  importKeyPair,
  issueCertificate,
  privateKeyToPem,
  validityWindow,
  type Issuer,
} from './x509.ts';

const HOUR = 3_600_000;
const gateway = (clusterId: string, name = 'main'): string => formatSpiffeId({ kind: 'gateway', trustDomain: TRUST_DOMAIN, clusterId, name });

/** The intermediate's own key, as a compromised cluster would hold it. */
async function stealIssuer(authority: ClusterAuthority): Promise<Issuer> {
  return { certificate: authority.intermediate, keys: await importKeyPair(await authority.exportPrivateKeyPem(), authority.intermediate) };
}

/** A leaf SVID with any URI SANs the forger likes, chained to `issuer`. */
async function forgeSvid(issuer: Issuer, uris: readonly string[]): Promise<X509Svid> {
  const keys = await generateKeyPair('P-256');
  const [first = ''] = uris;
  const leaf = await issueCertificate({ ...svidTemplate(first, keys.publicKey, validityWindow(new Date(), HOUR)), san: { uri: uris } }, issuer);
  return {
    spiffeId: first,
    certificateChainPem: certificateToPem(leaf) + certificateToPem(issuer.certificate),
    privateKeyPem: await privateKeyToPem(keys.privateKey),
    notBefore: leaf.notBefore,
    notAfter: leaf.notAfter,
  };
}

describe('peer verification over mTLS', () => {
  let root: RootAuthority;
  let clusterA: ClusterAuthority;
  let clusterB: ClusterAuthority;
  let serverA: MtlsCredentials;
  let server: TestServer;
  const members = ['a', 'b'];

  beforeAll(async () => {
    root = await RootAuthority.generate({ trustDomain: TRUST_DOMAIN });
    [clusterA, clusterB] = await Promise.all([joinCluster(root, 'a'), joinCluster(root, 'b')]);
    serverA = credentialsFor(await clusterA.issueLeaf(gateway('a', 'east')), bundleOf(1, root), members);
    server = await startServer(serverA);
  });
  afterAll(() => server.close());

  const clientWith = (svid: X509Svid): MtlsCredentials => credentialsFor(svid, bundleOf(1, root), members);

  it('accepts a cross-cluster peer on both sides', async () => {
    const client = clientWith(await clusterB.issueLeaf(gateway('b', 'west')));
    const { socket, peer } = await connectMtls(client, { host: '127.0.0.1', port: server.port });
    expect(await readToEnd(socket)).toBe('ok');
    expect(peer).toMatchObject({ spiffeId: gateway('a', 'east'), clusterId: 'a', root: root.fingerprint });
    expect(server.accepted.at(-1)).toMatchObject({ spiffeId: gateway('b', 'west'), clusterId: 'b', id: { kind: 'gateway', name: 'west' } });
  });

  it("accepts the hub's root-issued identity and a root-issued agent certificate", async () => {
    expect(await exchange(clientWith(await root.issueHubSvid()), server)).toBe(true);
    expect(server.accepted.at(-1)).toMatchObject({ id: { kind: 'hub' }, clusterId: undefined });

    const agentKeys = await generateKeyPair('P-256');
    const agentCert = await root.signAgentCertificate('b', await createCertificateRequest(agentKeys, 'CN=whatever the agent asks'));
    const agentSvid: X509Svid = {
      spiffeId: formatSpiffeId({ kind: 'agent', trustDomain: TRUST_DOMAIN, clusterId: 'b' }),
      certificateChainPem: agentCert.certificatePem,
      privateKeyPem: await privateKeyToPem(agentKeys.privateKey),
      notBefore: agentCert.notBefore,
      notAfter: agentCert.notAfter,
    };
    expect(await exchange(clientWith(agentSvid), server)).toBe(true);
    expect(server.accepted.at(-1)).toMatchObject({ id: { kind: 'agent', clusterId: 'b' } });
  });

  it('refuses an expired leaf', async () => {
    const expired = await clusterB.issueLeaf(gateway('b'), { now: new Date(Date.now() - 48 * HOUR), lifetimeMs: HOUR });
    expect(await presentTo(server, expired)).toBe(RefusalReason.EXPIRED);
  });

  it('refuses a leaf from an unknown root', async () => {
    const strangerB = await joinCluster(await RootAuthority.generate({ trustDomain: TRUST_DOMAIN }), 'b');
    expect(await presentTo(server, await strangerB.issueLeaf(gateway('b')))).toBe(RefusalReason.UNKNOWN_ROOT);
  });

  it("refuses cluster A's intermediate signing a cluster-B identity, on either side", async () => {
    const forged = await forgeSvid(await stealIssuer(clusterA), [gateway('b', 'west')]);
    expect(await presentTo(server, forged)).toBe(RefusalReason.CLUSTER_MISMATCH);

    const impostor = await startServer(credentialsFor(forged, bundleOf(1, root), members));
    try {
      const refusal = exchange(clientWith(await clusterA.issueLeaf(gateway('a'))), impostor);
      await expect(refusal).rejects.toBeInstanceOf(PeerRefusedError);
      await expect(refusal).rejects.toMatchObject({ reason: RefusalReason.CLUSTER_MISMATCH });
    } finally {
      await impostor.close();
    }
  });

  it("refuses a cluster intermediate minting the hub's identity", async () => {
    const forged = await forgeSvid(await stealIssuer(clusterB), [formatSpiffeId({ kind: 'hub', trustDomain: TRUST_DOMAIN })]);
    expect(await presentTo(server, forged)).toBe(RefusalReason.CLUSTER_MISMATCH);
  });

  it('refuses a peer of another trust domain', async () => {
    const otherB = await joinCluster(await RootAuthority.generate({ trustDomain: 'other.test' }), 'b');
    const svid = await otherB.issueLeaf(formatSpiffeId({ kind: 'gateway', trustDomain: 'other.test', clusterId: 'b', name: 'main' }));
    expect(await presentTo(server, svid)).toBe(RefusalReason.TRUST_DOMAIN_MISMATCH);
  });

  it('refuses a cluster that is no longer a member, and admits it again when it returns', async () => {
    const svid = await clusterB.issueLeaf(gateway('b'));
    serverA.updateMembers(['a']);
    try {
      expect(await presentTo(server, svid)).toBe(RefusalReason.NOT_A_MEMBER);
    } finally {
      serverA.updateMembers(members);
    }
    expect(await presentTo(server, svid)).toBe('accepted');
  });

  it('refuses a leaf with two URI SANs', async () => {
    const forged = await forgeSvid(await stealIssuer(clusterB), [gateway('b'), gateway('b', 'other')]);
    expect(await presentTo(server, forged)).toBe(RefusalReason.SAN_COUNT);
  });

  it('refuses a client that presents no certificate', async () => {
    expect(await presentTo(server)).toBe(RefusalReason.NO_CERTIFICATE);
  });

  it('counts refusals by reason', async () => {
    const count = async (): Promise<number> =>
      (await peerVerificationFailures.get()).values.find((sample) => sample.labels.reason === RefusalReason.SAN_COUNT)?.value ?? 0;
    const before = await count();
    await presentTo(server, await forgeSvid(await stealIssuer(clusterB), [gateway('b'), gateway('b', 'other')]));
    expect(await count()).toBe(before + 1);
  });

  it('serves as checkServerIdentity for a client whose TLS stack checks the chain itself (grpc-js)', async () => {
    const client = clientWith(await clusterB.issueLeaf(gateway('b')));
    const connectWith = (authorize?: (id: SpiffeId) => boolean): Promise<string> =>
      new Promise((resolve) => {
        const socket = connect({
          host: '127.0.0.1',
          port: server.port,
          ca: bundleToPem(client.bundle),
          key: client.svid.privateKeyPem,
          cert: client.svid.certificateChainPem,
          checkServerIdentity: spiffeServerIdentityCheck(client, authorize),
        });
        socket.on('secureConnect', () => resolve(readToEnd(socket)));
        socket.on('error', (err: Error) => resolve(err instanceof PeerRefusedError ? err.reason : err.message));
      });
    expect(await connectWith()).toBe('ok');
    expect(await connectWith((id) => id.kind === 'hub')).toBe(RefusalReason.NOT_AUTHORIZED);
  });
});

describe('verifyPeer on raw certificates', () => {
  it('refuses an empty chain, garbage, a CA as leaf and a tampered signature', async () => {
    const root = await RootAuthority.generate({ trustDomain: TRUST_DOMAIN });
    const cluster = await joinCluster(root, 'a');
    const context = { bundle: bundleOf(1, root), members: new Set(['a']) };
    expect(verifyPeer([], context)).toMatchObject({ ok: false, reason: RefusalReason.NO_CERTIFICATE });
    expect(verifyPeer([new Uint8Array([48, 3, 2, 1, 0])], context)).toMatchObject({ ok: false, reason: RefusalReason.MALFORMED_CERTIFICATE });
    expect(verifyPeer([cluster.intermediatePem], context)).toMatchObject({ ok: false, reason: RefusalReason.NOT_A_LEAF });

    const svid = await cluster.issueLeaf(gateway('a'));
    const [leafPem = '', intermediatePem = ''] = pemBlocks(svid.certificateChainPem);
    expect(verifyPeer([leafPem, intermediatePem], context)).toMatchObject({ ok: true, peer: { clusterId: 'a' } });
    const tampered = Buffer.from(new X509Certificate(leafPem).raw);
    tampered[tampered.length - 5] = (tampered[tampered.length - 5] as number) ^ 0xff;
    expect(verifyPeer([tampered, intermediatePem], context)).toMatchObject({ ok: false, reason: RefusalReason.BAD_SIGNATURE });
    expect(verifyPeer([leafPem, intermediatePem], { ...context, now: new Date(Date.now() - 3 * HOUR) })).toMatchObject({
      ok: false,
      reason: RefusalReason.NOT_YET_VALID,
    });
  });
});
