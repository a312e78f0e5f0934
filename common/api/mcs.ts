// Multi-Cluster Services API (KEP-1645), schema as kubernetes-sigs/mcs-api serves it; see crds/.
import { z } from 'zod';
import { conditionListSchema } from './conditions.ts';
import { objectMetaSchema, uniqueBy } from './meta.ts';

export const MCS_GROUP = 'multicluster.x-k8s.io';
export const MCS_VERSION = 'v1alpha1';
export const MCS_API_VERSION = `${MCS_GROUP}/${MCS_VERSION}` as const;
/** Served too, same schema; objects read through it are accepted by the schemas below. */
export const MCS_API_VERSION_V1BETA1 = `${MCS_GROUP}/v1beta1` as const;

export const SERVICE_EXPORT_KIND = 'ServiceExport';
export const SERVICE_EXPORT_PLURAL = 'serviceexports';
export const SERVICE_IMPORT_KIND = 'ServiceImport';
export const SERVICE_IMPORT_PLURAL = 'serviceimports';

/** Labels on the EndpointSlices an MCS implementation writes for an imported service. */
export const LABEL_SERVICE_NAME = 'multicluster.kubernetes.io/service-name';
export const LABEL_SOURCE_CLUSTER = 'multicluster.kubernetes.io/source-cluster';
export const LABEL_ENDPOINTSLICE_MANAGED_BY = 'endpointslice.kubernetes.io/managed-by';
export const ENDPOINTSLICE_MANAGED_BY_AGENT = 'agent.isthmus.dev';

/** About API (KEP-2149): ClusterProperty names the agent writes in its member cluster. */
export const ABOUT_GROUP = 'about.k8s.io';
export const CLUSTER_PROPERTY_CLUSTER_ID = 'cluster.clusterset.k8s.io';
export const CLUSTER_PROPERTY_CLUSTERSET = 'clusterset.k8s.io';

export const ServiceExportConditionType = { Valid: 'Valid', Ready: 'Ready', Conflict: 'Conflict' } as const;
export type ServiceExportConditionType = (typeof ServiceExportConditionType)[keyof typeof ServiceExportConditionType];

/** Reasons as upstream defines them; several conflict reasons may be joined with commas. */
export const ServiceExportReason = {
  // Valid
  Valid: 'Valid',
  NoService: 'NoService',
  InvalidServiceType: 'InvalidServiceType',
  // Ready
  Exported: 'Exported',
  Ready: 'Ready',
  Pending: 'Pending',
  Failed: 'Failed',
  // Conflict
  PortConflict: 'PortConflict',
  TypeConflict: 'TypeConflict',
  SessionAffinityConflict: 'SessionAffinityConflict',
  SessionAffinityConfigConflict: 'SessionAffinityConfigConflict',
  LabelsConflict: 'LabelsConflict',
  AnnotationsConflict: 'AnnotationsConflict',
  InternalTrafficPolicyConflict: 'InternalTrafficPolicyConflict',
  TrafficDistributionConflict: 'TrafficDistributionConflict',
  IPFamilyConflict: 'IPFamilyConflict',
  NoConflicts: 'NoConflicts',
} as const;
export type ServiceExportReason = (typeof ServiceExportReason)[keyof typeof ServiceExportReason];

/** The Conflict condition's reason for a set of conflicts: comma-joined, or NoConflicts. */
export function conflictReason(reasons: Iterable<ServiceExportReason>): string {
  const unique = [...new Set(reasons)];
  return unique.length === 0 ? ServiceExportReason.NoConflicts : unique.join(',');
}

export const ServiceImportConditionType = { Ready: 'Ready' } as const;
export type ServiceImportConditionType = (typeof ServiceImportConditionType)[keyof typeof ServiceImportConditionType];

