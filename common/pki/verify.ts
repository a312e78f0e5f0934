// Peer verification for every Isthmus mTLS endpoint (DESIGN §3). The TLS stack does no chain
// verification of its own (as in go-spiffe: the handshake proves possession of the leaf key, this
// module decides whether that leaf is acceptable). A refused peer is a result with a reason, not
// an exception, so callers can log it and the failure counter can break it down. Because no TLS
// stack applies the intermediates' name constraints here, this module enforces their intent
// itself: a leaf under a cluster intermediate carries no DNS or IP name. A certificate of an
// earlier membership of a cluster id (membership.ts) is refused even after the id re-joined.
import { X509Certificate } from 'node:crypto';
import { Counter } from 'prom-client';
import { IsthmusError, describeError } from '../errors.ts';
import { rootFingerprint, type TrustBundle } from './bundle.ts';
import { membershipClaimOf, type Membership, type MembershipClaim } from './membership.ts';
import { clusterIdOf, safeParseSpiffeId, type SpiffeId } from './spiffe.ts';
import { x509 } from './x509.ts';

export const RefusalReason = {
  NO_CERTIFICATE: 'NO_CERTIFICATE',
  MALFORMED_CERTIFICATE: 'MALFORMED_CERTIFICATE',
  NOT_A_LEAF: 'NOT_A_LEAF',
  BAD_KEY_USAGE: 'BAD_KEY_USAGE',
  SAN_COUNT: 'SAN_COUNT',
  BAD_SPIFFE_ID: 'BAD_SPIFFE_ID',
  TRUST_DOMAIN_MISMATCH: 'TRUST_DOMAIN_MISMATCH',
  UNKNOWN_ROOT: 'UNKNOWN_ROOT',
  BAD_SIGNATURE: 'BAD_SIGNATURE',
  NOT_YET_VALID: 'NOT_YET_VALID',
  EXPIRED: 'EXPIRED',
  /** The signing intermediate names no cluster (or not exactly one). */
  UNBOUND_INTERMEDIATE: 'UNBOUND_INTERMEDIATE',
  /** A cluster's intermediate signed an identity of another cluster, or the hub's. */
  CLUSTER_MISMATCH: 'CLUSTER_MISMATCH',
  NOT_A_MEMBER: 'NOT_A_MEMBER',
  /** The certificate belongs to an earlier membership of its cluster id (removed, then joined again). */
  EPOCH_SUPERSEDED: 'EPOCH_SUPERSEDED',
  /** The certificate names a later membership than the list here (the list has not caught up yet). */
  EPOCH_UNKNOWN: 'EPOCH_UNKNOWN',
  /** A certificate's membership name is malformed or names another cluster. */
  BAD_MEMBERSHIP_NAME: 'BAD_MEMBERSHIP_NAME',
  /** A leaf signed by a cluster intermediate carries a DNS or IP name (its name constraints forbid them). */
  NAME_NOT_PERMITTED: 'NAME_NOT_PERMITTED',
  /** Valid identity, but the endpoint's own policy does not admit it. */
  NOT_AUTHORIZED: 'NOT_AUTHORIZED',
} as const;

export type RefusalReason = (typeof RefusalReason)[keyof typeof RefusalReason];

export interface VerifiedPeer {
  readonly id: SpiffeId;
  readonly spiffeId: string;
  /** Undefined for the hub and NATS. */
  readonly clusterId: string | undefined;
  /** The membership epoch the certificate belongs to; undefined for the hub and NATS. */
  readonly epoch: number | undefined;
  /** Which root the chain ends at (fingerprint as in the bundle). */
  readonly root: string;
  readonly notAfter: Date;
}

export type PeerVerdict =
  | { readonly ok: true; readonly peer: VerifiedPeer }
  | { readonly ok: false; readonly reason: RefusalReason; readonly detail: string };

export interface PeerVerificationContext {
  readonly bundle: TrustBundle;
  /** Current member clusters with the epoch of their membership, as distributed by the hub. */
  readonly members: Membership;
  readonly now?: Date;
  /** Endpoint policy on top of identity, e.g. "only agents" on the hub's agent API. */
  readonly authorize?: (id: SpiffeId) => boolean;
}

/** What a client connection rejects with, or a grpc-js checkServerIdentity returns. */
export class PeerRefusedError extends IsthmusError {
  readonly reason: RefusalReason;

  constructor(reason: RefusalReason, detail: string) {
    super('ISTHMUS_PKI_PEER_REFUSED', `${reason}: ${detail}`);
    this.reason = reason;
  }
}

/** A certificate as DER bytes or PEM text (grpc-js exposes DER through `getAuthContext()`). */
export type CertificateInput = Uint8Array | string;

export const peerVerificationFailures = new Counter({
  name: 'isthmus_peer_verification_failures_total',
  help: 'mTLS peers refused by the SPIFFE verifier, by reason.',
  labelNames: ['reason'] as const,
});
for (const reason of Object.values(RefusalReason)) peerVerificationFailures.inc({ reason }, 0);

/**
 * Verifies a peer chain as presented in TLS: leaf first, then the intermediate (a root sent
 * along is tolerated). Counts every refusal in `isthmus_peer_verification_failures_total`.
 */
