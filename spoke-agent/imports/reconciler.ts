// Level-based reconcile of one catalog key in this cluster: from the catalog entry (or its
// absence) and the importer's own objects in the informer caches, create, update or delete until
// they match. Runs only after the catalog's first full snapshot, so an empty map never means
// "delete everything"; an absent entry deletes the import only once the catalog allows it (after
// a tombstone, or a grace period for a key that vanished without one); objects the importer does
// not own are reported, never touched.
import type { KubernetesObject, V1EndpointSlice, V1Namespace, V1Service } from '@kubernetes/client-node';
import { setCondition, type Condition } from '../../common/api/conditions.ts';
import { LABEL_SERVICE_NAME } from '../../common/api/mcs.ts';
import { parseCatalogKey, type CatalogEntry } from '../../common/catalog.ts';
import { IsthmusError } from '../../common/errors.ts';
import { describeKubeError, type Informer, type WorkResult } from '../../common/kube/index.ts';
import type { Logger } from '../../common/logger.ts';
import { planImport, type DesiredObject, type ImportPlan, type OutboundListener } from './desired-objects.ts';
import { derivedServiceName } from './naming.ts';
import type { ObjectWriter } from './object-writer.ts';

/** An object the importer should write but cannot: one of that name exists that it does not own. */
export interface ImportConflict {
  /** Catalog key of the imported service. */
  readonly key: string;
  readonly kind: string;
  readonly namespace: string;
  readonly name: string;
}

export interface ImportReconcilerOptions {
  readonly clusterId: string;
  readonly catalog: {
    get(key: string): CatalogEntry | undefined;
    /** 0 once the import of an absent key may be deleted, else how long to wait (CatalogWatcher.removalDelayMs). */
    removalDelayMs(key: string): number;
  };
  readonly namespaces: Informer<V1Namespace>;
  /** Owned objects only (label-selected informers). */
  readonly serviceImports: Informer<KubernetesObject>;
  readonly services: Informer<V1Service>;
  readonly slices: Informer<V1EndpointSlice>;
  readonly writer: ObjectWriter;
  readonly outboundListener: OutboundListener | undefined;
  readonly isStale: ((clusterId: string) => boolean) | undefined;
  readonly log: Logger;
  /** A key with conflicts is looked at again after this long (the foreign object may go). */
  readonly conflictRetryMs: number;
}

interface OwnedObjects {
  readonly serviceImport: KubernetesObject | undefined;
  readonly service: V1Service | undefined;
  readonly slices: readonly V1EndpointSlice[];
}

function isHeadless(service: object): boolean {
  return (service as { spec?: { clusterIP?: string } }).spec?.clusterIP === 'None';
}

function clusterIpsOf(service: KubernetesObject): string[] {
  const spec = (service as V1Service).spec;
  return (spec?.clusterIPs ?? (spec?.clusterIP ? [spec.clusterIP] : [])).filter((ip) => ip !== 'None');
}

function ipFamiliesOf(service: KubernetesObject): string[] {
  return (service as V1Service).spec?.ipFamilies ?? [];
}

export class ImportReconciler {
  readonly #options: ImportReconcilerOptions;
  readonly #conflicts = new Map<string, readonly ImportConflict[]>();

  constructor(options: ImportReconcilerOptions) {
    this.#options = options;
  }

