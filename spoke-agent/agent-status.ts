// The agent's own view of its membership, kept in a ConfigMap in its cluster for `isthmus check`
// and for people: when the last heartbeat succeeded, and what the last failure said.
import { CoreV1Api, type KubeConfig } from '@kubernetes/client-node';
import { z } from 'zod';
import { isNotFound, putConfigMap } from '../common/kube/index.ts';

export const AGENT_STATUS_CONFIGMAP = 'isthmus-agent-status';

export const agentStatusSchema = z.object({
  phase: z.enum(['WaitingForJoin', 'Joining', 'Member', 'Removed']),
  clusterId: z.string(),
  lastHeartbeatTime: z.string().default(''),
  heartbeatIntervalSeconds: z.coerce.number().default(10),
  lastError: z.string().default(''),
  lastErrorCode: z.string().default(''),
  trustBundleSequence: z.coerce.number().default(0),
  hubEndpoint: z.string().default(''),
});
export type AgentStatus = z.infer<typeof agentStatusSchema>;

export async function writeAgentStatus(kc: KubeConfig, namespace: string, status: AgentStatus): Promise<void> {
  const data = Object.fromEntries(Object.entries(status).map(([k, v]) => [k, String(v)]));
  await putConfigMap(kc, { metadata: { name: AGENT_STATUS_CONFIGMAP, namespace }, data });
}

export async function readAgentStatus(kc: KubeConfig, namespace: string): Promise<AgentStatus | undefined> {
  try {
    const cm = await kc.makeApiClient(CoreV1Api).readNamespacedConfigMap({ name: AGENT_STATUS_CONFIGMAP, namespace });
    const parsed = agentStatusSchema.safeParse(cm.data ?? {});
    return parsed.success ? parsed.data : undefined;
  } catch (err) {
    if (isNotFound(err)) return undefined;
    throw err;
  }
}
