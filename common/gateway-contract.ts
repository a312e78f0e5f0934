// What the agent and the east-west gateway of one cluster exchange through that cluster's own
// Kubernetes API (DESIGN §1, §6): the gateway never talks to the hub or NATS, so everything it
// needs — its certificate, the trust bundle, the membership — the agent writes into its
// namespace, and the gateway publishes back where its outbound listeners are. Also the wire
// contract between gateways: the SNI format and the tunnel's one-byte answer. FailoverPolicies
// reach the gateway as copies the agent writes (see failover-policy.ts).
import { z } from 'zod';
import { gatewayAddressSchema } from './api/isthmus.ts';
import { memberRecordSchema } from './catalog.ts';

/** The inbound mTLS port (DESIGN §6). */
export const GATEWAY_INBOUND_PORT = 15443;
/** The gateway's name unless configured otherwise: its SPIFFE ID ends in `/gateway/<name>`. */
export const DEFAULT_GATEWAY_NAME = 'east-west';

/** Secret (type kubernetes.io/tls) holding the gateway's leaf: `tls.crt` is leaf + intermediate. */
export function gatewayTlsSecretName(gateway: string): string {
  return `isthmus-gateway-${gateway}-tls`;
}
/** ConfigMap the gateway writes: its outbound listeners (`listeners.json`). */
export function gatewayListenersConfigMapName(gateway: string): string {
  return `isthmus-gateway-${gateway}-listeners`;
}
/** ConfigMap the agent writes: the trust bundle (`bundle.pem`, `bundle.spiffe.json`, `sequence`). */
export const TRUST_BUNDLE_CONFIGMAP = 'isthmus-trust-bundle';
/** ConfigMap the agent writes: the current members as the hub publishes them (`members.json`). */
export const MEMBERS_CONFIGMAP = 'isthmus-members';

export const membersDocumentSchema = z.object({ members: z.array(memberRecordSchema) });
export type MembersDocument = z.infer<typeof membersDocumentSchema>;

export const outboundListenerRecordSchema = z.object({
  namespace: z.string(),
  name: z.string(),
  protocol: z.string(),
  /** The service port clients ask for. */
  port: z.int().min(1).max(65535),
  /** Where the gateway accepts it (the clusterset Service's endpoints name this). */
  address: z.string(),
  listenPort: z.int().min(1).max(65535),
  /** At least one candidate (local endpoint or remote cluster) is healthy. */
  healthy: z.boolean(),
  /** Why not, when not healthy. */
  reason: z.string().default(''),
  /** How new connections split now, and why (for `isthmus routes`). */
  routes: z
    .array(
      z.object({
        cluster: z.string(),
        level: z.int(),
        share: z.number(),
        healthy: z.int(),
        total: z.int(),
        reason: z.string(),
      }),
    )
    .default([]),
  /** The FailoverPolicy in force (namespace/name and generation), empty for the defaults. */
  policy: z.string().default(''),
});
export type OutboundListenerRecord = z.infer<typeof outboundListenerRecordSchema>;

export const listenersDocumentSchema = z.object({ listeners: z.array(outboundListenerRecordSchema) });
export type ListenersDocument = z.infer<typeof listenersDocumentSchema>;

export function listenerKey(namespace: string, name: string, protocol: string, port: number): string {
  return `${namespace}/${name}/${protocol}/${port}`;
}

// What the agent annotates on each source cluster's EndpointSlice for the gateway.
/** On a source cluster's EndpointSlice: that cluster's gateway addresses with their ports (JSON). */
export const ANNOTATION_GATEWAY_ADDRESSES = 'isthmus.dev/gateway-addresses';
/** On a source cluster's EndpointSlice: region, zone, network and labels of that cluster (JSON). */
export const ANNOTATION_LOCALITY = 'isthmus.dev/locality';
/** On a source cluster's EndpointSlice: the service ports that cluster exports, as "<protocol>/<port>" (JSON). */
export const ANNOTATION_EXPORTED_PORTS = 'isthmus.dev/exported-ports';
/** On a source cluster's EndpointSlice: its ready endpoints per zone as the catalog reports them (JSON). */
export const ANNOTATION_READY_ENDPOINTS = 'isthmus.dev/ready-endpoints';

/** The remote gateways of one source cluster, as the agent annotates its EndpointSlice. */
export const gatewayAddressListSchema = z.array(gatewayAddressSchema);
export const sliceLocalitySchema = z.object({
  region: z.string(),
  zone: z.string(),
  network: z.string(),
  labels: z.record(z.string(), z.string()),
});
export const readyEndpointsSchema = z.array(
  z.object({ zone: z.string(), ready: z.int().min(0), total: z.int().min(0).optional() }),
);
export const exportedPortsSchema = z.array(z.string());

const CLUSTERSET_SUFFIX = '.svc.clusterset.local';
/** Answered by the inbound side itself: a health probe, never routed to a backend. */
export const PROBE_SNI = 'probe.isthmus.internal';

/** SNI naming a service port across gateways: `<port>.<service>.<namespace>.svc.clusterset.local`. */
export function serviceSni(namespace: string, name: string, port: number): string {
  return `${port}.${name}.${namespace}${CLUSTERSET_SUFFIX}`;
}

export function parseServiceSni(sni: string): { namespace: string; name: string; port: number } | undefined {
  if (!sni.endsWith(CLUSTERSET_SUFFIX)) return undefined;
  const parts = sni.slice(0, -CLUSTERSET_SUFFIX.length).split('.');
  if (parts.length !== 3) return undefined;
  const [portText, name, namespace] = parts as [string, string, string];
  const port = Number(portText);
  if (!/^[0-9]{1,5}$/.test(portText) || port < 1 || port > 65535 || !name || !namespace) return undefined;
  return { namespace, name, port };
}

/** ALPN of the gateway-to-gateway tunnel: anything else is refused. */
export const TUNNEL_ALPN = 'isthmus-tunnel/1';
/**
 * The inbound side's first byte: CONNECTED once a backend accepted the connection (then the
 * backend's bytes follow), REFUSED (then a reason as text, then close) when none did. Until
 * CONNECTED the outbound side may replay what it sent to another candidate: no backend saw it.
 */
export const TUNNEL_CONNECTED = 0x01;
export const TUNNEL_REFUSED = 0x00;
