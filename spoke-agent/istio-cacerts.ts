// Optional: an Istio-compatible `cacerts` Secret so an in-cluster mesh issues workload
// certificates under the federation root (the cluster intermediate becomes Istio's CA).
import { CoreV1Api, type KubeConfig, type V1Secret } from '@kubernetes/client-node';
import { isNotFound, putSecret } from '../common/kube/index.ts';
import { istioCacertsData, parseBundlePem } from '../common/pki/index.ts';
import type { AgentCredentials } from './credentials.ts';

export const ISTIO_CACERTS_SECRET = 'cacerts';

/** Writes or refreshes the Secret; false when the namespace does not exist (no mesh installed). */
export async function writeIstioCacerts(
  kc: KubeConfig,
  namespace: string,
  credentials: AgentCredentials,
): Promise<boolean> {
  const api = kc.makeApiClient(CoreV1Api);
  try {
    await api.readNamespace({ name: namespace });
  } catch (err) {
    if (isNotFound(err)) return false;
    throw err;
  }
  const bundle = parseBundlePem(credentials.trustBundlePem, credentials.trustDomain, credentials.trustBundleSequence);
  const data = istioCacertsData(credentials.intermediateCertificate, credentials.intermediateKey, bundle);
  const body: V1Secret = {
    metadata: { name: ISTIO_CACERTS_SECRET, namespace, labels: { 'app.kubernetes.io/managed-by': 'isthmus-agent' } },
    type: 'Opaque',
    data: Object.fromEntries(Object.entries(data).map(([k, v]) => [k, Buffer.from(v).toString('base64')])),
  };
  await putSecret(kc, body);
  return true;
}
