import { describe, expect, it } from 'vitest';
import type { MemberCluster } from '../common/api/isthmus.ts';
import { currentMemberIds, isCurrentMember } from './membership.ts';

function member(clusterId: string, options: { accepted?: boolean; joined?: 'True' | 'False'; deleting?: boolean } = {}): MemberCluster {
  return {
    apiVersion: 'isthmus.dev/v1alpha1',
    kind: 'MemberCluster',
    metadata: { name: clusterId, ...(options.deleting ? { deletionTimestamp: '2026-01-01T00:00:00Z' } : {}) },
    spec: { clusterId, accepted: options.accepted ?? true },
    status: {
      conditions: [{ type: 'Joined', status: options.joined ?? 'True', reason: 'Joined', message: '', lastTransitionTime: '2026-01-01T00:00:00Z' }],
    },
  };
}

describe('membership', () => {
  it('a member is accepted, joined and not being deleted', () => {
    expect(isCurrentMember(member('a'))).toBe(true);
    expect(isCurrentMember(undefined)).toBe(false);
    expect(isCurrentMember(member('a', { accepted: false }))).toBe(false);
    // A pending join (accepted by autoAccept, certificates not issued yet) is no member.
    expect(isCurrentMember(member('a', { joined: 'False' }))).toBe(false);
    expect(isCurrentMember(member('a', { deleting: true }))).toBe(false);
  });

  it('lists the ids of current members only', () => {
    const ids = currentMemberIds([member('a'), member('b', { accepted: false }), member('c', { joined: 'False' }), member('d', { deleting: true }), member('e')]);
    expect([...ids].sort()).toEqual(['a', 'e']);
  });
});
