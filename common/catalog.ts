// The federated service catalog as the hub publishes it in NATS JetStream KV (DESIGN §5): one
// entry per exported service, key "<namespace>.<name>", written only by the hub, read by every
// agent. Each entry keeps every exporting cluster's own export as reported (so a restarted hub
// can rebuild its state from the bucket) next to the resolved, conflict-free service view.
// The end of a service is explicit: the hub replaces its entry with a tombstone, and only a
// tombstone makes agents delete the import at once (a key that vanishes without one is held).
import { z } from 'zod';
import { gatewayAddressSchema } from './api/isthmus.ts';
import { ipFamilySchema, servicePortSchema as reportedPortSchema } from './hub-api/messages.ts';
import { membershipEpochSchema } from './pki/index.ts';

export const CATALOG_BUCKET = 'isthmus_catalog';
export const MEMBERS_BUCKET = 'isthmus_members';
/** Bucket names of the members' own catalog views start with this (see scopedCatalogBucket). */
export const SCOPED_CATALOG_BUCKET_PREFIX = 'isthmus_catalog_for_';

/**
 * The bucket holding a member's own view of the services some export scopes to it (DESIGN §5):
 * the same keys and values as CATALOG_BUCKET, resolved over the exports that member may import.
 * Only that member's NATS user may read it (common/nats-authorization.ts).
 */
export function scopedCatalogBucket(clusterId: string): string {
  return `${SCOPED_CATALOG_BUCKET_PREFIX}${clusterId}`;
}
/** Annotation on a ServiceExport naming the only clusters allowed to import it ("b,c"). */
export const ALLOWED_CLUSTERS_ANNOTATION = 'isthmus.dev/allowed-clusters';

export function catalogKey(namespace: string, name: string): string {
  return `${namespace}.${name}`;
}

/** Namespaces and names are DNS labels, so the first "." separates them. */
export function parseCatalogKey(key: string): { namespace: string; name: string } {
  const dot = key.indexOf('.');
  return { namespace: key.slice(0, dot), name: key.slice(dot + 1) };
}

export const catalogPortSchema = reportedPortSchema;

/** Whole-service properties beyond type and affinity, each exporter's and the resolved ones (entries written before them parse with the defaults). */
function serviceWideFields() {
  return {
    ipFamilies: z.array(ipFamilySchema).default([]),
    internalTrafficPolicy: z.union([z.literal(''), z.enum(['Cluster', 'Local'])]).default(''),
    trafficDistribution: z.string().default(''),
    exportedLabels: z.record(z.string(), z.string()).default({}),
    exportedAnnotations: z.record(z.string(), z.string()).default({}),
  };
}
export type CatalogPort = z.infer<typeof catalogPortSchema>;

export const catalogClusterSchema = z.object({
  clusterId: z.string(),
  region: z.string().default(''),
  zone: z.string().default(''),
  network: z.string().default(''),
  labels: z.record(z.string(), z.string()).default({}),
  gatewayAddresses: z.array(gatewayAddressSchema).default([]),
  /** The cluster's export as it reported it. */
  exportCreatedAt: z.string(),
  type: z.enum(['ClusterSetIP', 'Headless']),
  ports: z.array(catalogPortSchema),
  sessionAffinity: z.enum(['None', 'ClientIP']).default('None'),
  sessionAffinityTimeoutSeconds: z.number().int().min(0).default(0),
  /** Ready endpoints per zone in that cluster, and all of them (0: not reported). */
  endpoints: z
    .array(z.object({ zone: z.string(), ready: z.number().int().min(0), total: z.number().int().min(0).default(0) }))
    .default([]),
  /** Empty: every member may import. */
  allowedClusters: z.array(z.string()).default([]),
  ...serviceWideFields(),
});
export type CatalogCluster = z.infer<typeof catalogClusterSchema>;

export const catalogConflictSchema = z.object({
  /** An upstream Conflict reason: PortConflict, TypeConflict, LabelsConflict, IPFamilyConflict, ... */
  type: z.string(),
  message: z.string(),
  /** Every cluster that exports the service: upstream raises the condition on all constituent exports. */
  clusters: z.array(z.string()),
});
export type CatalogConflict = z.infer<typeof catalogConflictSchema>;

export const catalogEntrySchema = z.object({
  namespace: z.string(),
  name: z.string(),
  /** Resolved the MCS way: the oldest export wins every whole-service property; ports are the union. */
  type: z.enum(['ClusterSetIP', 'Headless']),
  ports: z.array(catalogPortSchema),
  sessionAffinity: z.enum(['None', 'ClientIP']).default('None'),
  sessionAffinityTimeoutSeconds: z.number().int().min(0).default(0),
  /** Sorted by exportCreatedAt, oldest first. */
  clusters: z.array(catalogClusterSchema).min(1),
  conflicts: z.array(catalogConflictSchema).default([]),
  ...serviceWideFields(),
});
export type CatalogEntry = z.infer<typeof catalogEntrySchema>;

/**
 * What the hub writes under a key when the service's last export goes. Agents delete the import
 * on it at once; the hub removes the tombstone itself once it is older than its retention.
 */
export const catalogTombstoneSchema = z.object({
  namespace: z.string(),
  name: z.string(),
  tombstone: z.literal(true),
  /** The hub's clock when the last export went. */
  deletedAt: z.string(),
});
export type CatalogTombstone = z.infer<typeof catalogTombstoneSchema>;

export function catalogTombstone(key: string, deletedAt: Date): string {
  const { namespace, name } = parseCatalogKey(key);
  return JSON.stringify({
    namespace,
    name,
    tombstone: true,
    deletedAt: deletedAt.toISOString(),
  } satisfies CatalogTombstone);
}

/** The tombstone a stored value is, if it is one (of that key). */
export function parseCatalogTombstone(key: string, value: unknown): CatalogTombstone | undefined {
  const parsed = catalogTombstoneSchema.safeParse(value);
  return parsed.success && catalogKey(parsed.data.namespace, parsed.data.name) === key ? parsed.data : undefined;
}

/** One member as the hub publishes it in MEMBERS_BUCKET (key: the cluster id). */
export const memberRecordSchema = z.object({
  clusterId: z.string(),
  /** The epoch of this membership (DESIGN §3): certificates of any other epoch are refused. */
  epoch: membershipEpochSchema,
  region: z.string().default(''),
  zone: z.string().default(''),
  network: z.string().default(''),
  gatewayAddresses: z.array(gatewayAddressSchema).default([]),
  labels: z.record(z.string(), z.string()).default({}),
  /**
   * The member has been unavailable (no heartbeat) for longer than the hub's staleness bound:
   * importers mark its endpoints not ready (never delete them) until it is back.
   */
  endpointsStale: z.boolean().default(false),
});
export type MemberRecord = z.infer<typeof memberRecordSchema>;

/** Whether `clusterId` may import from the export of `cluster`. */
export function mayImport(cluster: CatalogCluster, clusterId: string): boolean {
  return cluster.allowedClusters.length === 0 || cluster.allowedClusters.includes(clusterId);
}
