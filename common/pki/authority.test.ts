// Root and cluster authorities: what they sign, and what they refuse to.
import { X509Certificate, webcrypto } from 'node:crypto';
import { beforeAll, describe, expect, it } from 'vitest';
import { isIsthmusError } from '../errors.ts';
import { createTrustBundle } from './bundle.ts';
import { ClusterAuthority, createIntermediateRequest } from './cluster-authority.ts';
import { istioCacertsData } from './istio.ts';
import { membershipClaimOf } from './membership.ts';
import { RootAuthority } from './root-authority.ts';
import { TRUST_DOMAIN, bundleOf, joinCluster, pemBlocks, testMembership } from './test-support.ts';
import { verifyPeer } from './verify.ts';
import {
  EKU,
  certificateToPem,
  createCertificateRequest,
  generateKeyPair,
  issueCertificate,
  parseCertificates,
  privateKeyToPem,
  validityWindow,
  x509,
} from './x509.ts';

const HOUR = 3_600_000;

function parse(pem: string): x509.X509Certificate {
  const [certificate] = parseCertificates(pem);
  if (certificate === undefined) throw new Error('no certificate');
  return certificate;
}

function uriSans(certificate: x509.X509Certificate): string[] {
  return (
    certificate
      .getExtension(x509.SubjectAlternativeNameExtension)
      ?.names.items.filter((n) => n.type === 'url')
      .map((n) => n.value) ?? []
  );
}

async function expectCode(
  promise: Promise<unknown>,
  code: Parameters<typeof isIsthmusError>[1],
  message: string,
): Promise<void> {
  const error = await promise.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(isIsthmusError(error, code), `expected ${code}, got ${String(error)}`).toBe(true);
  expect((error as Error).message).toContain(message);
}

