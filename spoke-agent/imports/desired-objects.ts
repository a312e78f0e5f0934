// What one catalog entry should look like in this cluster: the ServiceImport, the clusterset
// Service, and one EndpointSlice per source cluster. Every slice names the local east-west
// gateway's outbound listener (plain TCP inside the cluster; the gateway carries it over mTLS to
// the source cluster or fails over), never a remote gateway, so kube-proxy, DNS and Gateway API
// consumers can dial what they read; the remote gateways, locality and readiness travel as
// annotations for the gateway. A Headless import is refused: its DNS names would have to be the
// endpoints' own addresses, and the gateways route per service, never to a chosen endpoint, so it
// gets Ready=False (HeadlessNotSupported) and no slices at all (a consumer would hand out the
// gateway's address as a pod's). Pure functions; the reconciler compares and writes.
import { createHash } from 'node:crypto';
import { isIPv6 } from 'node:net';
import type { KubernetesObject } from '@kubernetes/client-node';
import {
  ENDPOINTSLICE_MANAGED_BY_AGENT,
  LABEL_ENDPOINTSLICE_MANAGED_BY,
  LABEL_SOURCE_CLUSTER,
  MCS_API_VERSION,
  SERVICE_IMPORT_KIND,
  ServiceImportConditionType,
  ServiceImportReason,
  ServiceImportType,
} from '../../common/api/mcs.ts';
import { mayImport, type CatalogCluster, type CatalogEntry, type CatalogPort } from '../../common/catalog.ts';
import {
  ANNOTATION_DERIVED_SERVICE,
  ANNOTATION_EXPORTED_KEYS,
  ANNOTATION_EXPORTED_PORTS,
  ANNOTATION_GATEWAY_ADDRESSES,
  ANNOTATION_INTENT_HASH,
  ANNOTATION_LOCALITY,
  ANNOTATION_READY_ENDPOINTS,
  LABEL_KUBERNETES_SERVICE_NAME,
  addressTypeOf,
  derivedServiceName,
  isEndpointAddress,
  ownedLabels,
  sourceSliceName,
} from './naming.ts';
import type { ConditionUpdate } from '../../common/api/conditions.ts';

/** Where the local gateway listens for one port of an imported service, and whether it can serve it. */
export interface OutboundAddress {
  readonly address: string;
  readonly port: number;
  /** False while no candidate (local endpoint or remote cluster) is healthy. Default true. */
  readonly healthy?: boolean;
  readonly reason?: string;
}

/** The gateway's outbound listener for a port of an imported service; undefined while it has none. */
export type OutboundListener = (namespace: string, name: string, port: CatalogPort) => OutboundAddress | undefined;

/** An object as the importer wants it. A `null` field is one it removes (JSON merge patch). */
export interface DesiredObject {
  readonly apiVersion: string;
  readonly kind: string;
  readonly metadata: {
    readonly name: string;
    readonly namespace: string;
    readonly labels: Record<string, string | null>;
    readonly annotations: Record<string, string | null>;
  };
  readonly [field: string]: unknown;
}

export interface ImportPlan {
  /** The clusterset Service (ClusterIP, or headless for a Headless import). */
  readonly service: DesiredObject;
  /** One per source cluster; none for a Headless import (refused), so the reconciler deletes any it wrote. */
  readonly slices: readonly DesiredObject[];
  /** ServiceImport status: every exporting cluster this cluster may import from, oldest export first. */
  readonly status: { readonly clusters: readonly { readonly cluster: string }[] };
  /** The ServiceImport's Ready condition: true once the gateway listens on every port and can serve it; never for a Headless import. */
  readonly ready: ConditionUpdate;
  /** Addresses an EndpointSlice may not name (loopback, link-local, unspecified), left out of the slices. */
  readonly refusedAddresses: readonly string[];
  /**
   * The ServiceImport, given the clusterset Service's cluster IPs (and, for a Headless import,
   * its IP families) and the ServiceImport as stored, whose exported labels and annotations that
   * the export no longer names are removed.
   */
  serviceImport(
    clusterIps: readonly string[],
    local?: { readonly ipFamilies?: readonly string[]; readonly stored?: KubernetesObject },
  ): DesiredObject;
}

