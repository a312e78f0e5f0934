// About API (KEP-2149): the cluster's id and its clusterset's name, for any MCS-aware tool.
import type { KubeConfig, KubernetesObject } from '@kubernetes/client-node';
import { CLUSTER_PROPERTY_CLUSTERSET, CLUSTER_PROPERTY_CLUSTER_ID } from '../common/api/index.ts';
import { serverSideApply } from '../common/kube/index.ts';

export async function writeClusterProperties(kc: KubeConfig, clusterId: string, clustersetName: string): Promise<void> {
  const property = (name: string, value: string): KubernetesObject & { spec: { value: string } } => ({
    apiVersion: 'about.k8s.io/v1alpha1',
    kind: 'ClusterProperty',
    metadata: { name },
    spec: { value },
  });
  await serverSideApply(kc, property(CLUSTER_PROPERTY_CLUSTER_ID, clusterId), 'isthmus-agent', { force: true });
  await serverSideApply(kc, property(CLUSTER_PROPERTY_CLUSTERSET, clustersetName), 'isthmus-agent', { force: true });
}
