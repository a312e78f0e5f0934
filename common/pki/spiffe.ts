// SPIFFE trust domains and IDs (SPIFFE-ID spec) restricted to the shapes Isthmus issues (DESIGN §3).
// Parsing is manual rather than through WHATWG URL, which would lower-case, percent-decode and
// normalise: a SPIFFE ID must be compared exactly as written.
import { z } from 'zod';
import { IsthmusError } from '../errors.ts';

const TRUST_DOMAIN_MAX_LENGTH = 255;
const SPIFFE_ID_MAX_LENGTH = 2048;
const SCHEME = 'spiffe://';

function trustDomainProblem(value: string): string | undefined {
  if (value.length === 0) return 'must not be empty';
  if (value.length > TRUST_DOMAIN_MAX_LENGTH) return `must be at most ${TRUST_DOMAIN_MAX_LENGTH} characters`;
  if (value.includes('://')) return 'must be a bare name, without a scheme';
  if (value.includes('@')) return 'must not contain user info';
  if (value.includes(':')) return 'must not contain a port';
  if (/[A-Z]/.test(value)) return 'must be lower case';
  if (!/^[a-z0-9._-]+$/.test(value)) return 'may only contain lower-case letters, digits, ".", "-" and "_"';
  return undefined;
}

export const trustDomainSchema = z.string().superRefine((value, ctx) => {
  const problem = trustDomainProblem(value);
  if (problem !== undefined) ctx.addIssue({ code: 'custom', message: problem });
});

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

/** Cluster ids, namespaces: RFC 1123 labels as Kubernetes defines them. */
export const dnsLabelSchema = z
  .string()
  .max(63)
  .regex(DNS_LABEL, 'must be a DNS-1123 label (lower-case alphanumerics and "-")');
export const clusterIdSchema = dnsLabelSchema;

/** Kubernetes object names (gateway names, service accounts): RFC 1123 subdomains. */
export const dnsSubdomainSchema = z
  .string()
  .max(253)
  .refine((value) => value.split('.').every((label) => label.length <= 63 && DNS_LABEL.test(label)), {
    message: 'must be a DNS-1123 subdomain (dot-separated lower-case labels)',
  });

export type SpiffeId =
  | { readonly kind: 'hub'; readonly trustDomain: string }
  /** The NATS server's identity: issued by the root only, like the hub's. */
  | { readonly kind: 'nats'; readonly trustDomain: string }
  /** Names a cluster's intermediate CA (its URI SAN), never a leaf. */
  | { readonly kind: 'cluster'; readonly trustDomain: string; readonly clusterId: string }
  | { readonly kind: 'agent'; readonly trustDomain: string; readonly clusterId: string }
  | { readonly kind: 'gateway'; readonly trustDomain: string; readonly clusterId: string; readonly name: string }
  | {
      readonly kind: 'workload';
      readonly trustDomain: string;
      readonly clusterId: string;
      readonly namespace: string;
      readonly serviceAccount: string;
    };

export type SpiffeIdParse =
  { readonly ok: true; readonly id: SpiffeId } | { readonly ok: false; readonly problem: string };

/** Validates a trust domain, throwing ISTHMUS_PKI_TRUST_DOMAIN_INVALID with the precise problem. */
export function parseTrustDomain(value: string): string {
  const problem = trustDomainProblem(value);
  if (problem !== undefined) throw new IsthmusError('ISTHMUS_PKI_TRUST_DOMAIN_INVALID', `"${value}" ${problem}`);
  return value;
}

/** Validates a cluster id (a DNS-1123 label), throwing ISTHMUS_PKI_SPIFFE_ID_INVALID. */
export function parseClusterId(value: string): string {
  if (!clusterIdSchema.safeParse(value).success) {
    throw new IsthmusError('ISTHMUS_PKI_SPIFFE_ID_INVALID', `cluster id "${value}" is not a DNS-1123 label`);
  }
  return value;
}