export function verifyPeer(presented: readonly CertificateInput[], context: PeerVerificationContext): PeerVerdict {
  const verdict = evaluate(presented, context);
  if (!verdict.ok) peerVerificationFailures.inc({ reason: verdict.reason });
  return verdict;
}

function refuse(reason: RefusalReason, detail: string): PeerVerdict {
  return { ok: false, reason, detail };
}

function evaluate(presented: readonly CertificateInput[], context: PeerVerificationContext): PeerVerdict {
  let chain: X509Certificate[];
  try {
    chain = presented.map((input) => new X509Certificate(input));
  } catch (err) {
    return refuse(RefusalReason.MALFORMED_CERTIFICATE, describeError(err));
  }
  const [leaf, ...others] = chain;
  if (leaf === undefined) return refuse(RefusalReason.NO_CERTIFICATE, 'peer presented no certificate');

  // Cheap structural checks first: a stranger's certificate costs no signature verification.
  const leafFacts = factsOf(leaf);
  if (leaf.ca || leafFacts.keyCertSign) return refuse(RefusalReason.NOT_A_LEAF, 'leaf is a CA certificate');
  if (!leafFacts.digitalSignature) return refuse(RefusalReason.BAD_KEY_USAGE, 'leaf key usage lacks digitalSignature');
  const [uri] = leafFacts.uris;
  if (uri === undefined || leafFacts.uris.length !== 1) {
    return refuse(RefusalReason.SAN_COUNT, `leaf has ${leafFacts.uris.length} URI SANs, exactly one is required`);
  }
  const parsed = safeParseSpiffeId(uri);
  if (!parsed.ok) return refuse(RefusalReason.BAD_SPIFFE_ID, `${uri} ${parsed.problem}`);
  const id = parsed.id;
  if (id.kind === 'cluster')
    return refuse(RefusalReason.BAD_SPIFFE_ID, `${uri} names a cluster authority, not a workload`);
  const trustDomain = context.bundle.trustDomain;
  if (id.trustDomain !== trustDomain) {
    return refuse(RefusalReason.TRUST_DOMAIN_MISMATCH, `${uri} is not in trust domain ${trustDomain}`);
  }

  // The chain: leaf ← root (hub, agents), or leaf ← cluster intermediate ← root. Nothing longer.
  const roots = context.bundle.roots;
  let root = issuerAmong(leaf, roots);
  let intermediate: X509Certificate | undefined;
  if (root === undefined) {
    const signer = issuerAmong(
      leaf,
      others.filter((cert) => cert.ca),
    );
    if (signer === undefined) return unknownRoot(context.bundle, 'leaf');
    if (signer === BAD_SIGNATURE)
      return refuse(RefusalReason.BAD_SIGNATURE, 'leaf signature does not verify with its issuer');
    intermediate = signer;
    root = issuerAmong(intermediate, roots);
    if (root === undefined) return unknownRoot(context.bundle, 'intermediate');
  }
  if (root === BAD_SIGNATURE) {
    return refuse(
      RefusalReason.BAD_SIGNATURE,
      `${intermediate ? 'intermediate' : 'leaf'} signature does not verify with the root`,
    );
  }

  const now = context.now ?? new Date();
  for (const [role, cert] of [
    ['leaf', leaf],
    ['intermediate', intermediate],
    ['root', root],
  ] as const) {
    if (cert === undefined) continue;
    if (now < cert.validFromDate)
      return refuse(RefusalReason.NOT_YET_VALID, `${role} not valid before ${cert.validFromDate.toISOString()}`);
    if (now > cert.validToDate)
      return refuse(RefusalReason.EXPIRED, `${role} expired at ${cert.validToDate.toISOString()}`);
  }

  if (intermediate !== undefined && leafFacts.hostNames > 0) {
    return refuse(
      RefusalReason.NAME_NOT_PERMITTED,
      `${uri} carries ${leafFacts.hostNames} DNS or IP names; a cluster intermediate may not issue any`,
    );
  }

  const clusterId = clusterIdOf(id);
  if (intermediate !== undefined) {
    // X.509 name constraints cannot confine a URI path, so the cluster binding is checked here.
    const authority = clusterAuthorityOf(intermediate);
    if (authority === undefined)
      return refuse(RefusalReason.UNBOUND_INTERMEDIATE, 'intermediate names no cluster in a single URI SAN');
    if (authority.trustDomain !== trustDomain) {
      return refuse(
        RefusalReason.TRUST_DOMAIN_MISMATCH,
        `intermediate belongs to trust domain ${authority.trustDomain}`,
      );
    }
    if (authority.clusterId !== clusterId) {
      return refuse(
        RefusalReason.CLUSTER_MISMATCH,
        `${uri} was signed by the intermediate of cluster ${authority.clusterId}`,
      );
    }
  }
  let epoch: number | undefined;
  if (clusterId !== undefined) {
    const current = context.members.get(clusterId);
    if (current === undefined)
      return refuse(RefusalReason.NOT_A_MEMBER, `cluster ${clusterId} is not a current member`);
    // An intermediate's leaves belong to its membership; the root-issued agent certificate names its own.
    const claim = factsOf(intermediate ?? leaf).membership;
    if (!claim.ok) return refuse(RefusalReason.BAD_MEMBERSHIP_NAME, claim.problem);
    if (claim.clusterId !== undefined && claim.clusterId !== clusterId) {
      return refuse(RefusalReason.BAD_MEMBERSHIP_NAME, `${uri} names a membership of cluster ${claim.clusterId}`);
    }
    epoch = claim.epoch;
    if (epoch < current) {
      return refuse(
        RefusalReason.EPOCH_SUPERSEDED,
        `${uri} belongs to membership epoch ${epoch} of cluster ${clusterId}, which was removed; the current membership is epoch ${current}`,
      );
    }
    if (epoch > current)
      return refuse(
        RefusalReason.EPOCH_UNKNOWN,
        `${uri} belongs to membership epoch ${epoch} of cluster ${clusterId}; the membership known here is epoch ${current}`,
      );
  }
  if (context.authorize !== undefined && !context.authorize(id)) {
    return refuse(RefusalReason.NOT_AUTHORIZED, `${uri} is not admitted by this endpoint`);
  }
  return {
    ok: true,
    peer: { id, spiffeId: uri, clusterId, epoch, root: rootFingerprint(root), notAfter: leaf.validToDate },
  };
}

