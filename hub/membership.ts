// Who is a member right now, as the hub's MemberCluster cache says: accepted and joined, with the
// epoch of its membership (DESIGN §3). Every mTLS call and every published membership list
// derives from this one definition.
import { isConditionTrue } from '../common/api/conditions.ts';
import type { MemberCluster } from '../common/api/isthmus.ts';
import { LEGACY_MEMBERSHIP_EPOCH, type Membership } from '../common/pki/index.ts';

export function isCurrentMember(member: MemberCluster | undefined): member is MemberCluster {
  return (
    member !== undefined &&
    member.spec.accepted === true &&
    member.metadata.deletionTimestamp === undefined &&
    isConditionTrue(member.status?.conditions, 'Joined')
  );
}

export function currentMemberIds(members: readonly MemberCluster[]): Set<string> {
  return new Set(members.filter(isCurrentMember).map((m) => m.spec.clusterId));
}

/** The epoch of this MemberCluster's membership; objects from before epochs have the legacy one. */
export function membershipEpochOf(member: MemberCluster): number {
  return member.spec.membershipEpoch ?? LEGACY_MEMBERSHIP_EPOCH;
}

/** Current members with their epochs: what every verifier on the hub checks certificates against. */
export function currentMembership(members: readonly MemberCluster[]): Membership {
  return new Map(members.filter(isCurrentMember).map((m) => [m.spec.clusterId, membershipEpochOf(m)]));
}

/** The hub's watched view of MemberClusters (an informer cache in the running hub). */
export interface MemberCache {
  get(clusterId: string): MemberCluster | undefined;
  list(): readonly MemberCluster[];
}

/**
 * currentMembership as a live view on the cache (MemberClusters are named by their cluster id):
 * checking one caller looks up one MemberCluster, where building the membership for every call
 * went over every member (a burst of reports from 500 clusters spent ~5% of the hub's CPU there).
 */
export class CachedMembership implements Membership {
  readonly #cache: MemberCache;

  constructor(cache: MemberCache) {
    this.#cache = cache;
  }

  get(clusterId: string): number | undefined {
    const member = this.#cache.get(clusterId);
    return isCurrentMember(member) && member.spec.clusterId === clusterId ? membershipEpochOf(member) : undefined;
  }

  has(clusterId: string): boolean {
    return this.get(clusterId) !== undefined;
  }

  get size(): number {
    return this.#all().size;
  }

  forEach(
    callback: (epoch: number, clusterId: string, map: ReadonlyMap<string, number>) => void,
    thisArg?: unknown,
  ): void {
    for (const [clusterId, epoch] of this.#all()) callback.call(thisArg, epoch, clusterId, this);
  }

  entries(): MapIterator<[string, number]> {
    return this.#all().entries();
  }

  keys(): MapIterator<string> {
    return this.#all().keys();
  }

  values(): MapIterator<number> {
    return this.#all().values();
  }

  [Symbol.iterator](): MapIterator<[string, number]> {
    return this.#all()[Symbol.iterator]();
  }

  #all(): Membership {
    return currentMembership(this.#cache.list());
  }
}
