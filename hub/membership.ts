// Who is a member right now, as the hub's MemberCluster cache says: accepted and joined. Every
// mTLS call and every published membership list derives from this one definition.
import { isConditionTrue } from '../common/api/conditions.ts';
import type { MemberCluster } from '../common/api/isthmus.ts';

export function isCurrentMember(member: MemberCluster | undefined): member is MemberCluster {
  return member !== undefined && member.spec.accepted === true && member.metadata.deletionTimestamp === undefined && isConditionTrue(member.status?.conditions, 'Joined');
}

export function currentMemberIds(members: readonly MemberCluster[]): Set<string> {
  return new Set(members.filter(isCurrentMember).map((m) => m.spec.clusterId));
}

/** The hub's watched view of MemberClusters (an informer cache in the running hub). */
export interface MemberCache {
  get(clusterId: string): MemberCluster | undefined;
  list(): readonly MemberCluster[];
}
