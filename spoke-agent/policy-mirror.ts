// Mirrors the hub's FailoverPolicies (NATS KV isthmus_policies) into this cluster as FailoverPolicy
// objects of the same namespace and name, for the east-west gateway, which reads only its own
// cluster (DESIGN §1). Level-based per bucket key ("<namespace>.<service>"): the copy is created,
// updated or deleted until it matches the record. Guarantees:
// - nothing is written before the bucket's first full snapshot and the caches are filled, so a slow
//   start never deletes copies; a copy goes only when the bucket says its key is gone (a delete, or
//   a full snapshot without it), never because NATS is unreachable (static stability);
// - only objects labelled app.kubernetes.io/managed-by=isthmus-agent are touched: a FailoverPolicy
//   of that name someone else made is reported and left alone (create, never adopt);
// - copies are written only in namespaces that exist;
// - what the cluster holds (PolicyCopies.applied) is read from the copies themselves, so the hub
//   hears the truth in heartbeats even while NATS is down or before the first snapshot.
import type { KubeConfig, KubernetesObject, V1Namespace } from '@kubernetes/client-node';
import type { NatsConnection } from '@nats-io/transport-node';
import { setCondition } from '../common/api/conditions.ts';
import {
  FAILOVER_POLICY_KIND,
  FAILOVER_POLICY_PLURAL,
  FailoverPolicyConditionType,
  FailoverPolicyReason,
  ISTHMUS_API_VERSION,
  ISTHMUS_GROUP,
  ISTHMUS_VERSION,
  failoverPolicySpecSchema,
  type FailoverPolicy,
} from '../common/api/isthmus.ts';
import { IsthmusError } from '../common/errors.ts';
import {
  ANNOTATION_HUB_GENERATION,
  ANNOTATION_POLICY_UPDATED_AT,
  LABEL_POLICY_SERVICE,
  POLICIES_BUCKET,
  failoverPolicyResource,
  parsePolicyKey,
  policyKey,
  policyRecordSchema,
  type PolicyRecord,
} from '../common/failover-policy.ts';
import { MAX_APPLIED_POLICIES, type AppliedPolicy } from '../common/hub-api/messages.ts';
import { Informer, WorkQueue, describeKubeError, kinds, type WorkResult } from '../common/kube/index.ts';
import { whenAborted, type Runnable } from '../common/lifecycle.ts';
import type { Logger } from '../common/logger.ts';
import { CatalogWatcher, type CatalogWatcherOptions, type KvSource } from './imports/catalog-watcher.ts';
import { withIntentHash, type DesiredObject } from './imports/desired-objects.ts';
import { FIELD_MANAGER, LABEL_MANAGED_BY } from './imports/naming.ts';
import { ObjectWriter } from './imports/object-writer.ts';

export const POLICY_MIRROR_DEFAULTS = { workers: 2, conflictRetryMs: 30_000 } as const;

const policiesSource: KvSource<PolicyRecord> = {
  bucket: POLICIES_BUCKET,
  parse: (key, value) => {
    const record = policyRecordSchema.parse(value);
    if (policyKey(record.namespace, record.service) !== key)
      throw new Error(`record names ${record.namespace}/${record.service}`);
    return record;
  },
};

const fpResource = { group: ISTHMUS_GROUP, version: ISTHMUS_VERSION, plural: FAILOVER_POLICY_PLURAL } as const;

function serviceOf(object: KubernetesObject): string | undefined {
  const service = (object as { spec?: { service?: unknown } }).spec?.service;
  return typeof service === 'string' && service !== '' ? service : undefined;
}

/**
 * The copy of a record in this cluster: the hub's validated spec with its defaults (a field the
 * spec leaves out is null, so an update removes it), the agent's label, the hub generation.
 */
export function desiredCopy(record: PolicyRecord): DesiredObject {
  const spec: Record<string, unknown> = { ...record.spec };
  for (const field of Object.keys(failoverPolicySpecSchema.shape)) spec[field] ??= null;
  return withIntentHash({
    apiVersion: ISTHMUS_API_VERSION,
    kind: FAILOVER_POLICY_KIND,
    metadata: {
      name: record.policyName,
      namespace: record.namespace,
      labels: { [LABEL_MANAGED_BY]: FIELD_MANAGER, [LABEL_POLICY_SERVICE]: record.service },
      annotations: {
        [ANNOTATION_HUB_GENERATION]: String(record.generation),
        [ANNOTATION_POLICY_UPDATED_AT]: record.updatedAt,
      },
    },
    spec,
  });
}