describe('root authority', () => {
  let root: RootAuthority;
  beforeAll(async () => {
    root = await RootAuthority.generate({ trustDomain: TRUST_DOMAIN });
  });

  it('signs an intermediate whose subject and SAN come from the authenticated cluster id, not the CSR', async () => {
    const keys = await generateKeyPair('P-256');
    const csr = await createCertificateRequest(keys, 'CN=isthmus cluster prod,O=isthmus,OU=prod');
    const issued = await root.signIntermediate('staging', 7, csr, { lifetimeMs: 48 * HOUR });
    const intermediate = parse(issued.certificatePem);
    expect(intermediate.subject).toBe('CN=isthmus cluster staging, O=isthmus, OU=staging');
    expect(uriSans(intermediate)).toEqual(['spiffe://isthmus.test/cluster/staging']);
    // The membership it belongs to, and name constraints: trust-domain URIs only, no DNS or IP names.
    expect(
      membershipClaimOf(intermediate.getExtension(x509.SubjectAlternativeNameExtension)?.names.items ?? []),
    ).toEqual({ ok: true, clusterId: 'staging', epoch: 7 });
    expect(intermediate.getExtension('2.5.29.30')?.critical).toBe(true);
    expect(intermediate.getExtension(x509.BasicConstraintsExtension)).toMatchObject({
      ca: true,
      pathLength: 0,
      critical: true,
    });
    expect((intermediate.getExtension(x509.KeyUsagesExtension)?.usages ?? 0) & x509.KeyUsageFlags.keyCertSign).not.toBe(
      0,
    );
    expect(issued.notAfter.getTime() - issued.notBefore.getTime()).toBe(48 * HOUR + 60_000);
    expect(await intermediate.verify({ publicKey: root.certificate.publicKey, signatureOnly: true })).toBe(true);
  });

  it('refuses a CSR whose signature does not verify, garbage, and a key it does not support', async () => {
    const csrPem = await createCertificateRequest(await generateKeyPair('P-256'), 'CN=x');
    const der = Buffer.from(x509.PemConverter.decodeFirst(csrPem));
    der[der.length - 3] = (der[der.length - 3] as number) ^ 0xff;
    await expectCode(root.signIntermediate('a', 1, der), 'ISTHMUS_PKI_CSR_INVALID', 'signature does not verify');
    await expectCode(root.signIntermediate('a', 1, 'not a csr'), 'ISTHMUS_PKI_CSR_INVALID', 'not a PKCS#10 request');
    const p384 = await webcrypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-384' }, true, ['sign', 'verify']);
    const p384Csr = await x509.Pkcs10CertificateRequestGenerator.create({
      name: 'CN=x',
      keys: { privateKey: p384.privateKey, publicKey: p384.publicKey },
      signingAlgorithm: { name: 'ECDSA', hash: 'SHA-384' },
    });
    await expectCode(
      root.signIntermediate('a', 1, p384Csr.toString('pem')),
      'ISTHMUS_PKI_CSR_INVALID',
      'unsupported key EC secp384r1',
    );
    await expectCode(root.signIntermediate('Not_A_Label', 1, csrPem), 'ISTHMUS_PKI_SPIFFE_ID_INVALID', 'DNS-1123');
  });

  it('never lets an intermediate outlive the root', async () => {
    const shortRoot = await RootAuthority.generate({ trustDomain: TRUST_DOMAIN, lifetimeMs: 2 * HOUR });
    const issued = await shortRoot.signIntermediate(
      'a',
      1,
      await createIntermediateRequest(await generateKeyPair(), 'a'),
    );
    expect(issued.notAfter.getTime()).toBe(shortRoot.certificate.notAfter.getTime());
  });

  it('issues the hub SVID and agent certificates itself', async () => {
    const hub = await root.issueHubSvid();
    expect(hub.spiffeId).toBe('spiffe://isthmus.test/hub');
    expect(parseCertificates(hub.certificateChainPem)).toHaveLength(1);
    const agent = await root.signAgentCertificate(
      'b',
      1,
      await createCertificateRequest(await generateKeyPair(), 'CN=agent'),
    );
    expect(uriSans(parse(agent.certificatePem))).toEqual(['spiffe://isthmus.test/cluster/b/agent']);
    expect(
      membershipClaimOf(
        parse(agent.certificatePem).getExtension(x509.SubjectAlternativeNameExtension)?.names.items ?? [],
      ),
    ).toEqual({ ok: true, clusterId: 'b', epoch: 1 });
    const nats = await root.issueNatsSvid({ hostNames: { dns: ['nats.example'], ip: ['127.0.0.1'] } });
    expect(uriSans(parse(nats.certificateChainPem))).toEqual(['spiffe://isthmus.test/nats']);
  });

  it('loads a plugged-in RSA root and keeps signing with it', async () => {
    const rsa = await RootAuthority.generate({ trustDomain: TRUST_DOMAIN, algorithm: 'RSA-2048' });
    const loaded = await RootAuthority.load({
      trustDomain: TRUST_DOMAIN,
      certificatePem: rsa.certificatePem,
      privateKeyPem: await rsa.exportPrivateKeyPem(),
    });
    expect(loaded.fingerprint).toBe(rsa.fingerprint);
    const cluster = await joinCluster(loaded, 'a');
    expect(new X509Certificate(cluster.intermediatePem).verify(new X509Certificate(rsa.certificatePem).publicKey)).toBe(
      true,
    );
  });

  it('chains to a plugged-in root whose key identifier was computed by another method', async () => {
    const keys = await generateKeyPair('P-256');
    const corporate = await x509.X509CertificateGenerator.createSelfSigned({
      name: 'CN=corporate root,O=example',
      keys: { privateKey: keys.privateKey, publicKey: keys.publicKey },
      signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' },
      ...validityWindow(new Date(), HOUR),
      extensions: [
        new x509.BasicConstraintsExtension(true, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
        new x509.SubjectKeyIdentifierExtension('00112233445566778899aabbccddeeff00112233'),
      ],
    });
    const loaded = await RootAuthority.load({
      trustDomain: TRUST_DOMAIN,
      certificatePem: certificateToPem(corporate),
      privateKeyPem: await privateKeyToPem(keys.privateKey),
    });
    const svid = await (await joinCluster(loaded, 'a')).issueLeaf('spiffe://isthmus.test/cluster/a/agent');
    expect(
      verifyPeer(pemBlocks(svid.certificateChainPem), { bundle: bundleOf(1, loaded), members: testMembership(['a']) }),
    ).toMatchObject({ ok: true });
  });

  it('refuses a plugged-in root whose key does not match, that is not a CA, or that allows no intermediate', async () => {
    const other = await RootAuthority.generate({ trustDomain: TRUST_DOMAIN });
    await expectCode(
      RootAuthority.load({
        trustDomain: TRUST_DOMAIN,
        certificatePem: root.certificatePem,
        privateKeyPem: await other.exportPrivateKeyPem(),
      }),
      'ISTHMUS_PKI_INVALID',
      'does not match',
    );
    const keys = await generateKeyPair('P-256');
    const keyPem = await privateKeyToPem(keys.privateKey);
    const selfSigned = async (isCa: boolean, pathLength?: number): Promise<string> =>
      certificateToPem(
        await issueCertificate(
          { subject: 'CN=user root', publicKey: keys.publicKey, ...validityWindow(new Date(), HOUR), isCa, pathLength },
          keys,
        ),
      );
    await expectCode(
      RootAuthority.load({ trustDomain: TRUST_DOMAIN, certificatePem: await selfSigned(false), privateKeyPem: keyPem }),
      'ISTHMUS_PKI_INVALID',
      'not a CA',
    );
    await expectCode(
      RootAuthority.load({
        trustDomain: TRUST_DOMAIN,
        certificatePem: await selfSigned(true, 0),
        privateKeyPem: keyPem,
      }),
      'ISTHMUS_PKI_INVALID',
      'pathLenConstraint 0',
    );
    const loaded = await RootAuthority.load({
      trustDomain: TRUST_DOMAIN,
      certificatePem: await selfSigned(true),
      privateKeyPem: keyPem,
    });
    expect(loaded.trustDomain).toBe(TRUST_DOMAIN);
  });
});

describe('cluster authority', () => {
  let root: RootAuthority;
  let cluster: ClusterAuthority;
  beforeAll(async () => {
    root = await RootAuthority.generate({ trustDomain: TRUST_DOMAIN });
    cluster = await joinCluster(root, 'a');
  });

  it('issues X.509-SVID leaves: one URI SAN, not a CA, digitalSignature, server+client auth, 24 h, P-256', async () => {
    const svid = await cluster.issueLeaf('spiffe://isthmus.test/cluster/a/gateway/main');
    const [leaf, intermediate] = parseCertificates(svid.certificateChainPem);
    if (leaf === undefined || intermediate === undefined) throw new Error('chain must hold leaf and intermediate');
    expect(intermediate.serialNumber).toBe(cluster.intermediate.serialNumber);
    expect(uriSans(leaf)).toEqual(['spiffe://isthmus.test/cluster/a/gateway/main']);
    expect(leaf.getExtension(x509.SubjectAlternativeNameExtension)?.critical).toBe(true);
    expect(leaf.getExtension(x509.BasicConstraintsExtension)?.ca).toBe(false);
    expect(leaf.getExtension(x509.KeyUsagesExtension)?.usages).toBe(x509.KeyUsageFlags.digitalSignature);
    expect(leaf.getExtension(x509.ExtendedKeyUsageExtension)?.usages).toEqual([EKU.serverAuth, EKU.clientAuth]);
    expect(svid.notAfter.getTime() - Date.now()).toBeGreaterThan(24 * HOUR - 5_000);
    expect(svid.notAfter.getTime() - Date.now()).toBeLessThanOrEqual(24 * HOUR);
    expect(leaf.publicKey.algorithm).toMatchObject({ name: 'ECDSA', namedCurve: 'P-256' });
  });

  it('refuses identities outside its own cluster', async () => {
    for (const identity of [
      'spiffe://isthmus.test/cluster/b/gateway/main',
      'spiffe://isthmus.test/hub',
      'spiffe://isthmus.test/cluster/a',
      'spiffe://other.test/cluster/a/agent',
    ]) {
      await expectCode(cluster.issueLeaf(identity), 'ISTHMUS_PKI_IDENTITY_REFUSED', identity);
    }
  });

  it('refuses an intermediate issued for another cluster or another key', async () => {
    const keys = await generateKeyPair();
    const forB = await root.signIntermediate('b', 1, await createIntermediateRequest(keys, 'b'));
    await expectCode(
      ClusterAuthority.create({
        trustDomain: TRUST_DOMAIN,
        clusterId: 'a',
        privateKey: keys.privateKey,
        intermediatePem: forB.certificatePem,
      }),
      'ISTHMUS_PKI_INVALID',
      'spiffe://isthmus.test/cluster/a',
    );
    const otherKey = await generateKeyPair();
    await expectCode(
      ClusterAuthority.create({
        trustDomain: TRUST_DOMAIN,
        clusterId: 'b',
        privateKey: otherKey.privateKey,
        intermediatePem: forB.certificatePem,
      }),
      'ISTHMUS_PKI_INVALID',
      'not issued for this cluster key',
    );
  });

  it('restores from its Secret and installs a re-issued intermediate for the same key', async () => {
    const restored = await ClusterAuthority.create({
      trustDomain: TRUST_DOMAIN,
      clusterId: 'a',
      privateKey: await cluster.exportPrivateKeyPem(),
      intermediatePem: cluster.intermediatePem,
    });
    const newRoot = await RootAuthority.generate({ trustDomain: TRUST_DOMAIN });
    const reissued = await restored.withIntermediate(
      (await newRoot.signIntermediate('a', 1, await restored.createRequest())).certificatePem,
    );
    const svid = await reissued.issueLeaf('spiffe://isthmus.test/cluster/a/agent');
    const [, intermediate] = parseCertificates(svid.certificateChainPem);
    expect(intermediate?.issuer).toBe(newRoot.certificate.subject);
  });

  it('produces Istio cacerts data from its intermediate', async () => {
    const newRoot = await RootAuthority.generate({ trustDomain: TRUST_DOMAIN });
    const bundle = createTrustBundle({
      trustDomain: TRUST_DOMAIN,
      sequence: 2,
      roots: [root.certificatePem, newRoot.certificatePem],
    });
    const keyPem = await cluster.exportPrivateKeyPem();
    const data = istioCacertsData(cluster.intermediatePem, keyPem, bundle);
    expect(data['ca-cert.pem']).toBe(cluster.intermediatePem);
    expect(data['ca-key.pem']).toBe(keyPem);
    expect(parseCertificates(data['root-cert.pem'])).toHaveLength(2);
    expect(data['cert-chain.pem']).toBe(cluster.intermediatePem + root.certificatePem);
    expect(() => istioCacertsData(cluster.intermediatePem, keyPem, bundleOf(1, newRoot))).toThrow(
      'not signed by a root',
    );
  });
});