const ENDPOINT_SLICE_API_VERSION = 'discovery.k8s.io/v1';
/** Kubernetes' default ClientIP affinity timeout, used when the export named none. */
const DEFAULT_AFFINITY_TIMEOUT_SECONDS = 10_800;

/** The plan for `entry` in cluster `clusterId`, or undefined when no exporter lets it import. */
/**
 * `isStale` says which source clusters the hub marked unavailable past its staleness bound: their
 * slices stay, with endpoints not ready, until the cluster is back.
 */
export function planImport(
  entry: CatalogEntry,
  clusterId: string,
  outboundListener?: OutboundListener,
  isStale?: (clusterId: string) => boolean,
): ImportPlan | undefined {
  const sources = entry.clusters.filter((cluster) => mayImport(cluster, clusterId));
  if (sources.length === 0) return undefined;
  const { namespace, name } = entry;
  const derivedName = derivedServiceName(namespace, name);
  const ports = slicePorts(entry.ports);
  const headless = entry.type === ServiceImportType.Headless;
  const listeners = headless ? [] : entry.ports.map((port) => outboundListener?.(namespace, name, port));
  const refusedAddresses = listeners.flatMap((l) => (l && !isEndpointAddress(l.address) ? [l.address] : []));
  return {
    service: withIntentHash({
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: derivedName, namespace, labels: ownedLabels(name), annotations: {} },
      spec: { type: 'ClusterIP', ...(headless ? { clusterIP: 'None' } : {}), ports },
    }),
    slices: headless
      ? []
      : sources.map((cluster) =>
          sourceSlice(entry, derivedName, cluster, ports, listeners, isStale?.(cluster.clusterId) ?? false),
        ),
    status: { clusters: sources.map((cluster) => ({ cluster: cluster.clusterId })) },
    ready: headless ? HEADLESS_REFUSED : readiness(entry, listeners),
    refusedAddresses: [...new Set(refusedAddresses)],
    serviceImport: (clusterIps, local) =>
      withIntentHash({
        apiVersion: MCS_API_VERSION,
        kind: SERVICE_IMPORT_KIND,
        metadata: {
          name,
          namespace,
          ...exportedMetadata(entry, local?.stored, {
            labels: ownedLabels(name),
            annotations: { [ANNOTATION_DERIVED_SERVICE]: derivedName },
          }),
        },
        spec: {
          type: entry.type,
          ports: entry.ports.map((port) => ({
            name: port.name || undefined,
            protocol: port.protocol,
            appProtocol: port.appProtocol || undefined,
            port: port.port,
          })),
          ips: entry.type === ServiceImportType.ClusterSetIP && clusterIps.length > 0 ? [...clusterIps] : null,
          sessionAffinity: entry.sessionAffinity,
          sessionAffinityConfig:
            entry.sessionAffinity === 'ClientIP'
              ? {
                  clientIP: { timeoutSeconds: entry.sessionAffinityTimeoutSeconds || DEFAULT_AFFINITY_TIMEOUT_SECONDS },
                }
              : null,
          // The families of this cluster's clusterset IPs, in their order (upstream: one IP per family).
          ipFamilies: nonEmpty(
            entry.type === ServiceImportType.ClusterSetIP
              ? clusterIps.map((ip) => (isIPv6(ip) ? 'IPv6' : 'IPv4'))
              : (local?.ipFamilies ?? []),
          ),
          internalTrafficPolicy: entry.internalTrafficPolicy || null,
          trafficDistribution: entry.trafficDistribution || null,
        },
      }),
  };
}

