import { describe, expect, it } from 'vitest';
import type { MemberCluster } from '../common/api/isthmus.ts';
import { LEGACY_MEMBERSHIP_EPOCH, newMembershipEpoch } from '../common/pki/index.ts';
import { memberRecord } from './membership-publisher.ts';
import {
  CachedMembership,
  currentMemberIds,
  currentMembership,
  isCurrentMember,
  membershipEpochOf,
  type MemberCache,
} from './membership.ts';

function member(
  clusterId: string,
  options: { accepted?: boolean; joined?: 'True' | 'False'; deleting?: boolean; epoch?: number } = {},
): MemberCluster {
  return {
    apiVersion: 'isthmus.dev/v1alpha1',
    kind: 'MemberCluster',
    metadata: { name: clusterId, ...(options.deleting ? { deletionTimestamp: '2026-01-01T00:00:00Z' } : {}) },
    spec: {
      clusterId,
      accepted: options.accepted ?? true,
      ...(options.epoch === undefined ? {} : { membershipEpoch: options.epoch }),
    },
    status: {
      conditions: [
        {
          type: 'Joined',
          status: options.joined ?? 'True',
          reason: 'Joined',
          message: '',
          lastTransitionTime: '2026-01-01T00:00:00Z',
        },
      ],
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
    const ids = currentMemberIds([
      member('a'),
      member('b', { accepted: false }),
      member('c', { joined: 'False' }),
      member('d', { deleting: true }),
      member('e'),
    ]);
    expect([...ids].sort()).toEqual(['a', 'e']);
  });

  it('maps each current member to the epoch of its membership; objects from before epochs have the legacy one', () => {
    const membership = currentMembership([
      member('a', { epoch: 5 }),
      member('b'),
      member('c', { epoch: 9, accepted: false }),
    ]);
    expect([...membership]).toEqual([
      ['a', 5],
      ['b', LEGACY_MEMBERSHIP_EPOCH],
    ]);
    expect(membershipEpochOf(member('d', { epoch: 12 }))).toBe(12);
  });

  it('the cached view answers as currentMembership does, and follows the cache', () => {
    const objects = new Map<string, MemberCluster>();
    for (const m of [
      member('a', { epoch: 5 }),
      member('b'),
      member('c', { epoch: 9, accepted: false }),
      member('d', { deleting: true }),
      member('e', { joined: 'False' }),
    ])
      objects.set(m.metadata.name, m);
    const cache: MemberCache = { get: (id) => objects.get(id), list: () => [...objects.values()] };
    const view = new CachedMembership(cache);
    const expected = currentMembership(cache.list());
    expect([...view]).toEqual([...expected]);
    expect(view.size).toBe(expected.size);
    for (const id of ['a', 'b', 'c', 'd', 'e', 'unknown']) {
      expect(view.get(id)).toBe(expected.get(id));
      expect(view.has(id)).toBe(expected.has(id));
    }
    objects.set('c', member('c', { epoch: 9 }));
    objects.delete('a');
    expect(view.get('c')).toBe(9);
    expect(view.get('a')).toBeUndefined();
    expect([...view.keys()]).toEqual(['b', 'c']);
  });

  it('gives a later join a later epoch, never the legacy one', () => {
    const first = newMembershipEpoch(new Date('2026-01-01T00:00:00.000Z'));
    expect(newMembershipEpoch(new Date('2026-01-01T00:00:00.001Z'))).toBeGreaterThan(first);
    expect(newMembershipEpoch(new Date(0))).toBeGreaterThan(LEGACY_MEMBERSHIP_EPOCH);
  });

  it('publishes the epoch with each member', () => {
    expect(JSON.parse(memberRecord(member('a', { epoch: 7 }), 60_000))).toMatchObject({ clusterId: 'a', epoch: 7 });
    expect(JSON.parse(memberRecord(member('b'), 60_000))).toMatchObject({
      clusterId: 'b',
      epoch: LEGACY_MEMBERSHIP_EPOCH,
    });
  });
});
