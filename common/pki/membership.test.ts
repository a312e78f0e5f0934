import { describe, expect, it } from 'vitest';
import { LEGACY_MEMBERSHIP_EPOCH, membershipClaimOf, membershipNames } from './membership.ts';
import { x509 } from './x509.ts';

const dn = (value: string): x509.GeneralName => new x509.GeneralName('dn', value);

describe('membership names', () => {
  it('round-trips cluster id and epoch; the legacy epoch has no name', () => {
    const names = membershipNames('cluster-a', 1_764_561_234_567).map(dn);
    expect(membershipClaimOf(names)).toEqual({ ok: true, clusterId: 'cluster-a', epoch: 1_764_561_234_567 });
    expect(membershipNames('cluster-a', LEGACY_MEMBERSHIP_EPOCH)).toEqual([]);
    expect(membershipClaimOf([new x509.GeneralName('url', 'spiffe://isthmus.test/cluster/a/agent')])).toEqual({
      ok: true,
      clusterId: undefined,
      epoch: LEGACY_MEMBERSHIP_EPOCH,
    });
  });

  it.each([
    [[dn('O=isthmus,OU=a,2.5.4.5=1'), dn('O=isthmus,OU=a,2.5.4.5=2')], 'at most one'],
    [[dn('O=elsewhere,OU=a,2.5.4.5=1')], 'not a membership name'],
    [[dn('O=isthmus,2.5.4.5=1')], 'not a membership name'],
    [[dn('O=isthmus,OU=a,2.5.4.5=01')], 'not a positive integer'],
    [[dn('O=isthmus,OU=a,2.5.4.5=99999999999999999')], 'not a positive integer'],
  ])('refuses a malformed claim (%#)', (names, problem) => {
    expect(membershipClaimOf(names)).toMatchObject({ ok: false, problem: expect.stringContaining(problem) as string });
  });
});
