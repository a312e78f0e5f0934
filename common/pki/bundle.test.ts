import { X509Certificate } from 'node:crypto';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  bundleToPem,
  bundleToSpiffeDocument,
  bundleToSpiffeJson,
  createTrustBundle,
  parseBundlePem,
  parseSpiffeBundle,
  rootFingerprint,
  rootPin,
  withRoot,
  withoutRoot,
  type TrustBundle,
} from './bundle.ts';
import { RootAuthority } from './root-authority.ts';
import { TRUST_DOMAIN, joinCluster } from './test-support.ts';

const fingerprints = (bundle: TrustBundle): string[] => bundle.roots.map(rootFingerprint);

describe('trust bundle', () => {
  let ecRoot: RootAuthority;
  let rsaRoot: RootAuthority;
  let bundle: TrustBundle;

  beforeAll(async () => {
    [ecRoot, rsaRoot] = await Promise.all([
      RootAuthority.generate({ trustDomain: TRUST_DOMAIN }),
      RootAuthority.generate({ trustDomain: TRUST_DOMAIN, algorithm: 'RSA-2048' }),
    ]);
    bundle = createTrustBundle({
      trustDomain: TRUST_DOMAIN,
      sequence: 7,
      roots: [ecRoot.certificatePem, rsaRoot.certificatePem],
    });
  });

  it('round-trips through SPIFFE bundle JSON with EC and RSA keys', () => {
    const json = bundleToSpiffeJson(bundle);
    const document = JSON.parse(json) as { spiffe_sequence: number; keys: Record<string, unknown>[] };
    expect(document.spiffe_sequence).toBe(7);
    expect(document.keys[0]).toMatchObject({ use: 'x509-svid', kty: 'EC', crv: 'P-256' });
    expect(document.keys[1]).toMatchObject({ use: 'x509-svid', kty: 'RSA', e: 'AQAB' });
    expect(document.keys[1]).not.toHaveProperty('crv');
    expect(document.keys.map((key) => (key.x5c as string[]).length)).toEqual([1, 1]);

    const parsed = parseSpiffeBundle(json, TRUST_DOMAIN);
    expect(parsed.sequence).toBe(7);
    expect(fingerprints(parsed)).toEqual(fingerprints(bundle));
    expect(bundleToSpiffeJson(parsed)).toBe(json);
  });

  it('round-trips through PEM (the sequence travels beside it)', () => {
    const parsed = parseBundlePem(bundleToPem(bundle), TRUST_DOMAIN, 7);
    expect(fingerprints(parsed)).toEqual(fingerprints(bundle));
    expect(bundleToPem(parsed)).toBe(bundleToPem(bundle));
  });

  it('skips keys of other uses and reads a missing sequence as 0', () => {
    const document = bundleToSpiffeDocument(bundle);
    const { spiffe_sequence: _sequence, ...withoutSequence } = document;
    const jwtKey = { use: 'jwt-svid', kty: 'EC', kid: 'k1', crv: 'P-256', x: 'AA', y: 'AA' };
    const parsed = parseSpiffeBundle(
      { ...withoutSequence, keys: [...document.keys, jwtKey], spiffe_refresh_hint: 300 },
      TRUST_DOMAIN,
    );
    expect(parsed.sequence).toBe(0);
    expect(parsed.roots).toHaveLength(2);
  });

  it('refuses malformed documents with the offending field', () => {
    const document = bundleToSpiffeDocument(bundle);
    const [ecKey, rsaKey] = document.keys;
    expect(() => parseSpiffeBundle('{', TRUST_DOMAIN)).toThrow('not JSON');
    expect(() => parseSpiffeBundle({ keys: 'nope' }, TRUST_DOMAIN)).toThrow('keys');
    expect(() => parseSpiffeBundle({ ...document, spiffe_sequence: -1 }, TRUST_DOMAIN)).toThrow('spiffe_sequence');
    expect(() => parseSpiffeBundle({ keys: [{ ...ecKey, x: rsaKey?.n }] }, TRUST_DOMAIN)).toThrow(
      'keys.0.x does not match',
    );
    expect(() =>
      parseSpiffeBundle({ keys: [{ ...ecKey, x5c: [...(ecKey?.x5c ?? []), ...(ecKey?.x5c ?? [])] }] }, TRUST_DOMAIN),
    ).toThrow('exactly one certificate');
    expect(() => parseSpiffeBundle({ keys: [] }, TRUST_DOMAIN)).toThrow('at least one root');
    expect(() => parseSpiffeBundle(document, 'Not A Domain')).toThrow('trust domain');
  });

  it('refuses a certificate that is not a CA as a root', async () => {
    const cluster = await joinCluster(ecRoot, 'a');
    const leaf = await cluster.issueLeaf('spiffe://isthmus.test/cluster/a/agent');
    expect(() =>
      createTrustBundle({ trustDomain: TRUST_DOMAIN, sequence: 1, roots: [leaf.certificateChainPem] }),
    ).toThrow('not a CA');
  });

  it('moves the sequence forward on every change and never empties', () => {
    const single = createTrustBundle({ trustDomain: TRUST_DOMAIN, sequence: 1, roots: [ecRoot.certificatePem] });
    const both = withRoot(single, rsaRoot.certificatePem);
    expect(both.sequence).toBe(2);
    expect(withRoot(both, rsaRoot.certificatePem)).toBe(both);
    const rsaOnly = withoutRoot(both, ecRoot.fingerprint);
    expect(rsaOnly.sequence).toBe(3);
    expect(fingerprints(rsaOnly)).toEqual([rsaRoot.fingerprint]);
    expect(withoutRoot(rsaOnly, ecRoot.fingerprint)).toBe(rsaOnly);
    expect(() => withoutRoot(rsaOnly, rsaRoot.fingerprint)).toThrow('last root');
  });

  it('pins a root by the SHA-256 of its public key, as kubeadm does', () => {
    const pin = rootPin(new X509Certificate(ecRoot.certificatePem));
    expect(pin).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(rootPin(new X509Certificate(rsaRoot.certificatePem))).not.toBe(pin);
  });
});
