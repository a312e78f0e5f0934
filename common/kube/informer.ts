// A resilient informer: client-node's list+watch cache (the ListWatch that makeInformer builds)
// plus what it lacks. On most errors a client-node informer stops for good; this one restarts it
// with jittered exponential backoff, resuming its cache, and never lets a stopped informer
// reconnect or a throwing handler break the watch.
import {
  ListWatch,
  Watch,
  type KubeConfig,
  type KubernetesListObject,
  type KubernetesObject,
} from '@kubernetes/client-node';
// Not re-exported by the package index; the same serializer its typed API clients use.
// A private module: client-node-internals.test.ts pins the version and the behaviour relied on.
import { ObjectSerializer } from '@kubernetes/client-node/dist/serializer.js';
import { IsthmusError } from '../errors.ts';
import { createLogger, type Logger } from '../logger.ts';
import { describeKubeError, splitKey } from './objects.ts';
import { apiVersionOf, collectionPath, type ResourceType } from './resources.ts';
import { backoffDelay } from '../backoff.ts';

export type InformerEventType = 'add' | 'update' | 'delete';

/** Called for every change; typically enqueues `objectKey(object)`. Must not block. */
export type InformerHandler<T> = (type: InformerEventType, object: T) => void;

export interface InformerBackoff {
  /** First restart delay (before jitter). Default 100 ms. */
  readonly initialMs?: number;
  /** Upper bound of the restart delay. Default 30 s. */
  readonly maxMs?: number;
  /** After running this long without an error, the next error starts from initialMs again. Default 30 s. */
  readonly resetAfterMs?: number;
}

export interface InformerOptions<T extends KubernetesObject> {
  readonly kubeConfig: KubeConfig;
  /** What to watch: `kinds.configMaps`, ..., or `customResource({ group, version, kind, plural, namespaced })`. */
  readonly resource: ResourceType<T>;
  /** Watch one namespace only (namespaced kinds); absent = all namespaces. */
  readonly namespace?: string;
  readonly labelSelector?: string;
  readonly fieldSelector?: string;
  readonly onEvent?: InformerHandler<T>;
  readonly logger?: Logger;
  readonly backoff?: InformerBackoff;
  /** A list that has not answered after this long counts as failed. Default 60 s. */
  readonly listTimeoutMs?: number;
}

export const INFORMER_DEFAULTS = {
  backoff: { initialMs: 100, maxMs: 30_000, resetAfterMs: 30_000 },
  listTimeoutMs: 60_000,
} as const;

const WATCH_EVENT_PHASES = new Set(['ADDED', 'MODIFIED', 'DELETED']);

function abortedController(): AbortController {
  const controller = new AbortController();
  controller.abort();
  return controller;
}

/**
 * The Watch the ListWatch uses, made safe: it never throws into ListWatch's unawaited reconnect
 * chain (that would be an unhandled rejection), asks for bookmarks (fresher resume points),
 * converts typed kinds like their list results, and once closed aborts every watch it opened —
 * including one that was still connecting when the informer stopped.
 */
class InformerWatch extends Watch {
  readonly #model: string | undefined;
  readonly #active = new Set<AbortController>();
  #closed = false;

  constructor(kc: KubeConfig, model: string | undefined) {
    super(kc);
    this.#model = model;
  }

