// Isthmus' own kinds (group isthmus.dev); must stay in step with crds/isthmus.dev_*.yaml.
import { z } from 'zod';
import { parseDuration } from '../duration.ts';
import { conditionListSchema } from './conditions.ts';
import {
  DNS1123_SUBDOMAIN_RE,
  LABEL_VALUE_RE,
  dns1035LabelSchema,
  dns1123LabelSchema,
  labelValueSchema,
  objectMetaSchema,
  qualifiedNameSchema,
  timestampSchema,
  uniqueBy,
} from './meta.ts';

export const ISTHMUS_GROUP = 'isthmus.dev';
export const ISTHMUS_VERSION = 'v1alpha1';
export const ISTHMUS_API_VERSION = `${ISTHMUS_GROUP}/${ISTHMUS_VERSION}` as const;

export const MEMBER_CLUSTER_KIND = 'MemberCluster';
export const MEMBER_CLUSTER_PLURAL = 'memberclusters';
export const FAILOVER_POLICY_KIND = 'FailoverPolicy';
export const FAILOVER_POLICY_PLURAL = 'failoverpolicies';

export const MemberClusterConditionType = { Joined: 'Joined', Accepted: 'Accepted', Available: 'Available' } as const;
export type MemberClusterConditionType = (typeof MemberClusterConditionType)[keyof typeof MemberClusterConditionType];

export const MemberClusterReason = {
  // Joined
  Joined: 'Joined',
  Left: 'Left',
  // Accepted
  Accepted: 'Accepted',
  PendingAcceptance: 'PendingAcceptance',
  // Available: Unknown once the configured number of heartbeats has been missed
  HeartbeatReceived: 'HeartbeatReceived',
  HeartbeatMissed: 'HeartbeatMissed',
  NeverConnected: 'NeverConnected',
} as const;
export type MemberClusterReason = (typeof MemberClusterReason)[keyof typeof MemberClusterReason];

export const FailoverPolicyConditionType = { Ready: 'Ready' } as const;
export type FailoverPolicyConditionType =
  (typeof FailoverPolicyConditionType)[keyof typeof FailoverPolicyConditionType];

export const FailoverPolicyReason = {
  Distributed: 'Distributed',
  Pending: 'Pending',
  InvalidPolicy: 'InvalidPolicy',
  /** Another, older FailoverPolicy in the namespace names the same service; it applies, this one does not. */
  Conflict: 'Conflict',
  ServiceNotFound: 'ServiceNotFound',
} as const;
export type FailoverPolicyReason = (typeof FailoverPolicyReason)[keyof typeof FailoverPolicyReason];

/** Built-in locality keys; any other localityPriority entry is a MemberCluster label key. */
export const LocalityKey = { Zone: 'zone', Region: 'region', Cluster: 'cluster', Network: 'network' } as const;
export type LocalityKey = (typeof LocalityKey)[keyof typeof LocalityKey];

/** localityPriority when a policy (or a service without policy) gives none. */
export const DEFAULT_LOCALITY_PRIORITY: readonly string[] = [LocalityKey.Region, LocalityKey.Zone, LocalityKey.Cluster];
/** Weight of a cluster a policy's weights list does not name. */
export const DEFAULT_CLUSTER_WEIGHT = 100;

/** Defaults the FailoverPolicy CRD applies; the unit test checks the CRD says the same. */
export const FAILOVER_DEFAULTS = {
  consecutiveFailures: 5,
  interval: '10s',
  baseEjectionTime: '30s',
  maxEjectionPercent: 50,
  minHealthyPercent: 70,
  failbackEnabled: true,
  failbackDelay: '5s',
} as const;

const DURATION_RE = /^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$/;
/** Milliseconds in a duration the CRDs accept (Go syntax restricted to h, m, s, ms), e.g. "1m30s". */
export function parseDurationMs(duration: string): number {
  const ms = DURATION_RE.test(duration) ? parseDuration(duration) : undefined;
  if (ms === undefined) throw new RangeError(`invalid duration "${duration}"`);
  return ms;
}

const durationSchema = z.string().max(32).regex(DURATION_RE, 'must be a duration such as 500ms, 10s or 1m30s');
const positiveDurationSchema = durationSchema.refine((d) => !DURATION_RE.test(d) || parseDurationMs(d) > 0, {
  message: 'must be greater than zero',
});

const regionSchema = z.string().min(1).max(63).regex(LABEL_VALUE_RE, 'must be a non-empty label value');
const ipSchema = z.union([z.ipv4(), z.ipv6()]);

export const gatewayAddressSchema = z.object({
  address: z
    .string()
    .min(1)
    .max(253)
    .refine((a) => ipSchema.safeParse(a).success || DNS1123_SUBDOMAIN_RE.test(a), {
      message: 'must be an IP address or a lower-case DNS-1123 hostname',
    }),
  port: z.int().min(1).max(65535),
});
export type GatewayAddress = z.infer<typeof gatewayAddressSchema>;

export const memberClusterSpecSchema = z.object({
  clusterId: dns1123LabelSchema,
  region: regionSchema.optional(),
  zone: regionSchema.optional(),
  network: dns1123LabelSchema.optional(),
  gatewayAddresses: z
    .array(gatewayAddressSchema)
    .max(16)
    .superRefine(uniqueBy((a) => `${a.address} port ${a.port}`, 'gateway address'))
    .optional(),
  accepted: z.boolean().default(false),
  /**
   * Which membership of this cluster id this object is (DESIGN §3): chosen by the hub when it
   * creates the object, never changed. Absent on objects from before epochs (epoch 0).
   */
  membershipEpoch: z.int().min(1).max(Number.MAX_SAFE_INTEGER).optional(),
  labels: z
    .record(qualifiedNameSchema, labelValueSchema)
    .refine((labels) => Object.keys(labels).length <= 32, { message: 'must have at most 32 labels' })
    .optional(),
});

