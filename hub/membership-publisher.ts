// Leader-only: publishes the current members to the NATS KV bucket isthmus_members (one key per
// cluster, its locality and gateways), so gateways can refuse peers of removed clusters.
// Level-based: each pass compares the bucket with the member cache and converges.
import type { KV } from '@nats-io/kv';
import type { Logger } from '../common/logger.ts';
import { WorkQueue } from '../common/kube/index.ts';
import type { MemberCluster } from '../common/api/isthmus.ts';
import type { MemberRecord } from '../common/catalog.ts';
import { isCurrentMember, type MemberCache } from './membership.ts';

export function memberRecord(member: MemberCluster): string {
  const { clusterId, region, zone, network, gatewayAddresses, labels } = member.spec;
  const record: MemberRecord = { clusterId, region: region ?? '', zone: zone ?? '', network: network ?? '', gatewayAddresses: gatewayAddresses ?? [], labels: labels ?? {} };
  return JSON.stringify(record);
}

export class MembershipPublisher {
  readonly #queue = new WorkQueue<string>({ maxDelayMs: 10_000 });
  readonly #kv: KV;
  readonly #cache: MemberCache;
  readonly #log: Logger;
  readonly #resync: NodeJS.Timeout;
  #published: Map<string, string> | undefined;

  constructor(kv: KV, cache: MemberCache, log: Logger, resyncMs = 30_000) {
    this.#kv = kv;
    this.#cache = cache;
    this.#log = log;
    void this.#queue.run(1, () => this.#reconcile());
    this.#resync = setInterval(() => {
      this.#published = undefined;
      this.trigger();
    }, resyncMs);
    this.trigger();
  }

  trigger(): void {
    this.#queue.add('members');
  }

  async #reconcile(): Promise<void> {
    // Compared with what the bucket holds as last read or written: a heartbeat (a MemberCluster
    // status change) costs no KV reads. The periodic resync re-reads the bucket.
    const published = (this.#published ??= await this.#readBucket());
    const desired = new Map(this.#cache.list().filter(isCurrentMember).map((m) => [m.spec.clusterId, memberRecord(m)]));
    for (const [id, record] of desired) {
      if (published.get(id) === record) continue;
      await this.#kv.put(id, record);
      published.set(id, record);
    }
    for (const id of [...published.keys()]) {
      if (desired.has(id)) continue;
      await this.#kv.delete(id);
      published.delete(id);
      this.#log.info({ clusterId: id }, 'removed from published membership');
    }
  }

  async #readBucket(): Promise<Map<string, string>> {
    const published = new Map<string, string>();
    for await (const key of await this.#kv.keys()) {
      const entry = await this.#kv.get(key);
      if (entry?.operation === 'PUT') published.set(key, entry.string());
    }
    return published;
  }

  async stop(): Promise<void> {
    clearInterval(this.#resync);
    await this.#queue.shutDown({ drain: true });
  }
}
