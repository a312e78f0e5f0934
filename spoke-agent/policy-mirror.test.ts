// The copy of a hub FailoverPolicy the agent writes into its cluster: the hub's spec with defaults,
// fields the spec leaves out set to null (so an update removes them), the agent's label, the hub generation.
import { describe, expect, it } from 'vitest';
import { failoverPolicySpecSchema } from '../common/api/isthmus.ts';
import { policyRecordSchema, type PolicyRecord } from '../common/failover-policy.ts';
import { desiredCopy } from './policy-mirror.ts';

function record(spec: Record<string, unknown>, generation = 4): PolicyRecord {
  return policyRecordSchema.parse({
    namespace: 'shop',
    service: 'cart',
    policyName: 'cart-policy',
    generation,
    spec: failoverPolicySpecSchema.parse(spec),
    updatedAt: '2025-06-01T12:00:00.123Z',
  });
}

describe('desiredCopy', () => {
  it("copies the spec under the policy name, labelled as the agent's, with the hub generation", () => {
    const copy = desiredCopy(record({ service: 'cart', weights: [{ cluster: 'a', weight: 5 }] }));
    expect(copy).toMatchObject({
      apiVersion: 'isthmus.dev/v1alpha1',
      kind: 'FailoverPolicy',
      metadata: {
        name: 'cart-policy',
        namespace: 'shop',
        labels: { 'app.kubernetes.io/managed-by': 'isthmus-agent', 'isthmus.dev/service': 'cart' },
        annotations: { 'isthmus.dev/hub-generation': '4', 'isthmus.dev/policy-updated-at': '2025-06-01T12:00:00.123Z' },
      },
      spec: {
        service: 'cart',
        weights: [{ cluster: 'a', weight: 5 }],
        localityPriority: null,
        regionMapping: null,
        minHealthyPercent: 70,
      },
    });
  });

  it('changes its intent hash with the content and only then', () => {
    const hash = (r: PolicyRecord): string | null | undefined =>
      desiredCopy(r).metadata.annotations['isthmus.dev/intent-hash'];
    expect(hash(record({ service: 'cart' }))).toBe(hash(record({ service: 'cart' })));
    expect(hash(record({ service: 'cart' }))).not.toBe(hash(record({ service: 'cart' }, 5)));
    expect(hash(record({ service: 'cart' }))).not.toBe(hash(record({ service: 'cart', minHealthyPercent: 10 })));
  });
});
