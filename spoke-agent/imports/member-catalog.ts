// The catalog as one member sees it (DESIGN §5): the shared bucket, which every member reads, and
// the member's own scoped bucket, where the hub puts its view of every service some export scopes
// to it (resolved over the exports it may import, public ones included). A key's entry is the
// member's own view where there is one, else the shared one. An import goes at once only when
// neither side holds the key and one of them ended it with a tombstone; a key that vanished from
// either side without one keeps the import for the grace period; a key neither side has seen since
// the agent started waits for the grace period from the first snapshot, as in CatalogWatcher.
import type { NatsConnection } from '@nats-io/transport-node';
import { CATALOG_BUCKET, type CatalogEntry } from '../../common/catalog.ts';
import type { Runnable } from '../../common/lifecycle.ts';
import type { Logger } from '../../common/logger.ts';
import { CatalogWatcher, catalogSource, type CatalogListener, type CatalogWatcherOptions } from './catalog-watcher.ts';

export interface MemberCatalogOptions {
  readonly nc: NatsConnection;
  /** The member's own scoped bucket (scopedCatalogBucket). */
  readonly scopedBucket: string;
  readonly log: Logger;
  readonly retry?: CatalogWatcherOptions['retry'];
  readonly vanishedGraceMs?: number;
}

export class MemberCatalog implements Runnable {
  readonly #shared: CatalogWatcher;
  readonly #own: CatalogWatcher;

  constructor(options: MemberCatalogOptions) {
    const common = {
      nc: options.nc,
      retry: options.retry,
      ...(options.vanishedGraceMs ? { vanishedGraceMs: options.vanishedGraceMs } : {}),
    };
    this.#shared = new CatalogWatcher({ ...common, log: options.log.child({ bucket: CATALOG_BUCKET }) });
    this.#own = new CatalogWatcher({
      ...common,
      source: { ...catalogSource, bucket: options.scopedBucket, mayBeAbsent: true },
      log: options.log.child({ bucket: options.scopedBucket }),
    });
  }

  /** Watches both buckets until `signal` aborts. */
  async run(signal: AbortSignal): Promise<void> {
    await Promise.all([this.#shared.run(signal), this.#own.run(signal)]);
  }

  /** Resolves once both buckets' first snapshots are applied. */
  synced(): Promise<void> {
    return Promise.all([this.#shared.synced(), this.#own.synced()]).then(() => undefined);
  }

  get(key: string): CatalogEntry | undefined {
    return this.#own.get(key) ?? this.#shared.get(key);
  }

  keys(): string[] {
    return [...new Set([...this.#own.keys(), ...this.#shared.keys()])];
  }

  get size(): number {
    return this.keys().length;
  }

  /** The shared bucket's revision (the one every member follows). */
  get revision(): number {
    return this.#shared.revision;
  }

  get restarts(): number {
    return this.#shared.restarts + this.#own.restarts;
  }

  get malformed(): number {
    return this.#shared.malformed + this.#own.malformed;
  }

  /** 0 once the import of an absent key may be deleted (see above), else how long to wait. */
  removalDelayMs(key: string): number {
    const sides = [this.#shared, this.#own];
    const vanished = sides.filter((side) => side.keyState(key) === 'vanished');
    if (vanished.length > 0) return Math.max(...vanished.map((side) => side.removalDelayMs(key)));
    if (sides.some((side) => side.keyState(key) === 'tombstoned')) return 0;
    return Math.max(...sides.map((side) => side.removalDelayMs(key)));
  }

  /** Tells `listener` the key's merged entry whenever either side changes it; returns its removal. */
  onChange(listener: CatalogListener): () => void {
    const relay = (key: string): void => listener(key, this.get(key));
    const removals = [this.#shared.onChange(relay), this.#own.onChange(relay)];
    return () => removals.forEach((remove) => remove());
  }
}
