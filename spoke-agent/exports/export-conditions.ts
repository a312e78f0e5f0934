// The conditions a ServiceExport should carry, the upstream MCS way: Valid, Ready, Conflict.
// What the hub has not told this process yet is left as stored, so a restarted agent does not
// flap Ready=True exports to Pending and back.
import {
  ConditionStatus,
  ServiceExportConditionType,
  ServiceExportReason,
  conflictReason,
  findCondition,
  setCondition,
  type Condition,
  type ConditionUpdate,
} from '../../common/api/index.ts';
import type { ExportVerdict } from './exported-service.ts';
import type { HubView } from './export-reporter.ts';

/** metav1.Condition's limit on message; the apiserver refuses longer ones. */
const MAX_CONDITION_MESSAGE = 32_768;

export function exportConditions(
  stored: readonly Condition[],
  verdict: ExportVerdict,
  hub: HubView | undefined,
  observedGeneration: number | undefined,
  now: Date,
): { conditions: Condition[]; changed: boolean } {
  const updates: ConditionUpdate[] = [];
  const withGeneration = (update: Omit<ConditionUpdate, 'observedGeneration'>): ConditionUpdate =>
    observedGeneration === undefined ? update : { ...update, observedGeneration };
  let dropConflict = false;

  if (!verdict.valid) {
    updates.push(
      withGeneration({
        type: ServiceExportConditionType.Valid,
        status: ConditionStatus.False,
        reason: verdict.reason,
        message: verdict.message,
      }),
    );
    updates.push(
      withGeneration({
        type: ServiceExportConditionType.Ready,
        status: ConditionStatus.False,
        reason: ServiceExportReason.Pending,
        message: `not exported: ${verdict.message}`,
      }),
    );
    dropConflict = true; // an export that takes no part in the clusterset cannot conflict
  } else {
    updates.push(
      withGeneration({
        type: ServiceExportConditionType.Valid,
        status: ConditionStatus.True,
        reason: ServiceExportReason.Valid,
        message: 'the Service can be exported',
      }),
    );
    if (hub?.exported) {
      updates.push(
        withGeneration({
          type: ServiceExportConditionType.Ready,
          status: ConditionStatus.True,
          reason: ServiceExportReason.Exported,
          message: 'the hub has accepted the export',
        }),
      );
    } else if (findCondition(stored, ServiceExportConditionType.Ready)?.status !== ConditionStatus.True) {
      updates.push(
        withGeneration({
          type: ServiceExportConditionType.Ready,
          status: ConditionStatus.False,
          reason: ServiceExportReason.Pending,
          message: 'waiting for the hub to accept the export',
        }),
      );
    }
    const conflicts = hub?.conflicts;
    if (conflicts && conflicts.length > 0) {
      updates.push(
        withGeneration({
          type: ServiceExportConditionType.Conflict,
          status: ConditionStatus.True,
          reason: conflictReason(conflicts.map((c) => c.type)),
          message: conflicts
            .map((c) => c.message)
            .join('; ')
            .slice(0, MAX_CONDITION_MESSAGE),
        }),
      );
    } else if (conflicts) {
      updates.push(
        withGeneration({
          type: ServiceExportConditionType.Conflict,
          status: ConditionStatus.False,
          reason: ServiceExportReason.NoConflicts,
          message: 'no conflict with the exports of other clusters',
        }),
      );
    }
  }

  let conditions = [...stored];
  let changed = false;
  for (const update of updates) {
    const next = setCondition(conditions, update, now);
    conditions = next.conditions;
    changed ||= next.changed;
  }
  if (dropConflict && findCondition(conditions, ServiceExportConditionType.Conflict)) {
    conditions = conditions.filter((c) => c.type !== ServiceExportConditionType.Conflict);
    changed = true;
  }
  return { conditions, changed };
}
