// Names, labels and annotations of the objects the importer writes into its own cluster. Names
// are deterministic, so a restarted agent finds its objects again, and always fit 63 characters.
import { createHash } from 'node:crypto';
import { BlockList, isIPv4, isIPv6 } from 'node:net';
import {
  ENDPOINTSLICE_MANAGED_BY_AGENT,
  LABEL_ENDPOINTSLICE_MANAGED_BY,
  LABEL_SERVICE_NAME,
} from '../../common/api/mcs.ts';

/** Field manager of every write, and the value of the ownership label. */
export const FIELD_MANAGER = 'isthmus-agent';
/** Objects carrying this label with value FIELD_MANAGER are the importer's; it touches no others. */
export const LABEL_MANAGED_BY = 'app.kubernetes.io/managed-by';
/** The Service an EndpointSlice belongs to (kube-proxy and the EndpointSlice API use it). */
export const LABEL_KUBERNETES_SERVICE_NAME = 'kubernetes.io/service-name';
/** On the ServiceImport: the clusterset Service behind it (the name mcs-api's controller uses). */
export const ANNOTATION_DERIVED_SERVICE = 'multicluster.kubernetes.io/derived-service';
/** Hash of what the importer last wrote; a changed intent is seen even where the server adds defaults. */
export const ANNOTATION_INTENT_HASH = 'isthmus.dev/intent-hash';
/** On a ServiceImport: the keys of the export's exportedLabels/exportedAnnotations it carries, so they can be removed once no longer exported. */
export const ANNOTATION_EXPORTED_KEYS = 'isthmus.dev/exported-keys';
export {
  ANNOTATION_EXPORTED_PORTS,
  ANNOTATION_GATEWAY_ADDRESSES,
  ANNOTATION_LOCALITY,
  ANNOTATION_READY_ENDPOINTS,
} from '../../common/gateway-contract.ts';

const MAX_NAME = 63;

/** Lower-case hex of sha256, cut to `length`: valid in every Kubernetes name. */
export function shortHash(input: string, length: number): string {
  return createHash('sha256').update(input).digest('hex').slice(0, length);
}

/** The clusterset Service of an imported service, in the style of mcs-api: `derived-<hash>`. */
export function derivedServiceName(namespace: string, name: string): string {
  return `derived-${shortHash(`${namespace}/${name}`, 10)}`;
}

/**
 * EndpointSlice of one source cluster: `<service>-<cluster>-<hash>`, the readable part cut so the
 * whole fits 63 characters. The hash keeps ("a-b", "c") and ("a", "b-c") apart.
 */
export function sourceSliceName(name: string, clusterId: string): string {
  const suffix = `-${shortHash(`${name}/${clusterId}`, 8)}`;
  return `${`${name}-${clusterId}`.slice(0, MAX_NAME - suffix.length)}${suffix}`;
}

export type AddressType = 'IPv4' | 'IPv6' | 'FQDN';

export function addressTypeOf(address: string): AddressType {
  if (isIPv4(address)) return 'IPv4';
  if (isIPv6(address)) return 'IPv6';
  return 'FQDN';
}

// What the EndpointSlice API refuses as an endpoint address (validation.ValidateEndpointIP).
const refusedEndpointIps = new BlockList();
refusedEndpointIps.addAddress('0.0.0.0', 'ipv4');
refusedEndpointIps.addSubnet('127.0.0.0', 8, 'ipv4');
refusedEndpointIps.addSubnet('169.254.0.0', 16, 'ipv4');
refusedEndpointIps.addSubnet('224.0.0.0', 24, 'ipv4');
refusedEndpointIps.addAddress('::', 'ipv6');
refusedEndpointIps.addAddress('::1', 'ipv6');
refusedEndpointIps.addSubnet('fe80::', 10, 'ipv6');
refusedEndpointIps.addSubnet('ff00::', 10, 'ipv6');

/** Whether an EndpointSlice may name this address (no loopback, link-local or unspecified IP). */
export function isEndpointAddress(address: string): boolean {
  const type = addressTypeOf(address);
  return type === 'FQDN' || !refusedEndpointIps.check(address, type === 'IPv4' ? 'ipv4' : 'ipv6');
}

/** Labels every object of one imported service carries. */
export function ownedLabels(name: string): Record<string, string> {
  return { [LABEL_MANAGED_BY]: FIELD_MANAGER, [LABEL_SERVICE_NAME]: name };
}

/** Label selectors of the importer's informers: only its own objects. */
export const OWNED_SELECTOR = `${LABEL_MANAGED_BY}=${FIELD_MANAGER},${LABEL_SERVICE_NAME}`;
export const OWNED_SLICE_SELECTOR = `${OWNED_SELECTOR},${LABEL_ENDPOINTSLICE_MANAGED_BY}=${ENDPOINTSLICE_MANAGED_BY_AGENT}`;