  conflicts(): ImportConflict[] {
    return [...this.#conflicts.values()].flat();
  }

  async reconcile(key: string): Promise<WorkResult> {
    const { namespace, name } = parseCatalogKey(key);
    const ns = this.#options.namespaces.get(undefined, namespace);
    // Nothing can exist in a missing namespace; a terminating one takes our objects with it.
    if (!ns || ns.metadata?.deletionTimestamp) {
      this.#conflicts.delete(key);
      return undefined;
    }
    const entry = this.#options.catalog.get(key);
    const plan =
      entry && planImport(entry, this.#options.clusterId, this.#options.outboundListener, this.#options.isStale);
    const owned = this.#owned(namespace, name);
    if (!entry && (owned.serviceImport || owned.service || owned.slices.length > 0)) {
      const delayMs = this.#options.catalog.removalDelayMs(key);
      if (delayMs > 0) {
        this.#options.log.warn(
          { key, delayMs },
          'no catalog entry and no tombstone: the import is kept until the grace period ends',
        );
        return { requeueAfterMs: delayMs };
      }
    }
    const conflicts: ImportConflict[] = [];
    try {
      if (plan) await this.#apply(key, plan, owned, conflicts);
      else await this.#removeAll(owned);
    } finally {
      this.#recordConflicts(key, conflicts);
    }
    return conflicts.length > 0 ? { requeueAfterMs: this.#options.conflictRetryMs } : undefined;
  }

  /**
   * Service and slices first (the ServiceImport carries the Service's IP), the ServiceImport last. A write
   * that fails does not hold up the others; the key is retried after all were tried.
   */
  async #apply(key: string, plan: ImportPlan, owned: OwnedObjects, conflicts: ImportConflict[]): Promise<void> {
    const { writer, log } = this.#options;
    if (plan.refusedAddresses.length > 0)
      log.warn(
        { key, addresses: plan.refusedAddresses },
        'addresses an EndpointSlice may not name (loopback, link-local) left out',
      );
    const failures: unknown[] = [];
    const attempt = async <T>(write: () => Promise<T>): Promise<T | undefined> => {
      try {
        return await write();
      } catch (err) {
        failures.push(err);
        return undefined;
      }
    };
    // The Service and the slices are independent writes: in parallel, one round trip.
    const wanted = new Set(plan.slices.map((slice) => slice.metadata.name));
    const [service] = await Promise.all([
      attempt(() =>
        this.#ensure(
          key,
          plan.service,
          owned.service,
          conflicts,
          (current) => isHeadless(current) !== isHeadless(plan.service),
        ),
      ),
      ...plan.slices.map((slice) => {
        const current = owned.slices.find((s) => s.metadata?.name === slice.metadata.name);
        return attempt(() =>
          this.#ensure(
            key,
            slice,
            current,
            conflicts,
            (stored) => (stored as V1EndpointSlice).addressType !== slice['addressType'],
          ),
        );
      }),
      ...owned.slices
        .filter((slice) => !wanted.has(slice.metadata?.name ?? ''))
        .map((slice) => attempt(() => writer.remove(slice))),
    ]);
    const local = { ipFamilies: service ? ipFamiliesOf(service) : [], stored: owned.serviceImport };
    const serviceImport = await attempt(() =>
      this.#ensure(
        key,
        plan.serviceImport(service ? clusterIpsOf(service) : [], local),
        owned.serviceImport,
        conflicts,
      ),
    );
    if (serviceImport) {
      const current = (serviceImport as { status?: { conditions?: Condition[] } }).status?.conditions;
      const { conditions } = setCondition(current, plan.ready, new Date());
      await attempt(() => writer.ensureServiceImportStatus(serviceImport, { ...plan.status, conditions }));
    }
    if (failures.length > 0) {
      throw new IsthmusError(
        'ISTHMUS_KUBE_REQUEST_FAILED',
        `import of ${key}: ${failures.map(describeKubeError).join('; ')}`,
        { cause: failures[0] },
      );
    }
  }

  async #ensure(
    key: string,
    desired: DesiredObject,
    current: KubernetesObject | undefined,
    conflicts: ImportConflict[],
    mustRecreate?: (current: KubernetesObject) => boolean,
  ): Promise<KubernetesObject | undefined> {
    const result = await this.#options.writer.ensure(desired, current, mustRecreate);
    if ('owned' in result) return result.owned;
    conflicts.push({ key, kind: desired.kind, namespace: desired.metadata.namespace, name: desired.metadata.name });
    return undefined;
  }

  /** The ServiceImport goes first, so nothing reads an import whose slices are half gone. */
  async #removeAll(owned: OwnedObjects): Promise<void> {
    const { writer } = this.#options;
    if (owned.serviceImport) await writer.remove(owned.serviceImport);
    for (const slice of owned.slices) await writer.remove(slice);
    if (owned.service) await writer.remove(owned.service);
  }

  #owned(namespace: string, name: string): OwnedObjects {
    const { serviceImports, services, slices } = this.#options;
    return {
      serviceImport: serviceImports.get(namespace, name),
      service: services.get(namespace, derivedServiceName(namespace, name)),
      slices: slices.list(namespace).filter((slice) => slice.metadata?.labels?.[LABEL_SERVICE_NAME] === name),
    };
  }

  #recordConflicts(key: string, conflicts: readonly ImportConflict[]): void {
    const known = new Set((this.#conflicts.get(key) ?? []).map((c) => `${c.kind}/${c.name}`));
    for (const conflict of conflicts) {
      if (!known.has(`${conflict.kind}/${conflict.name}`)) {
        this.#options.log.warn(
          conflict,
          'an object of that name exists and is not managed by isthmus-agent; left alone, not imported',
        );
      }
    }
    if (conflicts.length > 0) this.#conflicts.set(key, conflicts);
    else this.#conflicts.delete(key);
  }
}
