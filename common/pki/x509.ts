// Certificate primitives over WebCrypto and @peculiar/x509. ECDSA P-256 is the default
// everywhere (DESIGN §3); RSA exists so users can plug in an RSA root.
// @peculiar/x509 resolves its ASN.1 services through tsyringe, which needs this polyfill first.
import 'reflect-metadata';
import { createHash, createPublicKey, webcrypto } from 'node:crypto';
import { AsnConvert } from '@peculiar/asn1-schema';
import {
  GeneralName,
  GeneralSubtree,
  GeneralSubtrees,
  NameConstraints,
  id_ce_nameConstraints,
} from '@peculiar/asn1-x509';
import * as x509 from '@peculiar/x509';
import { IsthmusError } from '../errors.ts';

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

type CryptoKey = webcrypto.CryptoKey;

export type KeyAlgorithm = 'P-256' | 'RSA-2048';

export interface KeyPair {
  readonly algorithm: KeyAlgorithm;
  readonly privateKey: CryptoKey;
  readonly publicKey: CryptoKey;
}

const ecdsa = { name: 'ECDSA', namedCurve: 'P-256' } as const;
const rsa = {
  name: 'RSASSA-PKCS1-v1_5',
  modulusLength: 2048,
  publicExponent: new Uint8Array([1, 0, 1]),
  hash: 'SHA-256',
} as const;

export const EKU = { serverAuth: '1.3.6.1.5.5.7.3.1', clientAuth: '1.3.6.1.5.5.7.3.2' } as const;

export async function generateKeyPair(algorithm: KeyAlgorithm = 'P-256'): Promise<KeyPair> {
  const params = algorithm === 'P-256' ? ecdsa : rsa;
  const keys = await webcrypto.subtle.generateKey(params, true, ['sign', 'verify']);
  return { algorithm, privateKey: keys.privateKey, publicKey: keys.publicKey };
}

/** WebCrypto import parameters for a public or private key of `algorithm`. */
function importParamsFor(algorithm: KeyAlgorithm): webcrypto.EcKeyImportParams | webcrypto.RsaHashedImportParams {
  return algorithm === 'P-256' ? ecdsa : { name: rsa.name, hash: 'SHA-256' };
}

export function signingAlgorithmFor(algorithm: KeyAlgorithm): { name: string; hash: string } {
  return algorithm === 'P-256' ? { name: 'ECDSA', hash: 'SHA-256' } : { name: rsa.name, hash: 'SHA-256' };
}

export interface SubjectAltNames {
  readonly dns?: readonly string[];
  readonly ip?: readonly string[];
  readonly uri?: readonly string[];
  /** directoryName entries as RFC 4514 strings (the membership name, see membership.ts). */
  readonly dn?: readonly string[];
}

/** RFC 5280 4.2.1.10 name constraints a CA places on everything issued below it. */
export interface NameConstraintsTemplate {
  /** URI hosts (here: the trust domain) that URI SANs below must have. */
  readonly permittedUriHosts: readonly string[];
  /**
   * Excludes every DNS name (a zero-length dNSName) and every IPv4 and IPv6 address, as the
   * CA/Browser Forum asks of a CA that must not issue server names.
   */
  readonly excludeDnsAndIp: boolean;
}

/** Back-dating absorbs clock skew between the issuing and the verifying side. */
const CLOCK_SKEW_MS = 60_000;

/** notBefore/notAfter for a certificate issued at `now` to live `lifetimeMs`. */
export function validityWindow(now: Date, lifetimeMs: number): { notBefore: Date; notAfter: Date } {
  return { notBefore: new Date(now.getTime() - CLOCK_SKEW_MS), notAfter: new Date(now.getTime() + lifetimeMs) };
}

export interface CertificateTemplate {
  /** RFC 4514 string, e.g. "CN=isthmus root,O=isthmus". */
  readonly subject: string;
  readonly publicKey: CryptoKey;
  readonly notBefore?: Date;
  readonly notAfter: Date;
  readonly isCa: boolean;
  /** Only for CAs: how many intermediate CAs may follow. */
  readonly pathLength?: number;
  readonly san?: SubjectAltNames;
  readonly extendedKeyUsages?: readonly string[];
  /** Only for CAs. */
  readonly nameConstraints?: NameConstraintsTemplate;
}

export interface Issuer {
  readonly certificate: x509.X509Certificate;
  readonly keys: KeyPair;
}

/**
 * RFC 5280 4.2.1.2 method 1: SHA-1 of the subjectPublicKey bits (the EC point, or the PKCS#1
 * RSAPublicKey). Computed with node:crypto: the WebCrypto route (export, digest) cost ~0.5 ms.
 */
