// What one catalog entry should look like in this cluster: the ServiceImport, one EndpointSlice per
// source cluster, and the clusterset Service with the EndpointSlice(s) that point at the local
// gateway's outbound listener. Pure functions; the reconciler compares and writes.
import { createHash } from 'node:crypto';
import type { KubernetesObject } from '@kubernetes/client-node';
import {
  ENDPOINTSLICE_MANAGED_BY_AGENT,
  LABEL_ENDPOINTSLICE_MANAGED_BY,
  LABEL_SOURCE_CLUSTER,
  MCS_API_VERSION,
  SERVICE_IMPORT_KIND,
  ServiceImportType,
} from '../../common/api/mcs.ts';
import { mayImport, type CatalogCluster, type CatalogEntry, type CatalogPort } from '../../common/catalog.ts';
import {
  ANNOTATION_DERIVED_SERVICE,
  ANNOTATION_GATEWAY_ADDRESSES,
  ANNOTATION_INTENT_HASH,
  ANNOTATION_LOCALITY,
  ANNOTATION_READY_ENDPOINTS,
  LABEL_KUBERNETES_SERVICE_NAME,
  addressTypeOf,
  derivedServiceName,
  isEndpointAddress,
  outboundSliceName,
  ownedLabels,
  sourceSliceName,
  type AddressType,
} from './naming.ts';

/** Where the local gateway listens for one port of an imported service. */
export interface OutboundAddress {
  readonly address: string;
  readonly port: number;
}

/** The gateway's outbound listener for a port of an imported service; undefined while it has none. */
export type OutboundListener = (namespace: string, name: string, port: CatalogPort) => OutboundAddress | undefined;

/** An object as the importer wants it. A `null` field is one it removes (JSON merge patch). */
export interface DesiredObject extends KubernetesObject {
  readonly apiVersion: string;
  readonly kind: string;
  readonly metadata: {
    readonly name: string;
    readonly namespace: string;
    readonly labels: Record<string, string>;
    readonly annotations: Record<string, string>;
  };
  readonly [field: string]: unknown;
}

export interface ImportPlan {
  /** The clusterset Service (ClusterIP, or headless for a Headless import). */
  readonly service: DesiredObject;
  /** Source clusters' slices, then the clusterset Service's outbound slices. */
  readonly slices: readonly DesiredObject[];
  /** ServiceImport status: every exporting cluster this cluster may import from, oldest export first. */
  readonly status: { readonly clusters: readonly { readonly cluster: string }[] };
  /** Addresses an EndpointSlice may not name (loopback, link-local, unspecified), left out of the slices. */
  readonly refusedAddresses: readonly string[];
  /** The ServiceImport, given the clusterset Service's cluster IPs. */
  serviceImport(clusterIps: readonly string[]): DesiredObject;
}

const ENDPOINT_SLICE_API_VERSION = 'discovery.k8s.io/v1';
/** Kubernetes' default ClientIP affinity timeout, used when the export named none. */
const DEFAULT_AFFINITY_TIMEOUT_SECONDS = 10_800;

