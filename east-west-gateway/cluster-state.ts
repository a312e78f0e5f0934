// Everything the gateway knows, read from its own cluster's API only (DESIGN §1, static
// stability): what this cluster exports (ServiceExports, Services and their EndpointSlices), what
// it imports (the agent's ServiceImports and per-source-cluster EndpointSlices, whose annotations
// say where each source cluster's gateways are), and the identity, trust bundle and membership the
// agent writes. Informers restart themselves; the last known state stays in use meanwhile.
import type {
  KubeConfig,
  KubernetesObject,
  V1ConfigMap,
  V1EndpointSlice,
  V1Secret,
  V1Service,
} from '@kubernetes/client-node';
import { X509Certificate } from 'node:crypto';
import type { z } from 'zod';
import {
  ENDPOINTSLICE_MANAGED_BY_AGENT,
  LABEL_ENDPOINTSLICE_MANAGED_BY,
  LABEL_SERVICE_NAME,
  LABEL_SOURCE_CLUSTER,
  MCS_GROUP,
  MCS_VERSION,
  SERVICE_EXPORT_KIND,
  SERVICE_EXPORT_PLURAL,
  SERVICE_IMPORT_KIND,
  SERVICE_IMPORT_PLURAL,
} from '../common/api/mcs.ts';
import { ALLOWED_CLUSTERS_ANNOTATION, type MemberRecord } from '../common/catalog.ts';
import {
  ANNOTATION_EXPORTED_PORTS,
  ANNOTATION_GATEWAY_ADDRESSES,
  ANNOTATION_LOCALITY,
  ANNOTATION_READY_ENDPOINTS,
  MEMBERS_CONFIGMAP,
  TRUST_BUNDLE_CONFIGMAP,
  exportedPortsSchema,
  gatewayAddressListSchema,
  gatewayTlsSecretName,
  membersDocumentSchema,
  readyEndpointsSchema,
  sliceLocalitySchema,
} from '../common/gateway-contract.ts';
import type { GatewayAddress } from '../common/api/isthmus.ts';
import { Informer, customResource, kinds } from '../common/kube/index.ts';
import type { Logger } from '../common/logger.ts';
import { parseBundlePem, type TrustBundle, type X509Svid } from '../common/pki/index.ts';
import type { Locality } from './picker.ts';

/** Label the agent puts on everything it owns. */
const OWNED_BY_AGENT = 'app.kubernetes.io/managed-by=isthmus-agent';
const LABEL_KUBERNETES_SERVICE_NAME = 'kubernetes.io/service-name';

export interface LocalEndpoint {
  readonly address: string;
  readonly port: number;
  readonly zone: string;
  readonly ready: boolean;
}

/** A port of a service this cluster exports, as the inbound side serves it. */
export interface ExportedPort {
  readonly namespace: string;
  readonly name: string;
  readonly port: number;
  /** Empty: every member may reach it. */
  readonly allowedClusters: readonly string[];
}

export interface SourceCluster {
  readonly locality: Locality;
  readonly gatewayAddresses: readonly GatewayAddress[];
  /** Ready endpoints in that cluster, as the catalog reports them. */
  readonly readyEndpoints: number;
  /** All its endpoints, when the catalog says (else equal to readyEndpoints). */
  readonly totalEndpoints: number;
  /** "<protocol>/<port>" of the service ports that cluster exports. */
  readonly ports: ReadonlySet<string>;
}

export interface ImportedPort {
  readonly namespace: string;
  readonly name: string;
  readonly protocol: string;
  readonly port: number;
}

export interface GatewayIdentity {
  readonly svid: X509Svid;
  readonly bundle: TrustBundle;
}

type ServiceImportObject = KubernetesObject & {
  spec?: { type?: string; ports?: { protocol?: string; port: number }[] };
};

