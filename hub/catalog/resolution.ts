// Builds one catalog entry from every exporting cluster's own export, the MCS way (KEP-1645):
// exports are ordered by exportCreatedAt (ties by cluster id) and the oldest wins the service
// type and session affinity; ports are the union keyed by name (port/protocol when unnamed), the
// oldest definition winning. Every disagreement is a conflict naming the cluster whose value
// applies and each cluster that disagrees (clusters that agree are not involved). Pure.
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

/** One conflict: the value that applies (the oldest export's) against each that differs. */
function conflict(type: ServiceExportReason, subject: string, winner: { clusterId: string; value: string }, dissenters: ReadonlyMap<string, string>): CatalogConflict {
  const others = [...dissenters].map(([clusterId, value]) => `${clusterId} has ${value}`).join(', ');
  return {
    type,
    message: `${subject}: ${winner.clusterId} (oldest export) has ${winner.value}, which applies; ${others}`,
    clusters: [winner.clusterId, ...dissenters.keys()],
  };
}

/** A conflict over one whole-service property, or none when every export agrees with the oldest. */
function propertyConflict(type: ServiceExportReason, subject: string, ordered: readonly ClusterExport[], valueOf: (service: ExportedService) => string): CatalogConflict[] {
  const [oldest, ...rest] = ordered;
  if (!oldest) return [];
  const winning = valueOf(oldest.service);
  const dissenters = new Map(rest.map((e) => [e.clusterId, valueOf(e.service)] as const).filter(([, value]) => value !== winning));
  return dissenters.size === 0 ? [] : [conflict(type, subject, { clusterId: oldest.clusterId, value: winning }, dissenters)];
}

interface PortClaim {
  readonly port: CatalogPort;
  readonly owner: string;
  readonly dissenters: Map<string, string>;
}

/**
 * The union of every export's ports, oldest first. A port whose name (or, unnamed, port and
 * protocol) is taken by an older export with another definition is a PortConflict; so is a port
 * number and protocol an older export already serves under another name, since a Service cannot
 * list the same port twice.
 */
function unionPorts(ordered: readonly ClusterExport[]): { ports: CatalogPort[]; conflicts: CatalogConflict[] } {
  const claims = new Map<string, PortClaim>();
  const byNumber = new Map<string, PortClaim>();
  for (const { clusterId, service } of ordered) {
    for (const port of service.ports) {
      const numberKey = `${port.port}/${port.protocol}`;
      const existing = claims.get(port.name || numberKey) ?? byNumber.get(numberKey);
      if (existing) {
        if (!samePort(existing.port, port) && clusterId !== existing.owner && !existing.dissenters.has(clusterId)) existing.dissenters.set(clusterId, describePort(port));
        continue;
      }
      const claim: PortClaim = { port, owner: clusterId, dissenters: new Map() };
      claims.set(port.name || numberKey, claim);
      byNumber.set(numberKey, claim);
    }
  }
  const all = [...claims.values()];
  return {
    ports: all.map((c) => ({ name: c.port.name, protocol: c.port.protocol, port: c.port.port, appProtocol: c.port.appProtocol })),
    conflicts: all
      .filter((c) => c.dissenters.size > 0)
      .map((c) => conflict(ServiceExportReason.PortConflict, `port ${c.port.name || `${c.port.port}/${c.port.protocol}`}`, { clusterId: c.owner, value: describePort(c.port) }, c.dissenters)),
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
  const { ports, conflicts: portConflicts } = unionPorts(ordered);
  const conflicts = [
    ...propertyConflict(ServiceExportReason.TypeConflict, 'type', ordered, (s) => s.type),
    ...propertyConflict(ServiceExportReason.SessionAffinityConflict, 'sessionAffinity', ordered, (s) => s.sessionAffinity),
    // The timeout only means something where the affinity is ClientIP on both sides.
    ...(clientIp
      ? propertyConflict(ServiceExportReason.SessionAffinityConfigConflict, 'sessionAffinityConfig.clientIP.timeoutSeconds', ordered.filter((e) => e.service.sessionAffinity === 'ClientIP'), (s) => `${s.sessionAffinityTimeoutSeconds}s`)
      : []),
    ...portConflicts,
  ];
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
  };
}
