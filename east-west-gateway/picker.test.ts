// The locality picker as pure functions: levels by locality priority, graded spill-over at
// minHealthyPercent, weights within a level, and the order of clusters one connection tries.
import { describe, expect, it } from 'vitest';
import {
  DEFAULT_PICKER_POLICY,
  candidateOrder,
  levelOf,
  planTraffic,
  type Candidate,
  type Locality,
  type PickerPolicy,
  type TrafficPlan,
} from './picker.ts';

function locality(clusterId: string, region: string, zone: string, labels: Record<string, string> = {}): Locality {
  return { clusterId, region, zone, network: 'net', labels };
}

function policy(overrides: Partial<PickerPolicy>): PickerPolicy {
  return { ...DEFAULT_PICKER_POLICY, ...overrides };
}

function candidate(where: Locality, healthy: number, total = 10): Candidate {
  return { locality: where, healthy, total };
}

/** Tiny seeded PRNG (mulberry32): the same draws on every run. */
function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function shareOf(plan: TrafficPlan, cluster: string): number {
  return plan.clusters.get(cluster) ?? Number.NaN;
}

// The client runs in cluster "home", region eu, zone eu-1.
const home = locality('home', 'eu', 'eu-1');
const sameZone = locality('zone-mate', 'eu', 'eu-1');
const sameRegion = locality('region-mate', 'eu', 'eu-2');
const farAway = locality('far', 'us', 'us-1');

describe('levelOf', () => {
  it('sorts by region, zone, cluster by default: own 0, same zone 1, same region 2, other region 3', () => {
    expect(levelOf(home, home, DEFAULT_PICKER_POLICY)).toBe(0);
    expect(levelOf(home, sameZone, DEFAULT_PICKER_POLICY)).toBe(1);
    expect(levelOf(home, sameRegion, DEFAULT_PICKER_POLICY)).toBe(2);
    expect(levelOf(home, farAway, DEFAULT_PICKER_POLICY)).toBe(3);
  });

  it('matches keys as a prefix: a zone of the same name in another region is still another region', () => {
    expect(levelOf(home, locality('twin', 'us', 'eu-1'), DEFAULT_PICKER_POLICY)).toBe(3);
  });

  it('reads keys that are not region, zone, cluster or network from the labels', () => {
    const byTier = policy({ localityPriority: ['tier', 'cluster'] });
    const client = locality('home', 'eu', 'eu-1', { tier: 'gold' });
    expect(levelOf(client, client, byTier)).toBe(0);
    // Same tier in another region: region is not in this priority list.
    expect(levelOf(client, locality('gold-us', 'us', 'us-1', { tier: 'gold' }), byTier)).toBe(1);
    expect(levelOf(client, locality('silver-eu', 'eu', 'eu-1', { tier: 'silver' }), byTier)).toBe(2);
    expect(levelOf(client, locality('unlabelled', 'eu', 'eu-1'), byTier)).toBe(2);
  });

  it('puts mapped regions, in order, right after the client region, and every other region after them', () => {
    const mapped = policy({ regionMapping: new Map([['eu', ['ap', 'us']]]) });
    expect(levelOf(home, home, mapped)).toBe(0);
    expect(levelOf(home, sameZone, mapped)).toBe(1);
    expect(levelOf(home, sameRegion, mapped)).toBe(2);
    expect(levelOf(home, locality('ap', 'ap', 'ap-1'), mapped)).toBe(3);
    expect(levelOf(home, locality('us', 'us', 'us-1'), mapped)).toBe(4);
    expect(levelOf(home, locality('sa', 'sa', 'sa-1'), mapped)).toBe(5);
    // The mapping is for clients in eu only.
    const usClient = locality('us-client', 'us', 'us-1');
    expect(levelOf(usClient, locality('ap', 'ap', 'ap-1'), mapped)).toBe(3);
    expect(levelOf(usClient, home, mapped)).toBe(3);
  });
});

