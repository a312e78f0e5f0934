// The hub's FailoverPolicy checks beyond the CRD schema: members in weights, loops in the region
// mapping, defaults filled in, and which of several policies of a service applies.
import { describe, expect, it } from 'vitest';
import { FAILOVER_DEFAULTS, failoverPolicySpecSchema, type FailoverPolicy } from '../../common/api/isthmus.ts';
import { fieldPath, findRegionLoop, resolveServicePolicies, validatePolicySpec } from './validation.ts';

const members = new Set(['a', 'b', 'c']);

function policy(name: string, creationTimestamp: string): FailoverPolicy {
  return {
    apiVersion: 'isthmus.dev/v1alpha1',
    kind: 'FailoverPolicy',
    metadata: { name, namespace: 'shop', creationTimestamp },
    spec: failoverPolicySpecSchema.parse({ service: 'cart' }),
  };
}

describe('fieldPath', () => {
  it('prints paths as Kubernetes does', () => {
    expect(fieldPath(['spec', 'weights', 1, 'cluster'])).toBe('spec.weights[1].cluster');
    expect(fieldPath(['spec', 'regionMapping'])).toBe('spec.regionMapping');
    expect(fieldPath([])).toBe('');
  });
});

describe('findRegionLoop', () => {
  it('finds no loop in a chain or a tree', () => {
    expect(findRegionLoop([])).toBeUndefined();
    expect(
      findRegionLoop([
        { from: 'r1', to: ['r2'] },
        { from: 'r2', to: ['r3'] },
      ]),
    ).toBeUndefined();
    expect(
      findRegionLoop([
        { from: 'r1', to: ['r2', 'r3'] },
        { from: 'r2', to: ['r3'] },
        { from: 'r4', to: ['r3', 'r1'] },
      ]),
    ).toBeUndefined();
  });

  it('finds a two-region loop', () => {
    expect(
      findRegionLoop([
        { from: 'r1', to: ['r2'] },
        { from: 'r2', to: ['r1'] },
      ]),
    ).toEqual(['r1', 'r2', 'r1']);
  });

  it('finds a longer loop reached through a later entry of a to list, named from where it closes', () => {
    const mappings = [
      { from: 'eu', to: ['us', 'ap'] },
      { from: 'ap', to: ['sa'] },
      { from: 'sa', to: ['af'] },
      { from: 'af', to: ['ap'] },
    ];
    expect(findRegionLoop(mappings)).toEqual(['ap', 'sa', 'af', 'ap']);
  });

  it('finds the loop of a later mapping after earlier ones were explored without one', () => {
    expect(
      findRegionLoop([
        { from: 'x', to: ['y'] },
        { from: 'p', to: ['q'] },
        { from: 'q', to: ['p'] },
      ]),
    ).toEqual(['p', 'q', 'p']);
  });

  it('does not take a diamond (two paths to one region) for a loop', () => {
    expect(
      findRegionLoop([
        { from: 'a', to: ['b', 'c'] },
        { from: 'b', to: ['d'] },
        { from: 'c', to: ['d'] },
      ]),
    ).toBeUndefined();
  });
});

describe('validatePolicySpec', () => {
  it('fills in every default of a minimal policy', () => {
    const verdict = validatePolicySpec({ service: 'cart' }, members);
    expect(verdict).toEqual({
      valid: true,
      spec: {
        service: 'cart',
        outlierDetection: {
          consecutiveFailures: FAILOVER_DEFAULTS.consecutiveFailures,
          interval: FAILOVER_DEFAULTS.interval,
          baseEjectionTime: FAILOVER_DEFAULTS.baseEjectionTime,
          maxEjectionPercent: FAILOVER_DEFAULTS.maxEjectionPercent,
        },
        minHealthyPercent: FAILOVER_DEFAULTS.minHealthyPercent,
        failback: { enabled: FAILOVER_DEFAULTS.failbackEnabled, delay: FAILOVER_DEFAULTS.failbackDelay },
      },
    });
  });

  it('accepts weights for members and a mapping without loops', () => {
    const verdict = validatePolicySpec(
      {
        service: 'cart',
        weights: [
          { cluster: 'a', weight: 90 },
          { cluster: 'c', weight: 10 },
        ],
        regionMapping: [{ from: 'r1', to: ['r2'] }],
      },
      members,
    );
    expect(verdict.valid).toBe(true);
  });

  it('names each weight whose cluster is not a member', () => {
    const verdict = validatePolicySpec(
      {
        service: 'cart',
        weights: [
          { cluster: 'a', weight: 1 },
          { cluster: 'zz', weight: 2 },
          { cluster: 'yy', weight: 3 },
        ],
      },
      members,
    );
    expect(verdict).toEqual({
      valid: false,
      message:
        'spec.weights[1].cluster: cluster "zz" is not a member; spec.weights[2].cluster: cluster "yy" is not a member',
    });
  });

  it('refuses a looping region mapping, naming spec.regionMapping and the loop', () => {
    const verdict = validatePolicySpec(
      {
        service: 'cart',
        regionMapping: [
          { from: 'r1', to: ['r2'] },
          { from: 'r2', to: ['r1'] },
        ],
      },
      members,
    );
    expect(verdict).toEqual({
      valid: false,
      message: 'spec.regionMapping: regions fail over in a loop (r1 → r2 → r1)',
    });
  });

  it('reports both problems at once', () => {
    const verdict = validatePolicySpec(
      {
        service: 'cart',
        weights: [{ cluster: 'zz', weight: 1 }],
        regionMapping: [
          { from: 'r1', to: ['r2'] },
          { from: 'r2', to: ['r1'] },
        ],
      },
      members,
    );
    expect(verdict.valid).toBe(false);
    expect(!verdict.valid && verdict.message).toMatch(/^spec\.weights\[0\]\.cluster: .*; spec\.regionMapping: /);
  });

  it('refuses what the schema refuses (an object the CRD did not validate), naming the field', () => {
    const verdict = validatePolicySpec({ service: 'cart', minHealthyPercent: 101 }, members);
    expect(verdict.valid).toBe(false);
    expect(!verdict.valid && verdict.message).toMatch(/^spec\.minHealthyPercent: /);
    expect(validatePolicySpec(undefined, members).valid).toBe(false);
  });
});

describe('resolveServicePolicies', () => {
  it('lets the oldest policy apply, then the smaller name within the same second', () => {
    const a = policy('a', '2025-01-01T00:00:05Z');
    const b = policy('b', '2025-01-01T00:00:01Z');
    const c = policy('c', '2025-01-01T00:00:01Z');
    expect(resolveServicePolicies([a, c, b])).toEqual({ winner: b, losers: [c, a] });
    expect(resolveServicePolicies([])).toEqual({ winner: undefined, losers: [] });
  });
});
