// A member's agent identity as the e2e suites borrow it: the credentials its agent stored in its
// cluster, and NATS connections made the way its agent makes them (its own inbox prefix, without
// which NATS refuses the replies its reads need).
import { connect, type NatsConnection } from '@nats-io/transport-node';
import type { KubeConfig } from '@kubernetes/client-node';
import type { ClusterFacts } from '../common/hub-api/index.ts';
import { agentInboxPrefix } from '../common/nats-authorization.ts';
import { AgentSecrets, type AgentCredentials } from '../spoke-agent/credentials.ts';

/** The credentials the member's agent stored; throws when it has none yet. */
export async function agentCredentialsOf(kc: KubeConfig, clusterId: string): Promise<AgentCredentials> {
  const credentials = await new AgentSecrets(kc, 'isthmus-system').loadCredentials();
  if (!credentials) throw new Error(`${clusterId} has no stored agent credentials`);
  return credentials;
}

export interface AgentConnectionOptions {
  /** Default: every NATS URL the agent was given. */
  readonly servers?: string | string[];
  /** Reconnect forever, quickly (default: no reconnect). */
  readonly reconnect?: boolean;
}

/** A NATS connection as the member's agent: its certificate, the federation bundle, its inbox prefix. */
export function connectAsAgent(
  clusterId: string,
  credentials: AgentCredentials,
  options: AgentConnectionOptions = {},
): Promise<NatsConnection> {
  return connect({
    servers: options.servers ?? credentials.natsUrls,
    tls: { ca: credentials.trustBundlePem, cert: credentials.agentCertificate, key: credentials.agentKey },
    inboxPrefix: agentInboxPrefix(clusterId),
    ...(options.reconnect
      ? { maxReconnectAttempts: -1, reconnectTimeWait: 100, reconnectJitter: 0 }
      : { reconnect: false }),
  });
}

/** What an agent tells the hub about its cluster at Join, for a cluster the test joins by hand. */
export function clusterFacts(clusterId: string, overrides: Partial<ClusterFacts> = {}): ClusterFacts {
  return {
    clusterId,
    region: 'eu-west',
    zone: 'eu-west-1a',
    network: 'loopback',
    gatewayAddresses: [],
    labels: {},
    agentVersion: 'e2e',
    ...overrides,
  };
}
