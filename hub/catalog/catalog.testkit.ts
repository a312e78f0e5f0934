// Test fixtures for the catalog: exported services, member clusters, an in-memory member cache,
// and a real nats-server with the hub's connection to it.
import type { KV } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import { ISTHMUS_API_VERSION, MEMBER_CLUSTER_KIND, type MemberCluster } from '../../common/api/isthmus.ts';
import type { ExportedService } from '../../common/hub-api/index.ts';
import { startTestbed, type Testbed } from '../../local/testbed/index.ts';
import type { MemberCache } from '../membership.ts';
import type { ClusterLocality } from './resolution.ts';

export function exported(overrides: Partial<ExportedService> = {}): ExportedService {
  return {
    namespace: 'shop',
    name: 'cart',
    type: 'ClusterSetIP',
    ports: [{ name: 'http', protocol: 'TCP', port: 80, appProtocol: '' }],
    sessionAffinity: 'None',
    sessionAffinityTimeoutSeconds: 0,
    exportCreatedAt: '2025-01-01T00:00:00Z',
    endpoints: [{ zone: 'z1', ready: 2, total: 2 }],
    allowedClusters: [],
    ipFamilies: ['IPv4'],
    internalTrafficPolicy: 'Cluster',
    trafficDistribution: '',
    exportedLabels: {},
    exportedAnnotations: {},
    ...overrides,
  };
}

export function locality(clusterId: string, overrides: Partial<ClusterLocality> = {}): ClusterLocality {
  return {
    region: `region-of-${clusterId}`,
    zone: `zone-of-${clusterId}`,
    network: 'net',
    labels: { tier: 'gold' },
    gatewayAddresses: [{ address: '127.0.0.1', port: 15443 }],
    ...overrides,
  };
}

/** An accepted, joined member (what isCurrentMember wants) with the given locality. */
export function memberCluster(clusterId: string, where: ClusterLocality = locality(clusterId)): MemberCluster {
  return {
    apiVersion: ISTHMUS_API_VERSION,
    kind: MEMBER_CLUSTER_KIND,
    metadata: { name: clusterId },
    spec: {
      clusterId,
      accepted: true,
      region: where.region,
      zone: where.zone,
      network: where.network,
      labels: { ...where.labels },
      gatewayAddresses: where.gatewayAddresses.map((g) => ({ ...g })),
    },
    status: {
      conditions: [
        {
          type: 'Joined',
          status: 'True',
          reason: 'Joined',
          message: 'joined',
          lastTransitionTime: '2025-01-01T00:00:00Z',
        },
      ],
    },
  };
}

/** A MemberCache over a plain map; tests add and remove members. */
export class FakeMemberCache implements MemberCache {
  readonly members = new Map<string, MemberCluster>();

  constructor(clusterIds: readonly string[] = []) {
    for (const id of clusterIds) this.members.set(id, memberCluster(id));
  }

  get(clusterId: string): MemberCluster | undefined {
    return this.members.get(clusterId);
  }

  list(): readonly MemberCluster[] {
    return [...this.members.values()];
  }
}

/** A test bed with NATS only, and a connection as the hub; disposing drains it and stops NATS. */
export async function startHubNats(): Promise<{ readonly nc: NatsConnection } & AsyncDisposable> {
  const bed = await startTestbed({ clusters: 0 });
  const nc = await (bed.nats as NonNullable<Testbed['nats']>).connect('isthmus-hub');
  return {
    nc,
    async [Symbol.asyncDispose]() {
      await nc.drain();
      await bed[Symbol.asyncDispose]();
    },
  };
}

/** The bucket stream's last sequence: unchanged means nothing was written. */
export async function lastSequence(kv: KV): Promise<number> {
  return (await kv.status()).streamInfo.state.last_seq;
}