/** The agent's copies in its cluster (label-selected) and the namespaces; independent of NATS. */
export interface PolicyCopies {
  start(): void;
  synced(): Promise<void>;
  /** The copies as the hub policies and generations they came from; undefined until the cache is filled. */
  applied(): AppliedPolicy[] | undefined;
  /** Called after any change of a copy; must not block. Returns its removal. */
  onChange(listener: () => void): () => void;
  stop(): Promise<void>;
  readonly copies: Informer<KubernetesObject>;
  readonly namespaces: Informer<V1Namespace>;
}

export function policyCopies(options: { kc: KubeConfig; log: Logger }): PolicyCopies {
  const log = options.log.child({ part: 'policy-copies' });
  const copies = new Informer({
    kubeConfig: options.kc,
    resource: failoverPolicyResource,
    labelSelector: `${LABEL_MANAGED_BY}=${FIELD_MANAGER}`,
    logger: log,
  });
  const namespaces = new Informer({ kubeConfig: options.kc, resource: kinds.namespaces, logger: log });
  let truncatedWarned = false;
  return {
    copies,
    namespaces,
    start: () => {
      copies.start();
      namespaces.start();
    },
    synced: async () => {
      await Promise.all([copies.synced(), namespaces.synced()]);
    },
    applied: () => {
      if (!copies.hasSynced) return undefined;
      const applied: AppliedPolicy[] = [];
      for (const copy of copies.list()) {
        const { name, namespace, annotations } = copy.metadata ?? {};
        const service = serviceOf(copy);
        const generation = Number(annotations?.[ANNOTATION_HUB_GENERATION]);
        if (name && namespace && service && Number.isSafeInteger(generation) && generation >= 1)
          applied.push({ namespace, service, policyName: name, generation });
      }
      applied.sort((a, b) =>
        a.namespace === b.namespace ? (a.service < b.service ? -1 : 1) : a.namespace < b.namespace ? -1 : 1,
      );
      if (applied.length > MAX_APPLIED_POLICIES && !truncatedWarned) {
        truncatedWarned = true;
        log.warn(
          { copies: applied.length, reported: MAX_APPLIED_POLICIES },
          'more FailoverPolicy copies than a heartbeat carries; the hub hears of the first ones only',
        );
      }
      return applied.slice(0, MAX_APPLIED_POLICIES);
    },
    onChange: (listener) => copies.addEventHandler(() => listener()),
    stop: async () => {
      await Promise.all([copies.stop(), namespaces.stop()]);
    },
  };
}

export interface PolicyMirrorOptions {
  readonly kc: KubeConfig;
  /** A connection to the hub's NATS that reconnects forever (`connectNats`). */
  readonly nc: NatsConnection;
  readonly copies: PolicyCopies;
  readonly log: Logger;
  readonly workers?: number;
  /** How soon a key whose name is taken by a foreign FailoverPolicy is looked at again. */
  readonly conflictRetryMs?: number;
  readonly watchRetry?: CatalogWatcherOptions['retry'];
}

/** Mirrors until `signal` aborts; resolves once stopped. What it wrote stays. */
export type PolicyMirror = Runnable;

