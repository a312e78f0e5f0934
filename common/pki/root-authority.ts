// The hub's root CA (DESIGN §3): generated, or plugged in by the user. It signs one intermediate
// per member cluster from a CSR whose key stayed in that cluster, the agent certificates, and the
// hub's own SVID.
//
// Agent certificates are signed by the root, not by the cluster intermediate: the hub returns
// them at Join and on Renew, and it never holds an intermediate key. A root-issued leaf is bound
// to no intermediate, so the verifier only applies its membership check to it. Both the
// intermediate and the agent certificate name the membership epoch they were issued for
// (membership.ts); intermediates carry name constraints (trust domain URIs only, no DNS or IP
// names), so a stolen intermediate cannot mint a server certificate any TLS client trusts.
import { X509Certificate, randomBytes, type webcrypto } from 'node:crypto';
import { IsthmusError, describeError } from '../errors.ts';
import { rootFingerprint } from './bundle.ts';
import { membershipNames } from './membership.ts';
import { formatSpiffeId, parseClusterId, parseTrustDomain } from './spiffe.ts';
import { HOUR_MS, issueSvid, svidTemplate, type X509Svid } from './svid.ts';
import {
  certificateToPem,
  generateKeyPair,
  importKeyPair,
  importPublicKey,
  issueCertificate,
  keyAlgorithmOf,
  keyPairMatches,
  parseCertificates,
  privateKeyToPem,
  validityWindow,
  x509,
  type Issuer,
  type KeyAlgorithm,
} from './x509.ts';

const DAY_MS = 24 * HOUR_MS;
export const DEFAULT_ROOT_LIFETIME_MS = 10 * 365 * DAY_MS;
export const DEFAULT_INTERMEDIATE_LIFETIME_MS = 365 * DAY_MS;
export const DEFAULT_AGENT_CERTIFICATE_LIFETIME_MS = 30 * DAY_MS;
/** The hub re-issues its own SVID locally whenever it likes, so it can stay short-lived. */
export const DEFAULT_HUB_SVID_LIFETIME_MS = 7 * DAY_MS;
/** NATS's certificate is installed by an operator (or the test bed), so it lives longer than the hub's. */
export const DEFAULT_NATS_SVID_LIFETIME_MS = 90 * DAY_MS;
/** A CSR is a few hundred bytes; anything near this is abuse. */
const CSR_MAX_BYTES = 16 * 1024;

/** A certificate the hub signed for a key it does not hold. */
export interface IssuedCertificate {
  readonly certificatePem: string;
  readonly notBefore: Date;
  readonly notAfter: Date;
}

export interface SignOptions {
  readonly lifetimeMs?: number;
  readonly now?: Date;
}

/** Subject of every agent certificate (the identity itself is the URI SAN). */
export const AGENT_CERTIFICATE_SUBJECT = 'OU=isthmus-agent,O=isthmus';

/** `CN=isthmus cluster <id>,O=isthmus,OU=<id>`; the URI SAN carries the same id for the verifier. */
export function intermediateSubject(clusterId: string): string {
  return `CN=isthmus cluster ${clusterId},O=isthmus,OU=${clusterId}`;
}

export class RootAuthority {
  readonly trustDomain: string;
  readonly certificate: x509.X509Certificate;
  readonly certificatePem: string;
  /** As in the trust bundle and the rotation state. */
  readonly fingerprint: string;
  readonly #issuer: Issuer;

  private constructor(trustDomain: string, issuer: Issuer) {
    this.trustDomain = trustDomain;
    this.certificate = issuer.certificate;
    this.certificatePem = certificateToPem(issuer.certificate);
    this.fingerprint = rootFingerprint(new X509Certificate(this.certificatePem));
    this.#issuer = issuer;
  }