  override async watch(
    path: string,
    queryParams: Record<string, string | number | boolean | undefined>,
    callback: (phase: string, apiObj: unknown, watchObj?: unknown) => void,
    done: (err: unknown) => void,
  ): Promise<AbortController> {
    if (this.#closed) return abortedController();
    let finished = false;
    let controller: AbortController | undefined;
    const onDone = (err: unknown): void => {
      finished = true;
      if (controller) this.#active.delete(controller);
      done(err);
    };
    const onEvent = (phase: string, object: unknown, raw?: unknown): void =>
      callback(phase, this.#convert(phase, object), raw);
    try {
      controller = await super.watch(path, { ...queryParams, allowWatchBookmarks: true }, onEvent, onDone);
    } catch (err) {
      if (!finished) onDone(err);
      return abortedController();
    }
    if (!finished) this.#active.add(controller);
    if (this.#closed) controller.abort();
    return controller;
  }

  close(): void {
    this.#closed = true;
    for (const controller of this.#active) controller.abort();
    this.#active.clear();
  }

  #convert(phase: string, object: unknown): unknown {
    if (!this.#model || !WATCH_EVENT_PHASES.has(phase)) return object;
    try {
      return ObjectSerializer.deserialize(object, this.#model) as unknown;
    } catch {
      return object;
    }
  }
}

export class Informer<T extends KubernetesObject> implements AsyncDisposable {
  readonly resource: ResourceType<T>;
  readonly namespace: string | undefined;
  readonly labelSelector: string | undefined;
  readonly fieldSelector: string | undefined;
  readonly #log: Logger;
  readonly #describe: Record<string, string>;
  readonly #backoff: Required<InformerBackoff>;
  readonly #listTimeoutMs: number;
  readonly #watch: InformerWatch;
  readonly #listWatch: ListWatch<T>;
  readonly #handlers = new Set<InformerHandler<T>>();
  readonly #timers = new Set<NodeJS.Timeout>();
  readonly #syncedPromise: Promise<void>;
  #resolveSynced!: () => void;
  #rejectSynced!: (err: Error) => void;
  #started = false;
  #stopped = false;
  #synced = false;
  #attempt = 0;
  #attemptFailed = false;
  #listOk = false;
  #failures = 0;
  #restarts = 0;
  #healthySince: number | undefined;
  #restartTimer: NodeJS.Timeout | undefined;

  constructor(options: InformerOptions<T>) {
    const { kubeConfig: kc, resource, namespace, labelSelector, fieldSelector } = options;
    this.resource = resource;
    this.namespace = namespace || undefined;
    this.labelSelector = labelSelector;
    this.fieldSelector = fieldSelector;
    this.#describe = {
      kind: resource.kind,
      ...(this.namespace ? { namespace: this.namespace } : {}),
      ...(labelSelector ? { labelSelector } : {}),
      ...(fieldSelector ? { fieldSelector } : {}),
    };
    if (this.namespace && !resource.namespaced) {
      throw new IsthmusError(
        'ISTHMUS_CONFIG_INVALID',
        `informer: ${resource.kind} is cluster-scoped, it cannot be watched in namespace ${this.namespace}`,
      );
    }
    this.#log = options.logger ?? createLogger({ component: 'informer' });
    this.#backoff = { ...INFORMER_DEFAULTS.backoff, ...options.backoff };
    this.#listTimeoutMs = options.listTimeoutMs ?? INFORMER_DEFAULTS.listTimeoutMs;
    if (options.onEvent) this.#handlers.add(options.onEvent);
    this.#syncedPromise = new Promise<void>((resolve, reject) => {
      this.#resolveSynced = resolve;
      this.#rejectSynced = reject;
    });
    this.#syncedPromise.catch(() => undefined); // callers that never ask must not see an unhandled rejection

    const apiVersion = apiVersionOf(resource);
    const listFn = async (): Promise<KubernetesListObject<T>> => {
      const attempt = this.#attempt;
      const list = await this.#withTimeout(
        resource.list(kc, { namespace: this.namespace, labelSelector, fieldSelector }),
        this.#listTimeoutMs,
        `list ${resource.kind}`,
      );
      // List items carry no apiVersion/kind; watch events do. Make them look alike.
      for (const item of list.items) {
        item.apiVersion ??= apiVersion;
        item.kind ??= resource.kind;
      }
      if (attempt === this.#attempt) this.#listOk = true;
      return list;
    };
    // A stopped informer's pending reconnect delay never ends, so ListWatch cannot reconnect.
    const delayFn = (ms: number): Promise<void> =>
      new Promise<void>((resolve) => {
        if (this.#stopped) return;
        const timer = setTimeout(() => {
          this.#timers.delete(timer);
          resolve();
        }, ms);
        this.#timers.add(timer);
      });
    this.#watch = new InformerWatch(kc, resource.model);
    // What makeInformer(kc, path, listFn, labelSelector) builds, with a field selector and delayFn.
    this.#listWatch = new ListWatch<T>(
      collectionPath(resource, this.namespace),
      this.#watch,
      listFn,
      false,
      labelSelector,
      fieldSelector,
      { delayFn },
    );
    this.#listWatch.on('add', (object) => this.#emit('add', object));
    this.#listWatch.on('update', (object) => this.#emit('update', object));
    this.#listWatch.on('delete', (object) => this.#emit('delete', object));
    this.#listWatch.on('error', (err?: unknown) => this.#onError(err));
  }

  /** Starts listing and watching; idempotent. Wait for `synced()` before trusting the cache. */
  start(): void {
    if (this.#started || this.#stopped) return;
    this.#started = true;
    void this.#run();
  }

  /** Resolves after the first successful list; rejects if the informer is stopped before. */
  synced(): Promise<void> {
    return this.#syncedPromise;
  }

  get hasSynced(): boolean {
    return this.#synced;
  }

  /** How many times the informer was restarted after an error. */
  get restarts(): number {
    return this.#restarts;
  }

  /** Registers another handler; returns its removal. */
  addEventHandler(handler: InformerHandler<T>): () => void {
    this.#handlers.add(handler);
    return () => this.#handlers.delete(handler);
  }

  /** Cached objects, of one namespace or all. */
  list(namespace?: string): readonly T[] {
    return this.#listWatch.list(namespace || undefined);
  }

  /** A cached object; namespace '' or undefined for cluster-scoped kinds. */
  get(namespace: string | undefined, name: string): T | undefined {
    return this.#listWatch.get(name, namespace || undefined);
  }

  /** A cached object by `namespace/name` (or `name`) key. */
  getByKey(key: string): T | undefined {
    const { namespace, name } = splitKey(key);
    return this.get(namespace, name);
  }

  /** Stops watching for good; the cache stays readable. */
  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    clearTimeout(this.#restartTimer);
    this.#restartTimer = undefined;
    for (const timer of this.#timers) clearTimeout(timer);
    this.#timers.clear();
    this.#watch.close();
    await this.#listWatch.stop();
    if (!this.#synced)
      this.#rejectSynced(
        new IsthmusError('ISTHMUS_STOPPED', `informer for ${this.resource.kind} stopped before its first list`),
      );
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }

  async #run(): Promise<void> {
    if (this.#stopped) return;
    const attempt = ++this.#attempt;
    this.#listOk = false;
    this.#attemptFailed = false;
    try {
      await this.#listWatch.start();
    } catch (err) {
      this.#onError(err);
    }
    if (this.#stopped || attempt !== this.#attempt) return;
    if (this.#listOk && !this.#synced) {
      this.#synced = true;
      this.#log.debug({ ...this.#describe, objects: this.list().length }, 'informer synced');
      this.#resolveSynced();
    }
    if (!this.#attemptFailed) this.#healthySince = Date.now();
  }

  #onError(err: unknown): void {
    if (this.#stopped) return; // aborting the watch on stop reports an error too
    this.#attemptFailed = true;
    if (this.#restartTimer) return;
    if (this.#healthySince !== undefined && Date.now() - this.#healthySince >= this.#backoff.resetAfterMs)
      this.#failures = 0;
    this.#healthySince = undefined;
    this.#failures++;
    const delayMs = backoffDelay(this.#failures, { ...this.#backoff, jitter: 0.5 });
    this.#log.warn(
      { ...this.#describe, err: describeKubeError(err), failures: this.#failures, restartInMs: delayMs },
      'informer failed; restarting',
    );
    this.#restartTimer = setTimeout(() => {
      this.#restartTimer = undefined;
      this.#restarts++;
      void this.#run();
    }, delayMs);
  }

  #emit(type: InformerEventType, object: T): void {
    if (this.#stopped) return;
    for (const handler of this.#handlers) {
      try {
        handler(type, object);
      } catch (err) {
        this.#log.error(
          { ...this.#describe, type, name: object.metadata?.name, namespace: object.metadata?.namespace, err },
          'informer event handler threw',
        );
      }
    }
  }

  #withTimeout<R>(promise: Promise<R>, ms: number, what: string): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#timers.delete(timer);
        reject(new IsthmusError('ISTHMUS_TIMEOUT', `${what} after ${ms} ms`));
      }, ms);
      this.#timers.add(timer);
      const settle = (): void => {
        clearTimeout(timer);
        this.#timers.delete(timer);
      };
      promise.then(
        (value) => {
          settle();
          resolve(value);
        },
        (err: unknown) => {
          settle();
          reject(err instanceof Error ? err : new Error(String(err)));
        },
      );
    });
  }
}
