// Typed shapes of the hub API messages (hub.proto, camelCase as @grpc/proto-loader delivers them)
// and the zod schemas the hub validates every request with. Guarantees: every list in a request
// has an upper bound; cluster facts obey the MemberCluster CRD's rules (the same zod schema), so a
// Join the API server would refuse is refused before anything is written or a token use spent;
// exported services, ports and zones obey the Service API's naming rules, so no member can make
// every importer's API server writes fail.
import { z } from 'zod';
import {
  dns1035LabelSchema,
  dns1123LabelSchema,
  gatewayAddressSchema,
  labelValueSchema,
  memberClusterSpecSchema,
  qualifiedNameSchema,
  type MemberClusterSpec,
} from '../api/index.ts';

const dns1123Label = dns1123LabelSchema;
// Locality values are label values (the hub writes them into MemberCluster), empty when unknown.
const localityName = z.union([z.literal(''), labelValueSchema]);
const pem = (what: string) =>
  z
    .string()
    .max(16 * 1024)
    .includes('-----BEGIN', { message: `${what} must be PEM` });

/** Bounds on the lists a message may carry (a cap on work per call, before any quota). */
export const MESSAGE_LIMITS = {
  gatewayAddresses: 16,
  labels: 32,
  ports: 100,
  endpointZones: 64,
  allowedClusters: 1024,
  exportedLabels: 64,
  exportedAnnotations: 64,
  /** Bytes of one exported annotation value (the apiserver caps all annotations of an object at 256 KiB). */
  exportedAnnotationValue: 4096,
  services: 50_000,
} as const;

const clusterFactsObject = z.object({
  clusterId: dns1123Label,
  region: localityName.default(''),
  zone: localityName.default(''),
  network: z.union([z.literal(''), dns1123LabelSchema]).default(''),
  gatewayAddresses: z.array(gatewayAddressSchema).max(MESSAGE_LIMITS.gatewayAddresses).default([]),
  labels: z.record(qualifiedNameSchema, labelValueSchema).default({}),
  agentVersion: z.string().max(64).default(''),
});

/** The MemberCluster spec the hub writes for these facts. */
export function memberSpecOf(facts: z.infer<typeof clusterFactsObject>, accepted: boolean): MemberClusterSpec {
  return {
    clusterId: facts.clusterId,
    ...(facts.region ? { region: facts.region } : {}),
    ...(facts.zone ? { zone: facts.zone } : {}),
    ...(facts.network ? { network: facts.network } : {}),
    ...(facts.gatewayAddresses.length > 0 ? { gatewayAddresses: facts.gatewayAddresses } : {}),
    ...(Object.keys(facts.labels).length > 0 ? { labels: facts.labels } : {}),
    accepted,
  };
}

/** Facts checked with the MemberCluster CRD's own schema (duplicates, label count, ...). */
export const clusterFactsSchema = clusterFactsObject.superRefine((facts, ctx) => {
  const spec = memberClusterSpecSchema.safeParse(memberSpecOf(facts, false));
  if (!spec.success)
    for (const issue of spec.error.issues) ctx.addIssue({ code: 'custom', message: issue.message, path: issue.path });
});
export type ClusterFacts = z.infer<typeof clusterFactsSchema>;

export const joinRequestSchema = z.object({
  token: z.string().min(1, 'token is required'),
  facts: clusterFactsSchema,
  intermediateCsr: pem('intermediateCsr'),
  agentCsr: pem('agentCsr'),
});
export type JoinRequest = z.infer<typeof joinRequestSchema>;

export interface Credentials {
  agentCertificate: string;
  intermediateCertificate: string;
  trustBundlePem: string;
  trustBundleJson: string;
  trustBundleSequence: number;
}

export interface JoinResponse {
  credentials: Credentials;
  trustDomain: string;
  natsUrls: string[];
  hubEndpoints: string[];
  heartbeatIntervalSeconds: number;
}

export const renewRequestSchema = z.object({
  agentCsr: z
    .string()
    .max(16 * 1024)
    .default(''),
  intermediateCsr: z
    .string()
    .max(16 * 1024)
    .default(''),
});
export type RenewRequest = z.infer<typeof renewRequestSchema>;

export interface RenewResponse {
  credentials: Credentials;
}

/** At most this many FailoverPolicy copies in one heartbeat; an agent with more reports the first ones. */
export const MAX_APPLIED_POLICIES = 10_000;

export const appliedPolicySchema = z.object({
  namespace: dns1123Label,
  service: dns1123Label,
  policyName: z.string().min(1).max(253),
  generation: z.number().int().min(1),
});
export type AppliedPolicy = z.infer<typeof appliedPolicySchema>;

export const heartbeatRequestSchema = z.object({
  agentVersion: z.string().max(64).default(''),
  trustBundleSequence: z.number().int().min(0).default(0),
  exportCount: z.number().int().min(0).default(0),
  intermediateExpiry: z.string().max(64).default(''),
  rootInUse: z.string().max(128).default(''),
  appliedPolicies: z.array(appliedPolicySchema).max(MAX_APPLIED_POLICIES).default([]),
  appliedPoliciesKnown: z.boolean().default(false),
});
export type HeartbeatRequest = z.infer<typeof heartbeatRequestSchema>;

export interface HeartbeatResponse {
  trustBundleSequence: number;
  heartbeatIntervalSeconds: number;
  trustBundlePem: string;
  trustBundleJson: string;
  reissueIntermediate: boolean;
  /** The hub wants the caller's full export set now (a new leader, or counts that disagree). */
  resendExports: boolean;
}

