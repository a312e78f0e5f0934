import {
  ApiextensionsV1Api,
  CoreV1Api,
  CustomObjectsApi,
  type KubeConfig,
  type KubernetesObject,
  type V1ConfigMap,
  type V1CustomResourceDefinition,
} from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestbed, waitFor, type Testbed } from '../../local/testbed/index.ts';
import {
  describeKubeError,
  ensureNamespace,
  isAlreadyExists,
  isConflict,
  isNotFound,
  mergePatchCustomObject,
  mergePatchCustomObjectStatus,
  objectKey,
  serverSideApply,
  splitKey,
} from './objects.ts';

const GROUP = 'objects.test.isthmus.dev';
type Gadget = KubernetesObject & { spec?: Record<string, unknown>; status?: Record<string, unknown> };

let bed: Testbed;
let kc: KubeConfig;

function crd(plural: string, kind: string, scope: 'Namespaced' | 'Cluster'): V1CustomResourceDefinition {
  return {
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: { name: `${plural}.${GROUP}` },
    spec: {
      group: GROUP,
      names: { kind, plural, singular: kind.toLowerCase(), listKind: `${kind}List` },
      scope,
      versions: [
        {
          name: 'v1',
          served: true,
          storage: true,
          subresources: { status: {} },
          schema: { openAPIV3Schema: { type: 'object', x_kubernetes_preserve_unknown_fields: true } },
        },
      ],
    },
  };
}

async function expectRejected(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => expect.fail('expected the call to fail'),
    (err: unknown) => err,
  );
}

beforeAll(async () => {
  bed = await startTestbed({ clusters: 1, nats: false, installCrds: false });
  kc = bed.clusters[0]!.kubeConfig();
  const api = kc.makeApiClient(ApiextensionsV1Api);
  const defs = [crd('gadgets', 'Gadget', 'Namespaced'), crd('clustergadgets', 'ClusterGadget', 'Cluster')];
  await Promise.all(defs.map((body) => api.createCustomResourceDefinition({ body })));
  await waitFor(
    'CRDs established',
    async () => {
      const states = await Promise.all(defs.map((d) => api.readCustomResourceDefinition({ name: d.metadata!.name! })));
      return states.every((s) => s.status?.conditions?.some((c) => c.type === 'Established' && c.status === 'True'));
    },
    20_000,
    50,
  );
  await ensureNamespace(kc, 'objects');
});

afterAll(async () => {
  await bed?.[Symbol.asyncDispose]();
});

describe('keys', () => {
  it('are namespace/name, or name when cluster-scoped, and split back', () => {
    expect(objectKey({ metadata: { name: 'a', namespace: 'ns' } })).toBe('ns/a');
    expect(objectKey({ metadata: { name: 'node-1' } })).toBe('node-1');
    expect(splitKey('ns/a')).toEqual({ namespace: 'ns', name: 'a' });
    expect(splitKey('node-1')).toEqual({ namespace: '', name: 'node-1' });
  });
});

