// X.509-SVIDs: the leaf shape every Isthmus identity uses (DESIGN §3), whoever issues it.
import type { webcrypto } from 'node:crypto';
import {
  EKU,
  certificateToPem,
  generateKeyPair,
  issueCertificate,
  privateKeyToPem,
  validityWindow,
  type CertificateTemplate,
  type Issuer,
  type KeyAlgorithm,
} from './x509.ts';

type CryptoKey = webcrypto.CryptoKey;

/** An identity ready to present in TLS. */
export interface X509Svid {
  readonly spiffeId: string;
  /** PEM, leaf first, then the intermediate that signed it when there is one; never the root. */
  readonly certificateChainPem: string;
  /** PKCS#8 PEM of the leaf key. */
  readonly privateKeyPem: string;
  readonly notBefore: Date;
  readonly notAfter: Date;
}

export const HOUR_MS = 3_600_000;
export const DEFAULT_LEAF_LIFETIME_MS = 24 * HOUR_MS;

/**
 * SPIFFE X.509-SVID rules: exactly one URI SAN, cA=false, digitalSignature, serverAuth+clientAuth.
 * The subject stays empty (the SAN, marked critical, is the identity), as the SPIFFE spec suggests.
 */
export function svidTemplate(
  spiffeId: string,
  publicKey: CryptoKey,
  validity: { notBefore: Date; notAfter: Date },
): CertificateTemplate {
  return {
    subject: '',
    publicKey,
    ...validity,
    isCa: false,
    san: { uri: [spiffeId] },
    extendedKeyUsages: [EKU.serverAuth, EKU.clientAuth],
  };
}

export interface IssueSvidOptions {
  readonly lifetimeMs?: number;
  readonly keyAlgorithm?: KeyAlgorithm;
  /** PEM appended after the leaf: the issuing intermediate, or nothing when a root issues. */
  readonly chainPem?: string;
  readonly now?: Date;
}

/** Generates a fresh key here and issues an SVID for it (the key never travels). */
export async function issueSvid(issuer: Issuer, spiffeId: string, options: IssueSvidOptions = {}): Promise<X509Svid> {
  const now = options.now ?? new Date();
  const keys = await generateKeyPair(options.keyAlgorithm ?? 'P-256');
  const template = svidTemplate(
    spiffeId,
    keys.publicKey,
    validityWindow(now, options.lifetimeMs ?? DEFAULT_LEAF_LIFETIME_MS),
  );
  const leaf = await issueCertificate(template, issuer);
  return {
    spiffeId,
    certificateChainPem: certificateToPem(leaf) + (options.chainPem ?? ''),
    privateKeyPem: await privateKeyToPem(keys.privateKey),
    notBefore: leaf.notBefore,
    notAfter: leaf.notAfter,
  };
}
