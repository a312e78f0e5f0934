// Which cluster serves a new connection (DESIGN §6), as pure functions of the candidates' locality
// and health and the policy. Locality priority sorts clusters into levels (level 0 shares every
// key with the client's cluster, level 1 all but the last, ...); a level whose healthy share h is
// at least minHealthyPercent can carry all traffic, below it h/threshold of all traffic; each
// level, best first, takes what it can carry of the traffic still unassigned and the rest spills
// to the next (Envoy's overprovisioning and priority load). Within a level traffic splits by
// weight. regionMapping puts the mapped regions, in order, right after the client's own region.
import { DEFAULT_CLUSTER_WEIGHT, DEFAULT_LOCALITY_PRIORITY, FAILOVER_DEFAULTS } from '../common/api/isthmus.ts';

export interface Locality {
  readonly clusterId: string;
  readonly region: string;
  readonly zone: string;
  readonly network: string;
  readonly labels: Readonly<Record<string, string>>;
}

export interface Candidate {
  readonly locality: Locality;
  /** Endpoints that can take a connection now (ready, and the path to them healthy). */
  readonly healthy: number;
  /** All endpoints the cluster has for the service (ready or not); at least `healthy`. */
  readonly total: number;
}

export interface PickerPolicy {
  readonly localityPriority: readonly string[];
  readonly minHealthyPercent: number;
  /** Per-cluster weight; clusters not named weigh DEFAULT_CLUSTER_WEIGHT. */
  readonly weights: ReadonlyMap<string, number>;
  /** For clients in `from`: the regions to try next, in order. */
  readonly regionMapping: ReadonlyMap<string, readonly string[]>;
}

export const DEFAULT_PICKER_POLICY: PickerPolicy = {
  localityPriority: DEFAULT_LOCALITY_PRIORITY,
  minHealthyPercent: FAILOVER_DEFAULTS.minHealthyPercent,
  weights: new Map(),
  regionMapping: new Map(),
};

export interface LevelShare {
  readonly level: number;
  readonly clusters: readonly string[];
  /** Healthy endpoints / all endpoints of the level. */
  readonly healthyShare: number;
  /** Fraction of new connections this level takes. */
  readonly traffic: number;
}

export interface TrafficPlan {
  readonly levels: readonly LevelShare[];
  /** Fraction of new connections each cluster takes. */
  readonly clusters: ReadonlyMap<string, number>;
  /** Clusters with at least one healthy endpoint (whether or not they take traffic now). */
  readonly healthy: ReadonlySet<string>;
}

function localityValue(locality: Locality, key: string): string {
  switch (key) {
    case 'region':
      return locality.region;
    case 'zone':
      return locality.zone;
    case 'cluster':
      return locality.clusterId;
    case 'network':
      return locality.network;
    default:
      return locality.labels[key] ?? '';
  }
}

/**
 * The level of `target` seen from `client`: how many keys from the end of the priority list must
 * be dropped before every remaining key matches. With a region mapping, clusters of a mapped
 * region come right after the client's own region, one level per mapped region, in order.
 */
export function levelOf(client: Locality, target: Locality, policy: PickerPolicy): number {
  const keys = policy.localityPriority;
  let shared = 0;
  while (
    shared < keys.length &&
    localityValue(client, keys[shared] as string) === localityValue(target, keys[shared] as string)
  )
    shared++;
  const level = keys.length - shared;
  const regionIndex = keys.indexOf('region');
  const mapped = policy.regionMapping.get(client.region);
  if (mapped === undefined || regionIndex < 0) return level;
  // Levels up to "same region" keep their numbers; the mapped regions follow; then the rest.
  const sameRegionLevel = keys.length - regionIndex - 1;
  if (level <= sameRegionLevel) return level;
  const position = mapped.indexOf(target.region);
  return position >= 0
    ? sameRegionLevel + 1 + position
    : sameRegionLevel + 1 + mapped.length + (level - sameRegionLevel - 1);
}