/** A Service port as the Service API validates it: name a DNS-1123 label, appProtocol a qualified name. */
export const servicePortSchema = z.object({
  name: z.union([z.literal(''), dns1123LabelSchema]).default(''),
  protocol: z.enum(['TCP', 'UDP', 'SCTP']).default('TCP'),
  port: z.number().int().min(1).max(65535),
  appProtocol: z.union([z.literal(''), qualifiedNameSchema]).default(''),
});

/** The Service API's port-list rules: names required when there are several, names and port/protocol unique. */
function checkPorts(ports: readonly z.infer<typeof servicePortSchema>[], ctx: z.RefinementCtx): void {
  const names = new Set<string>();
  const numbers = new Set<string>();
  ports.forEach((p, i) => {
    if (ports.length > 1 && p.name === '')
      ctx.addIssue({
        code: 'custom',
        message: 'must have a name when the service has several ports',
        path: ['ports', i, 'name'],
      });
    if (p.name !== '' && names.has(p.name))
      ctx.addIssue({ code: 'custom', message: `duplicate port name "${p.name}"`, path: ['ports', i, 'name'] });
    const number = `${p.port}/${p.protocol}`;
    if (numbers.has(number))
      ctx.addIssue({ code: 'custom', message: `duplicate port ${number}`, path: ['ports', i, 'port'] });
    names.add(p.name);
    numbers.add(number);
  });
}

export const ipFamilySchema = z.enum(['IPv4', 'IPv6']);

/** A map of qualified names (label and annotation keys) to values, at most `max` entries. */
function boundedRecord(value: z.ZodType<string>, max: number, what: string) {
  return z
    .record(qualifiedNameSchema, value)
    .refine((record) => Object.keys(record).length <= max, { message: `${what} may have at most ${max} entries` })
    .default({});
}

export const exportedServiceSchema = z
  .object({
    namespace: dns1123Label,
    // Service names are DNS-1035 labels (the importer writes a Service of this name).
    name: dns1035LabelSchema,
    type: z.enum(['ClusterSetIP', 'Headless']),
    ports: z.array(servicePortSchema).max(MESSAGE_LIMITS.ports),
    sessionAffinity: z.enum(['None', 'ClientIP']).default('None'),
    sessionAffinityTimeoutSeconds: z.number().int().min(0).max(86_400).default(0),
    exportCreatedAt: z.iso.datetime({ offset: true }),
    endpoints: z
      .array(
        z.object({
          zone: labelValueSchema,
          ready: z.number().int().min(0).max(1_000_000),
          total: z.number().int().min(0).max(1_000_000).default(0),
        }),
      )
      .max(MESSAGE_LIMITS.endpointZones)
      .default([]),
    allowedClusters: z.array(dns1123Label).max(MESSAGE_LIMITS.allowedClusters).default([]),
    // Primary family first, as the Service lists them; empty from agents that predate the field.
    ipFamilies: z.array(ipFamilySchema).max(2).default([]),
    internalTrafficPolicy: z.union([z.literal(''), z.enum(['Cluster', 'Local'])]).default(''),
    trafficDistribution: z.union([z.literal(''), qualifiedNameSchema]).default(''),
    // Copied onto every importer's ServiceImport, so they obey the label and annotation rules.
    exportedLabels: boundedRecord(labelValueSchema, MESSAGE_LIMITS.exportedLabels, 'exportedLabels'),
    exportedAnnotations: boundedRecord(
      z.string().max(MESSAGE_LIMITS.exportedAnnotationValue),
      MESSAGE_LIMITS.exportedAnnotations,
      'exportedAnnotations',
    ),
  })
  .superRefine((service, ctx) => {
    checkPorts(service.ports, ctx);
    if (new Set(service.ipFamilies).size !== service.ipFamilies.length)
      ctx.addIssue({ code: 'custom', message: 'duplicate IP family', path: ['ipFamilies'] });
  });
export type ExportedService = z.infer<typeof exportedServiceSchema>;

export const reportExportsRequestSchema = z.object({
  generation: z.number().int().min(0),
  services: z.array(exportedServiceSchema).max(MESSAGE_LIMITS.services),
});
export type ReportExportsRequest = z.infer<typeof reportExportsRequestSchema>;

export interface ExportConflict {
  namespace: string;
  name: string;
  type: string;
  message: string;
}

export interface ReportExportsResponse {
  appliedGeneration: number;
  conflicts: ExportConflict[];
}

export const leaveRequestSchema = z.object({ reason: z.string().max(1024).default('') });
export type LeaveRequest = z.infer<typeof leaveRequestSchema>;
export type LeaveResponse = Record<string, never>;

/** Request and response type of every hub method, the single source for client and server typing. */
export interface HubMethods {
  Join: { request: JoinRequest; response: JoinResponse };
  Renew: { request: RenewRequest; response: RenewResponse };
  Heartbeat: { request: HeartbeatRequest; response: HeartbeatResponse };
  ReportExports: { request: ReportExportsRequest; response: ReportExportsResponse };
  Leave: { request: LeaveRequest; response: LeaveResponse };
}
export type HubMethod = keyof HubMethods;

export const requestSchemas = {
  Join: joinRequestSchema,
  Renew: renewRequestSchema,
  Heartbeat: heartbeatRequestSchema,
  ReportExports: reportExportsRequestSchema,
  Leave: leaveRequestSchema,
} as const satisfies { [M in HubMethod]: z.ZodType<HubMethods[M]['request'], unknown> };