function keyIdentifierOf(spki: ArrayBuffer): string {
  const key = createPublicKey({ key: Buffer.from(spki), format: 'der', type: 'spki' });
  let subjectPublicKey: Buffer;
  if (key.asymmetricKeyType === 'ec') {
    const { x = '', y = '' } = key.export({ format: 'jwk' });
    subjectPublicKey = Buffer.concat([Buffer.of(0x04), Buffer.from(x, 'base64url'), Buffer.from(y, 'base64url')]);
  } else {
    subjectPublicKey = key.export({ type: 'pkcs1', format: 'der' });
  }
  return createHash('sha1').update(subjectPublicKey).digest('hex');
}

const authorityKeyIdentifiers = new WeakMap<x509.X509Certificate, x509.AuthorityKeyIdentifierExtension>();

/**
 * Copies the issuer's own subjectKeyIdentifier, whatever method produced it (a plugged-in root's
 * may differ from ours): chain builders match AKI against SKI byte for byte.
 */
function authorityKeyIdentifierFor(issuer: x509.X509Certificate): x509.AuthorityKeyIdentifierExtension {
  let extension = authorityKeyIdentifiers.get(issuer);
  if (extension === undefined) {
    const keyId =
      issuer.getExtension(x509.SubjectKeyIdentifierExtension)?.keyId ?? keyIdentifierOf(issuer.publicKey.rawData);
    extension = new x509.AuthorityKeyIdentifierExtension(keyId);
    authorityKeyIdentifiers.set(issuer, extension);
  }
  return extension;
}

/** Signs `template` with `issuer`, or self-signs it when `issuer` is the subject's own key pair. */
export async function issueCertificate(
  template: CertificateTemplate,
  issuer: Issuer | KeyPair,
): Promise<x509.X509Certificate> {
  const issuerKeys = 'certificate' in issuer ? issuer.keys : issuer;
  const spki = await webcrypto.subtle.exportKey('spki', template.publicKey);
  const extensions: x509.Extension[] = [
    new x509.BasicConstraintsExtension(template.isCa, template.isCa ? template.pathLength : undefined, true),
    new x509.KeyUsagesExtension(
      template.isCa
        ? x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign | x509.KeyUsageFlags.digitalSignature
        : // keyEncipherment concerns the subject's own key: only an RSA key can do key transport.
          x509.KeyUsageFlags.digitalSignature |
            (template.publicKey.algorithm.name === rsa.name ? x509.KeyUsageFlags.keyEncipherment : 0),
      true,
    ),
    new x509.SubjectKeyIdentifierExtension(keyIdentifierOf(spki)),
  ];
  if ('certificate' in issuer) extensions.push(authorityKeyIdentifierFor(issuer.certificate));
  if (template.extendedKeyUsages && template.extendedKeyUsages.length > 0) {
    extensions.push(new x509.ExtendedKeyUsageExtension([...template.extendedKeyUsages]));
  }
  const names: x509.JsonGeneralName[] = [
    ...(template.san?.dns ?? []).map((value) => ({ type: 'dns' as const, value })),
    ...(template.san?.ip ?? []).map((value) => ({ type: 'ip' as const, value })),
    ...(template.san?.uri ?? []).map((value) => ({ type: 'url' as const, value })),
    ...(template.san?.dn ?? []).map((value) => ({ type: 'dn' as const, value })),
  ];
  // A subject with only SANs (SPIFFE leaves) must mark the SAN extension critical (RFC 5280 4.2.1.6).
  if (names.length > 0) extensions.push(new x509.SubjectAlternativeNameExtension(names, template.subject === ''));
  if (template.nameConstraints) extensions.push(nameConstraintsExtension(template.nameConstraints));

  const notBefore = template.notBefore ?? validityWindow(new Date(), 0).notBefore;
  // A certificate never outlives its issuer: past that point its chain would fail anyway.
  const notAfter =
    'certificate' in issuer && issuer.certificate.notAfter < template.notAfter
      ? issuer.certificate.notAfter
      : template.notAfter;
  return x509.X509CertificateGenerator.create({
    serialNumber: randomSerial(),
    subject: template.subject,
    // The issuer's DN exactly as it encodes it (a re-parsed string could change string types).
    issuer: 'certificate' in issuer ? issuer.certificate.subjectName : template.subject,
    notBefore,
    notAfter,
    signingAlgorithm: signingAlgorithmFor(issuerKeys.algorithm),
    publicKey: spki,
    signingKey: issuerKeys.privateKey,
    extensions,
  });
}