function parseJson<S extends z.ZodType>(schema: S, text: string | undefined): z.output<S> | undefined {
  if (text === undefined) return undefined;
  try {
    const parsed = schema.safeParse(JSON.parse(text));
    return parsed.success ? parsed.data : undefined;
  } catch {
    return undefined;
  }
}

function sourceClusterOf(slice: V1EndpointSlice): SourceCluster {
  const clusterId = slice.metadata?.labels?.[LABEL_SOURCE_CLUSTER] ?? '';
  const annotations = slice.metadata?.annotations ?? {};
  const locality = parseJson(sliceLocalitySchema, annotations[ANNOTATION_LOCALITY]) ?? {
    region: '',
    zone: '',
    network: '',
    labels: {},
  };
  const ready = parseJson(readyEndpointsSchema, annotations[ANNOTATION_READY_ENDPOINTS]) ?? [];
  const readyEndpoints = ready.reduce((sum, zone) => sum + zone.ready, 0);
  return {
    locality: { clusterId, ...locality },
    gatewayAddresses: parseJson(gatewayAddressListSchema, annotations[ANNOTATION_GATEWAY_ADDRESSES]) ?? [],
    readyEndpoints,
    totalEndpoints: Math.max(
      readyEndpoints,
      ready.reduce((sum, zone) => sum + (zone.total ?? zone.ready), 0),
    ),
    ports: new Set(parseJson(exportedPortsSchema, annotations[ANNOTATION_EXPORTED_PORTS]) ?? []),
  };
}

export class ClusterState {
  readonly #namespace: string;
  readonly #secretName: string;
  readonly #log: Logger;
  readonly #serviceExports: Informer<KubernetesObject>;
  readonly #services: Informer<V1Service>;
  readonly #localSlices: Informer<V1EndpointSlice>;
  readonly #serviceImports: Informer<ServiceImportObject>;
  readonly #sourceSlices: Informer<V1EndpointSlice>;
  readonly #secrets: Informer<V1Secret>;
  readonly #configMaps: Informer<V1ConfigMap>;
  readonly #all: readonly Informer<KubernetesObject>[];
  readonly #listeners = new Set<(what: 'identity' | 'members' | 'routes') => void>();
  readonly #parsedSlices = new WeakMap<V1EndpointSlice, SourceCluster>();
  #identity: GatewayIdentity | undefined;
  #identityKey = '';
  #members: ReadonlyMap<string, MemberRecord> | undefined;
  #membersJson: string | undefined;

