// The hub publishes how to reach it in a ConfigMap on the hub cluster (as kubeadm's cluster-info):
// `isthmus token create` reads it to print a ready join command with the CA pin.
import { CoreV1Api, type KubeConfig, type V1ConfigMap } from '@kubernetes/client-node';
import { z } from 'zod';
import { IsthmusError } from '../common/errors.ts';
import { parseInput } from '../common/config.ts';
import { isNotFound, putConfigMap } from '../common/kube/index.ts';

export const HUB_INFO_CONFIGMAP = 'isthmus-hub-info';

export const hubInfoSchema = z.object({
  endpoints: z.array(z.string().min(1)).min(1),
  caPin: z.string().regex(/^sha256:[0-9a-f]{64}$/),
  trustDomain: z.string().min(1),
  /** Where the trust Secret is (its rotation annotation is what `isthmus trust rotate` sets). */
  trustNamespace: z.string().min(1),
});
export type HubInfo = z.infer<typeof hubInfoSchema>;

export async function writeHubInfo(kc: KubeConfig, namespace: string, info: HubInfo): Promise<void> {
  await putConfigMap(kc, {
    metadata: { name: HUB_INFO_CONFIGMAP, namespace },
    data: {
      endpoints: info.endpoints.join(','),
      'ca-pin': info.caPin,
      'trust-domain': info.trustDomain,
      'trust-namespace': info.trustNamespace,
    },
  });
}

export async function readHubInfo(kc: KubeConfig, namespace: string): Promise<HubInfo> {
  const api = kc.makeApiClient(CoreV1Api);
  let cm: V1ConfigMap;
  try {
    cm = await api.readNamespacedConfigMap({ name: HUB_INFO_CONFIGMAP, namespace });
  } catch (err) {
    if (isNotFound(err)) {
      throw new IsthmusError(
        'ISTHMUS_HUB_UNAVAILABLE',
        `no ConfigMap ${namespace}/${HUB_INFO_CONFIGMAP}: is the hub running against this cluster and namespace?`,
      );
    }
    throw err;
  }
  const data = cm.data ?? {};
  return parseInput(
    hubInfoSchema,
    // Hubs before the trust namespace kept the trust Secret in their own namespace.
    {
      endpoints: (data.endpoints ?? '').split(',').filter(Boolean),
      caPin: data['ca-pin'],
      trustDomain: data['trust-domain'],
      trustNamespace: data['trust-namespace'] ?? namespace,
    },
    `ConfigMap ${namespace}/${HUB_INFO_CONFIGMAP}`,
  );
}
