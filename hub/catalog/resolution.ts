// Builds one catalog entry from every exporting cluster's own export, the MCS way (KEP-1645):
// exports are ordered by exportCreatedAt (ties by cluster id) and the oldest wins every
// whole-service property (type, session affinity, IP families, traffic policies, exported labels
// and annotations); ports are the union, merged first by name (unnamed counts as the name "")
// then by port/protocol, the oldest definition winning. Every disagreement is a conflict with
// upstream's reason, naming the cluster whose value applies and each that differs, and raised on
// every constituent export (upstream: "set on all ServiceExports for the conflicted service").
// Ports that are not identical in all exports are a PortConflict even when their union is clean.
// Pure.
import type { GatewayAddress } from '../../common/api/isthmus.ts';
import { ServiceExportReason } from '../../common/api/index.ts';
import type { CatalogCluster, CatalogConflict, CatalogEntry, CatalogPort } from '../../common/catalog.ts';
import type { ExportedService } from '../../common/hub-api/index.ts';

/** What the hub's MemberCluster says about a cluster's place in the world. */
export interface ClusterLocality {
  readonly region: string;
  readonly zone: string;
  readonly network: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly gatewayAddresses: readonly GatewayAddress[];
}

export interface ClusterExport {
  readonly clusterId: string;
  readonly service: ExportedService;
}

const NO_LOCALITY: ClusterLocality = { region: '', zone: '', network: '', labels: {}, gatewayAddresses: [] };

function byAge(a: ClusterExport, b: ClusterExport): number {
  const age = Date.parse(a.service.exportCreatedAt) - Date.parse(b.service.exportCreatedAt);
  if (age !== 0) return age;
  return a.clusterId < b.clusterId ? -1 : a.clusterId > b.clusterId ? 1 : 0;
}

function describePort(port: CatalogPort): string {
  return `${port.name ? `${port.name} ` : ''}${port.port}/${port.protocol}${port.appProtocol ? ` (appProtocol ${port.appProtocol})` : ''}`;
}

function samePort(a: CatalogPort, b: CatalogPort): boolean {
  return a.name === b.name && a.port === b.port && a.protocol === b.protocol && a.appProtocol === b.appProtocol;
}

type ConflictReason = Exclude<
  ServiceExportReason,
  'Valid' | 'NoService' | 'InvalidServiceType' | 'Exported' | 'Ready' | 'Pending' | 'Failed' | 'NoConflicts'
>;

/** One conflict: the value that applies (the oldest export's) against each that differs, raised on `everyone`. */
function conflict(
  type: ConflictReason,
  subject: string,
  winner: { clusterId: string; value: string },
  dissenters: ReadonlyMap<string, string>,
  everyone: readonly string[],
): CatalogConflict {
  const others = [...dissenters].map(([clusterId, value]) => `${clusterId} has ${value}`).join(', ');
  return {
    type,
    message: `${subject}: ${winner.clusterId} (oldest export) has ${winner.value}, which applies; ${others}`,
    clusters: [...everyone],
  };
}

/**
 * A conflict over one whole-service property, or none when every export agrees with the oldest.
 * `exports` are those the comparison covers (oldest first); the conflict is raised on `everyone`.
 */
function propertyConflict(
  type: ConflictReason,
  subject: string,
  exports: readonly ClusterExport[],
  everyone: readonly string[],
  identity: (service: ExportedService) => string,
  describe: (service: ExportedService) => string = identity,
): CatalogConflict[] {
  const [oldest, ...rest] = exports;
  if (!oldest) return [];
  const winning = identity(oldest.service);
  const dissenters = new Map(
    rest.filter((e) => identity(e.service) !== winning).map((e) => [e.clusterId, describe(e.service)] as const),
  );
  return dissenters.size === 0
    ? []
    : [conflict(type, subject, { clusterId: oldest.clusterId, value: describe(oldest.service) }, dissenters, everyone)];
}

/** A label or annotation map as a conflict message shows it: sorted, long values cut. */
function describeMap(map: Readonly<Record<string, string>>): string {
  const pairs = Object.entries(map).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  if (pairs.length === 0) return 'none';
  return `{${pairs.map(([k, v]) => `${k}=${v.length > 64 ? `${v.slice(0, 64)}…` : v}`).join(', ')}}`;
}

