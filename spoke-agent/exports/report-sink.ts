// Where export reports go: the hub's ReportExports, or in tests a recorder. The answer is checked
// here (zod at the edge) before it drives any condition.
import { z } from 'zod';
import type { ServiceExportReason } from '../../common/api/index.ts';
import type { ReportExportsRequest, ReportExportsResponse } from '../../common/hub-api/index.ts';
import type { HubSession } from '../hub-session.ts';

export interface ReportSink {
  /** Sends the full export set; resolves with the hub's answer, rejects when it could not be delivered. */
  report(request: ReportExportsRequest): Promise<ReportExportsResponse>;
  /** Calls `listener` when the hub is reachable again after it was not, or asks for the full export set; returns the unsubscribe. */
  onReachable?(listener: () => void): () => void;
}

/** The agent's sink: ReportExports over the mTLS session, failing over across hub replicas. */
export function hubReportSink(session: Pick<HubSession, 'call' | 'onReachable'>): ReportSink {
  return {
    report: (request) => session.call('ReportExports', request),
    onReachable: (listener) => session.onReachable(listener),
  };
}

// A condition reason is a CamelCase identifier; anything else would make the status write fail.
const conflictTypeSchema = z
  .string()
  .regex(/^[A-Z][A-Za-z0-9]*$/, 'must be a CamelCase conflict reason such as PortConflict')
  .transform((type) => type as ServiceExportReason); // upstream lets implementations add reasons

/** One conflict of an export as the Conflict condition shows it. */
export const exportConflictSchema = z.object({ type: conflictTypeSchema, message: z.string() });
export type ExportConflictVerdict = z.infer<typeof exportConflictSchema>;

export const reportResponseSchema = z.object({
  appliedGeneration: z.number().int().min(0),
  conflicts: z.array(exportConflictSchema.extend({ namespace: z.string(), name: z.string() })).default([]),
});