describe('planTraffic', () => {
  it('gives everything to the own cluster when everything is healthy', () => {
    const plan = planTraffic(home, [
      candidate(farAway, 10),
      candidate(sameRegion, 10),
      candidate(sameZone, 10),
      candidate(home, 10),
    ]);
    expect(shareOf(plan, 'home')).toBe(1);
    expect(shareOf(plan, 'zone-mate')).toBe(0);
    expect(shareOf(plan, 'region-mate')).toBe(0);
    expect(shareOf(plan, 'far')).toBe(0);
    expect(plan.levels.map((l) => [l.level, l.traffic])).toEqual([
      [0, 1],
      [1, 0],
      [2, 0],
      [3, 0],
    ]);
  });

  it('spills over gradually: 4 of 10 healthy at threshold 70 keeps 4/7 and the next level takes the rest', () => {
    const plan = planTraffic(home, [candidate(home, 4), candidate(sameZone, 10), candidate(farAway, 10)]);
    expect(shareOf(plan, 'home')).toBeCloseTo(4 / 7, 10);
    expect(shareOf(plan, 'zone-mate')).toBeCloseTo(3 / 7, 10);
    expect(shareOf(plan, 'far')).toBe(0);
    expect(plan.levels[0]).toMatchObject({ level: 0, clusters: ['home'], healthyShare: 0.4 });
  });

  it('keeps all traffic in a level whose healthy share is at the threshold', () => {
    const plan = planTraffic(home, [candidate(home, 7), candidate(sameZone, 10)]);
    expect(shareOf(plan, 'home')).toBe(1);
    expect(shareOf(plan, 'zone-mate')).toBe(0);
  });

  it('honours a policy threshold', () => {
    const plan = planTraffic(home, [candidate(home, 4), candidate(sameZone, 10)], policy({ minHealthyPercent: 50 }));
    expect(shareOf(plan, 'home')).toBeCloseTo(0.8, 10);
    expect(shareOf(plan, 'zone-mate')).toBeCloseTo(0.2, 10);
  });

  // Rows of Envoy's priority-load tables (overprovisioning 1.4 = threshold 1/1.4, about 71.4 %).
  it.each([
    { healthy: [25, 100, 100], traffic: [0.35, 0.65, 0] },
    { healthy: [25, 25, 100], traffic: [0.35, 0.35, 0.3] },
    { healthy: [50, 50, 100], traffic: [0.7, 0.3, 0] },
    // Together under 100 %: scaled up in proportion, {20, 30} -> {40 %, 60 %}.
    { healthy: [100 / 7, 150 / 7], traffic: [0.4, 0.6] },
  ])('shares traffic across levels as Envoy does: $healthy % healthy -> $traffic', ({ healthy, traffic }) => {
    const envoy = policy({ minHealthyPercent: 100 / 1.4 });
    const places = [home, sameZone, farAway];
    const plan = planTraffic(
      home,
      healthy.map((h, i) => candidate(places[i] as Locality, h, 100)),
      envoy,
    );
    expect(plan.levels.map((l) => l.traffic)).toHaveLength(traffic.length);
    for (const [i, expected] of traffic.entries()) expect(plan.levels[i]?.traffic).toBeCloseTo(expected, 10);
  });

  it('scales up what degraded levels can carry when together they cannot carry everything', () => {
    // 14 of 100 healthy at 70 % carries 20 %, 7 of 100 carries 10 %: 2/3 and 1/3 of all traffic.
    const plan = planTraffic(home, [candidate(home, 14, 100), candidate(farAway, 7, 100)]);
    expect(shareOf(plan, 'home')).toBeCloseTo(2 / 3, 10);
    expect(shareOf(plan, 'far')).toBeCloseTo(1 / 3, 10);
  });

  it('splits within a level by weight, 90/10', () => {
    const weighted = policy({
      weights: new Map([
        ['zone-mate', 90],
        ['zone-mate-2', 10],
      ]),
    });
    const plan = planTraffic(
      home,
      [candidate(sameZone, 10), candidate(locality('zone-mate-2', 'eu', 'eu-1'), 10)],
      weighted,
    );
    expect(shareOf(plan, 'zone-mate')).toBeCloseTo(0.9, 10);
    expect(shareOf(plan, 'zone-mate-2')).toBeCloseTo(0.1, 10);
  });

  it('splits a level equally by default', () => {
    const plan = planTraffic(home, [candidate(sameZone, 10), candidate(locality('zone-mate-2', 'eu', 'eu-1'), 10)]);
    expect(shareOf(plan, 'zone-mate')).toBeCloseTo(0.5, 10);
    expect(shareOf(plan, 'zone-mate-2')).toBeCloseTo(0.5, 10);
  });

  it('gives no weight to a cluster with nothing healthy', () => {
    const mate2 = locality('zone-mate-2', 'eu', 'eu-1');
    const plan = planTraffic(home, [candidate(sameZone, 0), candidate(mate2, 10)]);
    expect(shareOf(plan, 'zone-mate')).toBe(0);
    // The level is half healthy (10 of 20 < 70 %); with nothing else, it takes everything.
    expect(shareOf(plan, 'zone-mate-2')).toBeCloseTo(1, 10);
  });

  it('gives nothing to anyone when nothing is healthy anywhere', () => {
    const plan = planTraffic(home, [candidate(home, 0), candidate(sameZone, 0), candidate(farAway, 0)]);
    expect([...plan.clusters.values()]).toEqual([0, 0, 0]);
    expect(plan.levels.map((l) => l.traffic)).toEqual([0, 0, 0]);
  });

  it('leaves out clusters with no endpoints at all', () => {
    const plan = planTraffic(home, [candidate(home, 0, 0), candidate(sameZone, 10)]);
    expect(plan.clusters.has('home')).toBe(false);
    expect(shareOf(plan, 'zone-mate')).toBe(1);
  });

  it('fails over to mapped regions in their order', () => {
    const ap = locality('ap', 'ap', 'ap-1');
    const us = locality('us', 'us', 'us-1');
    const candidates = [candidate(home, 0), candidate(us, 10), candidate(ap, 10)];
    const unmapped = planTraffic(home, candidates);
    expect(shareOf(unmapped, 'us')).toBeCloseTo(0.5, 10);
    expect(shareOf(unmapped, 'ap')).toBeCloseTo(0.5, 10);
    const apFirst = planTraffic(home, candidates, policy({ regionMapping: new Map([['eu', ['ap', 'us']]]) }));
    expect(shareOf(apFirst, 'ap')).toBe(1);
    expect(shareOf(apFirst, 'us')).toBe(0);
    const usFirst = planTraffic(home, candidates, policy({ regionMapping: new Map([['eu', ['us', 'ap']]]) }));
    expect(shareOf(usFirst, 'us')).toBe(1);
    expect(shareOf(usFirst, 'ap')).toBe(0);
  });
});