  static async generate(options: {
    readonly trustDomain: string;
    readonly algorithm?: KeyAlgorithm;
    readonly lifetimeMs?: number;
    readonly now?: Date;
  }): Promise<RootAuthority> {
    const trustDomain = parseTrustDomain(options.trustDomain);
    const keys = await generateKeyPair(options.algorithm ?? 'P-256');
    const now = options.now ?? new Date();
    // A random tag tells successive roots apart in logs and tools; chains link by key identifier.
    const tag = randomBytes(4).toString('hex');
    const certificate = await issueCertificate(
      {
        subject: `CN=isthmus root ${tag},O=isthmus,OU=${trustDomain}`,
        publicKey: keys.publicKey,
        ...validityWindow(now, options.lifetimeMs ?? DEFAULT_ROOT_LIFETIME_MS),
        isCa: true,
        // Root → cluster intermediate → leaf: exactly one CA below the root.
        pathLength: 1,
      },
      keys,
    );
    return new RootAuthority(trustDomain, { certificate, keys });
  }

  /** Plugs in a user's root: one CA certificate plus its PKCS#8 key, ECDSA P-256 or RSA. */
  static async load(options: {
    readonly trustDomain: string;
    readonly certificatePem: string;
    readonly privateKeyPem: string;
    readonly now?: Date;
  }): Promise<RootAuthority> {
    const trustDomain = parseTrustDomain(options.trustDomain);
    const unusable = (detail: string): IsthmusError => new IsthmusError('ISTHMUS_PKI_INVALID', `root CA: ${detail}`);
    let certificates: x509.X509Certificate[];
    try {
      certificates = parseCertificates(options.certificatePem);
    } catch (err) {
      throw unusable(`certificate is not PEM: ${describeError(err)}`);
    }
    const [certificate] = certificates;
    if (certificate === undefined || certificates.length !== 1)
      throw unusable(`expected exactly one certificate, got ${certificates.length}`);
    const constraints = certificate.getExtension(x509.BasicConstraintsExtension);
    if (constraints?.ca !== true) throw unusable('certificate is not a CA (basicConstraints cA is not true)');
    if (constraints.pathLength === 0) throw unusable('pathLenConstraint 0 leaves no room for cluster intermediates');
    const usages = certificate.getExtension(x509.KeyUsagesExtension);
    if (usages && (usages.usages & x509.KeyUsageFlags.keyCertSign) === 0) throw unusable('key usage lacks keyCertSign');
    const now = options.now ?? new Date();
    if (certificate.notAfter <= now) throw unusable(`expired at ${certificate.notAfter.toISOString()}`);
    if (certificate.notBefore > now) throw unusable(`not valid before ${certificate.notBefore.toISOString()}`);
    const keys = await importKeyPair(options.privateKeyPem, certificate);
    if (!(await keyPairMatches(keys))) throw unusable('private key does not match the certificate');
    return new RootAuthority(trustDomain, { certificate, keys });
  }

  /** For persisting the root (the hub's Secret); the key never leaves the hub otherwise. */
  async exportPrivateKeyPem(): Promise<string> {
    return privateKeyToPem(this.#issuer.keys.privateKey);
  }

  /**
   * Signs the intermediate of membership `epoch` of cluster `clusterId`. Both come from the
   * caller, who authenticated the cluster (bootstrap token or agent certificate); whatever
   * subject or extensions the CSR asks for are ignored, only its key is used.
   */
  async signIntermediate(
    clusterId: string,
    epoch: number,
    csr: string | Uint8Array,
    options: SignOptions = {},
  ): Promise<IssuedCertificate> {
    const id = parseClusterId(clusterId);
    const publicKey = await readCertificateRequest(csr);
    const now = options.now ?? new Date();
    const certificate = await issueCertificate(
      {
        subject: intermediateSubject(id),
        publicKey,
        ...validityWindow(now, options.lifetimeMs ?? DEFAULT_INTERMEDIATE_LIFETIME_MS),
        isCa: true,
        pathLength: 0,
        san: {
          uri: [formatSpiffeId({ kind: 'cluster', trustDomain: this.trustDomain, clusterId: id })],
          dn: membershipNames(id, epoch),
        },
        nameConstraints: { permittedUriHosts: [this.trustDomain], excludeDnsAndIp: true },
      },
      this.#issuer,
    );
    return issued(certificate);
  }

  /**
   * Signs `spiffe://<td>/cluster/<id>/agent` of membership `epoch` for the key in `csr`. Every
   * agent certificate has the same subject, AGENT_CERTIFICATE_SUBJECT, so NATS can map all agents
   * to one read-only user.
   */
  async signAgentCertificate(
    clusterId: string,
    epoch: number,
    csr: string | Uint8Array,
    options: SignOptions = {},
  ): Promise<IssuedCertificate> {
    const id = parseClusterId(clusterId);
    const spiffeId = formatSpiffeId({ kind: 'agent', trustDomain: this.trustDomain, clusterId: id });
    const publicKey = await readCertificateRequest(csr);
    const validity = validityWindow(
      options.now ?? new Date(),
      options.lifetimeMs ?? DEFAULT_AGENT_CERTIFICATE_LIFETIME_MS,
    );
    const template = svidTemplate(spiffeId, publicKey, validity);
    return issued(
      await issueCertificate(
        { ...template, subject: AGENT_CERTIFICATE_SUBJECT, san: { ...template.san, dn: membershipNames(id, epoch) } },
        this.#issuer,
      ),
    );
  }

  /** The hub's own serving and client identity, `spiffe://<td>/hub`, with a key generated here. */
  async issueHubSvid(options: SignOptions = {}): Promise<X509Svid> {
    const spiffeId = formatSpiffeId({ kind: 'hub', trustDomain: this.trustDomain });
    return issueSvid(this.#issuer, spiffeId, {
      lifetimeMs: options.lifetimeMs ?? DEFAULT_HUB_SVID_LIFETIME_MS,
      now: options.now,
    });
  }

