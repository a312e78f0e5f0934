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
  testMembership,
  TEST_EPOCH,
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
const gateway = (clusterId: string, name = 'main'): string =>
  formatSpiffeId({ kind: 'gateway', trustDomain: TRUST_DOMAIN, clusterId, name });

/** The intermediate's own key, as a compromised cluster would hold it. */
async function stealIssuer(authority: ClusterAuthority): Promise<Issuer> {
  return {
    certificate: authority.intermediate,
    keys: await importKeyPair(await authority.exportPrivateKeyPem(), authority.intermediate),
  };
}

/** A leaf SVID with any SANs the forger likes, chained to `issuer`. */
async function forgeSvid(
  issuer: Issuer,
  uris: readonly string[],
  hostNames: { dns?: string[]; ip?: string[] } = {},
): Promise<X509Svid> {
  const keys = await generateKeyPair('P-256');
  const [first = ''] = uris;
  const leaf = await issueCertificate(
    { ...svidTemplate(first, keys.publicKey, validityWindow(new Date(), HOUR)), san: { uri: uris, ...hostNames } },
    issuer,
  );
  return {
    spiffeId: first,
    certificateChainPem: certificateToPem(leaf) + certificateToPem(issuer.certificate),
    privateKeyPem: await privateKeyToPem(keys.privateKey),
    notBefore: leaf.notBefore,
    notAfter: leaf.notAfter,
  };
}

/** The root-issued agent certificate of membership `epoch` of `clusterId`, as the hub signs it. */
async function agentSvid(root: RootAuthority, clusterId: string, epoch: number): Promise<X509Svid> {
  const keys = await generateKeyPair('P-256');
  const issued = await root.signAgentCertificate(clusterId, epoch, await createCertificateRequest(keys, 'CN=agent'));
  return {
    spiffeId: formatSpiffeId({ kind: 'agent', trustDomain: TRUST_DOMAIN, clusterId }),
    certificateChainPem: issued.certificatePem,
    privateKeyPem: await privateKeyToPem(keys.privateKey),
    notBefore: issued.notBefore,
    notAfter: issued.notAfter,
  };
}

