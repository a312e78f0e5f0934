// Small helpers every controller needs: object keys, classifying API errors, patches with the
// right content type (client-node's CustomObjectsApi would otherwise send JSON Patch), server-side
// apply, and namespaces.
import {
  ApiException,
  CoreV1Api,
  CustomObjectsApi,
  PatchStrategy,
  setHeaderOptions,
  type KubeConfig,
  type KubernetesObject,
} from '@kubernetes/client-node';
import { apiClient, objectApiClient } from './clients.ts';

// ---------------------------------------------------------------------------------------------
// Keys

/** client-go's MetaNamespaceKeyFunc: `namespace/name`, or `name` for cluster-scoped objects. */
export function objectKey(object: KubernetesObject): string {
  const name = object.metadata?.name ?? '';
  const namespace = object.metadata?.namespace;
  return namespace ? `${namespace}/${name}` : name;
}

/** Inverse of objectKey: namespace is '' for cluster-scoped keys. */
export function splitKey(key: string): { namespace: string; name: string } {
  const slash = key.indexOf('/');
  return slash < 0 ? { namespace: '', name: key } : { namespace: key.slice(0, slash), name: key.slice(slash + 1) };
}

// ---------------------------------------------------------------------------------------------
// Errors

/** HTTP status of a failed API call (ApiException from requests, `statusCode` from watches). */
export function statusCode(err: unknown): number | undefined {
  if (err instanceof ApiException) return err.code;
  if (typeof err === 'object' && err !== null) {
    const { statusCode, code } = err as { statusCode?: unknown; code?: unknown };
    if (typeof statusCode === 'number') return statusCode;
    if (typeof code === 'number' && code >= 100 && code < 600) return code;
  }
  return undefined;
}

/** The metav1.Status the server sent with an error, when there is one. */
export function errorStatus(err: unknown): { reason?: string; message?: string } | undefined {
  if (!(err instanceof ApiException)) return undefined;
  let body: unknown = err.body;
  if (typeof body === 'string') {
    try {
      body = JSON.parse(body);
    } catch {
      return undefined;
    }
  }
  if (typeof body !== 'object' || body === null) return undefined;
  const { reason, message } = body as { reason?: unknown; message?: unknown };
  return {
    reason: typeof reason === 'string' ? reason : undefined,
    message: typeof message === 'string' ? message : undefined,
  };
}

export function isNotFound(err: unknown): boolean {
  return statusCode(err) === 404;
}

/** 409 Conflict from optimistic concurrency (stale resourceVersion); not AlreadyExists. */
export function isConflict(err: unknown): boolean {
  return statusCode(err) === 409 && errorStatus(err)?.reason !== 'AlreadyExists';
}

/** 409 AlreadyExists from a create. */
export function isAlreadyExists(err: unknown): boolean {
  return statusCode(err) === 409 && errorStatus(err)?.reason === 'AlreadyExists';
}

/** One line for logs, e.g. `404 NotFound: configmaps "x" not found` (ApiException messages carry headers). */
export function describeKubeError(err: unknown): string {
  const code = statusCode(err);
  const status = errorStatus(err);
  if (code !== undefined && status) return `${code} ${status.reason ?? ''}: ${status.message ?? ''}`.trim();
  if (err instanceof ApiException) return `HTTP ${err.code}`;
  if (err instanceof Error) return code !== undefined ? `HTTP ${code}: ${err.message}` : err.message;
  return String(err);
}

// ---------------------------------------------------------------------------------------------
// Custom objects

export interface CustomObjectRef {
  readonly group: string;
  readonly version: string;
  readonly plural: string;
  readonly name: string;
  /** Absent for cluster-scoped kinds. */
  readonly namespace?: string;
}

export interface MergePatchOptions {
  readonly fieldManager?: string;
  /** Precondition: the patch fails with 409 Conflict unless the object is at this version. */
  readonly resourceVersion?: string;
}

const mergePatchOptions = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);

function withPrecondition(patch: object, resourceVersion: string | undefined): object {
  if (resourceVersion === undefined) return patch;
  const metadata = (patch as { metadata?: object }).metadata ?? {};
  return { ...patch, metadata: { ...metadata, resourceVersion } };
}

/** JSON merge patch (RFC 7386) of a custom object; returns the object as stored. */
export async function mergePatchCustomObject<T extends KubernetesObject = KubernetesObject>(
  kc: KubeConfig,
  ref: CustomObjectRef,
  patch: object,
  options: MergePatchOptions = {},
): Promise<T> {
  const api = apiClient(kc, CustomObjectsApi);
  const body = withPrecondition(patch, options.resourceVersion);
  const { group, version, plural, name, namespace } = ref;
  const { fieldManager } = options;
  return (await (namespace
    ? api.patchNamespacedCustomObject(
        { group, version, namespace, plural, name, body, fieldManager },
        mergePatchOptions,
      )
    : api.patchClusterCustomObject({ group, version, plural, name, body, fieldManager }, mergePatchOptions))) as T;
}

/**
 * JSON merge patch of a custom object's status subresource: `status` is merged into the stored
 * status (arrays such as conditions are replaced whole). Returns the object as stored.
 */
export async function mergePatchCustomObjectStatus<T extends KubernetesObject = KubernetesObject>(
  kc: KubeConfig,
  ref: CustomObjectRef,
  status: object,
  options: MergePatchOptions = {},
): Promise<T> {
  const api = apiClient(kc, CustomObjectsApi);
  const body = withPrecondition({ status }, options.resourceVersion);
  const { group, version, plural, name, namespace } = ref;
  const { fieldManager } = options;
  return (await (namespace
    ? api.patchNamespacedCustomObjectStatus(
        { group, version, namespace, plural, name, body, fieldManager },
        mergePatchOptions,
      )
    : api.patchClusterCustomObjectStatus(
        { group, version, plural, name, body, fieldManager },
        mergePatchOptions,
      ))) as T;
}

// ---------------------------------------------------------------------------------------------
// Server-side apply and namespaces

export interface ApplyOptions {
  /** Take ownership of fields another manager owns instead of failing with 409. */
  readonly force?: boolean;
}

/**
 * Server-side apply of a full intent (apiVersion, kind, metadata.name[, namespace] and the fields
 * this manager owns), for any kind, core or custom. Returns the object as stored.
 */
export async function serverSideApply<T extends KubernetesObject>(
  kc: KubeConfig,
  object: T,
  fieldManager: string,
  options: ApplyOptions = {},
): Promise<T> {
  return objectApiClient(kc).patch(
    object,
    undefined,
    undefined,
    fieldManager,
    options.force ?? false,
    PatchStrategy.ServerSideApply,
  );
}

/**
 * Creates the namespace unless it exists; true if this call created it. It looks first, so a
 * component whose namespaces an installer created (the Helm chart) needs no right to create any.
 */
export async function ensureNamespace(kc: KubeConfig, name: string, labels?: Record<string, string>): Promise<boolean> {
  const api = apiClient(kc, CoreV1Api);
  try {
    await api.readNamespace({ name });
    return false;
  } catch (err) {
    if (!isNotFound(err)) throw err;
  }
  try {
    await api.createNamespace({
      body: { apiVersion: 'v1', kind: 'Namespace', metadata: { name, labels } },
    });
    return true;
  } catch (err) {
    if (isAlreadyExists(err)) return false;
    throw err;
  }
}