/** Non-throwing parse, for the peer verifier (a refused peer is a result, not an exception). */
export function safeParseSpiffeId(uri: string): SpiffeIdParse {
  const fail = (problem: string): SpiffeIdParse => ({ ok: false, problem });
  if (uri.length > SPIFFE_ID_MAX_LENGTH) return fail(`longer than ${SPIFFE_ID_MAX_LENGTH} characters`);
  if (!uri.startsWith(SCHEME)) return fail('scheme must be "spiffe://"');
  const rest = uri.slice(SCHEME.length);
  const slash = rest.indexOf('/');
  const trustDomain = slash === -1 ? rest : rest.slice(0, slash);
  const tdProblem = trustDomainProblem(trustDomain);
  if (tdProblem !== undefined) return fail(`trust domain ${tdProblem}`);
  if (slash === -1) return fail('names a trust domain, not a workload');
  const segments = rest.slice(slash + 1).split('/');
  for (const segment of segments) {
    if (segment === '') return fail('path has an empty segment or a trailing "/"');
    if (segment === '.' || segment === '..') return fail('path has a relative segment');
    if (!/^[a-zA-Z0-9._-]+$/.test(segment))
      return fail(`path segment "${segment}" has characters outside [a-zA-Z0-9._-]`);
  }
  return isthmusShape(trustDomain, segments);
}

function isthmusShape(trustDomain: string, segments: readonly string[]): SpiffeIdParse {
  const [first, clusterId, third, fourth, fifth, sixth] = segments;
  const shape = (problem: string): SpiffeIdParse => ({ ok: false, problem });
  if (segments.length === 1 && first === 'hub') return { ok: true, id: { kind: 'hub', trustDomain } };
  if (segments.length === 1 && first === 'nats') return { ok: true, id: { kind: 'nats', trustDomain } };
  if (first !== 'cluster' || clusterId === undefined)
    return shape('is not an Isthmus identity (hub, nats or cluster/<id>/...)');
  if (!clusterIdSchema.safeParse(clusterId).success) return shape(`cluster id "${clusterId}" is not a DNS-1123 label`);
  if (segments.length === 2) return { ok: true, id: { kind: 'cluster', trustDomain, clusterId } };
  if (segments.length === 3 && third === 'agent') return { ok: true, id: { kind: 'agent', trustDomain, clusterId } };
  if (segments.length === 4 && third === 'gateway' && fourth !== undefined) {
    if (!dnsSubdomainSchema.safeParse(fourth).success)
      return shape(`gateway name "${fourth}" is not a DNS-1123 subdomain`);
    return { ok: true, id: { kind: 'gateway', trustDomain, clusterId, name: fourth } };
  }
  if (segments.length === 6 && third === 'ns' && fifth === 'sa' && fourth !== undefined && sixth !== undefined) {
    if (!dnsLabelSchema.safeParse(fourth).success) return shape(`namespace "${fourth}" is not a DNS-1123 label`);
    if (!dnsSubdomainSchema.safeParse(sixth).success)
      return shape(`service account "${sixth}" is not a DNS-1123 subdomain`);
    return { ok: true, id: { kind: 'workload', trustDomain, clusterId, namespace: fourth, serviceAccount: sixth } };
  }
  return shape('is not an Isthmus identity (cluster/<id>/agent, /gateway/<name> or /ns/<ns>/sa/<sa>)');
}

/** Parses an Isthmus SPIFFE ID, throwing ISTHMUS_PKI_SPIFFE_ID_INVALID. */
export function parseSpiffeId(uri: string): SpiffeId {
  const parsed = safeParseSpiffeId(uri);
  if (!parsed.ok) throw new IsthmusError('ISTHMUS_PKI_SPIFFE_ID_INVALID', `"${uri}" ${parsed.problem}`);
  return parsed.id;
}

/** Formats and validates (the result always parses back to `id`). */
export function formatSpiffeId(id: SpiffeId): string {
  const prefix = `${SCHEME}${id.trustDomain}`;
  let uri: string;
  switch (id.kind) {
    case 'hub':
      uri = `${prefix}/hub`;
      break;
    case 'nats':
      uri = `${prefix}/nats`;
      break;
    case 'cluster':
      uri = `${prefix}/cluster/${id.clusterId}`;
      break;
    case 'agent':
      uri = `${prefix}/cluster/${id.clusterId}/agent`;
      break;
    case 'gateway':
      uri = `${prefix}/cluster/${id.clusterId}/gateway/${id.name}`;
      break;
    case 'workload':
      uri = `${prefix}/cluster/${id.clusterId}/ns/${id.namespace}/sa/${id.serviceAccount}`;
      break;
  }
  parseSpiffeId(uri);
  return uri;
}

/** The member cluster an identity belongs to; undefined for the hub and NATS. */
export function clusterIdOf(id: SpiffeId): string | undefined {
  return id.kind === 'hub' || id.kind === 'nats' ? undefined : id.clusterId;
}
