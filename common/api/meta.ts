// metav1 shapes shared by every kind in common/api, plus the name patterns Kubernetes validates.
import { z } from 'zod';

/** RFC 1123 label (cluster ids, network names): lower-case alphanumerics and '-', at most 63. */
export const DNS1123_LABEL_RE = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
/** RFC 1123 subdomain (host names): dot-separated DNS-1123 labels, at most 253. */
export const DNS1123_SUBDOMAIN_RE = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
/** RFC 1035 label (Service names): like DNS-1123 but starting with a letter. */
export const DNS1035_LABEL_RE = /^[a-z]([-a-z0-9]*[a-z0-9])?$/;
/** Label value, non-empty form (regions, zones). */
export const LABEL_VALUE_RE = /^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/;
/** Label key / qualified name: optional DNS subdomain prefix and '/', then a name of at most 63. */
export const QUALIFIED_NAME_RE =
  /^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/;

export const dns1123LabelSchema = z
  .string()
  .min(1)
  .max(63)
  .regex(DNS1123_LABEL_RE, 'must be a DNS-1123 label (lower-case alphanumerics and "-")');
export const dns1035LabelSchema = z
  .string()
  .min(1)
  .max(63)
  .regex(DNS1035_LABEL_RE, 'must be a DNS-1035 label (start with a letter, lower-case alphanumerics and "-")');
export const labelValueSchema = z
  .string()
  .max(63)
  .regex(/^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/, 'must be a valid label value');
export const qualifiedNameSchema = z
  .string()
  .min(1)
  .max(317)
  .regex(QUALIFIED_NAME_RE, 'must be a qualified name ([prefix/]name) as label keys are');

/** RFC 3339 timestamp as the API serves it (metav1.Time is a string on the wire). */
export const timestampSchema = z.iso.datetime({ offset: true });

/** metav1.Time format: RFC 3339 with second precision, UTC. */
export function toKubeTime(date: Date): string {
  return date.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

// Loose: the server adds fields (managedFields, ...) that callers must be able to round-trip.
export const ownerReferenceSchema = z.looseObject({
  apiVersion: z.string(),
  kind: z.string(),
  name: z.string(),
  uid: z.string(),
  controller: z.boolean().optional(),
  blockOwnerDeletion: z.boolean().optional(),
});

export const objectMetaSchema = z.looseObject({
  name: z.string().min(1).max(253),
  namespace: z.string().max(63).optional(),
  uid: z.string().optional(),
  resourceVersion: z.string().optional(),
  generation: z.int().nonnegative().optional(),
  creationTimestamp: z.string().optional(),
  deletionTimestamp: z.string().optional(),
  labels: z.record(z.string(), z.string()).optional(),
  annotations: z.record(z.string(), z.string()).optional(),
  finalizers: z.array(z.string()).optional(),
  ownerReferences: z.array(ownerReferenceSchema).optional(),
});
export type ObjectMeta = z.infer<typeof objectMetaSchema>;

/** Refinement for x-kubernetes-list-type map/set: no two items share `key(item)`. */
export function uniqueBy<T>(key: (item: T) => string, what: string) {
  return (list: readonly T[], ctx: z.RefinementCtx): void => {
    const seen = new Set<string>();
    list.forEach((item, i) => {
      const k = key(item);
      if (seen.has(k)) ctx.addIssue({ code: 'custom', message: `duplicate ${what} "${k}"`, path: [i] });
      seen.add(k);
    });
  };
}