/** RFC 5280 says a CA MUST mark name constraints critical: a verifier that cannot apply them must refuse the chain. */
function nameConstraintsExtension(template: NameConstraintsTemplate): x509.Extension {
  const subtree = (name: ConstructorParameters<typeof GeneralName>[0]): GeneralSubtree =>
    new GeneralSubtree({ base: new GeneralName(name) });
  const permitted = template.permittedUriHosts.map((host) => subtree({ uniformResourceIdentifier: host }));
  const excluded = template.excludeDnsAndIp
    ? [subtree({ dNSName: '' }), subtree({ iPAddress: '0.0.0.0/0' }), subtree({ iPAddress: '::/0' })]
    : [];
  const constraints = new NameConstraints({
    ...(permitted.length > 0 ? { permittedSubtrees: new GeneralSubtrees(permitted) } : {}),
    ...(excluded.length > 0 ? { excludedSubtrees: new GeneralSubtrees(excluded) } : {}),
  });
  return new x509.Extension(id_ce_nameConstraints, true, AsnConvert.serialize(constraints));
}

/** 16 random bytes with the top bit cleared so the DER INTEGER stays positive. */
function randomSerial(): string {
  const bytes = webcrypto.getRandomValues(new Uint8Array(16));
  bytes[0] = (bytes[0] as number) & 0x7f;
  return Buffer.from(bytes).toString('hex');
}

export async function privateKeyToPem(key: CryptoKey): Promise<string> {
  const der = await webcrypto.subtle.exportKey('pkcs8', key);
  return x509.PemConverter.encode(der, 'PRIVATE KEY');
}

export async function publicKeyToPem(key: CryptoKey): Promise<string> {
  const der = await webcrypto.subtle.exportKey('spki', key);
  return x509.PemConverter.encode(der, 'PUBLIC KEY');
}

/**
 * Which supported algorithm a SubjectPublicKeyInfo uses: ECDSA P-256, or RSA of at least 2048
 * bits (labelled 'RSA-2048': the label selects the signature scheme, not the modulus size).
 */
export function keyAlgorithmOf(spki: ArrayBuffer | Uint8Array): KeyAlgorithm {
  const key = createPublicKey({
    key: Buffer.from(spki instanceof Uint8Array ? spki : new Uint8Array(spki)),
    format: 'der',
    type: 'spki',
  });
  const details = key.asymmetricKeyDetails ?? {};
  if (key.asymmetricKeyType === 'ec' && details.namedCurve === 'prime256v1') return 'P-256';
  if (key.asymmetricKeyType === 'rsa' && (details.modulusLength ?? 0) >= 2048) return 'RSA-2048';
  const described =
    key.asymmetricKeyType === 'ec'
      ? `EC ${details.namedCurve}`
      : `${key.asymmetricKeyType} ${details.modulusLength ?? ''} bits`;
  throw new IsthmusError(
    'ISTHMUS_PKI_INVALID',
    `unsupported key ${described} (ECDSA P-256 or RSA of 2048 bits or more)`,
  );
}

export async function importPublicKey(spki: ArrayBuffer | Uint8Array): Promise<CryptoKey> {
  return webcrypto.subtle.importKey('spki', spki, importParamsFor(keyAlgorithmOf(spki)), true, ['verify']);
}

/** Imports a PKCS#8 PEM key (ECDSA P-256 or RSA) together with its public half. */
export async function importKeyPair(privatePem: string, certificate: x509.X509Certificate): Promise<KeyPair> {
  const der = x509.PemConverter.decodeFirst(privatePem);
  const algorithm = keyAlgorithmOf(certificate.publicKey.rawData);
  const params = importParamsFor(algorithm);
  let privateKey: CryptoKey;
  try {
    privateKey = await webcrypto.subtle.importKey('pkcs8', der, params, true, ['sign']);
  } catch (err) {
    throw new IsthmusError('ISTHMUS_PKI_INVALID', `private key is not a PKCS#8 ${algorithm} key`, { cause: err });
  }
  return { algorithm, privateKey, publicKey: await importPublicKey(certificate.publicKey.rawData) };
}

/** True when `privateKey` and `publicKey` are two halves of one key: signs a nonce and verifies it. */
export async function keyPairMatches(keys: KeyPair): Promise<boolean> {
  const nonce = webcrypto.getRandomValues(new Uint8Array(32));
  const algorithm = signingAlgorithmFor(keys.algorithm);
  try {
    const signature = await webcrypto.subtle.sign(algorithm, keys.privateKey, nonce);
    return await webcrypto.subtle.verify(algorithm, keys.publicKey, signature, nonce);
  } catch {
    return false;
  }
}

/** A PKCS#10 request proving possession of `keys`; the CA decides the subject, so it is informative only. */
export async function createCertificateRequest(keys: KeyPair, subject: string): Promise<string> {
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    name: subject,
    keys: { privateKey: keys.privateKey, publicKey: keys.publicKey },
    signingAlgorithm: signingAlgorithmFor(keys.algorithm),
  });
  return csr.toString('pem') + '\n';
}

export function certificateToPem(cert: x509.X509Certificate): string {
  return cert.toString('pem') + '\n';
}

export function parseCertificates(pem: string): x509.X509Certificate[] {
  return x509.PemConverter.decode(pem).map((der) => new x509.X509Certificate(der));
}

export { x509 };
