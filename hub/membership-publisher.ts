// Leader-only: publishes the current members to the NATS KV bucket isthmus_members (one key per
// cluster: its membership epoch, locality and gateways), so gateways can refuse peers of removed
// clusters and certificates of an earlier membership of a re-joined cluster id, and
// flags a member whose Available condition has been Unknown longer than the staleness bound, so
// importers mark its endpoints not ready. Level-based: each pass compares the bucket with the
// member cache and converges; a pass is due again when the next member would turn stale.
import type { KV } from '@nats-io/kv';
import { whenAborted, type Runnable } from '../common/lifecycle.ts';
import type { Logger } from '../common/logger.ts';
import { WorkQueue } from '../common/kube/index.ts';
import type { MemberCluster } from '../common/api/isthmus.ts';
import type { MemberRecord } from '../common/catalog.ts';
import { findCondition } from '../common/api/conditions.ts';
import { isCurrentMember, membershipEpochOf, type MemberCache } from './membership.ts';

/** When the member's endpoints turn stale (Available Unknown since + the bound); undefined while it is Available. */
export function staleAt(member: MemberCluster, staleAfterMs: number): number | undefined {
  const available = findCondition(member.status?.conditions, 'Available');
  if (available?.status !== 'Unknown') return undefined;
  return Date.parse(available.lastTransitionTime) + staleAfterMs;
}

export function memberRecord(member: MemberCluster, staleAfterMs: number, now = Date.now()): string {
  const { clusterId, region, zone, network, gatewayAddresses, labels } = member.spec;
  const stale = staleAt(member, staleAfterMs);
  const record: MemberRecord = {
    clusterId,
    epoch: membershipEpochOf(member),
    region: region ?? '',
    zone: zone ?? '',
    network: network ?? '',
    gatewayAddresses: gatewayAddresses ?? [],
    labels: labels ?? {},
    endpointsStale: stale !== undefined && stale <= now,
  };
  return JSON.stringify(record);
}

export class MembershipPublisher implements Runnable {
  readonly #queue = new WorkQueue<string>({ maxDelayMs: 10_000 });
  readonly #kv: KV;
  readonly #cache: MemberCache;
  readonly #log: Logger;
  readonly #resyncMs: number;
  readonly #staleAfterMs: number;
  #staleTimer: NodeJS.Timeout | undefined;
  #published: Map<string, string> | undefined;

  constructor(kv: KV, cache: MemberCache, log: Logger, options: { staleAfterMs: number; resyncMs?: number }) {
    this.#kv = kv;
    this.#cache = cache;
    this.#log = log;
    this.#staleAfterMs = options.staleAfterMs;
    this.#resyncMs = options.resyncMs ?? 30_000;
  }

  /** Publishes until `signal` aborts (the term ends), then finishes what is queued. */
  async run(signal: AbortSignal): Promise<void> {
    const working = this.#queue.run(1, () => this.#reconcile());
    const resync = setInterval(() => {
      this.#published = undefined;
      this.trigger();
    }, this.#resyncMs);
    this.trigger();
    await whenAborted(signal);
    clearInterval(resync);
    await this.#queue.shutDown({ drain: true });
    await working;
    clearTimeout(this.#staleTimer);
  }

  trigger(): void {
    this.#queue.add('members');
  }

  async #reconcile(): Promise<void> {
    // Compared with what the bucket holds as last read or written: a heartbeat (a MemberCluster
    // status change) costs no KV reads. The periodic resync re-reads the bucket.
    const published = (this.#published ??= await this.#readBucket());
    const now = Date.now();
    const members = this.#cache.list().filter(isCurrentMember);
    const desired = new Map(members.map((m) => [m.spec.clusterId, memberRecord(m, this.#staleAfterMs, now)]));
    this.#scheduleStaleness(members, now);
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

  /** A member turns stale by the clock alone: look again when the next one does. */
  #scheduleStaleness(members: readonly MemberCluster[], now: number): void {
    clearTimeout(this.#staleTimer);
    const next = Math.min(...members.map((m) => staleAt(m, this.#staleAfterMs) ?? Infinity).filter((at) => at > now));
    if (Number.isFinite(next)) this.#staleTimer = setTimeout(() => this.trigger(), next - now + 10);
  }

  async #readBucket(): Promise<Map<string, string>> {
    const published = new Map<string, string>();
    for await (const key of await this.#kv.keys()) {
      const entry = await this.#kv.get(key);
      if (entry?.operation === 'PUT') published.set(key, entry.string());
    }
    return published;
  }
}
