// Create-or-replace for the small objects Isthmus owns outright (its Secrets and ConfigMaps),
// where the last writer is the only writer.
import { CoreV1Api, type KubeConfig, type V1ConfigMap, type V1Secret } from '@kubernetes/client-node';
import { apiClient } from './clients.ts';
import { isNotFound } from './objects.ts';

function nameOf(body: V1Secret | V1ConfigMap): { name: string; namespace: string } {
  return { name: body.metadata?.name ?? '', namespace: body.metadata?.namespace ?? '' };
}

export async function putSecret(kc: KubeConfig, body: V1Secret): Promise<void> {
  const api = apiClient(kc, CoreV1Api);
  try {
    await api.replaceNamespacedSecret({ ...nameOf(body), body });
  } catch (err) {
    if (!isNotFound(err)) throw err;
    await api.createNamespacedSecret({ namespace: nameOf(body).namespace, body });
  }
}

export async function putConfigMap(kc: KubeConfig, body: V1ConfigMap): Promise<void> {
  const api = apiClient(kc, CoreV1Api);
  try {
    await api.replaceNamespacedConfigMap({ ...nameOf(body), body });
  } catch (err) {
    if (!isNotFound(err)) throw err;
    await api.createNamespacedConfigMap({ namespace: nameOf(body).namespace, body });
  }
}
