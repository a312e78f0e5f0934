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
import { isIsthmusError } from '../errors.ts';
import { createLogger } from '../logger.ts';
import { Informer, type InformerEventType } from './informer.ts';
import { ensureNamespace, isNotFound, objectKey } from './objects.ts';
import { customResource, kinds } from './resources.ts';
import { TcpProxy } from './tcp-proxy.testkit.ts';

const logger = createLogger({
  component: 'informer-test',
  level: process.env.ISTHMUS_TEST_LOG === '1' ? 'debug' : 'silent',
});
const fastBackoff = { initialMs: 100, maxMs: 1_000 };

let bed: Testbed;
let kc: KubeConfig;
let core: CoreV1Api;

beforeAll(async () => {
  // These tests bring their own CRDs; the project's are not needed.
  bed = await startTestbed({ clusters: 1, nats: false, installCrds: false });
  kc = bed.clusters[0]!.kubeConfig();
  core = kc.makeApiClient(CoreV1Api);
});

afterAll(async () => {
  await bed?.[Symbol.asyncDispose]();
});

/** Records every event as "type key". */
function recorder<T extends KubernetesObject>(): {
  events: string[];
  last: Map<string, T>;
  handler: (type: InformerEventType, object: T) => void;
} {
  const events: string[] = [];
  const last = new Map<string, T>();
  return {
    events,
    last,
    handler: (type, object) => {
      events.push(`${type} ${objectKey(object)}`);
      last.set(objectKey(object), object);
    },
  };
}

/** Polls a synchronous condition (the informer's cache or recorded events). */
function until(what: string, condition: () => boolean, timeoutMs = 10_000): Promise<void> {
  return waitFor(what, () => Promise.resolve(condition()), timeoutMs, 20);
}

function configMap(
  namespace: string,
  name: string,
  labels: Record<string, string>,
  data: Record<string, string> = {},
): V1ConfigMap {
  return { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name, namespace, labels }, data };
}