/** How new connections split across clusters now. Clusters with no endpoints take nothing. */
export function planTraffic(
  client: Locality,
  candidates: readonly Candidate[],
  policy: PickerPolicy = DEFAULT_PICKER_POLICY,
): TrafficPlan {
  const byLevel = new Map<number, Candidate[]>();
  for (const candidate of candidates) {
    if (candidate.total <= 0) continue;
    const level = levelOf(client, candidate.locality, policy);
    byLevel.set(level, [...(byLevel.get(level) ?? []), candidate]);
  }
  const threshold = Math.max(policy.minHealthyPercent, 1) / 100;
  const ordered = [...byLevel.entries()]
    .sort(([a], [b]) => a - b)
    .map(([level, members]) => {
      const healthy = members.reduce((sum, c) => sum + Math.min(c.healthy, c.total), 0);
      const total = members.reduce((sum, c) => sum + c.total, 0);
      const healthyShare = total > 0 ? healthy / total : 0;
      // What the level can carry, as a fraction of all traffic.
      return { level, members, healthyShare, capacity: Math.min(1, healthyShare / threshold) };
    });
  // Levels that together cannot carry everything share it in proportion to what each can carry
  // (Envoy's normalized total health); with nothing healthy at all, nobody takes anything.
  const totalCapacity = Math.min(
    1,
    ordered.reduce((sum, l) => sum + l.capacity, 0),
  );
  let remaining = 1;
  const levels: LevelShare[] = [];
  const clusters = new Map<string, number>();
  for (const { level, members, healthyShare, capacity } of ordered) {
    const traffic = totalCapacity > 0 ? Math.min(remaining, capacity / totalCapacity) : 0;
    remaining -= traffic;
    levels.push({ level, clusters: members.map((c) => c.locality.clusterId), healthyShare, traffic });
    splitWithinLevel(members, traffic, policy, clusters);
  }
  const healthy = new Set(candidates.filter((c) => c.total > 0 && c.healthy > 0).map((c) => c.locality.clusterId));
  return { levels, clusters, healthy };
}

function splitWithinLevel(
  members: readonly Candidate[],
  traffic: number,
  policy: PickerPolicy,
  into: Map<string, number>,
): void {
  // Weight counts only where there is something healthy to send to.
  const weightOf = (c: Candidate): number =>
    c.healthy > 0 ? (policy.weights.get(c.locality.clusterId) ?? DEFAULT_CLUSTER_WEIGHT) : 0;
  const totalWeight = members.reduce((sum, c) => sum + weightOf(c), 0);
  for (const c of members) into.set(c.locality.clusterId, totalWeight > 0 ? (traffic * weightOf(c)) / totalWeight : 0);
}

/**
 * The clusters to try for one new connection, best first: one drawn by the plan's shares (`draw`
 * in [0, 1)), then the others that take traffic by share, then those with healthy endpoints that
 * take none, by level, and last, by level, those with nothing healthy (a dead gateway, ejected
 * backends: a last resort should everything else fail) — a failed connect moves on to the next.
 */
export function candidateOrder(plan: TrafficPlan, draw: number): string[] {
  const shares = [...plan.clusters].filter(([, share]) => share > 0);
  let cumulative = 0;
  let first: string | undefined;
  for (const [cluster, share] of shares) {
    cumulative += share;
    if (draw < cumulative) {
      first = cluster;
      break;
    }
  }
  first ??= shares.at(-1)?.[0];
  const rest = shares
    .filter(([cluster]) => cluster !== first)
    .sort(([, a], [, b]) => b - a)
    .map(([cluster]) => cluster);
  const idle = plan.levels
    .flatMap((level) => level.clusters)
    .filter((cluster) => cluster !== first && !rest.includes(cluster));
  return [
    ...(first ? [first] : []),
    ...rest,
    ...idle.filter((c) => plan.healthy.has(c)),
    ...idle.filter((c) => !plan.healthy.has(c)),
  ];
}
