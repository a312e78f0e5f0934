// The ServiceExport kind as the exporter reads it from its informer (plain JSON, checked here)
// and writes its status.
import type { KubeConfig, KubernetesObject } from '@kubernetes/client-node';
import { z } from 'zod';
import {
  MCS_GROUP,
  MCS_VERSION,
  SERVICE_EXPORT_KIND,
  SERVICE_EXPORT_PLURAL,
  conditionListSchema,
  objectMetaSchema,
  type Condition,
} from '../../common/api/index.ts';
import { customResource, mergePatchCustomObjectStatus } from '../../common/kube/index.ts';

export const serviceExportResource = customResource({
  group: MCS_GROUP,
  version: MCS_VERSION,
  kind: SERVICE_EXPORT_KIND,
  plural: SERVICE_EXPORT_PLURAL,
  namespaced: true,
});

const FIELD_MANAGER = 'isthmus-agent-exports';

// Conditions another writer left malformed must not lock the export out: they are rewritten whole.
const serviceExportObjectSchema = z.looseObject({
  metadata: objectMetaSchema.extend({
    namespace: z.string().min(1),
    uid: z.string().min(1),
    creationTimestamp: z.string(),
  }),
  status: z.looseObject({ conditions: conditionListSchema.optional() }).optional().catch(undefined),
  // Checked where the export is evaluated (a bad key makes the export invalid, with a message).
  spec: z
    .looseObject({
      exportedLabels: z.record(z.string(), z.string()).optional(),
      exportedAnnotations: z.record(z.string(), z.string()).optional(),
    })
    .optional(),
});

export interface ServiceExportView {
  readonly namespace: string;
  readonly name: string;
  readonly uid: string;
  readonly generation: number | undefined;
  readonly resourceVersion: string | undefined;
  readonly creationTimestamp: string;
  readonly annotations: Readonly<Record<string, string>>;
  /** spec.exportedLabels and spec.exportedAnnotations: what importers put on their ServiceImport. */
  readonly exportedLabels: Readonly<Record<string, string>>;
  readonly exportedAnnotations: Readonly<Record<string, string>>;
  readonly deleting: boolean;
  readonly conditions: readonly Condition[];
}

/** The export as cached, or the zod error when the object is not one the apiserver should have stored. */
export function readServiceExport(
  object: KubernetesObject,
): { ok: true; view: ServiceExportView } | { ok: false; error: z.ZodError } {
  const parsed = serviceExportObjectSchema.safeParse(object);
  if (!parsed.success) return { ok: false, error: parsed.error };
  const { metadata, status, spec } = parsed.data;
  return {
    ok: true,
    view: {
      namespace: metadata.namespace,
      name: metadata.name,
      uid: metadata.uid,
      generation: metadata.generation,
      resourceVersion: metadata.resourceVersion,
      creationTimestamp: metadata.creationTimestamp,
      annotations: metadata.annotations ?? {},
      exportedLabels: spec?.exportedLabels ?? {},
      exportedAnnotations: spec?.exportedAnnotations ?? {},
      deleting: metadata.deletionTimestamp !== undefined,
      conditions: status?.conditions ?? [],
    },
  };
}

/** Replaces status.conditions, as of the cached resourceVersion (409 if the cache was behind). */
export async function writeServiceExportConditions(
  kc: KubeConfig,
  view: ServiceExportView,
  conditions: readonly Condition[],
): Promise<void> {
  await mergePatchCustomObjectStatus(
    kc,
    {
      group: MCS_GROUP,
      version: MCS_VERSION,
      plural: SERVICE_EXPORT_PLURAL,
      namespace: view.namespace,
      name: view.name,
    },
    { conditions },
    { fieldManager: FIELD_MANAGER, resourceVersion: view.resourceVersion },
  );
}
