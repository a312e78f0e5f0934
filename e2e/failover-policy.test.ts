// FailoverPolicy end to end on the control plane: a policy created on the hub is validated by the
// hub leader, published to NATS KV isthmus_policies, copied by every agent into its member cluster
// (where the gateway reads it), and the hub's status says which member applied which generation.
// Real processes throughout: kube-apiservers, etcd, nats-server, the hub and three agents.
import { CustomObjectsApi, PatchStrategy, setHeaderOptions, type KubeConfig } from '@kubernetes/client-node';
import { Kvm } from '@nats-io/kv';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { findCondition } from '../common/api/conditions.ts';
import { FAILOVER_DEFAULTS, type FailoverPolicy } from '../common/api/isthmus.ts';
import {
  ANNOTATION_HUB_GENERATION,
  LABEL_POLICY_SERVICE,
  POLICIES_BUCKET,
  policyRecordSchema,
} from '../common/failover-policy.ts';
import { ensureNamespace, isNotFound } from '../common/kube/index.ts';
import { Federation } from '../local/federation/index.ts';
import { waitFor, type LocalCluster } from '../local/testbed/index.ts';

const NS = 'shop';
const ref = { group: 'isthmus.dev', version: 'v1alpha1', plural: 'failoverpolicies' } as const;
const WAIT_MS = 30_000;

function api(kc: KubeConfig): CustomObjectsApi {
  return kc.makeApiClient(CustomObjectsApi);
}

async function readPolicy(kc: KubeConfig, name: string, namespace = NS): Promise<FailoverPolicy | undefined> {
  try {
    return (await api(kc).getNamespacedCustomObject({ ...ref, namespace, name })) as FailoverPolicy;
  } catch (err) {
    if (isNotFound(err)) return undefined;
    throw err;
  }
}

function ready(
  policy: FailoverPolicy | undefined,
): { status: string; reason: string; message: string; observedGeneration?: number } | undefined {
  return findCondition(policy?.status?.conditions, 'Ready');
}