/** The plan for `entry` in cluster `clusterId`, or undefined when no exporter lets it import. */
export function planImport(entry: CatalogEntry, clusterId: string, outboundListener?: OutboundListener): ImportPlan | undefined {
  const sources = entry.clusters.filter((cluster) => mayImport(cluster, clusterId));
  if (sources.length === 0) return undefined;
  const { namespace, name } = entry;
  const derivedName = derivedServiceName(namespace, name);
  const ports = slicePorts(entry.ports);
  const listeners = outboundListeners(entry, ports, outboundListener);
  const refusedAddresses = [...sources.flatMap((c) => c.gatewayAddresses.map((a) => a.address)), ...listeners.keys()].filter((a) => !isEndpointAddress(a));
  return {
    service: withIntentHash({
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: derivedName, namespace, labels: ownedLabels(name), annotations: {} },
      spec: { type: 'ClusterIP', ...(entry.type === ServiceImportType.Headless ? { clusterIP: 'None' } : {}), ports },
    }),
    slices: [
      ...sources.map((cluster) => sourceSlice(entry, cluster, ports)),
      ...outboundSlices(entry, derivedName, listeners),
    ],
    status: { clusters: sources.map((cluster) => ({ cluster: cluster.clusterId })) },
    refusedAddresses: [...new Set(refusedAddresses)],
    serviceImport: (clusterIps) =>
      withIntentHash({
        apiVersion: MCS_API_VERSION,
        kind: SERVICE_IMPORT_KIND,
        metadata: { name, namespace, labels: ownedLabels(name), annotations: { [ANNOTATION_DERIVED_SERVICE]: derivedName } },
        spec: {
          type: entry.type,
          ports: entry.ports.map((port) => ({ name: port.name || undefined, protocol: port.protocol, appProtocol: port.appProtocol || undefined, port: port.port })),
          ips: entry.type === ServiceImportType.ClusterSetIP && clusterIps.length > 0 ? [...clusterIps] : null,
          sessionAffinity: entry.sessionAffinity,
          sessionAffinityConfig:
            entry.sessionAffinity === 'ClientIP' ? { clientIP: { timeoutSeconds: entry.sessionAffinityTimeoutSeconds || DEFAULT_AFFINITY_TIMEOUT_SECONDS } } : null,
        },
      }),
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
 * A source cluster's slice: its gateway addresses, ready when it reports a ready endpoint, in its
 * zone, with the resolved ports it exports itself. One address type per slice: IPv4 before IPv6
 * before hostnames; the annotation lists every gateway address with its port.
 */
function sourceSlice(entry: CatalogEntry, cluster: CatalogCluster, ports: readonly SlicePort[]): DesiredObject {
  const usable = cluster.gatewayAddresses.map((a) => a.address).filter(isEndpointAddress);
  const addressType = preferredAddressType(usable);
  const addresses = [...new Set(usable.filter((a) => addressTypeOf(a) === addressType))];
  const ready = cluster.endpoints.some((e) => e.ready > 0);
  const exported = new Set(cluster.ports.map((p) => `${p.protocol}/${p.port}`));
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
      },
      annotations: {
        [ANNOTATION_GATEWAY_ADDRESSES]: JSON.stringify(cluster.gatewayAddresses),
        [ANNOTATION_LOCALITY]: JSON.stringify({ region, zone, network, labels }),
        [ANNOTATION_READY_ENDPOINTS]: JSON.stringify(cluster.endpoints),
      },
    },
    addressType,
    endpoints: addresses.map((address) => ({ addresses: [address], conditions: { ready, serving: ready }, zone: zone || undefined })),
    ports: ports.filter((p) => exported.has(`${p.protocol}/${p.port}`)),
  });
}

function preferredAddressType(addresses: readonly string[]): AddressType {
  const types = new Set(addresses.map(addressTypeOf));
  return (['IPv4', 'IPv6', 'FQDN'] as const).find((type) => types.has(type)) ?? 'IPv4';
}

/** The gateway's outbound listeners by address, each with the service ports listening there. */
function outboundListeners(entry: CatalogEntry, ports: readonly SlicePort[], outboundListener: OutboundListener | undefined): Map<string, SlicePort[]> {
  const byAddress = new Map<string, SlicePort[]>();
  entry.ports.forEach((port, index) => {
    const listener = outboundListener?.(entry.namespace, entry.name, port);
    const servicePort = ports[index];
    if (!listener || !servicePort) return;
    const listed = byAddress.get(listener.address) ?? [];
    listed.push({ ...servicePort, port: listener.port });
    byAddress.set(listener.address, listed);
  });
  return byAddress;
}

/** The clusterset Service's slices: one per listener address an EndpointSlice may name. */
function outboundSlices(entry: CatalogEntry, derivedName: string, listeners: ReadonlyMap<string, SlicePort[]>): DesiredObject[] {
  return [...listeners].filter(([address]) => isEndpointAddress(address)).map(([address, listening]) =>
    withIntentHash({
      apiVersion: ENDPOINT_SLICE_API_VERSION,
      kind: 'EndpointSlice',
      metadata: {
        name: outboundSliceName(derivedName, address),
        namespace: entry.namespace,
        labels: {
          ...ownedLabels(entry.name),
          [LABEL_ENDPOINTSLICE_MANAGED_BY]: ENDPOINTSLICE_MANAGED_BY_AGENT,
          [LABEL_KUBERNETES_SERVICE_NAME]: derivedName,
        },
        annotations: {},
      },
      addressType: addressTypeOf(address),
      endpoints: [{ addresses: [address], conditions: { ready: true, serving: true } }],
      ports: listening,
    }),
  );
}

/** Stamps the hash of the whole intent, so a changed intent is told from server-side defaults. */
function withIntentHash(object: DesiredObject): DesiredObject {
  const hash = createHash('sha256').update(JSON.stringify(object)).digest('base64url').slice(0, 22);
  return { ...object, metadata: { ...object.metadata, annotations: { ...object.metadata.annotations, [ANNOTATION_INTENT_HASH]: hash } } };
}
