// Leader-only, one leadership term: FailoverPolicies on the hub (all namespaces) → the
// isthmus_policies bucket and the policies' status. Level-based: the work item is a service
// ("<namespace>.<service>", the bucket key); each pass takes every policy naming that service from
// the informer cache, lets the oldest apply, validates it against the current members, puts or
// deletes the bucket key only when its content differs from what the bucket holds, and then writes
// each policy's status only when it changes: Ready (Distributed / InvalidPolicy / Conflict) with
// observedGeneration, and status.clusters from the applied generations the agents report in their
// heartbeats (filtered to current members; the cluster id is the caller's certificate's). The key
// goes into the bucket before Ready says Distributed. A term starts from the bucket's content and
// the reports the previous leader wrote into status, so a new leader rewrites nothing that is right.
import type { KubeConfig, KubernetesObject } from '@kubernetes/client-node';
import type { KV } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import { setCondition, type ConditionUpdate } from '../../common/api/conditions.ts';
import {
  FAILOVER_POLICY_PLURAL,
  FailoverPolicyConditionType,
  FailoverPolicyReason,
  ISTHMUS_GROUP,
  ISTHMUS_VERSION,
  MAX_POLICY_STATUS_CLUSTERS,
  type AppliedCluster,
  type FailoverPolicy,
  type FailoverPolicyStatus,
} from '../../common/api/isthmus.ts';
import { describeError } from '../../common/errors.ts';
import {
  POLICIES_BUCKET,
  failoverPolicyResource,
  parsePolicyKey,
  policyKey,
  policyRecordSchema,
  type PolicyRecord,
} from '../../common/failover-policy.ts';
import type { AppliedPolicy } from '../../common/hub-api/messages.ts';
import { Informer, WorkQueue, isNotFound, mergePatchCustomObjectStatus, objectKey } from '../../common/kube/index.ts';
import { whenAborted, type Runnable } from '../../common/lifecycle.ts';
import type { Logger } from '../../common/logger.ts';
import { currentMemberIds, type MemberCache } from '../membership.ts';
import { SINGLE_SERVER_BUCKETS, openBucket, type BucketSettings } from '../nats-buckets.ts';
import { resolveServicePolicies, validatePolicySpec } from './validation.ts';

export const POLICY_CONTROLLER_DEFAULTS = { workers: 4, resyncMs: 30_000 } as const;
const FIELD_MANAGER = 'isthmus-hub';

export interface PolicyControllerOptions {
  readonly kc: KubeConfig;
  readonly nc: NatsConnection;
  readonly memberCache: MemberCache;
  readonly log: Logger;
  /** Services reconciled in parallel. */
  readonly workers?: number;
  /** How often the bucket is read again and every service reconciled (repairs foreign writes). */
  readonly resyncMs?: number;
  /** How the bucket is created (replicas); default SINGLE_SERVER_BUCKETS. */
  readonly buckets?: BucketSettings;
}

/** What one cluster reported for one service key. */
interface AppliedCopy {
  readonly policyName: string;
  readonly generation: number;
}

/** The record without updatedAt, as canonical JSON: what decides whether a put is due. */
function contentOf(record: Omit<PolicyRecord, 'updatedAt'>): string {
  const { namespace, service, policyName, generation, spec } = record;
  return JSON.stringify({ namespace, service, policyName, generation, spec });
}

function serviceOf(object: KubernetesObject): string | undefined {
  const service = (object as { spec?: { service?: unknown } }).spec?.service;
  return typeof service === 'string' && service !== '' ? service : undefined;
}

function sameClusters(a: readonly AppliedCluster[] | undefined, b: readonly AppliedCluster[]): boolean {
  const left = a ?? [];
  return (
    left.length === b.length &&
    left.every((c, i) => c.cluster === b[i]?.cluster && c.appliedGeneration === b[i]?.appliedGeneration)
  );
}

export class PolicyController implements Runnable {
  readonly #options: PolicyControllerOptions;
  readonly #log: Logger;
  readonly #informer: Informer<KubernetesObject>;
  readonly #queue: WorkQueue<string>;
  /** Each policy's service key as last seen, so the old service is reconciled when spec.service changes or the policy goes. */
  readonly #serviceKeys = new Map<string, string>();
  /** Per member cluster: what its agent holds, by service key. */
  readonly #reports = new Map<string, Map<string, AppliedCopy>>();
  /** Clusters that reported during this term (their status-seeded view is replaced). */
  readonly #reported = new Set<string>();
  #bucket: Promise<KV> | undefined;
  /** Per key, the content (contentOf) the bucket holds as last read or written; '' for a value that does not parse. */
  #published: Map<string, string> | undefined;
  #members = '';
  #resync: NodeJS.Timeout | undefined;
  #workers: Promise<void> | undefined;
  #stopped = false;

