// What the hub checks in a FailoverPolicy beyond the CRD schema (DESIGN §2), as pure functions:
// the spec parses with every default applied; each weights[].cluster is a current member; the
// regionMapping has no loop (following from→to edges never returns to a region already on the
// path). And which policy of a service applies when several in one namespace name it: the oldest
// (creationTimestamp, then name), whatever its validity, so fixing or breaking a policy never
// moves the service to another one. Every refusal is one message naming the field.
import type { z } from 'zod';
import {
  failoverPolicySpecSchema,
  type FailoverPolicy,
  type FailoverPolicySpec,
  type RegionMapping,
} from '../../common/api/isthmus.ts';

export type PolicyVerdict =
  { readonly valid: true; readonly spec: FailoverPolicySpec } | { readonly valid: false; readonly message: string };

/** A field path as Kubernetes prints it: `spec.weights[1].cluster`. */
export function fieldPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const part of path) out += typeof part === 'number' ? `[${part}]` : `${out ? '.' : ''}${String(part)}`;
  return out;
}

function zodProblems(error: z.ZodError): string[] {
  return error.issues.map((issue) => `${fieldPath(['spec', ...issue.path])}: ${issue.message}`);
}

/**
 * A loop in the region mapping, as the regions along it with the first repeated at the end
 * (["r1", "r2", "r1"]), or undefined. Mappings and their `to` lists are followed in order, so the
 * loop named is always the same one for the same spec.
 */
export function findRegionLoop(mappings: readonly RegionMapping[]): string[] | undefined {
  const next = new Map<string, readonly string[]>();
  for (const mapping of mappings) next.set(mapping.from, [...(next.get(mapping.from) ?? []), ...mapping.to]);
  const done = new Set<string>();
  const path: string[] = [];
  const onPath = new Set<string>();
  const visit = (region: string): string[] | undefined => {
    if (onPath.has(region)) return [...path.slice(path.indexOf(region)), region];
    if (done.has(region)) return undefined;
    path.push(region);
    onPath.add(region);
    for (const to of next.get(region) ?? []) {
      const loop = visit(to);
      if (loop) return loop;
    }
    path.pop();
    onPath.delete(region);
    done.add(region);
    return undefined;
  };
  for (const mapping of mappings) {
    const loop = visit(mapping.from);
    if (loop) return loop;
  }
  return undefined;
}

/** Validates a policy's spec against the schema and the current members; a valid spec has its defaults filled in. */
export function validatePolicySpec(spec: unknown, members: ReadonlySet<string>): PolicyVerdict {
  const parsed = failoverPolicySpecSchema.safeParse(spec);
  if (!parsed.success) return { valid: false, message: zodProblems(parsed.error).join('; ') };
  const problems: string[] = [];
  parsed.data.weights?.forEach((weight, i) => {
    if (!members.has(weight.cluster))
      problems.push(`${fieldPath(['spec', 'weights', i, 'cluster'])}: cluster "${weight.cluster}" is not a member`);
  });
  const loop = findRegionLoop(parsed.data.regionMapping ?? []);
  if (loop) problems.push(`spec.regionMapping: regions fail over in a loop (${loop.join(' → ')})`);
  return problems.length > 0 ? { valid: false, message: problems.join('; ') } : { valid: true, spec: parsed.data };
}

/** Oldest first: creationTimestamp, then name (a tie within the same second). */
export function comparePolicyAge(a: FailoverPolicy, b: FailoverPolicy): number {
  const [ta, tb] = [a.metadata.creationTimestamp ?? '', b.metadata.creationTimestamp ?? ''];
  const byTime = ta === tb ? 0 : Date.parse(ta) - Date.parse(tb) || (ta < tb ? -1 : 1);
  return byTime !== 0 ? byTime : a.metadata.name < b.metadata.name ? -1 : a.metadata.name > b.metadata.name ? 1 : 0;
}

/** The policies of one service in one namespace: the one that applies, and the others, oldest first. */
export function resolveServicePolicies<P extends FailoverPolicy>(
  policies: readonly P[],
): { readonly winner: P | undefined; readonly losers: readonly P[] } {
  const [winner, ...losers] = [...policies].sort(comparePolicyAge);
  return { winner, losers };
}