export function policyMirror(options: PolicyMirrorOptions): PolicyMirror {
  const log = options.log.child({ part: 'policy-mirror' });
  const { copies, namespaces } = options.copies;
  const watcher = new CatalogWatcher<PolicyRecord>({
    nc: options.nc,
    log,
    source: policiesSource,
    retry: options.watchRetry,
  });
  const queue = new WorkQueue<string>({ name: 'policy-mirror', logger: log, maxDelayMs: 30_000 });
  const writer = new ObjectWriter(options.kc, () => undefined);
  const conflictRetryMs = options.conflictRetryMs ?? POLICY_MIRROR_DEFAULTS.conflictRetryMs;
  /** Keys whose copy's name is taken by a foreign object (logged once per key). */
  const conflicts = new Set<string>();

  const keyOf = (object: KubernetesObject): string | undefined => {
    const service = serviceOf(object);
    return service && object.metadata?.namespace ? policyKey(object.metadata.namespace, service) : undefined;
  };
  const enqueueCopy = (object: KubernetesObject): void => {
    const key = keyOf(object);
    if (key) queue.add(key);
  };
  // Bucket keys and the keys of the copies: a copy whose key left the bucket while the agent was away is found this way.
  const resync = (): void => {
    for (const key of watcher.keys()) queue.add(key);
    for (const copy of copies.list()) enqueueCopy(copy);
  };

  async function reconcile(key: string): Promise<WorkResult> {
    const { namespace, service } = parsePolicyKey(key);
    const ns = namespaces.get(undefined, namespace);
    // Nothing can exist in a missing namespace; a terminating one takes the copies with it.
    if (!ns || ns.metadata?.deletionTimestamp) return undefined;
    const record = watcher.get(key);
    const failures: unknown[] = [];
    let conflict = false;
    if (record) {
      try {
        const result = await writer.ensure(desiredCopy(record), copies.get(namespace, record.policyName));
        if ('foreign' in result) {
          conflict = true;
          if (!conflicts.has(key))
            log.warn(
              { key, namespace, name: record.policyName },
              'a FailoverPolicy of that name exists and is not managed by isthmus-agent; left alone, the hub policy is not applied here',
            );
        } else {
          const copy = result.owned as unknown as FailoverPolicy;
          const { conditions } = setCondition(
            copy.status?.conditions,
            {
              type: FailoverPolicyConditionType.Ready,
              status: 'True',
              reason: FailoverPolicyReason.Distributed,
              message: `copy of the hub's FailoverPolicy ${namespace}/${record.policyName} at generation ${record.generation}, written by isthmus-agent`,
              observedGeneration: copy.metadata.generation,
            },
            new Date(),
          );
          await writer.ensureStatus(result.owned, fpResource, {
            observedGeneration: copy.metadata.generation,
            conditions,
          });
        }
      } catch (err) {
        failures.push(err);
      }
    }
    for (const copy of copies.list(namespace)) {
      if (serviceOf(copy) !== service || copy.metadata?.name === record?.policyName) continue;
      try {
        await writer.remove(copy);
        log.info(
          { key, namespace, name: copy.metadata?.name },
          record
            ? 'FailoverPolicy copy replaced by another policy of the service'
            : 'FailoverPolicy copy removed: the hub withdrew the policy',
        );
      } catch (err) {
        failures.push(err);
      }
    }
    if (conflict) conflicts.add(key);
    else conflicts.delete(key);
    if (failures.length > 0)
      throw new IsthmusError(
        'ISTHMUS_KUBE_REQUEST_FAILED',
        `FailoverPolicy copy for ${key}: ${failures.map(describeKubeError).join('; ')}`,
        { cause: failures[0] },
      );
    return conflict ? { requeueAfterMs: conflictRetryMs } : undefined;
  }

  return {
    async run(signal) {
      const removeHandlers = [
        watcher.onChange((key) => queue.add(key)),
        copies.addEventHandler((_type, object) => enqueueCopy(object)),
        namespaces.addEventHandler((type, namespace) => {
          if (type !== 'add') return;
          for (const key of watcher.keys())
            if (parsePolicyKey(key).namespace === namespace.metadata?.name) queue.add(key);
        }),
      ];
      const watching = watcher.run(signal);
      const ready = await Promise.race([
        Promise.all([watcher.synced(), options.copies.synced()]).then(
          () => true,
          () => false,
        ),
        whenAborted(signal).then(() => false),
      ]);
      if (ready && !signal.aborted) {
        resync();
        void queue.run(options.workers ?? POLICY_MIRROR_DEFAULTS.workers, reconcile);
        log.info({ policies: watcher.size }, 'failover policies synced; mirroring');
      }
      await whenAborted(signal);
      for (const remove of removeHandlers) remove();
      await watching;
      await queue.shutDown();
    },
  };
}
