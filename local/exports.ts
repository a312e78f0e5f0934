// Sample services for a local federation: create what a user creates in a member cluster (a
// Service with its EndpointSlice, a ServiceExport) and read what the agents import.
import {
  CoreV1Api,
  CustomObjectsApi,
  DiscoveryV1Api,
  type KubeConfig,
  type V1EndpointSlice,
  type V1ServiceSpec,
} from '@kubernetes/client-node';
import {
  LABEL_SERVICE_NAME,
  LABEL_SOURCE_CLUSTER,
  MCS_GROUP,
  MCS_VERSION,
  SERVICE_EXPORT_PLURAL,
  SERVICE_IMPORT_PLURAL,
  type ServiceExport,
  type ServiceExportSpec,
  type ServiceImport,
} from '../common/api/index.ts';
import { ensureNamespace, isNotFound } from '../common/kube/index.ts';

export interface BackendSpec {
  readonly namespace: string;
  readonly name: string;
  readonly ports: readonly { name: string; port: number; protocol?: string }[];
  /** Ready endpoint addresses and their zone (RFC 5737 documentation addresses: EndpointSlices refuse loopback, and nothing dials them). */
  readonly endpoints?: readonly { ip: string; zone: string; ready?: boolean }[];
  readonly type?: 'ClusterIP' | 'ExternalName';
  readonly annotations?: Record<string, string>;
}

/** Service + EndpointSlice (as the EndpointSlice controller would write it) + ServiceExport. */
export async function exportService(kc: KubeConfig, spec: BackendSpec): Promise<void> {
  await createBackend(kc, spec);
  await createServiceExport(kc, spec.namespace, spec.name, spec.annotations);
}

/** A Service with exactly `spec` (no EndpointSlice is written for it) and its ServiceExport. */
export async function exportServiceSpec(
  kc: KubeConfig,
  namespace: string,
  name: string,
  spec: V1ServiceSpec,
): Promise<void> {
  await ensureNamespace(kc, namespace);
  await kc.makeApiClient(CoreV1Api).createNamespacedService({ namespace, body: { metadata: { name }, spec } });
  await createServiceExport(kc, namespace, name);
}

/** The Service and its EndpointSlice, not yet exported. */
export async function createBackend(kc: KubeConfig, spec: BackendSpec): Promise<void> {
  await ensureNamespace(kc, spec.namespace);
  const core = kc.makeApiClient(CoreV1Api);
  await core.createNamespacedService({
    namespace: spec.namespace,
    body: {
      metadata: { name: spec.name },
      spec:
        spec.type === 'ExternalName'
          ? { type: 'ExternalName', externalName: 'example.org' }
          : {
              ports: spec.ports.map((p) => ({ name: p.name, port: p.port, protocol: p.protocol ?? 'TCP' })),
              selector: { app: spec.name },
            },
    },
  });
  if (spec.type !== 'ExternalName') {
    await kc.makeApiClient(DiscoveryV1Api).createNamespacedEndpointSlice({
      namespace: spec.namespace,
      body: {
        metadata: {
          name: `${spec.name}-local`,
          labels: {
            'kubernetes.io/service-name': spec.name,
            'endpointslice.kubernetes.io/managed-by': 'endpointslice-controller.k8s.io',
          },
        },
        addressType: 'IPv4',
        ports: spec.ports.map((p) => ({ name: p.name, port: p.port, protocol: p.protocol ?? 'TCP' })),
        endpoints: (spec.endpoints ?? [{ ip: '198.51.100.1', zone: 'zone-1' }]).map((e) => ({
          addresses: [e.ip],
          zone: e.zone,
          conditions: { ready: e.ready ?? true },
        })),
      },
    });
  }
}

export async function createServiceExport(
  kc: KubeConfig,
  namespace: string,
  name: string,
  annotations?: Record<string, string>,
  spec?: ServiceExportSpec,
): Promise<void> {
  await kc.makeApiClient(CustomObjectsApi).createNamespacedCustomObject({
    group: MCS_GROUP,
    version: MCS_VERSION,
    namespace,
    plural: SERVICE_EXPORT_PLURAL,
    body: {
      apiVersion: `${MCS_GROUP}/${MCS_VERSION}`,
      kind: 'ServiceExport',
      metadata: { name, ...(annotations ? { annotations } : {}) },
      ...(spec ? { spec } : {}),
    },
  });
}

export async function unexportService(kc: KubeConfig, namespace: string, name: string): Promise<void> {
  await kc.makeApiClient(CustomObjectsApi).deleteNamespacedCustomObject({
    group: MCS_GROUP,
    version: MCS_VERSION,
    namespace,
    plural: SERVICE_EXPORT_PLURAL,
    name,
  });
}

export async function readServiceExport(kc: KubeConfig, namespace: string, name: string): Promise<ServiceExport> {
  return (await kc.makeApiClient(CustomObjectsApi).getNamespacedCustomObject({
    group: MCS_GROUP,
    version: MCS_VERSION,
    namespace,
    plural: SERVICE_EXPORT_PLURAL,
    name,
  })) as ServiceExport;
}

export async function readServiceImport(
  kc: KubeConfig,
  namespace: string,
  name: string,
): Promise<ServiceImport | undefined> {
  try {
    return (await kc.makeApiClient(CustomObjectsApi).getNamespacedCustomObject({
      group: MCS_GROUP,
      version: MCS_VERSION,
      namespace,
      plural: SERVICE_IMPORT_PLURAL,
      name,
    })) as ServiceImport;
  } catch (err) {
    if (isNotFound(err)) return undefined;
    throw err;
  }
}

/** The EndpointSlices the agent imported for a service, by source cluster. */
export async function importedSlices(
  kc: KubeConfig,
  namespace: string,
  name: string,
): Promise<Map<string, V1EndpointSlice>> {
  const list = await kc
    .makeApiClient(DiscoveryV1Api)
    .listNamespacedEndpointSlice({ namespace, labelSelector: `${LABEL_SERVICE_NAME}=${name}` });
  return new Map(list.items.map((s) => [s.metadata?.labels?.[LABEL_SOURCE_CLUSTER] ?? '', s]));
}
