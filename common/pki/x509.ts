// Certificate primitives over WebCrypto and @peculiar/x509. ECDSA P-256 is the default
// everywhere (DESIGN §3); RSA exists so users can plug in an RSA root.
// @peculiar/x509 resolves its ASN.1 services through tsyringe, which needs this polyfill first.
import 'reflect-metadata';
import { webcrypto } from 'node:crypto';
import * as x509 from '@peculiar/x509';

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

type CryptoKey = webcrypto.CryptoKey;
type CryptoKeyPair = webcrypto.CryptoKeyPair;

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
  const keys = (await webcrypto.subtle.generateKey(params, true, ['sign', 'verify'])) as CryptoKeyPair;
  return { algorithm, privateKey: keys.privateKey, publicKey: keys.publicKey };
}

export function signingAlgorithmFor(algorithm: KeyAlgorithm): { name: string; hash: string } {
  return algorithm === 'P-256' ? { name: 'ECDSA', hash: 'SHA-256' } : { name: rsa.name, hash: 'SHA-256' };
}

export interface SubjectAltNames {
  readonly dns?: readonly string[];
  readonly ip?: readonly string[];
  readonly uri?: readonly string[];
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
}

export interface Issuer {
  readonly certificate: x509.X509Certificate;
  readonly keys: KeyPair;
}

/** Signs `template` with `issuer`, or self-signs it when `issuer` is the subject's own key pair. */
export async function issueCertificate(template: CertificateTemplate, issuer: Issuer | KeyPair): Promise<x509.X509Certificate> {
  const issuerKeys = 'certificate' in issuer ? issuer.keys : issuer;
  const extensions: x509.Extension[] = [
    new x509.BasicConstraintsExtension(template.isCa, template.isCa ? template.pathLength : undefined, true),
    new x509.KeyUsagesExtension(
      template.isCa
        ? x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign | x509.KeyUsageFlags.digitalSignature
        : x509.KeyUsageFlags.digitalSignature | (issuerKeys.algorithm === 'RSA-2048' && !template.isCa ? x509.KeyUsageFlags.keyEncipherment : 0),
      true,
    ),
    await x509.SubjectKeyIdentifierExtension.create(template.publicKey),
  ];
  if ('certificate' in issuer) extensions.push(await x509.AuthorityKeyIdentifierExtension.create(issuer.certificate));
  if (template.extendedKeyUsages && template.extendedKeyUsages.length > 0) {
    extensions.push(new x509.ExtendedKeyUsageExtension([...template.extendedKeyUsages]));
  }
  const names: x509.JsonGeneralName[] = [
    ...(template.san?.dns ?? []).map((value) => ({ type: 'dns' as const, value })),
    ...(template.san?.ip ?? []).map((value) => ({ type: 'ip' as const, value })),
    ...(template.san?.uri ?? []).map((value) => ({ type: 'url' as const, value })),
  ];
  // A subject with only SANs (SPIFFE leaves) must mark the SAN extension critical (RFC 5280 4.2.1.6).
  if (names.length > 0) extensions.push(new x509.SubjectAlternativeNameExtension(names, template.subject === ''));

  const notBefore = template.notBefore ?? new Date(Date.now() - 60_000);
  return x509.X509CertificateGenerator.create({
    serialNumber: randomSerial(),
    subject: template.subject,
    issuer: 'certificate' in issuer ? issuer.certificate.subject : template.subject,
    notBefore,
    notAfter: template.notAfter,
    signingAlgorithm: signingAlgorithmFor(issuerKeys.algorithm),
    publicKey: template.publicKey,
    signingKey: issuerKeys.privateKey,
    extensions,
  });
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

/** Imports a PKCS#8 PEM key (ECDSA P-256 or RSA) together with its public half. */
export async function importKeyPair(privatePem: string, certificate: x509.X509Certificate): Promise<KeyPair> {
  const der = x509.PemConverter.decodeFirst(privatePem);
  const algorithm: KeyAlgorithm = certificate.publicKey.algorithm.name === 'ECDSA' ? 'P-256' : 'RSA-2048';
  const params = algorithm === 'P-256' ? ecdsa : { name: rsa.name, hash: 'SHA-256' };
  const privateKey = await webcrypto.subtle.importKey('pkcs8', der, params, true, ['sign']);
  const publicKey = await certificate.publicKey.export(params, ['verify']);
  return { algorithm, privateKey, publicKey };
}

export function certificateToPem(cert: x509.X509Certificate): string {
  return cert.toString('pem') + '\n';
}

export function parseCertificates(pem: string): x509.X509Certificate[] {
  return x509.PemConverter.decode(pem).map((der) => new x509.X509Certificate(der));
}

export { x509 };
