import { KubeConfig } from '@kubernetes/client-node';
import { IsthmusError, describeError } from './errors.ts';

/** --kubeconfig, else $KUBECONFIG / ~/.kube/config / in-cluster, as kubectl does. */
export function loadKubeConfig(path: string | undefined): KubeConfig {
  const kc = new KubeConfig();
  try {
    if (path) kc.loadFromFile(path);
    else kc.loadFromDefault();
  } catch (err) {
    throw new IsthmusError('ISTHMUS_CONFIG_INVALID', `cannot load kubeconfig${path ? ` ${path}` : ''}: ${describeError(err)}`);
  }
  if (!kc.getCurrentCluster()) throw new IsthmusError('ISTHMUS_CONFIG_INVALID', 'the kubeconfig names no current cluster; pass --kubeconfig');
  return kc;
}
