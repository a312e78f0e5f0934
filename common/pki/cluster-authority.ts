// A member cluster's intermediate CA, held by its agent (DESIGN §3): the key is generated in the
// cluster and never leaves it; the hub only ever sees a CSR. It issues the leaves of its own
// cluster and nothing else — the verifier enforces the same rule on the other side.
import { IsthmusError, describeError } from '../errors.ts';
import { intermediateSubject } from './root-authority.ts';
import { formatSpiffeId, parseClusterId, parseSpiffeId, parseTrustDomain, type SpiffeId } from './spiffe.ts';
import { issueSvid, type IssueSvidOptions, type X509Svid } from './svid.ts';
import {
  certificateToPem,
  createCertificateRequest,
  importKeyPair,
  keyPairMatches,
  parseCertificates,
  privateKeyToPem,
  x509,
  type Issuer,
  type KeyPair,
} from './x509.ts';

/** The CSR an agent sends at Join or Renew; the hub decides the subject, this one is a hint. */
export async function createIntermediateRequest(keys: KeyPair, clusterId: string): Promise<string> {
  return createCertificateRequest(keys, intermediateSubject(clusterId));
}

export class ClusterAuthority {
  readonly trustDomain: string;
  readonly clusterId: string;
  readonly intermediate: x509.X509Certificate;
  readonly intermediatePem: string;
  readonly #issuer: Issuer;

  private constructor(trustDomain: string, clusterId: string, issuer: Issuer) {
    this.trustDomain = trustDomain;
    this.clusterId = clusterId;
    this.intermediate = issuer.certificate;
    this.intermediatePem = certificateToPem(issuer.certificate);
    this.#issuer = issuer;
  }

  /** Installs the intermediate the hub signed for `privateKey` (fresh from Join, or from the Secret). */
  static async create(options: {
    readonly trustDomain: string;
    readonly clusterId: string;
    readonly privateKey: KeyPair['privateKey'] | string;
    readonly intermediatePem: string;
  }): Promise<ClusterAuthority> {
    const trustDomain = parseTrustDomain(options.trustDomain);
    const clusterId = parseClusterId(options.clusterId);
    const unusable = (detail: string): IsthmusError =>
      new IsthmusError('ISTHMUS_PKI_INVALID', `intermediate for cluster ${clusterId}: ${detail}`);
    let certificates: x509.X509Certificate[];
    try {
      certificates = parseCertificates(options.intermediatePem);
    } catch (err) {
      throw unusable(`not PEM: ${describeError(err)}`);
    }
    const [certificate] = certificates;
    if (certificate === undefined || certificates.length !== 1)
      throw unusable(`expected exactly one certificate, got ${certificates.length}`);
    if (certificate.getExtension(x509.BasicConstraintsExtension)?.ca !== true) throw unusable('not a CA certificate');
    const uris =
      certificate
        .getExtension(x509.SubjectAlternativeNameExtension)
        ?.names.items.filter((name) => name.type === 'url') ?? [];
    const expected = formatSpiffeId({ kind: 'cluster', trustDomain, clusterId });
    if (uris.length !== 1 || uris[0]?.value !== expected) {
      throw unusable(`must carry exactly the URI SAN ${expected}, has [${uris.map((name) => name.value).join(', ')}]`);
    }
    const privateKeyPem =
      typeof options.privateKey === 'string' ? options.privateKey : await privateKeyToPem(options.privateKey);
    const keys = await importKeyPair(privateKeyPem, certificate);
    if (!(await keyPairMatches(keys))) throw unusable('was not issued for this cluster key');
    return new ClusterAuthority(trustDomain, clusterId, { certificate, keys });
  }

  /** The same key under a re-issued intermediate (renewal, or root rotation). */
  async withIntermediate(intermediatePem: string): Promise<ClusterAuthority> {
    return ClusterAuthority.create({
      trustDomain: this.trustDomain,
      clusterId: this.clusterId,
      privateKey: this.#issuer.keys.privateKey,
      intermediatePem,
    });
  }

  /** A CSR for this cluster's key, for Renew. */
  async createRequest(): Promise<string> {
    return createIntermediateRequest(this.#issuer.keys, this.clusterId);
  }

  /** For persisting in the cluster's own Secret. */
  async exportPrivateKeyPem(): Promise<string> {
    return privateKeyToPem(this.#issuer.keys.privateKey);
  }

  /**
   * Issues a leaf X.509-SVID (24 h, ECDSA P-256 unless told otherwise) for an identity of this
   * cluster; refuses the hub's identity and every other cluster's.
   */
  async issueLeaf(identity: string | SpiffeId, options: Omit<IssueSvidOptions, 'chainPem'> = {}): Promise<X509Svid> {
    const id = typeof identity === 'string' ? parseSpiffeId(identity) : identity;
    const spiffeId = formatSpiffeId(id);
    const refuse = (why: string): IsthmusError =>
      new IsthmusError('ISTHMUS_PKI_IDENTITY_REFUSED', `cluster ${this.clusterId} will not issue ${spiffeId}: ${why}`);
    if (id.trustDomain !== this.trustDomain) throw refuse(`trust domain is ${this.trustDomain}`);
    if (id.kind === 'hub' || id.kind === 'nats' || id.kind === 'cluster')
      throw refuse('not a workload identity of a cluster');
    if (id.clusterId !== this.clusterId) throw refuse('belongs to another cluster');
    return issueSvid(this.#issuer, spiffeId, { ...options, chainPem: this.intermediatePem });
  }
}