describe('object helpers on a real kube-apiserver', () => {
  it('classifies NotFound, AlreadyExists and Conflict', async () => {
    const core = kc.makeApiClient(CoreV1Api);
    const notFound = await expectRejected(core.readNamespacedConfigMap({ name: 'missing', namespace: 'objects' }));
    expect(isNotFound(notFound)).toBe(true);
    expect(describeKubeError(notFound)).toBe('404 NotFound: configmaps "missing" not found');

    const body: V1ConfigMap = { metadata: { name: 'cm', namespace: 'objects' }, data: { a: '1' } };
    const created = await core.createNamespacedConfigMap({ namespace: 'objects', body });
    const exists = await expectRejected(core.createNamespacedConfigMap({ namespace: 'objects', body }));
    expect([isAlreadyExists(exists), isConflict(exists), isNotFound(exists)]).toEqual([true, false, false]);

    await core.replaceNamespacedConfigMap({ name: 'cm', namespace: 'objects', body: { ...created, data: { a: '2' } } });
    const stale = await expectRejected(
      core.replaceNamespacedConfigMap({ name: 'cm', namespace: 'objects', body: { ...created, data: { a: '3' } } }),
    );
    expect([isConflict(stale), isAlreadyExists(stale)]).toEqual([true, false]);
    expect([isNotFound(new Error('x')), isConflict(undefined), isAlreadyExists('409')]).toEqual([false, false, false]);
  });

  it('merge-patches a namespaced custom object and its status subresource', async () => {
    const custom = kc.makeApiClient(CustomObjectsApi);
    await custom.createNamespacedCustomObject({
      group: GROUP,
      version: 'v1',
      namespace: 'objects',
      plural: 'gadgets',
      body: {
        apiVersion: `${GROUP}/v1`,
        kind: 'Gadget',
        metadata: { name: 'g1' },
        spec: { a: 1, nested: { keep: true } },
      },
    });
    const ref = { group: GROUP, version: 'v1', plural: 'gadgets', namespace: 'objects', name: 'g1' };

    // A merge patch (an object, not a JSON Patch array): nested fields merge, null deletes.
    const patched = await mergePatchCustomObject<Gadget>(kc, ref, { spec: { nested: { added: 2 }, a: null, b: 'x' } });
    expect(patched.spec).toEqual({ nested: { keep: true, added: 2 }, b: 'x' });

    // Status goes through the status subresource; spec is untouched by it.
    const withStatus = await mergePatchCustomObjectStatus<Gadget>(kc, ref, {
      phase: 'Ready',
      conditions: [{ type: 'Ready', status: 'True' }],
    });
    expect(withStatus.status).toEqual({ phase: 'Ready', conditions: [{ type: 'Ready', status: 'True' }] });
    expect(withStatus.spec).toEqual(patched.spec);
    const again = await mergePatchCustomObjectStatus<Gadget>(kc, ref, { observedGeneration: 2 });
    expect(again.status).toEqual({
      phase: 'Ready',
      conditions: [{ type: 'Ready', status: 'True' }],
      observedGeneration: 2,
    });

    // The main resource ignores status when a status subresource exists.
    const ignored = await mergePatchCustomObject<Gadget>(kc, ref, { status: { phase: 'Hacked' } });
    expect(ignored.status?.phase).toBe('Ready');

    // resourceVersion turns the patch into a compare-and-swap.
    const stale = await expectRejected(
      mergePatchCustomObject(kc, ref, { spec: { b: 'y' } }, { resourceVersion: patched.metadata!.resourceVersion }),
    );
    expect(isConflict(stale)).toBe(true);
    const current = again.metadata!.resourceVersion!;
    const swapped = await mergePatchCustomObjectStatus<Gadget>(
      kc,
      ref,
      { phase: 'Done' },
      { resourceVersion: current },
    );
    expect(swapped.status?.phase).toBe('Done');

    const missing = await expectRejected(mergePatchCustomObject(kc, { ...ref, name: 'nope' }, { spec: {} }));
    expect(isNotFound(missing)).toBe(true);
  });

  it('merge-patches a cluster-scoped custom object and its status', async () => {
    const custom = kc.makeApiClient(CustomObjectsApi);
    await custom.createClusterCustomObject({
      group: GROUP,
      version: 'v1',
      plural: 'clustergadgets',
      body: { apiVersion: `${GROUP}/v1`, kind: 'ClusterGadget', metadata: { name: 'cg1' }, spec: { a: 1 } },
    });
    const ref = { group: GROUP, version: 'v1', plural: 'clustergadgets', name: 'cg1' };
    const patched = await mergePatchCustomObject<Gadget>(kc, ref, { spec: { b: 2 } }, { fieldManager: 'objects-test' });
    expect(patched.spec).toEqual({ a: 1, b: 2 });
    const status = await mergePatchCustomObjectStatus<Gadget>(kc, ref, { ready: true });
    expect(status.status).toEqual({ ready: true });
    expect(status.metadata?.managedFields?.some((f) => f.manager === 'objects-test')).toBe(true);
  });

  it('server-side applies core and custom objects, with conflicts between managers', async () => {
    const cm: V1ConfigMap = {
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { name: 'applied', namespace: 'objects' },
      data: { owner: 'a' },
    };
    const first = await serverSideApply(kc, cm, 'manager-a');
    expect(first.metadata?.uid).toBeTruthy();
    const again = await serverSideApply(kc, cm, 'manager-a');
    expect(again.metadata?.resourceVersion).toBe(first.metadata?.resourceVersion); // no-op apply

    const other = { ...cm, data: { owner: 'b' } };
    const conflict = await expectRejected(serverSideApply(kc, other, 'manager-b'));
    expect(isConflict(conflict)).toBe(true);
    const forced = await serverSideApply(kc, other, 'manager-b', { force: true });
    expect(forced.data).toEqual({ owner: 'b' });

    // Fields only manager-a set are dropped when it applies without them.
    await serverSideApply(kc, { ...cm, data: { owner: 'b', extra: 'a' } }, 'manager-a', { force: true });
    const trimmed = await serverSideApply(kc, { ...cm, data: { owner: 'b' } }, 'manager-a');
    expect(trimmed.data).toEqual({ owner: 'b' });

    const gadget: Gadget = {
      apiVersion: `${GROUP}/v1`,
      kind: 'Gadget',
      metadata: { name: 'ssa', namespace: 'objects' },
      spec: { size: 3 },
    };
    const applied = await serverSideApply(kc, gadget, 'manager-a');
    expect(applied.spec).toEqual({ size: 3 });
  });

  it('ensureNamespace creates a namespace once', async () => {
    expect(await ensureNamespace(kc, 'ensure-me', { team: 'isthmus' })).toBe(true);
    expect(await ensureNamespace(kc, 'ensure-me')).toBe(false);
    const ns = await kc.makeApiClient(CoreV1Api).readNamespace({ name: 'ensure-me' });
    expect(ns.metadata?.labels?.team).toBe('isthmus');
  });
});