function nonEmpty<T>(list: readonly T[]): T[] | null {
  return list.length > 0 ? [...list] : null;
}

interface ExportedKeys {
  readonly labels: readonly string[];
  readonly annotations: readonly string[];
}

/** The keys of the exported labels and annotations a stored ServiceImport was given (its annotation says). */
function storedExportedKeys(stored: KubernetesObject | undefined): ExportedKeys {
  const raw = stored?.metadata?.annotations?.[ANNOTATION_EXPORTED_KEYS];
  if (!raw) return { labels: [], annotations: [] };
  try {
    const parsed = JSON.parse(raw) as Partial<ExportedKeys>;
    const strings = (list: unknown): string[] =>
      Array.isArray(list) ? list.filter((k): k is string => typeof k === 'string') : [];
    return { labels: strings(parsed.labels), annotations: strings(parsed.annotations) };
  } catch {
    return { labels: [], annotations: [] };
  }
}

/**
 * The ServiceImport's labels and annotations: the export's exportedLabels/exportedAnnotations (the
 * oldest export's, as resolved), under the importer's own, which win a clash. Keys exported
 * before and no longer are removed (null); the keys exported now are recorded for next time.
 */
function exportedMetadata(
  entry: CatalogEntry,
  stored: KubernetesObject | undefined,
  own: { readonly labels: Record<string, string>; readonly annotations: Record<string, string> },
): { labels: Record<string, string | null>; annotations: Record<string, string | null> } {
  const labels = Object.keys(entry.exportedLabels).filter((k) => !(k in own.labels));
  const annotations = Object.keys(entry.exportedAnnotations).filter(
    (k) => !(k in own.annotations) && k !== ANNOTATION_EXPORTED_KEYS && k !== ANNOTATION_INTENT_HASH,
  );
  const before = storedExportedKeys(stored);
  const removed = (
    previous: readonly string[],
    now: readonly string[],
    ownKeys: Record<string, string>,
  ): Record<string, null> =>
    Object.fromEntries(previous.filter((k) => !now.includes(k) && !(k in ownKeys)).map((k) => [k, null]));
  return {
    labels: {
      ...removed(before.labels, labels, own.labels),
      ...Object.fromEntries(labels.map((k) => [k, entry.exportedLabels[k] ?? ''])),
      ...own.labels,
    },
    annotations: {
      ...removed(before.annotations, annotations, own.annotations),
      ...Object.fromEntries(annotations.map((k) => [k, entry.exportedAnnotations[k] ?? ''])),
      ...own.annotations,
      ...(labels.length > 0 || annotations.length > 0
        ? { [ANNOTATION_EXPORTED_KEYS]: JSON.stringify({ labels, annotations }) }
        : { [ANNOTATION_EXPORTED_KEYS]: null }),
    },
  };
}

interface SlicePort {
  readonly name: string | undefined;
  readonly protocol: string;
  readonly port: number;
  readonly appProtocol: string | undefined;
}

/**
 * Ports of the clusterset Service and its slices. A Service with several ports needs a name on
 * each, and the union of several clusters' unnamed ports has several: those get `<proto>-<port>`.
 */
function slicePorts(ports: readonly CatalogPort[]): SlicePort[] {
  return ports.map((port) => ({
    name: port.name || (ports.length > 1 ? `${port.protocol.toLowerCase()}-${port.port}` : undefined),
    protocol: port.protocol,
    port: port.port,
    appProtocol: port.appProtocol || undefined,
  }));
}

/**
 * A source cluster's slice: the local gateway's listener for each port that cluster exports,
 * ready when it reports a ready endpoint, in its zone. Annotations carry what the gateway needs to
 * reach it: its gateway addresses, locality and ready endpoints per zone.
 */
