// Leader-only: publishes the current members to the NATS KV bucket isthmus_members (one key per
// cluster, its locality and gateways), so gateways can refuse peers of removed clusters.
// Level-based: each pass compares the bucket with the member cache and converges.
import type { KV } from '@nats-io/kv';
import type { Logger } from '../common/logger.ts';
import { WorkQueue } from '../common/kube/index.ts';
import type { MemberCluster } from '../common/api/isthmus.ts';
import { isCurrentMember, type MemberCache } from './membership.ts';


export function memberRecord(member: MemberCluster): string {
  const { clusterId, region, zone, network, gatewayAddresses, labels } = member.spec;
  return JSON.stringify({ clusterId, region: region ?? '', zone: zone ?? '', network: network ?? '', gatewayAddresses: gatewayAddresses ?? [], labels: labels ?? {} });
}

export class MembershipPublisher {
  readonly #queue = new WorkQueue<string>({ maxDelayMs: 10_000 });
  readonly #kv: KV;
  readonly #cache: MemberCache;
  readonly #log: Logger;
  readonly #resync: NodeJS.Timeout;

  constructor(kv: KV, cache: MemberCache, log: Logger, resyncMs = 30_000) {
    this.#kv = kv;
    this.#cache = cache;
    this.#log = log;
    void this.#queue.run(1, () => this.#reconcile());
    this.#resync = setInterval(() => this.trigger(), resyncMs);
    this.trigger();
  }

  trigger(): void {
    this.#queue.add('members');
  }

  async #reconcile(): Promise<void> {
    const desired = new Map(this.#cache.list().filter(isCurrentMember).map((m) => [m.spec.clusterId, memberRecord(m)]));
    const present = new Set<string>();
    for await (const key of await this.#kv.keys()) present.add(key);
    for (const [id, record] of desired) {
      const current = present.has(id) ? await this.#kv.get(id) : null;
      if (current?.string() !== record) await this.#kv.put(id, record);
    }
    for (const id of present) {
      if (!desired.has(id)) {
        await this.#kv.delete(id);
        this.#log.info({ clusterId: id }, 'removed from published membership');
      }
    }
  }

  async stop(): Promise<void> {
    clearInterval(this.#resync);
    await this.#queue.shutDown({ drain: true });
  }
}
