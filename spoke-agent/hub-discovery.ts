// Before it trusts anything, a joining agent learns the hub's root CA from the TLS handshake and
// accepts it only if its public key hashes to the pin from `isthmus token create` (kubeadm's
// discovery-token-ca-cert-hash). The hub sends its root along in its certificate chain.
import { X509Certificate } from 'node:crypto';
import { IsthmusError } from '../common/errors.ts';
import { tlsHandshake } from '../common/tls-handshake.ts';
import { peerChainOf, rootPin, safeParseSpiffeId } from '../common/pki/index.ts';

export interface DiscoveredHub {
  readonly caPem: string;
  /** From the hub's SPIFFE ID, spiffe://<trust domain>/hub. */
  readonly trustDomain: string;
}

/** Learns the hub's root CA and trust domain when `endpoint` presents a chain to a root matching `pin`. */
export async function discoverHubCa(endpoint: string, pin: string, timeoutMs = 5_000): Promise<DiscoveredHub> {
  // No verification here on purpose: the pin check below is the verification.
  const chain = peerChainOf(await tlsHandshake(endpoint, { rejectUnauthorized: false }, timeoutMs)).map(
    (der) => new X509Certificate(der),
  );
  const leaf = chain[0];
  const root = chain.find((cert) => cert.ca && rootPin(cert) === pin);
  if (!leaf || !root) {
    const offered = chain.filter((c) => c.ca).map((c) => rootPin(c));
    throw new IsthmusError(
      'ISTHMUS_CA_PIN_MISMATCH',
      `${endpoint} presents CA ${offered.join(', ') || '(none)'}, expected ${pin}; check the --ca-pin from \`isthmus token create\``,
    );
  }
  if (!leaf.checkIssued(root) || !leaf.verify(root.publicKey)) {
    throw new IsthmusError(
      'ISTHMUS_CA_PIN_MISMATCH',
      `${endpoint}: the server certificate is not signed by the pinned CA`,
    );
  }
  const id = safeParseSpiffeId(/URI:([^,\s]+)/.exec(leaf.subjectAltName ?? '')?.[1] ?? '');
  if (!id.ok || id.id.kind !== 'hub') {
    throw new IsthmusError(
      'ISTHMUS_PEER_REFUSED',
      `${endpoint} is not an Isthmus hub (its certificate names ${leaf.subjectAltName ?? 'no SPIFFE ID'})`,
    );
  }
  return { caPem: root.toString(), trustDomain: id.id.trustDomain };
}
