// Descriptions of the kinds our informers watch: where the collection lives, how to list it, and
// which client-node model types it. Core kinds list through their typed API; custom resources
// through CustomObjectsApi (group/version/plural) and stay plain JSON.
import {
  CoordinationV1Api,
  CoreV1Api,
  CustomObjectsApi,
  DiscoveryV1Api,
  type KubeConfig,
  type KubernetesListObject,
  type KubernetesObject,
  type V1ConfigMap,
  type V1EndpointSlice,
  type V1Lease,
  type V1Namespace,
  type V1Secret,
  type V1Service,
} from '@kubernetes/client-node';
import { apiClient } from './clients.ts';

export interface ListOptions {
  /** Only for namespaced kinds; absent = all namespaces. */
  readonly namespace?: string;
  readonly labelSelector?: string;
  readonly fieldSelector?: string;
}

export interface ResourceType<T extends KubernetesObject = KubernetesObject> {
  /** '' for the core group. */
  readonly group: string;
  readonly version: string;
  readonly kind: string;
  readonly plural: string;
  readonly namespaced: boolean;
  /**
   * client-node model name (e.g. 'V1ConfigMap'): watch events are converted to it so they look
   * like list results (Date fields, no unknown fields). Absent for custom resources: plain JSON.
   */
  readonly model?: string;
  list(kc: KubeConfig, options: ListOptions): Promise<KubernetesListObject<T>>;
}

export function apiVersionOf(resource: Pick<ResourceType, 'group' | 'version'>): string {
  return resource.group ? `${resource.group}/${resource.version}` : resource.version;
}

/** URL path of the collection, e.g. /api/v1/namespaces/ns/configmaps or /apis/g/v/plural. */
export function collectionPath(
  resource: Pick<ResourceType, 'group' | 'version' | 'plural'>,
  namespace?: string,
): string {
  const base = resource.group ? `/apis/${resource.group}/${resource.version}` : `/api/${resource.version}`;
  const ns = namespace ? `/namespaces/${encodeURIComponent(namespace)}` : '';
  return `${base}${ns}/${resource.plural}`;
}

const core = (kc: KubeConfig): CoreV1Api => apiClient(kc, CoreV1Api);

export const configMaps: ResourceType<V1ConfigMap> = {
  group: '',
  version: 'v1',
  kind: 'ConfigMap',
  plural: 'configmaps',
  namespaced: true,
  model: 'V1ConfigMap',
  list: (kc, { namespace, labelSelector, fieldSelector }) =>
    namespace
      ? core(kc).listNamespacedConfigMap({ namespace, labelSelector, fieldSelector })
      : core(kc).listConfigMapForAllNamespaces({ labelSelector, fieldSelector }),
};

export const secrets: ResourceType<V1Secret> = {
  group: '',
  version: 'v1',
  kind: 'Secret',
  plural: 'secrets',
  namespaced: true,
  model: 'V1Secret',
  list: (kc, { namespace, labelSelector, fieldSelector }) =>
    namespace
      ? core(kc).listNamespacedSecret({ namespace, labelSelector, fieldSelector })
      : core(kc).listSecretForAllNamespaces({ labelSelector, fieldSelector }),
};

export const services: ResourceType<V1Service> = {
  group: '',
  version: 'v1',
  kind: 'Service',
  plural: 'services',
  namespaced: true,
  model: 'V1Service',
  list: (kc, { namespace, labelSelector, fieldSelector }) =>
    namespace
      ? core(kc).listNamespacedService({ namespace, labelSelector, fieldSelector })
      : core(kc).listServiceForAllNamespaces({ labelSelector, fieldSelector }),
};

export const namespaces: ResourceType<V1Namespace> = {
  group: '',
  version: 'v1',
  kind: 'Namespace',
  plural: 'namespaces',
  namespaced: false,
  model: 'V1Namespace',
  list: (kc, { labelSelector, fieldSelector }) => core(kc).listNamespace({ labelSelector, fieldSelector }),
};

export const endpointSlices: ResourceType<V1EndpointSlice> = {
  group: 'discovery.k8s.io',
  version: 'v1',
  kind: 'EndpointSlice',
  plural: 'endpointslices',
  namespaced: true,
  model: 'V1EndpointSlice',
  list: (kc, { namespace, labelSelector, fieldSelector }) => {
    const api = apiClient(kc, DiscoveryV1Api);
    return namespace
      ? api.listNamespacedEndpointSlice({ namespace, labelSelector, fieldSelector })
      : api.listEndpointSliceForAllNamespaces({ labelSelector, fieldSelector });
  },
};

export const leases: ResourceType<V1Lease> = {
  group: 'coordination.k8s.io',
  version: 'v1',
  kind: 'Lease',
  plural: 'leases',
  namespaced: true,
  model: 'V1Lease',
  list: (kc, { namespace, labelSelector, fieldSelector }) => {
    const api = apiClient(kc, CoordinationV1Api);
    return namespace
      ? api.listNamespacedLease({ namespace, labelSelector, fieldSelector })
      : api.listLeaseForAllNamespaces({ labelSelector, fieldSelector });
  },
};

export interface CustomResourceDefinition {
  readonly group: string;
  readonly version: string;
  readonly kind: string;
  readonly plural: string;
  readonly namespaced: boolean;
}

/** A custom resource, listed through CustomObjectsApi; objects are plain JSON typed as T. */
export function customResource<T extends KubernetesObject = KubernetesObject>(
  definition: CustomResourceDefinition,
): ResourceType<T> {
  const { group, version, plural } = definition;
  return {
    ...definition,
    list: async (kc, { namespace, labelSelector, fieldSelector }) => {
      const api = apiClient(kc, CustomObjectsApi);
      const list: unknown = !definition.namespaced
        ? await api.listClusterCustomObject({ group, version, plural, labelSelector, fieldSelector })
        : namespace
          ? await api.listNamespacedCustomObject({ group, version, namespace, plural, labelSelector, fieldSelector })
          : await api.listCustomObjectForAllNamespaces({
              group,
              version,
              resourcePlural: plural,
              labelSelector,
              fieldSelector,
            });
      return list as KubernetesListObject<T>;
    },
  };
}

/** The core kinds Isthmus watches, e.g. `new Informer({ resource: kinds.configMaps, ... })`. */
export const kinds = { configMaps, secrets, services, namespaces, endpointSlices, leases } as const;
