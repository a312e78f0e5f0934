import type { Agent } from 'node:https';
import { KubeConfig } from '@kubernetes/client-node';
import { IsthmusError, describeError } from './errors.ts';

type AgentFactory = (cluster: unknown, options: Record<string, unknown>) => Agent;

/**
 * client-node builds one https.Agent per KubeConfig without keep-alive, so every API request
 * pays a fresh TLS handshake (several ms here, more under load: it dominated import latency).
 * Its agent factory is private; wrapping it on the instance is the smallest change that reuses
 * connections.
 */
function keepConnectionsAlive(kc: KubeConfig): KubeConfig {
  const target = kc as unknown as { createAgent: AgentFactory };
  const create = target.createAgent.bind(kc);
  target.createAgent = (cluster, options) => create(cluster, { ...options, keepAlive: true });
  return kc;
}

/** --kubeconfig, else $KUBECONFIG / ~/.kube/config / in-cluster, as kubectl does. */
export function loadKubeConfig(path: string | undefined): KubeConfig {
  const kc = new KubeConfig();
  try {
    if (path) kc.loadFromFile(path);
    else kc.loadFromDefault();
  } catch (err) {
    throw new IsthmusError(
      'ISTHMUS_CONFIG_INVALID',
      `cannot load kubeconfig${path ? ` ${path}` : ''}: ${describeError(err)}`,
    );
  }
  if (!kc.getCurrentCluster())
    throw new IsthmusError('ISTHMUS_CONFIG_INVALID', 'the kubeconfig names no current cluster; pass --kubeconfig');
  return keepConnectionsAlive(kc);
}

/** A KubeConfig from kubeconfig YAML text, with the same connection reuse. */
export function kubeConfigFromYaml(yaml: string): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromString(yaml);
  return keepConnectionsAlive(kc);
}