  constructor(options: { kc: KubeConfig; namespace: string; gatewayName: string; log: Logger }) {
    const { kc, namespace, log } = options;
    this.#namespace = namespace;
    this.#secretName = gatewayTlsSecretName(options.gatewayName);
    this.#log = log;
    const custom = (kind: string, plural: string) =>
      customResource<KubernetesObject>({ group: MCS_GROUP, version: MCS_VERSION, kind, plural, namespaced: true });
    this.#serviceExports = new Informer({
      kubeConfig: kc,
      resource: custom(SERVICE_EXPORT_KIND, SERVICE_EXPORT_PLURAL),
      logger: log,
    });
    this.#services = new Informer({ kubeConfig: kc, resource: kinds.services, logger: log });
    this.#localSlices = new Informer({
      kubeConfig: kc,
      resource: kinds.endpointSlices,
      labelSelector: `${LABEL_ENDPOINTSLICE_MANAGED_BY}!=${ENDPOINTSLICE_MANAGED_BY_AGENT}`,
      logger: log,
    });
    this.#serviceImports = new Informer({
      kubeConfig: kc,
      resource: custom(SERVICE_IMPORT_KIND, SERVICE_IMPORT_PLURAL),
      labelSelector: OWNED_BY_AGENT,
      logger: log,
    }) as Informer<ServiceImportObject>;
    this.#sourceSlices = new Informer({
      kubeConfig: kc,
      resource: kinds.endpointSlices,
      labelSelector: `${OWNED_BY_AGENT},${LABEL_ENDPOINTSLICE_MANAGED_BY}=${ENDPOINTSLICE_MANAGED_BY_AGENT},${LABEL_SOURCE_CLUSTER}`,
      logger: log,
    });
    this.#secrets = new Informer({
      kubeConfig: kc,
      resource: kinds.secrets,
      namespace,
      fieldSelector: `metadata.name=${this.#secretName}`,
      logger: log,
    });
    this.#configMaps = new Informer({
      kubeConfig: kc,
      resource: kinds.configMaps,
      namespace,
      labelSelector: 'app.kubernetes.io/component=east-west-gateway',
      logger: log,
    });
    this.#all = [
      this.#serviceExports,
      this.#services,
      this.#localSlices,
      this.#serviceImports,
      this.#sourceSlices,
      this.#secrets,
      this.#configMaps,
    ] as unknown as Informer<KubernetesObject>[];
    for (const informer of [
      this.#serviceExports,
      this.#services,
      this.#localSlices,
      this.#serviceImports,
      this.#sourceSlices,
    ] as unknown as Informer<KubernetesObject>[]) {
      informer.addEventHandler(() => this.#emit('routes'));
    }
    this.#secrets.addEventHandler(() => this.#refreshIdentity());
    this.#configMaps.addEventHandler(() => {
      this.#refreshIdentity();
      this.#refreshMembers();
    });
  }

  start(): void {
    for (const informer of this.#all) informer.start();
  }

  async synced(): Promise<void> {
    await Promise.all(this.#all.map((informer) => informer.synced()));
  }

  async stop(): Promise<void> {
    await Promise.all(this.#all.map((informer) => informer.stop()));
  }

  /** Called after a change: 'identity' (certificate or bundle), 'members', or 'routes' (anything else). Must not block. */
  onChange(listener: (what: 'identity' | 'members' | 'routes') => void): void {
    this.#listeners.add(listener);
  }

  /** The certificate and bundle the agent wrote; undefined until both are there and usable. */
  get identity(): GatewayIdentity | undefined {
    return this.#identity;
  }

  /** Current members by cluster id; undefined until the agent has written the membership. */
  get members(): ReadonlyMap<string, MemberRecord> | undefined {
    return this.#members;
  }

  /** The exported service port `port` of namespace/name, or why it cannot be reached. */
  exportedPort(namespace: string, name: string, port: number): ExportedPort | 'NOT_EXPORTED' | 'NO_SUCH_PORT' {
    const serviceExport = this.#serviceExports.get(namespace, name);
    const service = this.#services.get(namespace, name);
    if (!serviceExport || !service) return 'NOT_EXPORTED';
    if (!(service.spec?.ports ?? []).some((p) => p.port === port && (p.protocol ?? 'TCP') === 'TCP'))
      return 'NO_SUCH_PORT';
    const allowed = serviceExport.metadata?.annotations?.[ALLOWED_CLUSTERS_ANNOTATION];
    return {
      namespace,
      name,
      port,
      allowedClusters: allowed
        ? allowed
            .split(',')
            .map((c) => c.trim())
            .filter(Boolean)
        : [],
    };
  }

  /** Endpoints of a local service for a service port, from its EndpointSlices (target ports resolved by port name). */
  localEndpoints(namespace: string, name: string, port: number): LocalEndpoint[] {
    const servicePort = this.#services
      .get(namespace, name)
      ?.spec?.ports?.find((p) => p.port === port && (p.protocol ?? 'TCP') === 'TCP');
    if (!servicePort) return [];
    const portName = servicePort.name ?? '';
    const endpoints: LocalEndpoint[] = [];
    for (const slice of this.#localSlices.list(namespace)) {
      if (slice.metadata?.labels?.[LABEL_KUBERNETES_SERVICE_NAME] !== name) continue;
      const target = slice.ports?.find((p) => (p.name ?? '') === portName && (p.protocol ?? 'TCP') === 'TCP')?.port;
      if (target === undefined) continue;
      for (const endpoint of slice.endpoints ?? []) {
        const ready = endpoint.conditions?.ready !== false;
        for (const address of endpoint.addresses.slice(0, 1))
          endpoints.push({ address, port: target, zone: endpoint.zone ?? '', ready });
      }
    }
    return endpoints;
  }

  /** Every TCP port of every ClusterSetIP import (headless imports have no VIP to listen for). */
  importedPorts(): ImportedPort[] {
    const ports: ImportedPort[] = [];
    for (const serviceImport of this.#serviceImports.list()) {
      const { namespace = '', name = '' } = serviceImport.metadata ?? {};
      if (serviceImport.spec?.type === 'Headless') continue;
      for (const port of serviceImport.spec?.ports ?? []) {
        if ((port.protocol ?? 'TCP') === 'TCP') ports.push({ namespace, name, protocol: 'TCP', port: port.port });
      }
    }
    return ports;
  }

  /** The clusters an imported service comes from, as the agent's source slices describe them. */
  sourceClusters(namespace: string, name: string): SourceCluster[] {
    const clusters: SourceCluster[] = [];
    for (const slice of this.#sourceSlices.list(namespace)) {
      if (slice.metadata?.labels?.[LABEL_SERVICE_NAME] !== name) continue;
      // Every new connection asks: the annotations are parsed once per version of the slice (the
      // informer replaces the object on each change, so the cache follows it).
      let cluster = this.#parsedSlices.get(slice);
      if (!cluster) this.#parsedSlices.set(slice, (cluster = sourceClusterOf(slice)));
      clusters.push(cluster);
    }
    return clusters;
  }

  #emit(what: 'identity' | 'members' | 'routes'): void {
    for (const listener of this.#listeners) {
      try {
        listener(what);
      } catch (err) {
        this.#log.error({ err }, 'cluster state listener threw');
      }
    }
  }

  #refreshIdentity(): void {
    const secret = this.#secrets.get(this.#namespace, this.#secretName);
    const bundleMap = this.#configMaps.get(this.#namespace, TRUST_BUNDLE_CONFIGMAP);
    const decode = (key: string): string | undefined => {
      const value = secret?.data?.[key];
      return value === undefined ? undefined : Buffer.from(value, 'base64').toString('utf8');
    };
    const chain = decode('tls.crt');
    const key = decode('tls.key');
    const spiffeId = decode('spiffe-id');
    const bundlePem = bundleMap?.data?.['bundle.pem'];
    const trustDomain = bundleMap?.data?.['trust-domain'];
    const sequence = Number(bundleMap?.data?.['sequence'] ?? NaN);
    if (!chain || !key || !spiffeId || !bundlePem || !trustDomain || !Number.isInteger(sequence)) return;
    const identityKey = `${chain}\n${sequence}\n${bundlePem}`;
    if (identityKey === this.#identityKey) return;
    try {
      const leaf = new X509Certificate(chain);
      const svid: X509Svid = {
        spiffeId,
        certificateChainPem: chain,
        privateKeyPem: key,
        notBefore: new Date(leaf.validFrom),
        notAfter: new Date(leaf.validTo),
      };
      this.#identity = { svid, bundle: parseBundlePem(bundlePem, trustDomain, sequence) };
      this.#identityKey = identityKey;
      this.#emit('identity');
    } catch (err) {
      this.#log.error({ err }, 'gateway certificate or trust bundle unusable; keeping the previous one');
    }
  }

  #refreshMembers(): void {
    const json = this.#configMaps.get(this.#namespace, MEMBERS_CONFIGMAP)?.data?.['members.json'];
    if (json === undefined || json === this.#membersJson) return;
    const document = parseJson(membersDocumentSchema, json);
    if (!document) {
      this.#log.error('membership ConfigMap unreadable; keeping the previous membership');
      return;
    }
    this.#membersJson = json;
    this.#members = new Map(document.members.map((m) => [m.clusterId, m]));
    this.#emit('members');
  }
}
