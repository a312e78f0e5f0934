// Pins a pending join to its keys. The first Join for a cluster id records the SHA-256 of the
// SubjectPublicKeyInfo of its agent CSR and of its intermediate CSR on the MemberCluster; a
// retry (the agent asking again while the operator has not accepted yet) must present CSRs for
// the same two keys, so holding the bootstrap token is not enough to take over a pending join.
// Each CSR's self-signature is checked here, so a pin proves possession of the key.
import { createHash } from 'node:crypto';
import type { MemberCluster } from '../common/api/isthmus.ts';
import { IsthmusError, describeError } from '../common/errors.ts';
import { x509 } from '../common/pki/x509.ts';

export const AGENT_KEY_ANNOTATION = 'isthmus.dev/agent-key-sha256';
export const INTERMEDIATE_KEY_ANNOTATION = 'isthmus.dev/intermediate-key-sha256';

export interface JoinKeys {
  /** "sha256:<hex>" of the agent CSR's SubjectPublicKeyInfo. */
  readonly agent: string;
  /** "sha256:<hex>" of the intermediate CSR's SubjectPublicKeyInfo. */
  readonly intermediate: string;
}

/** SHA-256 of a CSR's SubjectPublicKeyInfo, after checking the CSR's self-signature. */
export async function csrKeyFingerprint(csrPem: string, what: string): Promise<string> {
  let request: x509.Pkcs10CertificateRequest;
  try {
    request = new x509.Pkcs10CertificateRequest(csrPem);
  } catch (err) {
    throw new IsthmusError('ISTHMUS_PKI_CSR_INVALID', `${what}: not a PKCS#10 request: ${describeError(err)}`, {
      cause: err,
    });
  }
  if (!(await request.verify().catch(() => false)))
    throw new IsthmusError('ISTHMUS_PKI_CSR_INVALID', `${what}: signature does not verify with the key it carries`);
  return `sha256:${createHash('sha256').update(Buffer.from(request.publicKey.rawData)).digest('hex')}`;
}

export async function joinKeysOf(request: { agentCsr: string; intermediateCsr: string }): Promise<JoinKeys> {
  const [agent, intermediate] = await Promise.all([
    csrKeyFingerprint(request.agentCsr, 'agentCsr'),
    csrKeyFingerprint(request.intermediateCsr, 'intermediateCsr'),
  ]);
  return { agent, intermediate };
}

export function joinKeyAnnotations(keys: JoinKeys): Record<string, string> {
  return { [AGENT_KEY_ANNOTATION]: keys.agent, [INTERMEDIATE_KEY_ANNOTATION]: keys.intermediate };
}

/** The keys the first Join pinned on this MemberCluster; undefined when none were pinned. */
export function pinnedJoinKeys(member: MemberCluster): JoinKeys | undefined {
  const annotations = member.metadata.annotations ?? {};
  const agent = annotations[AGENT_KEY_ANNOTATION];
  const intermediate = annotations[INTERMEDIATE_KEY_ANNOTATION];
  return agent && intermediate ? { agent, intermediate } : undefined;
}

export function sameJoinKeys(a: JoinKeys | undefined, b: JoinKeys): boolean {
  return a !== undefined && a.agent === b.agent && a.intermediate === b.intermediate;
}

export function describeJoinKeys(keys: JoinKeys | undefined): string {
  return keys ? `agent key ${keys.agent}, intermediate key ${keys.intermediate}` : 'no keys pinned';
}