function unknownRoot(bundle: TrustBundle, role: string): PeerVerdict {
  return refuse(
    RefusalReason.UNKNOWN_ROOT,
    `${role} does not chain to a root of the trust bundle (sequence ${bundle.sequence})`,
  );
}

const BAD_SIGNATURE = Symbol('bad signature');

/**
 * The candidate that issued `cert`: names and key identifiers match (checkIssued) and the
 * signature verifies. BAD_SIGNATURE when a candidate matches by name but none by signature.
 */
function issuerAmong(
  cert: X509Certificate,
  candidates: readonly X509Certificate[],
): X509Certificate | typeof BAD_SIGNATURE | undefined {
  const { verifiedIssuers } = factsOf(cert);
  let named = false;
  for (const candidate of candidates) {
    const issuerFingerprint = candidate.fingerprint256;
    if (verifiedIssuers.has(issuerFingerprint)) return candidate;
    if (!cert.checkIssued(candidate)) continue;
    named = true;
    if (cert.verify(candidate.publicKey)) {
      verifiedIssuers.add(issuerFingerprint);
      return candidate;
    }
  }
  return named ? BAD_SIGNATURE : undefined;
}

function clusterAuthorityOf(intermediate: X509Certificate): { trustDomain: string; clusterId: string } | undefined {
  const { uris } = factsOf(intermediate);
  const [uri] = uris;
  if (uri === undefined || uris.length !== 1) return undefined;
  const parsed = safeParseSpiffeId(uri);
  if (!parsed.ok || parsed.id.kind !== 'cluster') return undefined;
  return { trustDomain: parsed.id.trustDomain, clusterId: parsed.id.clusterId };
}

/**
 * What never changes about a certificate: the extension facts node:crypto does not expose (key
 * usage bits, the exact SAN lists), and the issuers whose signature on it already verified.
 */
interface CertificateFacts {
  readonly uris: readonly string[];
  /** How many DNS and IP SANs. */
  readonly hostNames: number;
  readonly membership: MembershipClaim;
  readonly digitalSignature: boolean;
  readonly keyCertSign: boolean;
  /** Fingerprints (SHA-256 of the DER, so collision-proof) of verified issuers. */
  readonly verifiedIssuers: Set<string>;
}

// A full ASN.1 parse costs ~0.3 ms and a signature check ~0.1 ms; peers present the same
// certificates for hours, so remember by fingerprint. Insertion order makes the Map a FIFO.
const FACTS_CACHE_LIMIT = 4096;
const factsCache = new Map<string, CertificateFacts>();

function factsOf(cert: X509Certificate): CertificateFacts {
  const key = cert.fingerprint256;
  const cached = factsCache.get(key);
  if (cached !== undefined) return cached;
  const parsed = new x509.X509Certificate(cert.raw);
  const usages = parsed.getExtension(x509.KeyUsagesExtension)?.usages;
  const san = parsed.getExtension(x509.SubjectAlternativeNameExtension);
  const names = san?.names.items ?? [];
  const facts: CertificateFacts = {
    uris: names.filter((name) => name.type === 'url').map((name) => name.value),
    hostNames: names.filter((name) => name.type === 'dns' || name.type === 'ip').length,
    membership: membershipClaimOf(names),
    // Without a keyUsage extension the key is unrestricted (RFC 5280 4.2.1.3).
    digitalSignature: usages === undefined || (usages & x509.KeyUsageFlags.digitalSignature) !== 0,
    keyCertSign: usages !== undefined && (usages & x509.KeyUsageFlags.keyCertSign) !== 0,
    verifiedIssuers: new Set(),
  };
  if (factsCache.size >= FACTS_CACHE_LIMIT) factsCache.delete(factsCache.keys().next().value as string);
  factsCache.set(key, facts);
  return facts;
}