/** A cluster intermediate as roots signed them before name constraints (and epochs) existed, with its key. */
async function unconstrainedIntermediate(root: RootAuthority, clusterId: string): Promise<Issuer> {
  const keys = await generateKeyPair('P-256');
  const rootIssuer = {
    certificate: root.certificate,
    keys: await importKeyPair(await root.exportPrivateKeyPem(), root.certificate),
  };
  const certificate = await issueCertificate(
    {
      subject: `CN=isthmus cluster ${clusterId}`,
      publicKey: keys.publicKey,
      ...validityWindow(new Date(), HOUR),
      isCa: true,
      pathLength: 0,
      san: { uri: [formatSpiffeId({ kind: 'cluster', trustDomain: TRUST_DOMAIN, clusterId })] },
    },
    rootIssuer,
  );
  return { certificate, keys };
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
    expect(server.accepted.at(-1)).toMatchObject({
      spiffeId: gateway('b', 'west'),
      clusterId: 'b',
      id: { kind: 'gateway', name: 'west' },
    });
  });

  it("accepts the hub's root-issued identity and a root-issued agent certificate", async () => {
    expect(await exchange(clientWith(await root.issueHubSvid()), server)).toBe(true);
    expect(server.accepted.at(-1)).toMatchObject({ id: { kind: 'hub' }, clusterId: undefined });

    const agentKeys = await generateKeyPair('P-256');
    const agentCert = await root.signAgentCertificate(
      'b',
      TEST_EPOCH,
      await createCertificateRequest(agentKeys, 'CN=whatever the agent asks'),
    );
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
    const forged = await forgeSvid(await stealIssuer(clusterB), [
      formatSpiffeId({ kind: 'hub', trustDomain: TRUST_DOMAIN }),
    ]);
    expect(await presentTo(server, forged)).toBe(RefusalReason.CLUSTER_MISMATCH);
  });

  it('refuses a peer of another trust domain', async () => {
    const otherB = await joinCluster(await RootAuthority.generate({ trustDomain: 'other.test' }), 'b');
    const svid = await otherB.issueLeaf(
      formatSpiffeId({ kind: 'gateway', trustDomain: 'other.test', clusterId: 'b', name: 'main' }),
    );
    expect(await presentTo(server, svid)).toBe(RefusalReason.TRUST_DOMAIN_MISMATCH);
  });

  it('refuses a removed cluster, and its old certificates even after the same id joined again', async () => {
    const svid = await clusterB.issueLeaf(gateway('b'));
    const oldAgent = await agentSvid(root, 'b', TEST_EPOCH);
    const rejoined = await joinCluster(root, 'b', TEST_EPOCH + 1);
    serverA.updateMembers(testMembership(['a']));
    try {
      expect(await presentTo(server, svid)).toBe(RefusalReason.NOT_A_MEMBER);
      serverA.updateMembers(
        new Map([
          ['a', TEST_EPOCH],
          ['b', TEST_EPOCH + 1],
        ]),
      );
      expect(await presentTo(server, svid)).toBe(RefusalReason.EPOCH_SUPERSEDED);
      expect(await presentTo(server, oldAgent)).toBe(RefusalReason.EPOCH_SUPERSEDED);
      expect(await presentTo(server, await rejoined.issueLeaf(gateway('b')))).toBe('accepted');
      expect(await presentTo(server, await agentSvid(root, 'b', TEST_EPOCH + 1))).toBe('accepted');
    } finally {
      serverA.updateMembers(testMembership(members));
    }
    // A membership list that has not caught up with a re-join refuses the newer certificates too.
    expect(await presentTo(server, await rejoined.issueLeaf(gateway('b')))).toBe(RefusalReason.EPOCH_UNKNOWN);
  });

  it('refuses a leaf with a DNS or IP name under a cluster intermediate, even one without name constraints', async () => {
    expect(
      await presentTo(server, await forgeSvid(await stealIssuer(clusterB), [gateway('b')], { dns: ['localhost'] })),
    ).toBe(RefusalReason.NAME_NOT_PERMITTED);
    expect(
      await presentTo(server, await forgeSvid(await stealIssuer(clusterB), [gateway('b')], { ip: ['127.0.0.1'] })),
    ).toBe(RefusalReason.NAME_NOT_PERMITTED);
    // An intermediate from before name constraints (the root signs one without them).
    const unconstrained = await unconstrainedIntermediate(root, 'b');
    expect(await presentTo(server, await forgeSvid(unconstrained, [gateway('b')], { dns: ['localhost'] }))).toBe(
      RefusalReason.NAME_NOT_PERMITTED,
    );
  });

  it("the intermediate's name constraints make OpenSSL refuse a server certificate it mints for a host name", async () => {
    const forged = await forgeSvid(
      await stealIssuer(clusterB),
      [formatSpiffeId({ kind: 'nats', trustDomain: TRUST_DOMAIN })],
      { dns: ['localhost'], ip: ['127.0.0.1'] },
    );
    const impostor = await startServer(credentialsFor(forged, bundleOf(1, root), members));
    try {
      const error = await new Promise<string>((resolve) => {
        const socket = connect({
          host: '127.0.0.1',
          port: impostor.port,
          servername: 'localhost',
          ca: bundleToPem(bundleOf(1, root)),
        });
        socket.on('secureConnect', () => resolve('connected'));
        socket.on('error', (err: NodeJS.ErrnoException) => resolve(`${err.code} ${err.message}`));
      });
      expect(error).toMatch(/excluded subtree violation/);
    } finally {
      await impostor.close();
    }
  });

  it("accepts the root-issued NATS identity and refuses it minted by a cluster's intermediate", async () => {
    const nats = await root.issueNatsSvid({ hostNames: { dns: ['localhost'], ip: ['127.0.0.1'] } });
    const onlyNats = {
      bundle: bundleOf(1, root),
      members: testMembership(members),
      authorize: (id: SpiffeId) => id.kind === 'nats',
    };
    expect(verifyPeer(pemBlocks(nats.certificateChainPem), onlyNats)).toMatchObject({
      ok: true,
      peer: { id: { kind: 'nats' }, clusterId: undefined },
    });
    const forged = await forgeSvid(await stealIssuer(clusterB), [
      formatSpiffeId({ kind: 'nats', trustDomain: TRUST_DOMAIN }),
    ]);
    expect(verifyPeer(pemBlocks(forged.certificateChainPem), onlyNats)).toMatchObject({
      ok: false,
      reason: RefusalReason.CLUSTER_MISMATCH,
    });
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
      (await peerVerificationFailures.get()).values.find((sample) => sample.labels.reason === RefusalReason.SAN_COUNT)
        ?.value ?? 0;
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
    const context = { bundle: bundleOf(1, root), members: testMembership(['a']) };
    expect(verifyPeer([], context)).toMatchObject({ ok: false, reason: RefusalReason.NO_CERTIFICATE });
    expect(verifyPeer([new Uint8Array([48, 3, 2, 1, 0])], context)).toMatchObject({
      ok: false,
      reason: RefusalReason.MALFORMED_CERTIFICATE,
    });
    expect(verifyPeer([cluster.intermediatePem], context)).toMatchObject({
      ok: false,
      reason: RefusalReason.NOT_A_LEAF,
    });

    const svid = await cluster.issueLeaf(gateway('a'));
    const [leafPem = '', intermediatePem = ''] = pemBlocks(svid.certificateChainPem);
    expect(verifyPeer([leafPem, intermediatePem], context)).toMatchObject({ ok: true, peer: { clusterId: 'a' } });
    const tampered = Buffer.from(new X509Certificate(leafPem).raw);
    tampered[tampered.length - 5] = (tampered[tampered.length - 5] as number) ^ 0xff;
    expect(verifyPeer([tampered, intermediatePem], context)).toMatchObject({
      ok: false,
      reason: RefusalReason.BAD_SIGNATURE,
    });
    expect(verifyPeer([leafPem, intermediatePem], { ...context, now: new Date(Date.now() - 3 * HOUR) })).toMatchObject({
      ok: false,
      reason: RefusalReason.NOT_YET_VALID,
    });
  });
});