export const ServiceImportReason = {
  Ready: 'Ready',
  Pending: 'Pending',
  /** The local east-west gateway does not listen for a port of it yet. */
  ListenerPending: 'ListenerPending',
  /** The gateway listens, but no local endpoint or remote cluster can serve it now. */
  NoHealthyCandidate: 'NoHealthyCandidate',
  IPFamilyNotSupported: 'IPFamilyNotSupported',
  /** A Headless import: the gateways cannot route to single endpoints, so Isthmus refuses it. */
  HeadlessNotSupported: 'HeadlessNotSupported',
} as const;
export type ServiceImportReason = (typeof ServiceImportReason)[keyof typeof ServiceImportReason];

export const ServiceImportType = { ClusterSetIP: 'ClusterSetIP', Headless: 'Headless' } as const;
export type ServiceImportType = (typeof ServiceImportType)[keyof typeof ServiceImportType];

export const EndpointSliceObjects = { Present: 'Present', Absent: 'Absent' } as const;
export type EndpointSliceObjects = (typeof EndpointSliceObjects)[keyof typeof EndpointSliceObjects];

const mcsApiVersionSchema = z.enum([MCS_API_VERSION, MCS_API_VERSION_V1BETA1]);

export const serviceExportSpecSchema = z.object({
  exportedLabels: z.record(z.string(), z.string()).optional(),
  exportedAnnotations: z.record(z.string(), z.string()).optional(),
});

export const serviceExportStatusSchema = z.object({
  conditions: conditionListSchema.optional(),
});

export const serviceExportSchema = z.object({
  apiVersion: mcsApiVersionSchema,
  kind: z.literal(SERVICE_EXPORT_KIND),
  metadata: objectMetaSchema,
  spec: serviceExportSpecSchema.optional(),
  status: serviceExportStatusSchema.optional(),
});
export type ServiceExportSpec = z.infer<typeof serviceExportSpecSchema>;
export type ServiceExportStatus = z.infer<typeof serviceExportStatusSchema>;
export type ServiceExport = z.infer<typeof serviceExportSchema>;

export const servicePortSchema = z.object({
  name: z.string().optional(),
  protocol: z.string().optional(),
  appProtocol: z.string().optional(),
  port: z.int32(),
});
export type ServicePort = z.infer<typeof servicePortSchema>;

export const serviceImportSpecSchema = z.object({
  ports: z.array(servicePortSchema),
  ips: z.array(z.string()).max(2).optional(),
  type: z.enum([ServiceImportType.ClusterSetIP, ServiceImportType.Headless]),
  sessionAffinity: z.string().optional(),
  sessionAffinityConfig: z
    .object({ clientIP: z.object({ timeoutSeconds: z.int32().optional() }).optional() })
    .optional(),
  ipFamilies: z.array(z.string()).max(2).optional(),
  internalTrafficPolicy: z.string().optional(),
  trafficDistribution: z.string().optional(),
});

export const serviceImportClusterStatusSchema = z.object({ cluster: z.string() });

export const serviceImportStatusSchema = z.object({
  clusters: z
    .array(serviceImportClusterStatusSchema)
    .superRefine(uniqueBy((c) => c.cluster, 'cluster'))
    .optional(),
  conditions: conditionListSchema.optional(),
  endpointSliceObjects: z.enum([EndpointSliceObjects.Present, EndpointSliceObjects.Absent]).optional(),
});

export const serviceImportSchema = z.object({
  apiVersion: mcsApiVersionSchema,
  kind: z.literal(SERVICE_IMPORT_KIND),
  metadata: objectMetaSchema,
  spec: serviceImportSpecSchema.optional(),
  status: serviceImportStatusSchema.optional(),
});
export type ServiceImportSpec = z.infer<typeof serviceImportSpecSchema>;
export type ServiceImportClusterStatus = z.infer<typeof serviceImportClusterStatusSchema>;
export type ServiceImportStatus = z.infer<typeof serviceImportStatusSchema>;
export type ServiceImport = z.infer<typeof serviceImportSchema>;