describe('Informer on a real kube-apiserver', () => {
  it('lists and watches ConfigMaps through a label selector: add, update, delete', async () => {
    const ns = 'informer-cm';
    await ensureNamespace(kc, ns);
    await core.createNamespacedConfigMap({
      namespace: ns,
      body: configMap(ns, 'pre-existing', { app: 'isthmus' }, { v: '1' }),
    });
    await core.createNamespacedConfigMap({ namespace: ns, body: configMap(ns, 'unrelated', { app: 'other' }) });

    const rec = recorder<V1ConfigMap>();
    await using informer = new Informer({
      kubeConfig: kc,
      resource: kinds.configMaps,
      namespace: ns,
      labelSelector: 'app=isthmus',
      onEvent: rec.handler,
      logger,
    });
    informer.start();
    await informer.synced();
    expect(informer.hasSynced).toBe(true);
    expect(informer.list().map(objectKey)).toEqual([`${ns}/pre-existing`]);
    expect(rec.events).toEqual([`add ${ns}/pre-existing`]);
    // Listed objects look like watched ones: typed, with apiVersion and kind.
    const listed = informer.get(ns, 'pre-existing');
    expect(listed?.kind).toBe('ConfigMap');
    expect(listed?.apiVersion).toBe('v1');
    expect(listed?.metadata?.creationTimestamp).toBeInstanceOf(Date);

    await core.createNamespacedConfigMap({ namespace: ns, body: configMap(ns, 'new', { app: 'isthmus' }, { v: '1' }) });
    await until('add event', () => rec.events.includes(`add ${ns}/new`), 10_000);
    const watched = informer.getByKey(`${ns}/new`);
    expect(watched?.data).toEqual({ v: '1' });
    expect(watched?.metadata?.creationTimestamp).toBeInstanceOf(Date);

    await core.patchNamespacedConfigMap({
      name: 'new',
      namespace: ns,
      body: [{ op: 'replace', path: '/data/v', value: '2' }],
    });
    await until('update event', () => rec.events.includes(`update ${ns}/new`), 10_000);
    expect(informer.get(ns, 'new')?.data).toEqual({ v: '2' });

    await core.deleteNamespacedConfigMap({ name: 'pre-existing', namespace: ns });
    await until('delete event', () => rec.events.includes(`delete ${ns}/pre-existing`), 10_000);
    expect(informer.get(ns, 'pre-existing')).toBeUndefined();

    // Objects outside the selector never show up; relabelling one in makes it appear.
    await core.replaceNamespacedConfigMap({
      name: 'unrelated',
      namespace: ns,
      body: configMap(ns, 'unrelated', { app: 'other' }, { touched: 'yes' }),
    });
    await core.replaceNamespacedConfigMap({
      name: 'unrelated',
      namespace: ns,
      body: configMap(ns, 'unrelated', { app: 'isthmus' }),
    });
    await until('relabelled object', () => rec.events.includes(`add ${ns}/unrelated`), 10_000);
    expect(rec.events).toEqual([
      `add ${ns}/pre-existing`,
      `add ${ns}/new`,
      `update ${ns}/new`,
      `delete ${ns}/pre-existing`,
      `add ${ns}/unrelated`,
    ]);
    expect(informer.restarts).toBe(0);
  });

  it('watches cluster-scoped kinds and survives a throwing handler', async () => {
    const seen: string[] = [];
    await using informer = new Informer({
      kubeConfig: kc,
      resource: kinds.namespaces,
      labelSelector: 'informer-test=yes',
      logger,
    });
    informer.addEventHandler(() => {
      throw new Error('handler bug');
    });
    informer.addEventHandler((type, object) => seen.push(`${type} ${objectKey(object)}`));
    informer.start();
    await informer.synced();
    await ensureNamespace(kc, 'informer-ns-a', { 'informer-test': 'yes' });
    await ensureNamespace(kc, 'informer-ns-b', { 'informer-test': 'yes' });
    await until('both namespaces', () => seen.length === 2, 10_000);
    expect(seen.sort()).toEqual(['add informer-ns-a', 'add informer-ns-b']);
    expect(informer.get(undefined, 'informer-ns-a')?.metadata?.name).toBe('informer-ns-a');
    expect(informer.getByKey('informer-ns-b')?.kind).toBe('Namespace');
    expect(informer.restarts).toBe(0);
  });

  it('restarts after its CRD is deleted and re-created, and events flow again', async () => {
    const crds = kc.makeApiClient(ApiextensionsV1Api);
    const custom = kc.makeApiClient(CustomObjectsApi);
    const crd: V1CustomResourceDefinition = {
      apiVersion: 'apiextensions.k8s.io/v1',
      kind: 'CustomResourceDefinition',
      metadata: { name: 'widgets.informer.test.isthmus.dev' },
      spec: {
        group: 'informer.test.isthmus.dev',
        names: { kind: 'Widget', plural: 'widgets', singular: 'widget', listKind: 'WidgetList' },
        scope: 'Namespaced',
        versions: [
          {
            name: 'v1',
            served: true,
            storage: true,
            schema: { openAPIV3Schema: { type: 'object', x_kubernetes_preserve_unknown_fields: true } },
          },
        ],
      },
    };
    const installCrd = async (): Promise<void> => {
      await crds.createCustomResourceDefinition({ body: crd });
      await waitFor(
        'CRD established',
        async () => {
          const state = await crds.readCustomResourceDefinition({ name: crd.metadata!.name! });
          return state.status?.conditions?.some((c) => c.type === 'Established' && c.status === 'True') ?? false;
        },
        20_000,
        50,
      );
    };
    const createWidget = async (name: string): Promise<void> => {
      // Right after Established the new storage may answer 404 for a moment: retry.
      await waitFor(
        `widget ${name} created`,
        async () => {
          await custom.createNamespacedCustomObject({
            group: 'informer.test.isthmus.dev',
            version: 'v1',
            namespace: ns,
            plural: 'widgets',
            body: { apiVersion: 'informer.test.isthmus.dev/v1', kind: 'Widget', metadata: { name }, size: name.length },
          });
          return true;
        },
        10_000,
        50,
      );
    };
    const ns = 'informer-crd';
    await ensureNamespace(kc, ns);
    await installCrd();

    const widgets = customResource({
      group: 'informer.test.isthmus.dev',
      version: 'v1',
      kind: 'Widget',
      plural: 'widgets',
      namespaced: true,
    });
    const rec = recorder<KubernetesObject & { size?: number }>();
    await using informer = new Informer({
      kubeConfig: kc,
      resource: widgets,
      namespace: ns,
      onEvent: rec.handler,
      logger,
      backoff: fastBackoff,
    });
    informer.start();
    await informer.synced();
    await createWidget('before');
    await until('widget before', () => rec.events.includes(`add ${ns}/before`), 10_000);
    expect(rec.last.get(`${ns}/before`)?.size).toBe(6); // custom resources stay plain JSON

    await crds.deleteCustomResourceDefinition({ name: crd.metadata!.name! });
    await waitFor(
      'CRD gone',
      async () => {
        try {
          await crds.readCustomResourceDefinition({ name: crd.metadata!.name! });
          return false;
        } catch (err) {
          if (isNotFound(err)) return true;
          throw err;
        }
      },
      20_000,
      50,
    );
    await until('informer noticed and restarted', () => informer.restarts >= 1, 10_000);

    await installCrd();
    await createWidget('after');
    await until('widget after, through the restarted informer', () => rec.events.includes(`add ${ns}/after`), 15_000);
    // The widget that went with the old CRD is gone from the cache, with a delete event.
    await until('old widget deleted', () => informer.get(ns, 'before') === undefined, 10_000);
    expect(rec.events).toContain(`delete ${ns}/before`);
    expect(informer.list().map(objectKey)).toEqual([`${ns}/after`]);
  });

  it('restarts after the API server becomes unreachable and catches up on what it missed', async () => {
    const ns = 'informer-partition';
    await ensureNamespace(kc, ns);
    await using proxy = await TcpProxy.start(bed.clusters[0]!.server);
    const rec = recorder<V1ConfigMap>();
    await using informer = new Informer({
      kubeConfig: proxy.kubeConfig(kc),
      resource: kinds.configMaps,
      namespace: ns,
      onEvent: rec.handler,
      logger,
      backoff: fastBackoff,
    });
    informer.start();
    await informer.synced();
    await core.createNamespacedConfigMap({ namespace: ns, body: configMap(ns, 'one', {}) });
    await until('one', () => rec.events.includes(`add ${ns}/one`), 10_000);

    proxy.cut();
    await until('informer failed and restarted', () => informer.restarts >= 2, 10_000);
    // Changes made while the informer cannot reach the API server...
    await core.createNamespacedConfigMap({ namespace: ns, body: configMap(ns, 'two', {}) });
    await core.deleteNamespacedConfigMap({ name: 'one', namespace: ns });
    // Barrier: it has tried again since the changes (and could not see them).
    const tried = informer.restarts;
    await until('another failed attempt', () => informer.restarts > tried, 10_000);
    expect(rec.events).toEqual([`add ${ns}/one`]);
    proxy.restore();
    // ...arrive once it can again.
    await until(
      'caught up',
      () => rec.events.includes(`add ${ns}/two`) && rec.events.includes(`delete ${ns}/one`),
      15_000,
    );
    expect(informer.list().map(objectKey)).toEqual([`${ns}/two`]);
    await core.createNamespacedConfigMap({ namespace: ns, body: configMap(ns, 'three', {}) });
    await until('live again', () => rec.events.includes(`add ${ns}/three`), 10_000);
  });

  it('stop() ends the watch for good and rejects synced() if it never synced', async () => {
    const ns = 'informer-stop';
    await ensureNamespace(kc, ns);
    const rec = recorder<V1ConfigMap>();
    const informer = new Informer({
      kubeConfig: kc,
      resource: kinds.configMaps,
      namespace: ns,
      onEvent: rec.handler,
      logger,
    });
    informer.start();
    await informer.synced();
    await informer.stop();
    await core.createNamespacedConfigMap({ namespace: ns, body: configMap(ns, 'after-stop', {}) });
    // Barrier: a watch started after the stop has seen the change, so a live one would have too.
    const witnessed = recorder<V1ConfigMap>();
    const witness = new Informer({
      kubeConfig: kc,
      resource: kinds.configMaps,
      namespace: ns,
      onEvent: witnessed.handler,
      logger,
    });
    witness.start();
    await until('witness sees after-stop', () => witnessed.events.includes(`add ${ns}/after-stop`), 10_000);
    await witness.stop();
    expect(rec.events).toEqual([]);

    const missing = customResource({
      group: 'nowhere.isthmus.dev',
      version: 'v1',
      kind: 'Ghost',
      plural: 'ghosts',
      namespaced: true,
    });
    const never = new Informer({ kubeConfig: kc, resource: missing, logger, backoff: fastBackoff });
    never.start();
    await until('failing informer restarts', () => never.restarts >= 1, 10_000);
    expect(never.hasSynced).toBe(false);
    await never.stop();
    const err: unknown = await never.synced().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(isIsthmusError(err, 'ISTHMUS_STOPPED')).toBe(true);
    const restarts = never.restarts;
    // Barrier: an informer with the same backoff, started after the stop, restarts twice meanwhile.
    const twin = new Informer({ kubeConfig: kc, resource: missing, logger, backoff: fastBackoff });
    twin.start();
    await until('twin restarts twice', () => twin.restarts >= restarts + 2, 10_000);
    await twin.stop();
    expect(never.restarts).toBe(restarts);
  });

  it('refuses a namespace for a cluster-scoped kind', () => {
    expect(() => new Informer({ kubeConfig: kc, resource: kinds.namespaces, namespace: 'x', logger })).toThrow(
      /cluster-scoped/,
    );
  });
});
