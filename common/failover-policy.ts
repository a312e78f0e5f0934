// FailoverPolicies as the hub distributes them (DESIGN §2, §5) and as the agents copy them into
// their clusters for the east-west gateway. The hub is the only writer of the isthmus_policies
// bucket: one key "<namespace>.<service>" per service that has a valid policy, its value a
// PolicyRecord whose spec has been validated and has every default filled in. A service without
// a key runs on the defaults (FAILOVER_DEFAULTS, DEFAULT_LOCALITY_PRIORITY). The agent writes each
// record as a FailoverPolicy of the same namespace and name into its cluster, labelled as its own
// and annotated with the hub's generation; the gateway reads those objects, never the bucket.
import type { KubernetesObject } from '@kubernetes/client-node';
import { z } from 'zod';
import {
  FAILOVER_POLICY_KIND,
  FAILOVER_POLICY_PLURAL,
  ISTHMUS_GROUP,
  ISTHMUS_VERSION,
  failoverPolicySpecSchema,
} from './api/isthmus.ts';
import { dns1035LabelSchema, dns1123LabelSchema, timestampSchema } from './api/meta.ts';
import { catalogKey, parseCatalogKey } from './catalog.ts';
import { customResource } from './kube/resources.ts';

export const POLICIES_BUCKET = 'isthmus_policies';

/** FailoverPolicies for informers (namespaced; plain JSON objects). */
export const failoverPolicyResource = customResource<KubernetesObject>({
  group: ISTHMUS_GROUP,
  version: ISTHMUS_VERSION,
  kind: FAILOVER_POLICY_KIND,
  plural: FAILOVER_POLICY_PLURAL,
  namespaced: true,
});

/** The bucket key of a service's policy: "<namespace>.<service>" (as catalog keys). */
export function policyKey(namespace: string, service: string): string {
  return catalogKey(namespace, service);
}

export function parsePolicyKey(key: string): { namespace: string; service: string } {
  const { namespace, name } = parseCatalogKey(key);
  return { namespace, service: name };
}

export const policyRecordSchema = z.object({
  /** Namespace of the policy and of the service. */
  namespace: dns1123LabelSchema,
  /** The target service (spec.service). */
  service: dns1035LabelSchema,
  /** metadata.name of the FailoverPolicy on the hub; the agents' copies carry the same name. */
  policyName: z.string().min(1).max(253),
  /** metadata.generation of the policy on the hub that this record was published from. */
  generation: z.int().min(1),
  /** The spec as validated by the hub, every default applied. */
  spec: failoverPolicySpecSchema,
  /** When the hub published this content (unchanged content is never re-published). */
  updatedAt: timestampSchema,
});
export type PolicyRecord = z.infer<typeof policyRecordSchema>;

// ---------------------------------------------------------------------------------------------
// The agent's copies in member clusters (what the east-west gateway reads).

/** On an agent's copy: the hub generation of the policy it was copied from (decimal). */
export const ANNOTATION_HUB_GENERATION = 'isthmus.dev/hub-generation';
/** On an agent's copy: the record's updatedAt. */
export const ANNOTATION_POLICY_UPDATED_AT = 'isthmus.dev/policy-updated-at';
/** On an agent's copy: the service it applies to (also spec.service), for label selection. */
export const LABEL_POLICY_SERVICE = 'isthmus.dev/service';
