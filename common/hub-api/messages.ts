// Typed shapes of the hub API messages (hub.proto, camelCase as @grpc/proto-loader delivers them)
// and the zod schemas the hub validates every request with.
import { z } from 'zod';
import { dns1123LabelSchema, gatewayAddressSchema, labelValueSchema } from '../api/index.ts';

const dns1123Label = dns1123LabelSchema;
// Locality values are label values (the hub writes them into MemberCluster), empty when unknown.
const localityName = z.union([z.literal(''), labelValueSchema]);
const pem = (what: string) => z.string().includes('-----BEGIN', { message: `${what} must be PEM` });

export const clusterFactsSchema = z.object({
  clusterId: dns1123Label,
  region: localityName.default(''),
  zone: localityName.default(''),
  network: localityName.default(''),
  gatewayAddresses: z.array(gatewayAddressSchema).max(16).default([]),
  labels: z.record(z.string().max(317), z.string().max(63)).default({}),
  agentVersion: z.string().max(64).default(''),
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
  agentCsr: z.string().default(''),
  intermediateCsr: z.string().default(''),
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
  intermediateExpiry: z.string().default(''),
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
}

export const servicePortSchema = z.object({
  name: z.string().max(63).default(''),
  protocol: z.enum(['TCP', 'UDP', 'SCTP']).default('TCP'),
  port: z.number().int().min(1).max(65535),
  appProtocol: z.string().max(253).default(''),
});

export const exportedServiceSchema = z.object({
  namespace: dns1123Label,
  name: dns1123Label,
  type: z.enum(['ClusterSetIP', 'Headless']),
  ports: z.array(servicePortSchema).max(100),
  sessionAffinity: z.enum(['None', 'ClientIP']).default('None'),
  sessionAffinityTimeoutSeconds: z.number().int().min(0).default(0),
  exportCreatedAt: z.iso.datetime({ offset: true }),
  endpoints: z.array(z.object({ zone: z.string().max(63), ready: z.number().int().min(0) })).default([]),
  allowedClusters: z.array(dns1123Label).default([]),
});
export type ExportedService = z.infer<typeof exportedServiceSchema>;

export const reportExportsRequestSchema = z.object({
  generation: z.number().int().min(0),
  services: z.array(exportedServiceSchema).max(100_000),
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
