// MemberCluster objects on the hub cluster: the hub's record of who joined (each join under a
// cluster id with an epoch of its own), who is accepted and how healthy each member is. Status
// is written with merge patches on the status subresource.
import { CustomObjectsApi, PatchStrategy, setHeaderOptions, type KubeConfig } from '@kubernetes/client-node';
import { setCondition, type Condition, type ConditionUpdate } from '../common/api/conditions.ts';
import {
  ISTHMUS_GROUP,
  ISTHMUS_VERSION,
  ISTHMUS_API_VERSION,
  MEMBER_CLUSTER_KIND,
  MEMBER_CLUSTER_PLURAL,
  type MemberCluster,
  type MemberClusterStatus,
} from '../common/api/isthmus.ts';
import { memberSpecOf, type ClusterFacts } from '../common/hub-api/messages.ts';
import { isAlreadyExists, isConflict, isNotFound } from '../common/kube/index.ts';
import { newMembershipEpoch } from '../common/pki/index.ts';
import { joinKeyAnnotations, type JoinKeys } from './join-keys.ts';

export const TOKEN_ID_ANNOTATION = 'isthmus.dev/joined-with-token';

const mergePatch = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);
const ref = { group: ISTHMUS_GROUP, version: ISTHMUS_VERSION, plural: MEMBER_CLUSTER_PLURAL };

export class MemberClusterStore {
  readonly #api: CustomObjectsApi;

  constructor(kc: KubeConfig) {
    this.#api = kc.makeApiClient(CustomObjectsApi);
  }

  async get(clusterId: string): Promise<MemberCluster | undefined> {
    try {
      return (await this.#api.getClusterCustomObject({ ...ref, name: clusterId })) as MemberCluster;
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  }

  async list(): Promise<MemberCluster[]> {
    const list = (await this.#api.listClusterCustomObject(ref)) as { items: MemberCluster[] };
    return list.items;
  }

  /**
   * Creates the MemberCluster with the join's token and key pins and a new membership epoch;
   * undefined when one exists already.
   */
  async create(
    facts: ClusterFacts,
    options: { accepted: boolean; tokenId: string; keys: JoinKeys; now?: Date },
  ): Promise<MemberCluster | undefined> {
    const body = {
      apiVersion: ISTHMUS_API_VERSION,
      kind: MEMBER_CLUSTER_KIND,
      metadata: {
        name: facts.clusterId,
        annotations: { [TOKEN_ID_ANNOTATION]: options.tokenId, ...joinKeyAnnotations(options.keys) },
      },
      spec: { ...memberSpecOf(facts, options.accepted), membershipEpoch: newMembershipEpoch(options.now) },
    };
    try {
      return (await this.#api.createClusterCustomObject({ ...ref, body })) as MemberCluster;
    } catch (err) {
      if (isAlreadyExists(err) || isConflict(err)) return undefined;
      throw err;
    }
  }

  /** With `uid`, only if the object is still the one the caller looked at (not removed and re-created since). */
  async setAccepted(clusterId: string, accepted: boolean, uid?: string): Promise<MemberCluster> {
    const body = { ...(uid ? { metadata: { uid } } : {}), spec: { accepted } };
    return (await this.#api.patchClusterCustomObject({ ...ref, name: clusterId, body }, mergePatch)) as MemberCluster;
  }

  async delete(clusterId: string): Promise<boolean> {
    try {
      await this.#api.deleteClusterCustomObject({ ...ref, name: clusterId });
      return true;
    } catch (err) {
      if (isNotFound(err)) return false;
      throw err;
    }
  }

  /**
   * Merge-patches status fields and conditions; lastTransitionTime is kept for a condition whose
   * status does not change. Returns the object as stored.
   */
  async patchStatus(
    member: MemberCluster,
    fields: Omit<MemberClusterStatus, 'conditions'>,
    conditions: readonly ConditionUpdate[] = [],
    now = new Date(),
  ): Promise<MemberCluster> {
    let next: Condition[] = [...(member.status?.conditions ?? [])];
    for (const update of conditions)
      next = setCondition(next, { ...update, observedGeneration: member.metadata.generation }, now).conditions;
    const body = { status: { ...fields, conditions: next } };
    return (await this.#api.patchClusterCustomObjectStatus(
      { ...ref, name: member.spec.clusterId, body },
      mergePatch,
    )) as MemberCluster;
  }
}
