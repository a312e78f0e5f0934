// The membership epoch (DESIGN §3): which accepted join of a cluster id a certificate belongs to.
// The hub picks a new epoch for every MemberCluster it creates, so removing a cluster id and
// joining it again yields a new epoch, and every certificate of the earlier membership — however
// long its validity — is refused by the hub and by every verifier from then on.
//
// Encoding: the cluster intermediate and the root-issued agent certificate carry one
// directoryName SAN, `O=isthmus,OU=<cluster id>,serialNumber=<epoch>` (serialNumber, 2.5.4.5, a
// decimal integer). Not the subject: NATS maps agents to users by subject, and not a private
// extension: Go (nats-server) refuses to parse a certificate whose extension OID has an arc
// above 2^31, which rules out the registration-free 2.25.<UUID> arc. A SPIFFE X.509-SVID may
// carry SANs of other types beside its one URI SAN. Leaves signed by an intermediate carry no
// epoch of their own: theirs is their intermediate's.
import { z } from 'zod';
import { x509 } from './x509.ts';

/** Cluster id → epoch of its current membership, as the hub distributes it. */
export type Membership = ReadonlyMap<string, number>;

/** Members and certificates from before epochs existed: they match each other, and nothing newer. */
export const LEGACY_MEMBERSHIP_EPOCH = 0;

export const membershipEpochSchema = z.int().min(LEGACY_MEMBERSHIP_EPOCH).max(Number.MAX_SAFE_INTEGER);

const SERIAL_NUMBER = '2.5.4.5';
const ORGANIZATION = 'isthmus';

/**
 * A fresh epoch for a membership created at `now`: milliseconds since 1970, so later joins get
 * larger epochs (the verifiers compare for equality; the order only names the refusal).
 */
export function newMembershipEpoch(now: Date = new Date()): number {
  return Math.max(LEGACY_MEMBERSHIP_EPOCH + 1, now.getTime());
}

/** The directoryName SAN naming membership `epoch` of `clusterId`; none for the legacy epoch. */
export function membershipNames(clusterId: string, epoch: number): string[] {
  if (epoch === LEGACY_MEMBERSHIP_EPOCH) return [];
  return [`O=${ORGANIZATION},OU=${clusterId},${SERIAL_NUMBER}=${membershipEpochSchema.parse(epoch)}`];
}

export type MembershipClaim =
  | { readonly ok: true; readonly clusterId: string; readonly epoch: number }
  /** No membership name: a certificate from before epochs, or one that belongs to no cluster. */
  | { readonly ok: true; readonly clusterId: undefined; readonly epoch: typeof LEGACY_MEMBERSHIP_EPOCH }
  | { readonly ok: false; readonly problem: string };

/** Reads the membership a certificate claims from its directoryName SANs (as @peculiar/x509 lists them). */
export function membershipClaimOf(sanNames: readonly x509.GeneralName[]): MembershipClaim {
  const names = sanNames.filter((name) => name.type === 'dn');
  const [first] = names;
  if (first === undefined) return { ok: true, clusterId: undefined, epoch: LEGACY_MEMBERSHIP_EPOCH };
  if (names.length !== 1) return { ok: false, problem: `${names.length} directoryName SANs, at most one is allowed` };
  let name: x509.Name;
  try {
    name = new x509.Name(first.value);
  } catch {
    return { ok: false, problem: `directoryName SAN "${first.value}" does not parse` };
  }
  const [organization, ...moreOrganizations] = name.getField('O');
  const [clusterId, ...moreUnits] = name.getField('OU');
  const [serial, ...moreSerials] = name.getField(SERIAL_NUMBER);
  if (
    organization !== ORGANIZATION ||
    moreOrganizations.length > 0 ||
    clusterId === undefined ||
    moreUnits.length > 0 ||
    serial === undefined ||
    moreSerials.length > 0
  ) {
    return {
      ok: false,
      problem: `directoryName SAN "${first.value}" is not a membership name (O=isthmus, OU=<cluster>, serialNumber=<epoch>)`,
    };
  }
  const epoch = /^[1-9][0-9]{0,15}$/.test(serial) ? Number(serial) : Number.NaN;
  if (!Number.isSafeInteger(epoch))
    return { ok: false, problem: `membership epoch "${serial}" is not a positive integer` };
  return { ok: true, clusterId, epoch };
}

/** The membership the hub publishes (member records carry their epoch). */
export function membershipOf(records: Iterable<{ readonly clusterId: string; readonly epoch: number }>): Membership {
  return new Map(Array.from(records, (record) => [record.clusterId, record.epoch]));
}
