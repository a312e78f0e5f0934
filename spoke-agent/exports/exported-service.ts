// What one ServiceExport amounts to: the ExportedService the hub gets, computed from the export,
// its Service and the Service's EndpointSlices — or why it cannot be exported (Valid=False).
import { isIPv6 } from 'node:net';
import type { V1EndpointSlice, V1Service } from '@kubernetes/client-node';
import { ServiceExportReason, dns1123LabelSchema } from '../../common/api/index.ts';
import { ALLOWED_CLUSTERS_ANNOTATION } from '../../common/catalog.ts';
import { formatIssues } from '../../common/config.ts';
import { exportedServiceSchema, type ExportedService } from '../../common/hub-api/index.ts';

/** Valid=False reasons beyond upstream's, which controllers may add ("should prefer" upstream's). */
const EXTRA_INVALID_REASONS = {
  /** The allowed-clusters annotation names something that is no cluster id: exporting would widen access. */
  InvalidAllowedClusters: 'InvalidAllowedClusters',
  /** The Service exceeds what the hub API carries (e.g. more than 100 ports). */
  UnsupportedService: 'UnsupportedService',
} as const;

export type ExportVerdict =
  | { readonly valid: true; readonly service: ExportedService }
  | { readonly valid: false; readonly reason: string; readonly message: string };

/** The parts of a ServiceExport that shape the export. */
export interface ExportSource {
  readonly namespace: string;
  readonly name: string;
  readonly creationTimestamp: string;
  readonly annotations: Readonly<Record<string, string>>;
  readonly exportedLabels: Readonly<Record<string, string>>;
  readonly exportedAnnotations: Readonly<Record<string, string>>;
}

// Kubernetes defaults spec.sessionAffinityConfig.clientIP.timeoutSeconds to 3 h for ClientIP.
const DEFAULT_CLIENT_IP_TIMEOUT_SECONDS = 10_800;

export function evaluateExport(
  source: ExportSource,
  service: V1Service | undefined,
  slices: readonly V1EndpointSlice[],
): ExportVerdict {
  const { namespace, name } = source;
  if (!service) {
    return {
      valid: false,
      reason: ServiceExportReason.NoService,
      message: `Service ${namespace}/${name} does not exist`,
    };
  }
  const spec = service.spec ?? {};
  if (spec.type === 'ExternalName') {
    return {
      valid: false,
      reason: ServiceExportReason.InvalidServiceType,
      message: `Service ${namespace}/${name} is of type ExternalName, which cannot be exported`,
    };
  }
  const allowed = allowedClusters(source.annotations[ALLOWED_CLUSTERS_ANNOTATION]);
  if (!allowed.ok) {
    return {
      valid: false,
      reason: EXTRA_INVALID_REASONS.InvalidAllowedClusters,
      message: `annotation ${ALLOWED_CLUSTERS_ANNOTATION} names ${allowed.invalid.map((c) => `"${c}"`).join(', ')}, not cluster ids`,
    };
  }
  const clientIp = spec.sessionAffinity === 'ClientIP';
  const candidate = {
    namespace,
    name,
    type: spec.clusterIP === 'None' ? 'Headless' : 'ClusterSetIP',
    ports: (spec.ports ?? []).map((p) => ({
      name: p.name ?? '',
      protocol: p.protocol ?? 'TCP',
      port: p.port,
      appProtocol: p.appProtocol ?? '',
    })),
    sessionAffinity: clientIp ? 'ClientIP' : 'None',
    sessionAffinityTimeoutSeconds: clientIp
      ? (spec.sessionAffinityConfig?.clientIP?.timeoutSeconds ?? DEFAULT_CLIENT_IP_TIMEOUT_SECONDS)
      : 0,
    exportCreatedAt: source.creationTimestamp,
    endpoints: readyEndpointsPerZone(slices),
    allowedClusters: allowed.clusters,
    ipFamilies:
      spec.ipFamilies ??
      (spec.clusterIPs ?? []).filter((ip) => ip !== 'None').map((ip) => (isIPv6(ip) ? 'IPv6' : 'IPv4')),
    internalTrafficPolicy: spec.internalTrafficPolicy ?? '',
    trafficDistribution: spec.trafficDistribution ?? '',
    exportedLabels: source.exportedLabels,
    exportedAnnotations: source.exportedAnnotations,
  };
  // The hub refuses a whole report over one bad service: keep such a service out of it.
  const parsed = exportedServiceSchema.safeParse(candidate);
  if (!parsed.success) {
    return {
      valid: false,
      reason: EXTRA_INVALID_REASONS.UnsupportedService,
      message: `Service ${namespace}/${name} cannot be exported: ${formatIssues(parsed.error)}`,
    };
  }
  return { valid: true, service: parsed.data };
}

/** "b, c" → ['b', 'c'] (sorted, unique); absent or empty: every member may import. */
function allowedClusters(
  annotation: string | undefined,
): { ok: true; clusters: string[] } | { ok: false; invalid: string[] } {
  const names = [
    ...new Set(
      (annotation ?? '')
        .split(',')
        .map((c) => c.trim())
        .filter((c) => c !== ''),
    ),
  ].sort();
  const invalid = names.filter((c) => !dns1123LabelSchema.safeParse(c).success);
  return invalid.length > 0 ? { ok: false, invalid } : { ok: true, clusters: names };
}

/**
 * Ready endpoints (conditions.ready unset counts as ready) and all endpoints per zone, '' when a
 * zone is not known. A dual-stack Service has one set of slices per address family naming the
 * same endpoints, so families are counted apart and the larger count of a zone wins.
 */
function readyEndpointsPerZone(slices: readonly V1EndpointSlice[]): { zone: string; ready: number; total: number }[] {
  const perFamily = new Map<string, Map<string, { ready: number; total: number }>>();
  for (const slice of slices) {
    let zones = perFamily.get(slice.addressType);
    if (!zones) perFamily.set(slice.addressType, (zones = new Map<string, { ready: number; total: number }>()));
    for (const endpoint of slice.endpoints ?? []) {
      const zone = endpoint.zone ?? '';
      const counts = zones.get(zone) ?? { ready: 0, total: 0 };
      counts.total++;
      if (endpoint.conditions?.ready !== false) counts.ready++;
      zones.set(zone, counts);
    }
  }
  const merged = new Map<string, { ready: number; total: number }>();
  for (const zones of perFamily.values()) {
    for (const [zone, counts] of zones) {
      const known = merged.get(zone) ?? { ready: 0, total: 0 };
      merged.set(zone, { ready: Math.max(known.ready, counts.ready), total: Math.max(known.total, counts.total) });
    }
  }
  // Zones with endpoints but none ready are reported too: they weigh in the healthy share.
  return [...merged].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([zone, counts]) => ({ zone, ...counts }));
}
