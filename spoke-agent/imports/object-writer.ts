// The importer's (and the FailoverPolicy mirror's) only way to change its cluster. It writes only when the stored object differs from
// the intent, creates with POST (so an object of the same name that someone else made is refused,
// never taken over), updates with a JSON merge patch pinned to the resourceVersion it compared
// against, and deletes with uid + resourceVersion preconditions.
import { PatchStrategy, type KubeConfig, type KubernetesObject } from '@kubernetes/client-node';
import { MCS_GROUP, MCS_VERSION, SERVICE_IMPORT_PLURAL } from '../../common/api/mcs.ts';
import { isAlreadyExists, isNotFound, mergePatchCustomObjectStatus, objectApiClient } from '../../common/kube/index.ts';
import type { DesiredObject } from './desired-objects.ts';
import { ANNOTATION_INTENT_HASH, FIELD_MANAGER, LABEL_MANAGED_BY } from './naming.ts';

export type WriteVerb = 'create' | 'patch' | 'delete' | 'status';

/** The outcome of `ensure`: the object as stored, or the one of that name the importer does not own. */
export type EnsureResult = { readonly owned: KubernetesObject } | { readonly foreign: KubernetesObject };

/**
 * Whether `actual` already holds every value `desired` sets: objects may carry more keys (server
 * defaults, other managers), arrays match element by element, `null` means absent, and an empty
 * array or object matches an absent one (the API drops them).
 */
export function satisfies(actual: unknown, desired: unknown): boolean {
  if (desired === undefined) return true;
  if (desired === null) return actual === undefined || actual === null;
  if (Array.isArray(desired)) {
    if (actual === undefined || actual === null) return desired.length === 0;
    return (
      Array.isArray(actual) &&
      actual.length === desired.length &&
      desired.every((item, i) => satisfies(actual[i], item))
    );
  }
  if (typeof desired === 'object') {
    if (actual !== undefined && actual !== null && typeof actual !== 'object') return false;
    const fields = (actual ?? {}) as Record<string, unknown>;
    return Object.entries(desired).every(([key, value]) => satisfies(fields[key], value));
  }
  return actual === desired;
}

/** Up to date: written for this very intent, and nobody changed a field of it since. */
export function upToDate(current: KubernetesObject, desired: DesiredObject): boolean {
  return (
    current.metadata?.annotations?.[ANNOTATION_INTENT_HASH] === desired.metadata.annotations[ANNOTATION_INTENT_HASH] &&
    satisfies(current, desired)
  );
}

export function isOwned(object: KubernetesObject): boolean {
  return object.metadata?.labels?.[LABEL_MANAGED_BY] === FIELD_MANAGER;
}

/** A copy without `null` fields: a create has nothing to remove. */
function withoutNulls(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(withoutNulls);
  if (value === null || typeof value !== 'object') return value;
  return Object.fromEntries(
    Object.entries(value)
      .filter(([, v]) => v !== null)
      .map(([k, v]) => [k, withoutNulls(v)]),
  );
}

export class ObjectWriter {
  readonly #kc: KubeConfig;
  readonly #onWrite: (verb: WriteVerb, kind: string) => void;

  /** `onWrite` is told of every write the API accepted. */
  constructor(kc: KubeConfig, onWrite: (verb: WriteVerb, kind: string) => void) {
    this.#kc = kc;
    this.#onWrite = onWrite;
  }

  /**
   * Makes the object match `desired`. `current` is the owned object the caller knows of (its
   * cache), undefined if none; `mustRecreate` says an immutable field differs.
   */
  async ensure(
    desired: DesiredObject,
    current: KubernetesObject | undefined,
    mustRecreate?: (current: KubernetesObject) => boolean,
  ): Promise<EnsureResult> {
    if (!current) return this.#create(desired, mustRecreate);
    if (upToDate(current, desired)) return { owned: current };
    if (mustRecreate?.(current)) {
      await this.remove(current);
      return this.#create(desired);
    }
    // A merge patch: its nulls (labels and annotations among them) remove what they name.
    const patch = {
      ...desired,
      metadata: { ...desired.metadata, resourceVersion: current.metadata?.resourceVersion },
    } as KubernetesObject;
    const patched = await objectApiClient(this.#kc).patch(
      patch,
      undefined,
      undefined,
      FIELD_MANAGER,
      undefined,
      PatchStrategy.MergePatch,
    );
    this.#onWrite('patch', desired.kind);
    return { owned: patched };
  }

  /** Sets a ServiceImport's status fields unless they already hold these values. */
  async ensureServiceImportStatus(current: KubernetesObject, status: object): Promise<void> {
    await this.ensureStatus(current, { group: MCS_GROUP, version: MCS_VERSION, plural: SERVICE_IMPORT_PLURAL }, status);
  }

  /** Sets status fields of an owned custom object unless they already hold these values. */
  async ensureStatus(
    current: KubernetesObject,
    resource: { readonly group: string; readonly version: string; readonly plural: string },
    status: object,
  ): Promise<void> {
    if (satisfies((current as { status?: unknown }).status, status)) return;
    const { name = '', namespace } = current.metadata ?? {};
    await mergePatchCustomObjectStatus(this.#kc, { ...resource, name, namespace }, status, {
      fieldManager: FIELD_MANAGER,
    });
    this.#onWrite('status', current.kind ?? '');
  }

  /** Deletes exactly the object the caller saw (same uid and version); gone already is fine. */
  async remove(current: KubernetesObject): Promise<void> {
    const { uid, resourceVersion } = current.metadata ?? {};
    try {
      await objectApiClient(this.#kc).delete(current, undefined, undefined, undefined, undefined, 'Background', {
        preconditions: { uid, resourceVersion },
      });
      this.#onWrite('delete', current.kind ?? '');
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
  }

  async #create(desired: DesiredObject, mustRecreate?: (current: KubernetesObject) => boolean): Promise<EnsureResult> {
    const api = objectApiClient(this.#kc);
    try {
      const created = await api.create(withoutNulls(desired) as KubernetesObject, undefined, undefined, FIELD_MANAGER);
      this.#onWrite('create', desired.kind);
      return { owned: created };
    } catch (err) {
      if (!isAlreadyExists(err)) throw err;
    }
    // Either someone else's, or the caller's cache has not seen the importer's own create yet.
    const existing = await api.read({
      apiVersion: desired.apiVersion,
      kind: desired.kind,
      metadata: { name: desired.metadata.name, namespace: desired.metadata.namespace },
    });
    return isOwned(existing) ? this.ensure(desired, existing, mustRecreate) : { foreign: existing };
  }
}
