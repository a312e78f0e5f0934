// Least privilege, proven: the chart's ServiceAccounts, Roles, ClusterRoles and bindings (helm
// template, roles hub and member) are applied to the test bed's apiservers, and every component
// runs on its service account's token (TokenRequest API) through the whole federation scenario:
// join, export, import, traffic through both gateways, a FailoverPolicy created, changed and
// deleted, an unexport, and a member leaving. The apiservers' audit logs then show what each
// component did: the test fails on any refusal, on any request the chart's rules do not allow,
// and on any permission the chart grants that nothing used.
import { readFile } from 'node:fs/promises';
import {
  CoreV1Api,
  CustomObjectsApi,
  DiscoveryV1Api,
  PatchStrategy,
  type V1EndpointSlice,
  setHeaderOptions,
  type KubeConfig,
} from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ANNOTATION_HUB_GENERATION } from '../../common/failover-policy.ts';
import {
  DEFAULT_GATEWAY_NAME,
  gatewayListenersConfigMapName,
  listenersDocumentSchema,
} from '../../common/gateway-contract.ts';
import { derivedServiceName } from '../../spoke-agent/imports/naming.ts';
import { isConditionTrue, type Condition } from '../../common/api/conditions.ts';
import { HubClient, hubChannelCredentials } from '../../common/hub-api/index.ts';
import { ensureNamespace, isNotFound } from '../../common/kube/index.ts';
import { MCS_GROUP, MCS_VERSION, SERVICE_EXPORT_PLURAL, SERVICE_IMPORT_PLURAL } from '../../common/api/index.ts';
import { AgentSecrets } from '../../spoke-agent/credentials.ts';
import { hubIdentityCheck } from '../../spoke-agent/hub-session.ts';
import { Federation, type FederationComponent } from '../../local/federation/index.ts';
import { netnsAvailable, waitFor, type LocalCluster } from '../../local/testbed/index.ts';
import {
  SERVICE_PORT,
  applyFailoverPolicy,
  clustersetEndpoint,
  connect,
  exportWithBackends,
} from '../../e2e/gateway/scenario.ts';
import {
  MINIMAL_VALUES,
  RELEASE_NAMESPACE,
  chartServiceAccount,
  installChartRbac,
  renderChart,
  type RenderedObject,
} from './chart.ts';
import { compareUsage, describePermission, describeRequest, parseAuditLog, type AuditRequest } from './rbac-usage.ts';

const SYSTEM_NS = RELEASE_NAMESPACE;
const NS = 'shop';
const WAIT_MS = 60_000;
const policyRef = { group: 'isthmus.dev', version: 'v1alpha1', plural: 'failoverpolicies' } as const;

const userOf = (component: FederationComponent): string =>
  `system:serviceaccount:${SYSTEM_NS}:${chartServiceAccount(component)}`;

/**
 * Permissions the chart grants for what the scenario cannot reasonably do; each says why.
 */
const EXEMPT: ReadonlySet<string> = new Set([
  // The leader rewrites the root CA Secret while it steps a root rotation (`isthmus trust rotate`,
  // e2e/trust-rotation.test.ts): minutes of stages, not part of this scenario.
  `${userOf('hub')} (Role/isthmus-trust/isthmus-hub): update secrets isthmus-trust in isthmus-trust`,
  // The agent's ObjectWriter reads an import object only when its create finds one already there
  // (its informer had not yet seen its own earlier create, or someone else's object): a race.
  ...[
    'services',
    'discovery.k8s.io/endpointslices',
    'multicluster.x-k8s.io/serviceimports',
    'isthmus.dev/failoverpolicies',
  ].map((resource) => `${userOf('agent')} (ClusterRole/isthmus-agent): get ${resource} cluster-wide`),
]);

async function absent(read: () => Promise<unknown>): Promise<boolean> {
  try {
    await read();
    return false;
  } catch (err) {
    if (isNotFound(err)) return true;
    throw err;
  }
}

const available = await netnsAvailable();
if (!available.ok) console.info(`RBAC audit skipped: ${available.reason}`);