function sourceSlice(
  entry: CatalogEntry,
  derivedName: string,
  cluster: CatalogCluster,
  ports: readonly SlicePort[],
  listeners: readonly (OutboundAddress | undefined)[],
  stale: boolean,
): DesiredObject {
  const exported = new Set(cluster.ports.map((p) => `${p.protocol}/${p.port}`));
  const listening = ports.flatMap((port, index) => {
    const listener = listeners[index];
    return listener && isEndpointAddress(listener.address) && exported.has(`${port.protocol}/${port.port}`)
      ? [{ port: { ...port, port: listener.port }, address: listener.address }]
      : [];
  });
  // The gateway has one outbound address; should listeners differ, the first one's address is named.
  const address = listening[0]?.address;
  const sameAddress = listening.filter((l) => l.address === address);
  const ready = !stale && cluster.endpoints.some((e) => e.ready > 0);
  const { region, zone, network, labels } = cluster;
  return withIntentHash({
    apiVersion: ENDPOINT_SLICE_API_VERSION,
    kind: 'EndpointSlice',
    metadata: {
      name: sourceSliceName(entry.name, cluster.clusterId),
      namespace: entry.namespace,
      labels: {
        ...ownedLabels(entry.name),
        [LABEL_ENDPOINTSLICE_MANAGED_BY]: ENDPOINTSLICE_MANAGED_BY_AGENT,
        [LABEL_SOURCE_CLUSTER]: cluster.clusterId,
        [LABEL_KUBERNETES_SERVICE_NAME]: derivedName,
      },
      annotations: {
        [ANNOTATION_GATEWAY_ADDRESSES]: JSON.stringify(cluster.gatewayAddresses),
        [ANNOTATION_LOCALITY]: JSON.stringify({ region, zone, network, labels }),
        [ANNOTATION_READY_ENDPOINTS]: JSON.stringify(cluster.endpoints),
        [ANNOTATION_EXPORTED_PORTS]: JSON.stringify([...exported]),
      },
    },
    addressType: address ? addressTypeOf(address) : 'IPv4',
    endpoints: address
      ? [{ addresses: [address], conditions: { ready, serving: ready }, zone: zone || undefined }]
      : [],
    ports: sameAddress.map((l) => l.port),
  });
}

const HEADLESS_REFUSED: ConditionUpdate = {
  type: ServiceImportConditionType.Ready,
  status: 'False',
  reason: ServiceImportReason.HeadlessNotSupported,
  message:
    'a Headless service cannot be imported: its names would resolve to single endpoints, and per-endpoint routing through the east-west gateways is not supported; export a ClusterSetIP service (one with a cluster IP) instead',
};

function readiness(entry: CatalogEntry, listeners: readonly (OutboundAddress | undefined)[]): ConditionUpdate {
  const missing = entry.ports.filter((_, index) => !listeners[index]).map((p) => `${p.protocol}/${p.port}`);
  if (missing.length > 0) {
    return {
      type: ServiceImportConditionType.Ready,
      status: 'False',
      reason: ServiceImportReason.ListenerPending,
      message: `the east-west gateway has no outbound listener for ${missing.join(', ')} yet`,
    };
  }
  const unhealthy = listeners.find((l) => l?.healthy === false);
  if (unhealthy)
    return {
      type: ServiceImportConditionType.Ready,
      status: 'False',
      reason: ServiceImportReason.NoHealthyCandidate,
      message: unhealthy.reason || 'no local endpoint or remote cluster can serve it',
    };
  return {
    type: ServiceImportConditionType.Ready,
    status: 'True',
    reason: ServiceImportReason.Ready,
    message: 'the east-west gateway listens on every port and can reach a ready endpoint',
  };
}

/** Stamps the hash of the whole intent, so a changed intent is told from server-side defaults. */
export function withIntentHash(object: DesiredObject): DesiredObject {
  const hash = createHash('sha256').update(JSON.stringify(object)).digest('base64url').slice(0, 22);
  return {
    ...object,
    metadata: { ...object.metadata, annotations: { ...object.metadata.annotations, [ANNOTATION_INTENT_HASH]: hash } },
  };
}
