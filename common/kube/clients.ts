// Typed API clients, one per (KubeConfig, API class): building a client parses the kubeconfig's
// credentials, so controllers that call the API in a loop reuse them instead of rebuilding.
import { KubernetesObjectApi, type ApiConstructor, type ApiType, type KubeConfig } from '@kubernetes/client-node';

const cache = new WeakMap<KubeConfig, Map<unknown, unknown>>();

function clientsOf(kc: KubeConfig): Map<unknown, unknown> {
  let clients = cache.get(kc);
  if (!clients) {
    clients = new Map();
    cache.set(kc, clients);
  }
  return clients;
}

/** `kc.makeApiClient(Api)`, built once per KubeConfig. */
export function apiClient<T extends ApiType>(kc: KubeConfig, api: ApiConstructor<T>): T {
  const clients = clientsOf(kc);
  let client = clients.get(api) as T | undefined;
  if (!client) {
    client = kc.makeApiClient(api);
    clients.set(api, client);
  }
  return client;
}

/** The generic object client, built once per KubeConfig (it caches API discovery results). */
export function objectApiClient(kc: KubeConfig): KubernetesObjectApi {
  const clients = clientsOf(kc);
  let client = clients.get(KubernetesObjectApi) as KubernetesObjectApi | undefined;
  if (!client) {
    client = KubernetesObjectApi.makeApiClient(kc);
    clients.set(KubernetesObjectApi, client);
  }
  return client;
}