  /**
   * NATS's serving identity, `spiffe://<td>/nats`, with a key generated here. Isthmus clients
   * verify it by that SPIFFE ID; `hostNames` (DNS names, IP addresses) are only for other NATS
   * clients, which check host names — only the root can issue those (intermediates may not).
   */
  async issueNatsSvid(
    options: SignOptions & {
      readonly hostNames?: { readonly dns?: readonly string[]; readonly ip?: readonly string[] };
    } = {},
  ): Promise<X509Svid> {
    const spiffeId = formatSpiffeId({ kind: 'nats', trustDomain: this.trustDomain });
    const keys = await generateKeyPair('P-256');
    const template = svidTemplate(
      spiffeId,
      keys.publicKey,
      validityWindow(options.now ?? new Date(), options.lifetimeMs ?? DEFAULT_NATS_SVID_LIFETIME_MS),
    );
    const certificate = await issueCertificate(
      { ...template, san: { ...template.san, dns: options.hostNames?.dns ?? [], ip: options.hostNames?.ip ?? [] } },
      this.#issuer,
    );
    return {
      spiffeId,
      certificateChainPem: certificateToPem(certificate),
      privateKeyPem: await privateKeyToPem(keys.privateKey),
      notBefore: certificate.notBefore,
      notAfter: certificate.notAfter,
    };
  }
}

function issued(certificate: x509.X509Certificate): IssuedCertificate {
  return {
    certificatePem: certificateToPem(certificate),
    notBefore: certificate.notBefore,
    notAfter: certificate.notAfter,
  };
}

/** Parses a PKCS#10 CSR (PEM or DER), checks its self-signature and key type, returns its key. */
async function readCertificateRequest(csr: string | Uint8Array): Promise<webcrypto.CryptoKey> {
  const refuse = (detail: string, cause?: unknown): IsthmusError =>
    new IsthmusError('ISTHMUS_PKI_CSR_INVALID', detail, { cause });
  if ((typeof csr === 'string' ? Buffer.byteLength(csr) : csr.byteLength) > CSR_MAX_BYTES)
    throw refuse(`larger than ${CSR_MAX_BYTES} bytes`);
  let request: x509.Pkcs10CertificateRequest;
  try {
    request = new x509.Pkcs10CertificateRequest(typeof csr === 'string' ? csr : Uint8Array.from(csr));
  } catch (err) {
    throw refuse(`not a PKCS#10 request: ${describeError(err)}`, err);
  }
  const spki = request.publicKey.rawData;
  try {
    keyAlgorithmOf(spki);
  } catch (err) {
    throw refuse(describeError(err), err);
  }
  const verified = await request.verify().catch(() => false);
  if (!verified) throw refuse('signature does not verify with the key it carries');
  return importPublicKey(spki);
}