describe.skipIf(!available.ok)('the chart RBAC is least privilege for the full scenario', () => {
  let fed: Federation;
  let hubObjects: RenderedObject[];
  let memberObjects: RenderedObject[];

  beforeAll(async () => {
    [hubObjects, memberObjects] = await Promise.all([
      renderChart(MINIMAL_VALUES.hub),
      renderChart(MINIMAL_VALUES.member),
    ]);
    const installed = new Map<string, Promise<void>>();
    fed = await Federation.start({
      members: 2,
      gateways: true,
      audit: true,
      heartbeatInterval: '1s',
      componentKubeconfig: async (cluster, component) => {
        const objects = component === 'hub' ? hubObjects : memberObjects;
        let install = installed.get(cluster.name);
        if (!install) installed.set(cluster.name, (install = installChartRbac(cluster, objects)));
        await install;
        return cluster.serviceAccountKubeconfig(SYSTEM_NS, chartServiceAccount(component));
      },
    });
  });
  afterAll(async () => {
    await fed?.[Symbol.asyncDispose]();
  });

  it('runs join, export, import, gateway traffic, policies, unexport and leave on the chart service accounts, using every permission and refused none', async () => {
    const [a, b] = fed.members as [LocalCluster, LocalCluster];
    const hub = fed.hubCluster.kubeConfig();
    await ensureNamespace(hub, NS);
    await fed.joinAll(NS);
    // Joined agents delete the join request (with its token) and the join keys.
    await waitFor(
      'join Secrets deleted in every member',
      async () => {
        const gone = await Promise.all(
          fed.members.flatMap((m) =>
            ['isthmus-join', 'isthmus-join-keys'].map((name) =>
              absent(() =>
                m.kubeConfig().makeApiClient(CoreV1Api).readNamespacedSecret({ name, namespace: SYSTEM_NS }),
              ),
            ),
          ),
        );
        return gone.every(Boolean);
      },
      WAIT_MS,
    );
    await Promise.all(fed.members.map((m) => fed.gatewayReady(m.name)));

    // Export from a, import in b, connections from b's namespace through both gateways.
    await exportWithBackends(fed, a, NS, 'cart', ['a1']);
    const custom = (kc: KubeConfig): CustomObjectsApi => kc.makeApiClient(CustomObjectsApi);
    // Both agents wrote status: the export's conditions in a, the import's Ready in b.
    const mcs = { group: MCS_GROUP, version: MCS_VERSION, namespace: NS, name: 'cart' };
    const readyIn = async (cluster: LocalCluster, plural: string): Promise<boolean> => {
      const object = (await cluster
        .kubeConfig()
        .makeApiClient(CustomObjectsApi)
        .getNamespacedCustomObject({ ...mcs, plural })) as { status?: { conditions?: Condition[] } };
      return isConditionTrue(object.status?.conditions, 'Ready');
    };
    await waitFor('ServiceExport Ready in cluster-a', () => readyIn(a, SERVICE_EXPORT_PLURAL), WAIT_MS);
    await waitFor('ServiceImport Ready in cluster-b', () => readyIn(b, SERVICE_IMPORT_PLURAL), WAIT_MS);
    const report = await connect(fed, b, await clustersetEndpoint(b, NS, 'cart'), 3);
    expect(report).toMatchObject({ served: { a1: 3 }, failed: 0 });

    // The export changes (a second port): b's agent patches its ServiceImport and derived Service.
    await a
      .kubeConfig()
      .makeApiClient(CoreV1Api)
      .patchNamespacedService(
        {
          name: 'cart',
          namespace: NS,
          body: {
            spec: {
              ports: [
                { name: 'tcp', port: SERVICE_PORT },
                { name: 'admin', port: SERVICE_PORT + 1 },
              ],
            },
          },
        },
        setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
      );
    // ... and b's gateway listens on both, published in its listeners ConfigMap and the derived slice.
    const derived = derivedServiceName(NS, 'cart');
    const coreB = b.kubeConfig().makeApiClient(CoreV1Api);
    const slicesB = async (): Promise<V1EndpointSlice[]> =>
      (
        await b
          .kubeConfig()
          .makeApiClient(DiscoveryV1Api)
          .listNamespacedEndpointSlice({ namespace: NS, labelSelector: `kubernetes.io/service-name=${derived}` })
      ).items;
    const portsEverywhere = async (): Promise<boolean> => {
      const imported = (await custom(b.kubeConfig()).getNamespacedCustomObject({
        ...mcs,
        plural: SERVICE_IMPORT_PLURAL,
      })) as { spec: { ports: unknown[] } };
      const service = await coreB.readNamespacedService({ name: derived, namespace: NS });
      const listeners = await coreB.readNamespacedConfigMap({
        name: gatewayListenersConfigMapName(DEFAULT_GATEWAY_NAME),
        namespace: SYSTEM_NS,
      });
      const published = listenersDocumentSchema
        .parse(JSON.parse(listeners.data?.['listeners.json'] ?? '{"listeners":[]}'))
        .listeners.filter((l) => l.namespace === NS && l.name === 'cart');
      return (
        imported.spec.ports.length === 2 &&
        service.spec?.ports?.length === 2 &&
        published.length === 2 &&
        (await slicesB()).some((slice) => slice.ports?.length === 2)
      );
    };
    await waitFor('both ports imported and listened on in cluster-b', portsEverywhere, WAIT_MS);

    // A FailoverPolicy on the hub: copied into every member, changed, deleted.
    type Policy = {
      metadata: { generation: number; annotations?: Record<string, string> };
      status?: { observedGeneration?: number; clusters?: { cluster: string; appliedGeneration: number }[] };
    };
    const readPolicy = async (kc: KubeConfig): Promise<Policy | undefined> => {
      try {
        return (await kc
          .makeApiClient(CustomObjectsApi)
          .getNamespacedCustomObject({ ...policyRef, namespace: NS, name: 'cart' })) as Policy;
      } catch (err) {
        if (isNotFound(err)) return undefined;
        throw err;
      }
    };
    /** Every member holds a copy of this hub generation with its status written, and the hub's status lists them. */
    const copiesAt = async (generation: number): Promise<boolean> => {
      const copies = await Promise.all(fed.members.map((m) => readPolicy(m.kubeConfig())));
      const applied = (await readPolicy(hub))?.status?.clusters ?? [];
      return fed.members.every(
        (m, i) =>
          copies[i]?.metadata.annotations?.[ANNOTATION_HUB_GENERATION] === String(generation) &&
          copies[i]?.status?.observedGeneration === copies[i]?.metadata.generation &&
          applied.some((c) => c.cluster === m.name && c.appliedGeneration === generation),
      );
    };
    await applyFailoverPolicy(fed, NS, 'cart', { service: 'cart', localityPriority: ['region', 'zone', 'cluster'] });
    await waitFor('policy copies at generation 1', () => copiesAt(1), WAIT_MS);
    await hub.makeApiClient(CustomObjectsApi).patchNamespacedCustomObject(
      {
        ...policyRef,
        namespace: NS,
        name: 'cart',
        body: { spec: { localityPriority: ['zone', 'region', 'cluster'] } },
      },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
    await waitFor('policy copies at generation 2', () => copiesAt(2), WAIT_MS);
    await hub
      .makeApiClient(CustomObjectsApi)
      .deleteNamespacedCustomObject({ ...policyRef, namespace: NS, name: 'cart' });
    await waitFor(
      'policy copies deleted',
      async () => (await Promise.all(fed.members.map((m) => readPolicy(m.kubeConfig())))).every((p) => !p),
      WAIT_MS,
    );

    // Unexport: b's agent removes the import.
    await custom(a.kubeConfig()).deleteNamespacedCustomObject({ ...mcs, plural: SERVICE_EXPORT_PLURAL });
    await waitFor(
      'ServiceImport, derived Service and EndpointSlices removed in cluster-b',
      async () =>
        (await absent(() =>
          custom(b.kubeConfig()).getNamespacedCustomObject({ ...mcs, plural: SERVICE_IMPORT_PLURAL }),
        )) &&
        (await absent(() => coreB.readNamespacedService({ name: derived, namespace: NS }))) &&
        (await slicesB()).length === 0,
      WAIT_MS,
    );

    // b leaves (the hub API's Leave, with b's agent certificate): the hub deletes its MemberCluster.
    const credentials = await new AgentSecrets(b.kubeConfig(), SYSTEM_NS).loadCredentials();
    if (!credentials) throw new Error('cluster-b has no agent credentials');
    const client = new HubClient(
      fed.hubEndpoints[0] as string,
      hubChannelCredentials(
        credentials.trustBundlePem,
        { certChain: credentials.agentCertificate, key: credentials.agentKey },
        { checkServerIdentity: hubIdentityCheck(credentials.trustDomain, credentials.trustBundlePem) },
      ),
    );
    try {
      await client.call('Leave', { reason: 'RBAC audit' });
    } finally {
      client.close();
    }
    await waitFor('MemberCluster cluster-b deleted', () => absent(() => fed.memberCluster(b.name)), WAIT_MS);

    // What the audit logs say: the hub cluster's against the hub role, both members' against the member role.
    const requestsOf = async (clusters: readonly LocalCluster[]): Promise<AuditRequest[]> =>
      (await Promise.all(clusters.map((c) => readFile(c.auditLogPath as string, 'utf8')))).flatMap(parseAuditLog);
    const hubRequests = await requestsOf([fed.hubCluster]);
    const memberRequests = await requestsOf(fed.members);
    const reports = [
      compareUsage(hubObjects, hubRequests, [userOf('hub')], EXEMPT),
      compareUsage(memberObjects, memberRequests, [userOf('agent'), userOf('gateway')], EXEMPT),
    ];
    expect({
      refused: reports.flatMap((r) => r.refused.map(describeRequest)),
      notGranted: reports.flatMap((r) => r.notGranted.map(describeRequest)),
      unused: reports.flatMap((r) => r.unused.map(describePermission)),
    }).toEqual({ refused: [], notGranted: [], unused: [] });
    // Not vacuous: on the same audit data, one more rule (the gateway reading every Secret) is caught.
    const widened = memberObjects.map((o) =>
      o.kind === 'ClusterRole' && o.metadata.name === 'isthmus-gateway'
        ? { ...o, rules: [...(o.rules as unknown[]), { apiGroups: [''], resources: ['secrets'], verbs: ['get'] }] }
        : o,
    );
    expect(compareUsage(widened, memberRequests, [userOf('gateway')]).unused.map(describePermission)).toEqual([
      `${userOf('gateway')} (ClusterRole/isthmus-gateway): get secrets cluster-wide`,
    ]);
    // Each component did run on its own token.
    for (const [component, requests] of [
      ['hub', hubRequests],
      ['agent', memberRequests],
      ['gateway', memberRequests],
    ] as const)
      expect(requests.filter((r) => r.user === userOf(component)).length, component).toBeGreaterThan(10);
  });
});