/** The same map, exactly, whatever the key order. */
function mapIdentity(map: Readonly<Record<string, string>>): string {
  return JSON.stringify(Object.entries(map).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

interface PortClaim {
  readonly port: CatalogPort;
  readonly owner: string;
  readonly dissenters: Map<string, string>;
}

/** A port list as a conflict message shows it, and its identity whatever the order. */
function describePorts(ports: readonly CatalogPort[]): string {
  return ports.length === 0 ? 'no ports' : ports.map(describePort).join(', ');
}
function portsIdentity(ports: readonly CatalogPort[]): string {
  return JSON.stringify(ports.map((p) => [p.name, p.port, p.protocol, p.appProtocol]).sort());
}

/**
 * The union of every export's ports, oldest first, with upstream's two rules for a Service's
 * ports: no duplicate name (the empty name included) and no duplicate port/protocol. A port whose
 * name, or else whose port/protocol, is taken by an older export with another definition is left
 * out, a PortConflict naming it; when nothing is left out but the exports' ports still differ,
 * the union applies and that is a PortConflict too.
 */
function unionPorts(
  ordered: readonly ClusterExport[],
  everyone: readonly string[],
): { ports: CatalogPort[]; conflicts: CatalogConflict[] } {
  const byName = new Map<string, PortClaim>();
  const byNumber = new Map<string, PortClaim>();
  const claims: PortClaim[] = [];
  for (const { clusterId, service } of ordered) {
    for (const port of service.ports) {
      const numberKey = `${port.port}/${port.protocol}`;
      const existing = byName.get(port.name) ?? byNumber.get(numberKey);
      if (existing) {
        if (!samePort(existing.port, port) && clusterId !== existing.owner && !existing.dissenters.has(clusterId))
          existing.dissenters.set(clusterId, describePort(port));
        continue;
      }
      const claim: PortClaim = { port, owner: clusterId, dissenters: new Map() };
      claims.push(claim);
      byName.set(port.name, claim);
      byNumber.set(numberKey, claim);
    }
  }
  const dropped = claims
    .filter((c) => c.dissenters.size > 0)
    .map((c) =>
      conflict(
        ServiceExportReason.PortConflict,
        `port ${c.port.name || `${c.port.port}/${c.port.protocol}`}`,
        { clusterId: c.owner, value: describePort(c.port) },
        c.dissenters,
        everyone,
      ),
    );
  const [oldest, ...rest] = ordered;
  const differing =
    oldest && dropped.length === 0
      ? rest.filter((e) => portsIdentity(e.service.ports) !== portsIdentity(oldest.service.ports))
      : [];
  const differ =
    oldest && differing.length > 0
      ? [
          {
            type: ServiceExportReason.PortConflict,
            message: `ports differ between exports, their union applies: ${[oldest, ...differing].map((e) => `${e.clusterId} has ${describePorts(e.service.ports)}`).join('; ')}`,
            clusters: [...everyone],
          },
        ]
      : [];
  return {
    ports: claims.map((c) => ({
      name: c.port.name,
      protocol: c.port.protocol,
      port: c.port.port,
      appProtocol: c.port.appProtocol,
    })),
    conflicts: [...dropped, ...differ],
  };
}

function clusterRecord(clusterExport: ClusterExport, locality: ClusterLocality): CatalogCluster {
  const { clusterId, service } = clusterExport;
  // Key order follows catalogClusterSchema, so the JSON is canonical (see catalogEntryJson).
  return {
    clusterId,
    region: locality.region,
    zone: locality.zone,
    network: locality.network,
    labels: { ...locality.labels },
    gatewayAddresses: locality.gatewayAddresses.map((g) => ({ address: g.address, port: g.port })),
    exportCreatedAt: service.exportCreatedAt,
    type: service.type,
    ports: service.ports.map((p) => ({ name: p.name, protocol: p.protocol, port: p.port, appProtocol: p.appProtocol })),
    sessionAffinity: service.sessionAffinity,
    sessionAffinityTimeoutSeconds: service.sessionAffinityTimeoutSeconds,
    endpoints: service.endpoints.map((e) => ({ zone: e.zone, ready: e.ready, total: e.total })),
    allowedClusters: [...service.allowedClusters],
    ...serviceWideProperties(service),
  };
}

/** The whole-service properties beyond type and affinity, in catalog key order. */
function serviceWideProperties(
  service: ExportedService,
): Pick<
  CatalogEntry,
  'ipFamilies' | 'internalTrafficPolicy' | 'trafficDistribution' | 'exportedLabels' | 'exportedAnnotations'
> {
  return {
    ipFamilies: [...service.ipFamilies],
    internalTrafficPolicy: service.internalTrafficPolicy,
    trafficDistribution: service.trafficDistribution,
    exportedLabels: { ...service.exportedLabels },
    exportedAnnotations: { ...service.exportedAnnotations },
  };
}

/**
 * The catalog entry for one service from its exports (any order), or undefined when none is
 * left. `localityOf` answers from the hub's MemberCluster objects.
 */
export function resolveEntry(
  namespace: string,
  name: string,
  exports: readonly ClusterExport[],
  localityOf: (clusterId: string) => ClusterLocality | undefined,
): CatalogEntry | undefined {
  const ordered = [...exports].sort(byAge);
  const oldest = ordered[0];
  if (!oldest) return undefined;
  const winner = oldest.service;
  const clientIp = winner.sessionAffinity === 'ClientIP';
  const everyone = ordered.map((e) => e.clusterId);
  const { ports, conflicts: portConflicts } = unionPorts(ordered, everyone);
  // Agents that predate a field report it empty: they take no part in its comparison.
  const reportedFamilies = ordered.filter((e) => e.service.ipFamilies.length > 0);
  const reportedPolicy = ordered.filter((e) => e.service.internalTrafficPolicy !== '');
  const conflicts = [
    ...propertyConflict(ServiceExportReason.TypeConflict, 'type', ordered, everyone, (s) => s.type),
    ...propertyConflict(
      ServiceExportReason.SessionAffinityConflict,
      'sessionAffinity',
      ordered,
      everyone,
      (s) => s.sessionAffinity,
    ),
    // The timeout only means something where the affinity is ClientIP on both sides.
    ...(clientIp
      ? propertyConflict(
          ServiceExportReason.SessionAffinityConfigConflict,
          'sessionAffinityConfig.clientIP.timeoutSeconds',
          ordered.filter((e) => e.service.sessionAffinity === 'ClientIP'),
          everyone,
          (s) => `${s.sessionAffinityTimeoutSeconds}s`,
        )
      : []),
    ...portConflicts,
    // Families compared as sets: a family some exporters lack reaches only part of the backends; the primary's order does not.
    ...propertyConflict(ServiceExportReason.IPFamilyConflict, 'ipFamilies', reportedFamilies, everyone, (s) =>
      [...s.ipFamilies].sort().join(','),
    ),
    ...propertyConflict(
      ServiceExportReason.InternalTrafficPolicyConflict,
      'internalTrafficPolicy',
      reportedPolicy,
      everyone,
      (s) => s.internalTrafficPolicy,
    ),
    ...propertyConflict(
      ServiceExportReason.TrafficDistributionConflict,
      'trafficDistribution',
      ordered,
      everyone,
      (s) => s.trafficDistribution || 'none',
    ),
    ...propertyConflict(
      ServiceExportReason.LabelsConflict,
      'exportedLabels',
      ordered,
      everyone,
      (s) => mapIdentity(s.exportedLabels),
      (s) => describeMap(s.exportedLabels),
    ),
    ...propertyConflict(
      ServiceExportReason.AnnotationsConflict,
      'exportedAnnotations',
      ordered,
      everyone,
      (s) => mapIdentity(s.exportedAnnotations),
      (s) => describeMap(s.exportedAnnotations),
    ),
  ];
  const families = reportedFamilies[0]?.service ?? winner;
  const policy = reportedPolicy[0]?.service ?? winner;
  // Key order follows catalogEntrySchema.
  return {
    namespace,
    name,
    type: winner.type,
    ports,
    sessionAffinity: winner.sessionAffinity,
    sessionAffinityTimeoutSeconds: clientIp ? winner.sessionAffinityTimeoutSeconds : 0,
    clusters: ordered.map((e) => clusterRecord(e, localityOf(e.clusterId) ?? NO_LOCALITY)),
    conflicts,
    ...serviceWideProperties(winner),
    ipFamilies: [...families.ipFamilies],
    internalTrafficPolicy: policy.internalTrafficPolicy,
  };
}
