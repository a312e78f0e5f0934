// The trust bundle: every root currently trusted, with a sequence number that only grows, so a
// receiver can tell a newer bundle from a replayed one. Serialised as PEM (for TLS stacks) and as
// SPIFFE bundle JSON (SPIFFE Trust Domain and Bundle spec §4: a JWKS with x509-svid keys).
import { X509Certificate, createHash } from 'node:crypto';
import { z } from 'zod';
import { formatIssues } from '../config.ts';
import { IsthmusError, describeError } from '../errors.ts';
import { parseTrustDomain } from './spiffe.ts';

export interface TrustBundle {
  readonly trustDomain: string;
  readonly sequence: number;
  /** Trust anchors, parsed once: the verifier runs on every handshake. */
  readonly roots: readonly X509Certificate[];
}

const sequenceSchema = z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER);

function invalid(detail: string): IsthmusError {
  return new IsthmusError('ISTHMUS_PKI_BUNDLE_INVALID', detail);
}

/** Names a root across the system (rotation state, status): SHA-256 of its DER, as openssl prints it. */
export function rootFingerprint(root: X509Certificate): string {
  return root.fingerprint256;
}

/** kubeadm-style pin of a CA's public key, `sha256:<hex>` over its SubjectPublicKeyInfo. */
export function rootPin(root: X509Certificate): string {
  return `sha256:${createHash('sha256')
    .update(root.publicKey.export({ type: 'spki', format: 'der' }))
    .digest('hex')}`;
}

/** A root as PEM text, DER bytes or already parsed. */
export type RootInput = X509Certificate | string | Buffer;

function toRoot(input: RootInput): X509Certificate {
  let root: X509Certificate;
  try {
    root = input instanceof X509Certificate ? input : new X509Certificate(input);
  } catch (err) {
    throw invalid(`not a certificate: ${describeError(err)}`);
  }
  if (!root.ca) throw invalid(`${root.subject || root.fingerprint256} is not a CA certificate`);
  return root;
}

export function createTrustBundle(init: {
  readonly trustDomain: string;
  readonly sequence: number;
  readonly roots: readonly RootInput[];
}): TrustBundle {
  const sequence = sequenceSchema.safeParse(init.sequence);
  if (!sequence.success) throw invalid(`sequence: ${formatIssues(sequence.error)}`);
  const byFingerprint = new Map<string, X509Certificate>();
  for (const input of init.roots) {
    const root = toRoot(input);
    byFingerprint.set(rootFingerprint(root), root);
  }
  if (byFingerprint.size === 0) throw invalid('a bundle needs at least one root');
  return {
    trustDomain: parseTrustDomain(init.trustDomain),
    sequence: sequence.data,
    roots: [...byFingerprint.values()],
  };
}

/** The bundle plus `root`, at the next sequence; unchanged when `root` is already trusted. */
export function withRoot(bundle: TrustBundle, root: RootInput): TrustBundle {
  const added = toRoot(root);
  if (bundle.roots.some((existing) => rootFingerprint(existing) === rootFingerprint(added))) return bundle;
  return { ...bundle, sequence: bundle.sequence + 1, roots: [...bundle.roots, added] };
}

/** The bundle without the root of that fingerprint, at the next sequence; never empties it. */
export function withoutRoot(bundle: TrustBundle, fingerprint: string): TrustBundle {
  const roots = bundle.roots.filter((root) => rootFingerprint(root) !== fingerprint);
  if (roots.length === bundle.roots.length) return bundle;
  if (roots.length === 0) throw invalid('refusing to remove the last root of the bundle');
  return { ...bundle, sequence: bundle.sequence + 1, roots };
}

export function bundleToPem(bundle: TrustBundle): string {
  return bundle.roots.map((root) => root.toString().trimEnd() + '\n').join('');
}

/** Reads concatenated PEM roots; PEM carries no sequence, so the caller supplies it. */
export function parseBundlePem(pem: string, trustDomain: string, sequence: number): TrustBundle {
  const blocks = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  return createTrustBundle({ trustDomain, sequence, roots: blocks });
}

const jwkSchema = z.looseObject({
  use: z.string(),
  kty: z.string(),
  x5c: z.array(z.string()).optional(),
  crv: z.string().optional(),
  x: z.string().optional(),
  y: z.string().optional(),
  n: z.string().optional(),
  e: z.string().optional(),
});

export const spiffeBundleSchema = z.looseObject({
  keys: z.array(jwkSchema),
  spiffe_sequence: sequenceSchema.optional(),
  spiffe_refresh_hint: z.number().int().nonnegative().optional(),
});

export type SpiffeBundleDocument = z.output<typeof spiffeBundleSchema>;

const X509_SVID_USE = 'x509-svid';
/** JWK members that carry the public key; they must agree with the certificate in x5c. */
const KEY_MEMBERS = ['kty', 'crv', 'x', 'y', 'n', 'e'] as const;

export function bundleToSpiffeDocument(bundle: TrustBundle): SpiffeBundleDocument {
  return {
    keys: bundle.roots.map((root) => ({
      use: X509_SVID_USE,
      ...publicJwkOf(root),
      x5c: [root.raw.toString('base64')],
    })),
    spiffe_sequence: bundle.sequence,
  };
}

export function bundleToSpiffeJson(bundle: TrustBundle): string {
  return JSON.stringify(bundleToSpiffeDocument(bundle), null, 2) + '\n';
}

function publicJwkOf(root: X509Certificate): { kty: string } & Partial<Record<(typeof KEY_MEMBERS)[number], string>> {
  const jwk = root.publicKey.export({ format: 'jwk' });
  return { kty: String(jwk.kty), crv: jwk.crv, x: jwk.x, y: jwk.y, n: jwk.n, e: jwk.e };
}

/**
 * Reads a SPIFFE bundle (JSON text or an already-parsed object). Keys of other uses (jwt-svid)
 * are skipped as the spec requires; a missing spiffe_sequence reads as 0.
 */
export function parseSpiffeBundle(input: unknown, trustDomain: string): TrustBundle {
  let raw: unknown = input;
  if (typeof input === 'string') {
    try {
      raw = JSON.parse(input);
    } catch (err) {
      throw invalid(`not JSON: ${describeError(err)}`);
    }
  }
  const parsed = spiffeBundleSchema.safeParse(raw);
  if (!parsed.success) throw invalid(formatIssues(parsed.error));
  const roots = parsed.data.keys.flatMap((key, index) => {
    if (key.use !== X509_SVID_USE) return [];
    if (key.x5c?.length !== 1) throw invalid(`keys.${index}.x5c must hold exactly one certificate`);
    const root = toRoot(Buffer.from(key.x5c[0] as string, 'base64'));
    const expected = publicJwkOf(root);
    for (const member of KEY_MEMBERS) {
      if (key[member] !== expected[member])
        throw invalid(`keys.${index}.${member} does not match the certificate in x5c`);
    }
    return [root];
  });
  return createTrustBundle({ trustDomain, sequence: parsed.data.spiffe_sequence ?? 0, roots });
}
