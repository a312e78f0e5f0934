// metav1.Condition and the apimachinery meta.SetStatusCondition semantics, as pure functions.
import { z } from 'zod';
import { timestampSchema, toKubeTime, uniqueBy } from './meta.ts';

export const ConditionStatus = { True: 'True', False: 'False', Unknown: 'Unknown' } as const;
export type ConditionStatus = (typeof ConditionStatus)[keyof typeof ConditionStatus];

const CONDITION_TYPE_RE =
  /^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/)?(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$/;
const CONDITION_REASON_RE = /^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$/;

export const conditionSchema = z.object({
  type: z.string().max(316).regex(CONDITION_TYPE_RE, 'must be CamelCase or prefix/CamelCase'),
  status: z.enum([ConditionStatus.True, ConditionStatus.False, ConditionStatus.Unknown]),
  observedGeneration: z.int().nonnegative().optional(),
  lastTransitionTime: timestampSchema,
  reason: z.string().min(1).max(1024).regex(CONDITION_REASON_RE, 'must be a CamelCase identifier'),
  message: z.string().max(32768),
});
export type Condition = z.infer<typeof conditionSchema>;

/** status.conditions: a list map keyed by type, as every CRD here declares it. */
export const conditionListSchema = z.array(conditionSchema).superRefine(uniqueBy((c) => c.type, 'condition type'));

/** What a controller wants a condition to be; lastTransitionTime is filled in when the status changes. */
export type ConditionUpdate = Omit<Condition, 'lastTransitionTime'> & { lastTransitionTime?: string };

export function findCondition(conditions: readonly Condition[] | undefined, type: string): Condition | undefined {
  return conditions?.find((c) => c.type === type);
}

export function isConditionTrue(conditions: readonly Condition[] | undefined, type: string): boolean {
  return findCondition(conditions, type)?.status === ConditionStatus.True;
}

/**
 * Returns a new list with `next` applied, as meta.SetStatusCondition does: lastTransitionTime moves
 * only when the status changes (to next.lastTransitionTime if given, else `now`); reason, message
 * and observedGeneration always follow `next`. `changed` tells callers whether a status write is due.
 */
export function setCondition(
  conditions: readonly Condition[] | undefined,
  next: ConditionUpdate,
  now: Date,
): { conditions: Condition[]; changed: boolean } {
  const list = [...(conditions ?? [])];
  const index = list.findIndex((c) => c.type === next.type);
  const existing = index >= 0 ? list[index] : undefined;
  if (existing === undefined) {
    list.push(
      withoutUndefined({
        type: next.type,
        status: next.status,
        observedGeneration: next.observedGeneration,
        lastTransitionTime: next.lastTransitionTime ?? toKubeTime(now),
        reason: next.reason,
        message: next.message,
      }),
    );
    return { conditions: list, changed: true };
  }
  const statusChanged = existing.status !== next.status;
  const updated = withoutUndefined({
    type: existing.type,
    status: next.status,
    observedGeneration: next.observedGeneration,
    lastTransitionTime: statusChanged ? (next.lastTransitionTime ?? toKubeTime(now)) : existing.lastTransitionTime,
    reason: next.reason,
    message: next.message,
  });
  const changed =
    statusChanged ||
    existing.reason !== updated.reason ||
    existing.message !== updated.message ||
    existing.observedGeneration !== updated.observedGeneration;
  list[index] = updated;
  return { conditions: list, changed };
}

// An explicit `observedGeneration: undefined` would otherwise survive into JSON patches and equality checks.
function withoutUndefined(c: Condition): Condition {
  if (c.observedGeneration !== undefined) return c;
  const { observedGeneration: _omit, ...rest } = c;
  return rest;
}