describe('FailoverPolicy distribution', () => {
  let fed: Federation;
  let hub: KubeConfig;
  let members: readonly LocalCluster[];

  beforeAll(async () => {
    fed = await Federation.start({ members: 3, heartbeatInterval: '1s' });
    hub = fed.hubCluster.kubeConfig();
    members = fed.members;
    await ensureNamespace(hub, NS);
    await fed.joinAll(NS);
    await waitFor(
      'all members Joined',
      async () =>
        (await Promise.all(members.map((m) => fed.memberCluster(m.name)))).every(
          (mc) => findCondition(mc.status?.conditions, 'Joined')?.status === 'True',
        ),
      WAIT_MS,
    );
  });
  afterAll(async () => {
    await fed?.[Symbol.asyncDispose]();
  });

  async function createPolicy(name: string, spec: Record<string, unknown>): Promise<FailoverPolicy> {
    return (await api(hub).createNamespacedCustomObject({
      ...ref,
      namespace: NS,
      body: { apiVersion: 'isthmus.dev/v1alpha1', kind: 'FailoverPolicy', metadata: { name }, spec },
    })) as FailoverPolicy;
  }

  async function patchSpec(name: string, spec: Record<string, unknown>): Promise<FailoverPolicy> {
    return (await api(hub).patchNamespacedCustomObject(
      { ...ref, namespace: NS, name, body: { spec } },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    )) as FailoverPolicy;
  }

  /** Waits until the hub says Ready=True/Distributed for this generation and every member applied it. */
  async function distributed(name: string, generation: number): Promise<FailoverPolicy> {
    await waitFor(
      `${name} generation ${generation} Distributed and applied everywhere`,
      async () => {
        const policy = await readPolicy(hub, name);
        const condition = ready(policy);
        const done =
          condition?.status === 'True' &&
          condition.reason === 'Distributed' &&
          condition.observedGeneration === generation &&
          policy?.status?.observedGeneration === generation &&
          JSON.stringify(policy.status.clusters?.map((c) => [c.cluster, c.appliedGeneration])) ===
            JSON.stringify(members.map((m) => [m.name, generation]));
        // Not done yet: the status as it stands goes into the timeout message.
        if (!done) throw new Error(`status ${JSON.stringify(policy?.status)}`);
        return true;
      },
      WAIT_MS,
    );
    return (await readPolicy(hub, name)) as FailoverPolicy;
  }

  async function copiesGone(name: string): Promise<void> {
    for (const m of members)
      await waitFor(
        `${m.name}: copy of ${name} removed`,
        async () => (await readPolicy(m.kubeConfig(), name)) === undefined,
        WAIT_MS,
      );
  }

  async function bucketValue(key: string): Promise<unknown> {
    const nc = await fed.bed.nats!.connect('failover-policy-test');
    try {
      const entry = await (await new Kvm(nc).open(POLICIES_BUCKET)).get(key);
      return entry?.operation === 'PUT' ? entry.json() : undefined;
    } finally {
      await nc.close();
    }
  }

  it('distributes a valid policy: Ready=True/Distributed, a copy in every member, status.clusters lists every member', async () => {
    const given = {
      service: 'cart',
      localityPriority: ['region', 'zone', 'cluster'],
      regionMapping: [{ from: 'eu-west', to: ['us-east'] }],
      weights: [
        { cluster: 'cluster-a', weight: 900 },
        { cluster: 'cluster-b', weight: 100 },
      ],
      minHealthyPercent: 60,
    };
    const created = await createPolicy('cart', given);
    const policy = await distributed('cart', created.metadata.generation ?? 1);
    expect(ready(policy)?.message).toContain(`${NS}.cart`);

    // What was given, with every default the hub applies.
    const expectedSpec = {
      ...given,
      outlierDetection: {
        consecutiveFailures: FAILOVER_DEFAULTS.consecutiveFailures,
        interval: FAILOVER_DEFAULTS.interval,
        baseEjectionTime: FAILOVER_DEFAULTS.baseEjectionTime,
        maxEjectionPercent: FAILOVER_DEFAULTS.maxEjectionPercent,
      },
      failback: { enabled: FAILOVER_DEFAULTS.failbackEnabled, delay: FAILOVER_DEFAULTS.failbackDelay },
    };
    const record = policyRecordSchema.parse(await bucketValue(`${NS}.cart`));
    expect(record).toMatchObject({
      namespace: NS,
      service: 'cart',
      policyName: 'cart',
      generation: created.metadata.generation,
      spec: expectedSpec,
    });

    for (const m of members) {
      const copy = await readPolicy(m.kubeConfig(), 'cart');
      expect(copy?.metadata.labels).toMatchObject({
        'app.kubernetes.io/managed-by': 'isthmus-agent',
        [LABEL_POLICY_SERVICE]: 'cart',
      });
      expect(copy?.metadata.annotations?.[ANNOTATION_HUB_GENERATION]).toBe(String(created.metadata.generation));
      expect(copy?.spec).toEqual(expectedSpec);
    }
    // The copy says it is the hub's, on the member's own status.
    await waitFor(
      'copy status Ready',
      async () => ready(await readPolicy(members[0]!.kubeConfig(), 'cart'))?.status === 'True',
      WAIT_MS,
    );
  });

  it('propagates an update (a new generation) to every member, and status follows', async () => {
    const created = await createPolicy('orders', {
      service: 'orders',
      minHealthyPercent: 80,
      weights: [{ cluster: 'cluster-c', weight: 10 }],
    });
    const first = created.metadata.generation ?? 1;
    await distributed('orders', first);
    const updated = await patchSpec('orders', { minHealthyPercent: 50, weights: null, failback: { delay: '30s' } });
    const second = updated.metadata.generation ?? 0;
    expect(second).toBeGreaterThan(first);
    await distributed('orders', second);
    for (const m of members) {
      const copy = await readPolicy(m.kubeConfig(), 'orders');
      expect(copy?.metadata.annotations?.[ANNOTATION_HUB_GENERATION]).toBe(String(second));
      expect(copy?.spec).toMatchObject({ minHealthyPercent: 50, failback: { enabled: true, delay: '30s' } });
      // A field the new generation leaves out is gone from the copy too.
      expect(copy?.spec.weights).toBeUndefined();
    }
  });

  it('refuses a weight for a cluster that is not a member, naming spec.weights[0].cluster, and removes the copies', async () => {
    const created = await createPolicy('payments', { service: 'payments' });
    await distributed('payments', created.metadata.generation ?? 1);
    const invalid = await patchSpec('payments', { weights: [{ cluster: 'zz', weight: 100 }] });
    await waitFor(
      'payments InvalidPolicy',
      async () => ready(await readPolicy(hub, 'payments'))?.reason === 'InvalidPolicy',
      WAIT_MS,
    );
    const policy = await readPolicy(hub, 'payments');
    expect(ready(policy)).toMatchObject({
      status: 'False',
      reason: 'InvalidPolicy',
      observedGeneration: invalid.metadata.generation,
      message: 'spec.weights[0].cluster: cluster "zz" is not a member',
    });
    await copiesGone('payments');
    expect(await bucketValue(`${NS}.payments`)).toBeUndefined();
    await waitFor(
      'payments status.clusters empty',
      async () => ((await readPolicy(hub, 'payments'))?.status?.clusters ?? []).length === 0,
      WAIT_MS,
    );
  });

  it('refuses a region mapping that loops, naming spec.regionMapping, removes the copies, and distributes again once fixed', async () => {
    const created = await createPolicy('search', {
      service: 'search',
      regionMapping: [{ from: 'eu-west', to: ['us-east'] }],
    });
    await distributed('search', created.metadata.generation ?? 1);
    await patchSpec('search', {
      regionMapping: [
        { from: 'eu-west', to: ['us-east'] },
        { from: 'us-east', to: ['ap-south'] },
        { from: 'ap-south', to: ['eu-west'] },
      ],
    });
    await waitFor(
      'search InvalidPolicy',
      async () => ready(await readPolicy(hub, 'search'))?.reason === 'InvalidPolicy',
      WAIT_MS,
    );
    expect(ready(await readPolicy(hub, 'search'))).toMatchObject({
      status: 'False',
      message: expect.stringMatching(/^spec\.regionMapping: .*eu-west → us-east → ap-south → eu-west/) as string,
    });
    await copiesGone('search');
    const fixed = await patchSpec('search', { regionMapping: [{ from: 'eu-west', to: ['us-east'] }] });
    await distributed('search', fixed.metadata.generation ?? 0);
  });

  it('lets the older of two policies of one service apply and marks the newer Conflict', async () => {
    const older = await createPolicy('inventory-a', { service: 'inventory', minHealthyPercent: 10 });
    await distributed('inventory-a', older.metadata.generation ?? 1);
    await createPolicy('inventory-b', { service: 'inventory', minHealthyPercent: 90 });
    await waitFor(
      'inventory-b Conflict',
      async () => ready(await readPolicy(hub, 'inventory-b'))?.reason === 'Conflict',
      WAIT_MS,
    );
    expect(ready(await readPolicy(hub, 'inventory-b'))).toMatchObject({
      status: 'False',
      message: expect.stringContaining('"inventory-a" is older') as string,
    });
    expect(ready(await readPolicy(hub, 'inventory-a'))?.status).toBe('True');
    for (const m of members) expect((await readPolicy(m.kubeConfig(), 'inventory-a'))?.spec.minHealthyPercent).toBe(10);
    // The older one goes: the newer applies, and the copies follow it.
    await api(hub).deleteNamespacedCustomObject({ ...ref, namespace: NS, name: 'inventory-a' });
    const newer = await readPolicy(hub, 'inventory-b');
    await distributed('inventory-b', newer?.metadata.generation ?? 1);
    await copiesGone('inventory-a');
    for (const m of members) expect((await readPolicy(m.kubeConfig(), 'inventory-b'))?.spec.minHealthyPercent).toBe(90);
  });

  it('never adopts a FailoverPolicy of the same name that the agent did not create', async () => {
    const foreignCluster = members[2]!;
    const foreign = (await api(foreignCluster.kubeConfig()).createNamespacedCustomObject({
      ...ref,
      namespace: NS,
      body: {
        apiVersion: 'isthmus.dev/v1alpha1',
        kind: 'FailoverPolicy',
        metadata: { name: 'reviews' },
        spec: { service: 'reviews', minHealthyPercent: 33 },
      },
    })) as FailoverPolicy;
    await createPolicy('reviews', { service: 'reviews', minHealthyPercent: 77 });
    const others = members.filter((m) => m !== foreignCluster);
    await waitFor(
      'reviews applied by the other members',
      async () => {
        const clusters = (await readPolicy(hub, 'reviews'))?.status?.clusters ?? [];
        return JSON.stringify(clusters.map((c) => c.cluster)) === JSON.stringify(others.map((m) => m.name));
      },
      WAIT_MS,
    );
    await waitFor(
      `${foreignCluster.name} agent saw the foreign object`,
      () =>
        Promise.resolve(
          /not managed by isthmus-agent; left alone, the hub policy is not applied here/.test(
            fed.agent(foreignCluster.name)?.logTail(400) ?? '',
          ),
        ),
      WAIT_MS,
    );
    const after = await readPolicy(foreignCluster.kubeConfig(), 'reviews');
    expect(after?.metadata.resourceVersion).toBe(foreign.metadata.resourceVersion);
    expect(after?.spec.minHealthyPercent).toBe(33);
    for (const m of others) expect((await readPolicy(m.kubeConfig(), 'reviews'))?.spec.minHealthyPercent).toBe(77);
  });

  it('a restarted hub keeps the policy distributed and rewrites nothing that is already right', async () => {
    const created = await createPolicy('ratings', { service: 'ratings', minHealthyPercent: 55 });
    await distributed('ratings', created.metadata.generation ?? 1);
    const revision = async (key: string): Promise<number | undefined> => {
      const nc = await fed.bed.nats!.connect('failover-policy-test');
      try {
        return (await (await new Kvm(nc).open(POLICIES_BUCKET)).get(key))?.revision;
      } finally {
        await nc.close();
      }
    };
    const before = await revision(`${NS}.ratings`);
    for (const replica of fed.hubs) await fed.stopHub(replica.name);
    for (const replica of fed.hubs) await fed.startHub(replica.name);
    // The new leader's controller runs: a policy created now is distributed (its key is queued after the existing ones).
    const later = await createPolicy('ratings-canary', { service: 'ratings-canary' });
    await distributed('ratings-canary', later.metadata.generation ?? 1);
    await distributed('ratings', created.metadata.generation ?? 1);
    expect(await revision(`${NS}.ratings`)).toBe(before);
  });

  it('removes the copies everywhere when the policy is deleted, and the service returns to the defaults', async () => {
    const created = await createPolicy('shipping', { service: 'shipping', minHealthyPercent: 40 });
    await distributed('shipping', created.metadata.generation ?? 1);
    await api(hub).deleteNamespacedCustomObject({ ...ref, namespace: NS, name: 'shipping' });
    await copiesGone('shipping');
    await waitFor(
      'shipping key deleted from the bucket',
      async () => (await bucketValue(`${NS}.shipping`)) === undefined,
      WAIT_MS,
    );
  });
});