describe('candidateOrder', () => {
  // home 4/10 healthy: home 4/7, zone-mate 3/7; region-mate and far take nothing.
  const degraded = (): TrafficPlan =>
    planTraffic(home, [candidate(farAway, 10), candidate(sameRegion, 0), candidate(sameZone, 10), candidate(home, 4)]);

  it('starts with the cluster the draw lands on, then the others by share, then idle healthy ones, and the unhealthy last', () => {
    // region-mate has nothing healthy (a dead gateway, say): tried after far, which could serve.
    expect(candidateOrder(degraded(), 0)).toEqual(['home', 'zone-mate', 'far', 'region-mate']);
    expect(candidateOrder(degraded(), 0.95)).toEqual(['zone-mate', 'home', 'far', 'region-mate']);
  });

  it('splits at the cumulative share', () => {
    expect(candidateOrder(degraded(), 4 / 7 - 1e-9)[0]).toBe('home');
    expect(candidateOrder(degraded(), 4 / 7 + 1e-9)[0]).toBe('zone-mate');
  });

  it('still lists every cluster, by level, when none takes any traffic', () => {
    const plan = planTraffic(home, [candidate(farAway, 0), candidate(sameZone, 0), candidate(home, 0)]);
    expect(candidateOrder(plan, 0)).toEqual(['home', 'zone-mate', 'far']);
    expect(candidateOrder(plan, 0.95)).toEqual(['home', 'zone-mate', 'far']);
  });

  it('draws the first cluster in proportion to the plan (2,000 seeded draws, within ±5 %)', () => {
    const mate2 = locality('zone-mate-2', 'eu', 'eu-1');
    // home 4/7; the rest 3/7 split 2:1 by weight in the zone-mates' level.
    const plan = planTraffic(
      home,
      [candidate(home, 4), candidate(sameZone, 10), candidate(mate2, 10)],
      policy({ weights: new Map([['zone-mate', 200]]) }),
    );
    const random = mulberry32(20_240_601);
    const draws = 2000;
    const firsts = new Map<string, number>();
    for (let i = 0; i < draws; i++) {
      const [first] = candidateOrder(plan, random());
      firsts.set(first as string, (firsts.get(first as string) ?? 0) + 1);
    }
    const expected = { home: 4 / 7, 'zone-mate': 2 / 7, 'zone-mate-2': 1 / 7 };
    for (const [cluster, share] of Object.entries(expected)) {
      expect(shareOf(plan, cluster)).toBeCloseTo(share, 10);
      expect(Math.abs((firsts.get(cluster) ?? 0) / draws - share)).toBeLessThan(0.05);
    }
  });
});