export const memberClusterStatusSchema = z.object({
  conditions: conditionListSchema.optional(),
  observedGeneration: z.int().nonnegative().optional(),
  agentVersion: z.string().max(128).optional(),
  certificateExpiry: timestampSchema.optional(),
  exportCount: z.int().nonnegative().optional(),
  trustBundleSequence: z.int().nonnegative().optional(),
  trustRoot: z.string().max(128).optional(),
  intermediateRoot: z.string().max(128).optional(),
  agentCertificateRoot: z.string().max(128).optional(),
  lastHeartbeatTime: timestampSchema.optional(),
});

export const memberClusterSchema = z.object({
  apiVersion: z.literal(ISTHMUS_API_VERSION),
  kind: z.literal(MEMBER_CLUSTER_KIND),
  metadata: objectMetaSchema,
  spec: memberClusterSpecSchema,
  status: memberClusterStatusSchema.optional(),
});
export type MemberClusterSpec = z.infer<typeof memberClusterSpecSchema>;
export type MemberClusterStatus = z.infer<typeof memberClusterStatusSchema>;
export type MemberCluster = z.infer<typeof memberClusterSchema>;
/** What a writer may leave out (defaults are filled in by the API server and by parsing). */
export type MemberClusterInput = z.input<typeof memberClusterSchema>;

export const regionMappingSchema = z
  .object({
    from: regionSchema,
    to: z
      .array(regionSchema)
      .min(1)
      .max(16)
      .superRefine(uniqueBy((r) => r, 'region')),
  })
  .refine((m) => !m.to.includes(m.from), { message: 'regionMapping must not map a region to itself', path: ['to'] });
export type RegionMapping = z.infer<typeof regionMappingSchema>;

export const clusterWeightSchema = z.object({
  cluster: dns1123LabelSchema,
  weight: z.int().min(0).max(1000),
});
export type ClusterWeight = z.infer<typeof clusterWeightSchema>;

export const outlierDetectionSchema = z.object({
  consecutiveFailures: z.int().min(1).max(100).default(FAILOVER_DEFAULTS.consecutiveFailures),
  interval: positiveDurationSchema.default(FAILOVER_DEFAULTS.interval),
  baseEjectionTime: positiveDurationSchema.default(FAILOVER_DEFAULTS.baseEjectionTime),
  maxEjectionPercent: z.int().min(0).max(100).default(FAILOVER_DEFAULTS.maxEjectionPercent),
});
export type OutlierDetection = z.infer<typeof outlierDetectionSchema>;

export const failbackSchema = z.object({
  enabled: z.boolean().default(FAILOVER_DEFAULTS.failbackEnabled),
  delay: durationSchema.default(FAILOVER_DEFAULTS.failbackDelay),
});
export type Failback = z.infer<typeof failbackSchema>;

export const failoverPolicySpecSchema = z.object({
  service: dns1035LabelSchema,
  localityPriority: z
    .array(qualifiedNameSchema)
    .max(8)
    .superRefine(uniqueBy((k) => k, 'locality key'))
    .optional(),
  regionMapping: z
    .array(regionMappingSchema)
    .max(32)
    .superRefine(uniqueBy((m) => m.from, 'regionMapping from'))
    .optional(),
  weights: z
    .array(clusterWeightSchema)
    .max(512)
    .superRefine(uniqueBy((w) => w.cluster, 'weights cluster'))
    .optional(),
  // prefault, not default: an omitted object still gets its fields' defaults, as the CRD's `default: {}` does.
  outlierDetection: outlierDetectionSchema.prefault({}),
  minHealthyPercent: z.int().min(0).max(100).default(FAILOVER_DEFAULTS.minHealthyPercent),
  failback: failbackSchema.prefault({}),
});

/** One member cluster's copy of the policy: the hub generation it applied. */
export const appliedClusterSchema = z.object({
  cluster: dns1123LabelSchema,
  appliedGeneration: z.int().min(1),
});
export type AppliedCluster = z.infer<typeof appliedClusterSchema>;

/** At most this many entries in status.clusters (the CRD says the same). */
export const MAX_POLICY_STATUS_CLUSTERS = 1000;

export const failoverPolicyStatusSchema = z.object({
  conditions: conditionListSchema.optional(),
  observedGeneration: z.int().nonnegative().optional(),
  /** Which member clusters applied which generation of this policy, sorted by cluster. */
  clusters: z
    .array(appliedClusterSchema)
    .max(MAX_POLICY_STATUS_CLUSTERS)
    .superRefine(uniqueBy((c) => c.cluster, 'cluster'))
    .optional(),
});

export const failoverPolicySchema = z.object({
  apiVersion: z.literal(ISTHMUS_API_VERSION),
  kind: z.literal(FAILOVER_POLICY_KIND),
  metadata: objectMetaSchema,
  spec: failoverPolicySpecSchema,
  status: failoverPolicyStatusSchema.optional(),
});
export type FailoverPolicySpec = z.infer<typeof failoverPolicySpecSchema>;
export type FailoverPolicyStatus = z.infer<typeof failoverPolicyStatusSchema>;
export type FailoverPolicy = z.infer<typeof failoverPolicySchema>;
export type FailoverPolicyInput = z.input<typeof failoverPolicySchema>;