  constructor(options: PolicyControllerOptions) {
    this.#options = options;
    this.#log = options.log;
    this.#queue = new WorkQueue<string>({ name: 'failover-policies', logger: this.#log, maxDelayMs: 30_000 });
    this.#informer = new Informer({
      kubeConfig: options.kc,
      resource: failoverPolicyResource,
      logger: this.#log.child({ informer: 'failoverpolicies' }),
    });
    this.#informer.addEventHandler((type, object) => this.#onPolicyEvent(type, object));
  }

  /**
   * Watches, and once the cache is filled reconciles, until `signal` aborts (the term ends); then
   * no write starts, writes in flight finish, and it resolves.
   */
  async run(signal: AbortSignal): Promise<void> {
    this.#informer.start();
    void this.#begin();
    await whenAborted(signal);
    this.#stopped = true;
    clearInterval(this.#resync);
    await this.#queue.shutDown();
    await this.#informer.stop();
    await this.#workers;
  }

  /** A MemberCluster changed: when the set of current members did, every policy is checked again. */
  membersChanged(): void {
    const members = this.#memberIds();
    if (members === this.#members) return;
    this.#members = members;
    this.#enqueueAll();
  }

  /** What a member's agent holds (its heartbeat); services whose copy there changed are reconciled. */
  reportApplied(clusterId: string, applied: readonly AppliedPolicy[]): void {
    if (this.#stopped) return;
    const next = new Map<string, AppliedCopy>(
      applied.map((a) => [policyKey(a.namespace, a.service), { policyName: a.policyName, generation: a.generation }]),
    );
    const previous = this.#reports.get(clusterId) ?? new Map<string, AppliedCopy>();
    this.#reports.set(clusterId, next);
    this.#reported.add(clusterId);
    for (const key of new Set([...previous.keys(), ...next.keys()])) {
      const [before, after] = [previous.get(key), next.get(key)];
      if (before?.policyName !== after?.policyName || before?.generation !== after?.generation) this.#queue.add(key);
    }
  }

  async #begin(): Promise<void> {
    try {
      await this.#informer.synced();
    } catch {
      return; // stopped before the first list
    }
    if (this.#stopped) return;
    this.#seedReports();
    this.#members = this.#memberIds();
    this.#enqueueAll();
    this.#workers = this.#queue.run(this.#options.workers ?? POLICY_CONTROLLER_DEFAULTS.workers, (key) =>
      this.#reconcile(key),
    );
    this.#resync = setInterval(
      () => void this.#reread(),
      this.#options.resyncMs ?? POLICY_CONTROLLER_DEFAULTS.resyncMs,
    );
    this.#log.info({ policies: this.#informer.list().length }, 'failover policies: reconciling');
  }

  #memberIds(): string {
    return [...currentMemberIds(this.#options.memberCache.list())].sort().join(',');
  }

  #onPolicyEvent(type: 'add' | 'update' | 'delete', object: KubernetesObject): void {
    const objKey = objectKey(object);
    const previous = this.#serviceKeys.get(objKey);
    const service = serviceOf(object);
    const current = service && object.metadata?.namespace ? policyKey(object.metadata.namespace, service) : undefined;
    if (type === 'delete' || !current) this.#serviceKeys.delete(objKey);
    else this.#serviceKeys.set(objKey, current);
    if (previous && previous !== current) this.#queue.add(previous);
    if (current) this.#queue.add(current);
  }

  #enqueueAll(): void {
    for (const object of this.#informer.list()) this.#onPolicyEvent('add', object);
    for (const key of this.#published?.keys() ?? []) this.#queue.add(key);
  }

  /** What the previous leader said each cluster applied, until that cluster's first heartbeat of this term. */
  #seedReports(): void {
    for (const object of this.#informer.list()) {
      const policy = object as unknown as FailoverPolicy;
      const service = serviceOf(object);
      if (!service || !policy.metadata.namespace) continue;
      const key = policyKey(policy.metadata.namespace, service);
      for (const applied of policy.status?.clusters ?? []) {
        if (this.#reported.has(applied.cluster)) continue;
        let report = this.#reports.get(applied.cluster);
        if (!report) this.#reports.set(applied.cluster, (report = new Map<string, AppliedCopy>()));
        if (!report.has(key))
          report.set(key, { policyName: policy.metadata.name, generation: applied.appliedGeneration });
      }
    }
  }

  /** The bucket (created if missing) and what it holds; retried by the queue while NATS fails. */
  async #kv(): Promise<KV> {
    this.#bucket ??= (async () => {
      const kv = await openBucket(
        this.#options.nc,
        POLICIES_BUCKET,
        this.#options.buckets ?? SINGLE_SERVER_BUCKETS,
        this.#options.log,
      );
      this.#published = await this.#readBucket(kv);
      for (const key of this.#published.keys()) this.#queue.add(key);
      return kv;
    })();
    try {
      return await this.#bucket;
    } catch (err) {
      this.#bucket = undefined;
      throw err;
    }
  }

  async #readBucket(kv: KV): Promise<Map<string, string>> {
    const published = new Map<string, string>();
    for await (const entry of await kv.history()) {
      if (entry.operation !== 'PUT') {
        published.delete(entry.key);
        continue;
      }
      let content = '';
      try {
        const parsed = policyRecordSchema.safeParse(entry.json());
        if (parsed.success && policyKey(parsed.data.namespace, parsed.data.service) === entry.key)
          content = contentOf(parsed.data);
      } catch {
        // not JSON: rewritten or deleted by the next reconcile of the key
      }
      published.set(entry.key, content);
    }
    return published;
  }

  async #reread(): Promise<void> {
    try {
      const kv = await this.#kv();
      this.#published = await this.#readBucket(kv);
      this.#enqueueAll();
    } catch (err) {
      this.#log.warn(
        { err: describeError(err) },
        'could not read the failover policy bucket; retrying at the next resync',
      );
    }
  }

  async #reconcile(key: string): Promise<void> {
    const kv = await this.#kv();
    if (this.#stopped) return;
    const { namespace, service } = parsePolicyKey(key);
    const policies = this.#informer
      .list(namespace)
      .filter((object) => serviceOf(object) === service && !object.metadata?.deletionTimestamp)
      .map((object) => object as unknown as FailoverPolicy);
    const { winner, losers } = resolveServicePolicies(policies);
    const members = currentMemberIds(this.#options.memberCache.list());
    const verdict = winner && validatePolicySpec(winner.spec, members);
    const record =
      winner && verdict?.valid
        ? {
            namespace,
            service,
            policyName: winner.metadata.name,
            generation: winner.metadata.generation ?? 1,
            spec: verdict.spec,
          }
        : undefined;
    await this.#publish(kv, key, record);
    if (winner && verdict) {
      const ready: ConditionUpdate = verdict.valid
        ? {
            type: FailoverPolicyConditionType.Ready,
            status: 'True',
            reason: FailoverPolicyReason.Distributed,
            message: `published to the member clusters (${POLICIES_BUCKET} key ${key})`,
          }
        : {
            type: FailoverPolicyConditionType.Ready,
            status: 'False',
            reason: FailoverPolicyReason.InvalidPolicy,
            message: verdict.message,
          };
      await this.#writeStatus(
        winner,
        ready,
        verdict.valid ? this.#appliedClusters(key, winner.metadata.name, members) : [],
      );
    }
    for (const loser of losers) {
      const ready: ConditionUpdate = {
        type: FailoverPolicyConditionType.Ready,
        status: 'False',
        reason: FailoverPolicyReason.Conflict,
        message: `FailoverPolicy "${winner?.metadata.name ?? ''}" is older and also names service "${service}"; only the oldest policy of a service applies`,
      };
      await this.#writeStatus(loser, ready, []);
    }
  }

  async #publish(kv: KV, key: string, record: Omit<PolicyRecord, 'updatedAt'> | undefined): Promise<void> {
    if (this.#stopped) return;
    const published = this.#published ?? new Map<string, string>();
    const current = published.get(key);
    if (record === undefined) {
      if (current === undefined) return;
      await kv.delete(key);
      published.delete(key);
      this.#log.info({ key }, 'failover policy withdrawn; the service runs on the defaults');
      return;
    }
    const content = contentOf(record);
    if (content === current) return;
    const value: PolicyRecord = { ...record, updatedAt: new Date().toISOString() };
    await kv.put(key, JSON.stringify(value));
    published.set(key, content);
    this.#log.info({ key, policy: record.policyName, generation: record.generation }, 'failover policy published');
  }

  /** Current members whose agent holds a copy of this very policy, by cluster id. */
  #appliedClusters(key: string, policyName: string, members: ReadonlySet<string>): AppliedCluster[] {
    const clusters: AppliedCluster[] = [];
    for (const cluster of [...members].sort()) {
      const copy = this.#reports.get(cluster)?.get(key);
      if (copy?.policyName === policyName) clusters.push({ cluster, appliedGeneration: copy.generation });
    }
    return clusters.slice(0, MAX_POLICY_STATUS_CLUSTERS);
  }

  async #writeStatus(policy: FailoverPolicy, ready: ConditionUpdate, clusters: AppliedCluster[]): Promise<void> {
    if (this.#stopped) return; // leadership is gone: the next leader writes
    const generation = policy.metadata.generation;
    const current = policy.status;
    const { conditions, changed } = setCondition(
      current?.conditions,
      { ...ready, observedGeneration: generation },
      new Date(),
    );
    if (!changed && current?.observedGeneration === generation && sameClusters(current?.clusters, clusters)) return;
    const status: FailoverPolicyStatus = { conditions, observedGeneration: generation, clusters };
    const { name, namespace } = policy.metadata;
    try {
      await mergePatchCustomObjectStatus(
        this.#options.kc,
        { group: ISTHMUS_GROUP, version: ISTHMUS_VERSION, plural: FAILOVER_POLICY_PLURAL, namespace, name },
        status,
        { fieldManager: FIELD_MANAGER },
      );
    } catch (err) {
      if (isNotFound(err)) return; // deleted meanwhile: its service is reconciled again by the delete event
      throw err;
    }
    const before = current?.conditions?.find((c) => c.type === ready.type);
    if (before?.status !== ready.status || before.reason !== ready.reason || before.message !== ready.message) {
      this.#log[ready.status === 'True' ? 'info' : 'warn'](
        { namespace, name, generation, reason: ready.reason, message: ready.message },
        `failover policy Ready=${ready.status}`,
      );
    }
  }
}
