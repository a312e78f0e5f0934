// The hub's trust state, persisted in one Secret on the hub cluster: the root CAs whose keys the
// hub holds (one, or two during a rotation), the trust bundle and the rotation stage. Only the
// leader writes (optimistic concurrency on resourceVersion); standbys re-read it.
//
// Where root keys are (issue 8, hole 6): the Secret lives in its own namespace (hub config
// `trustNamespace`, default isthmus-trust), never beside the bootstrap-token Secrets, so RBAC that
// lets operators manage tokens (list/get Secrets in the hub namespace) grants nothing here. A root
// plugged in from files (certificates.rootCertFile/rootKeyFile, e.g. a read-only mounted Secret
// or a CSI volume) is held only in memory: the Secret records its certificate, never its key, and
// a key of that root found in the Secret (written by an earlier version) is scrubbed on start.
import { X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { CoreV1Api, PatchStrategy, setHeaderOptions, type KubeConfig, type V1Secret } from '@kubernetes/client-node';
import { z } from 'zod';
import { IsthmusError, describeError } from '../common/errors.ts';
import { isAlreadyExists, isConflict, isNotFound } from '../common/kube/index.ts';
import {
  RootAuthority,
  bundleToSpiffeJson,
  createTrustBundle,
  parseSpiffeBundle,
  rootFingerprint,
  rotationStateSchema,
  signingRoot,
  type RotationState,
  type TrustBundle,
} from '../common/pki/index.ts';

export const TRUST_SECRET = 'isthmus-trust';
/** Set by `isthmus trust rotate`; the leader starts a root rotation when it sees a new value. */
export const ROTATION_REQUEST_ANNOTATION = 'isthmus.dev/rotate-root-requested-at';

// privateKeyPem is absent for a root whose key is held outside the cluster (files).
const rootsSchema = z.array(z.object({ certificatePem: z.string(), privateKeyPem: z.string().optional() })).min(1);

export interface TrustState {
  readonly roots: ReadonlyMap<string, RootAuthority>;
  readonly bundle: TrustBundle;
  readonly rotation: RotationState;
  /** The last rotation request the hub acted on (annotation value). */
  readonly handledRequest: string;
}

export interface TrustStoreOptions {
  readonly trustDomain: string;
  readonly rootTtlMs: number;
  /** A user-supplied root (PEM files) used instead of generating one on first start. */
  readonly rootCertFile?: string;
  readonly rootKeyFile?: string;
}

export class TrustStore {
  readonly #api: CoreV1Api;
  readonly #namespace: string;
  readonly #options: TrustStoreOptions;
  #state!: TrustState;
  #resourceVersion: string | undefined;
  #requested: string | undefined;
  #annotations: Record<string, string> = {};
  /** The root loaded from files: its key is never written to the Secret. */
  #external: RootAuthority | undefined;
  /** Whether the Secret as last read holds a key of the external root (to be scrubbed). */
  #holdsExternalKey = false;
  /** The CLI reads bundle and rotation only: it needs no root key. */
  readonly #withKeys: boolean;

  private constructor(kc: KubeConfig, namespace: string, options: TrustStoreOptions, withKeys = true) {
    this.#api = kc.makeApiClient(CoreV1Api);
    this.#namespace = namespace;
    this.#options = options;
    this.#withKeys = withKeys;
  }

  /** Reads the trust Secret, creating it (with a plugged-in or fresh root) on first start. */
  static async open(kc: KubeConfig, namespace: string, options: TrustStoreOptions): Promise<TrustStore> {
    const store = new TrustStore(kc, namespace, options);
    store.#external = await store.#externalRoot();
    if (await store.refresh()) {
      if (store.#holdsExternalKey) {
        // Rewrite without the key; on a conflict another replica wrote first (and scrubbed as well, or will).
        await store.save(store.state);
      }
      return store;
    }
    const root =
      store.#external ??
      (await RootAuthority.generate({ trustDomain: options.trustDomain, lifetimeMs: options.rootTtlMs }));
    const bundle = createTrustBundle({ trustDomain: options.trustDomain, sequence: 1, roots: [root.certificatePem] });
    const state: TrustState = {
      roots: new Map([[root.fingerprint, root]]),
      bundle,
      rotation: { stage: 'stable', root: root.fingerprint, bundleSequence: 1 },
      handledRequest: '',
    };
    try {
      await store.#api.createNamespacedSecret({
        namespace,
        body: {
          metadata: { name: TRUST_SECRET, namespace },
          type: 'Opaque',
          data: await encode(state, store.#external),
        },
      });
    } catch (err) {
      // Another replica created it first: use theirs.
      if (!isConflict(err) && !isAlreadyExists(err)) throw err;
    }
    if (!(await store.refresh()))
      throw new IsthmusError(
        'ISTHMUS_KUBE_REQUEST_FAILED',
        `Secret ${namespace}/${TRUST_SECRET} vanished after creation`,
      );
    return store;
  }

  /**
   * Moves the trust Secret of an earlier version (kept beside the token Secrets) into the trust
   * namespace; a no-op when it is already there or never existed.
   */
  static async relocate(kc: KubeConfig, from: string, to: string): Promise<void> {
    if (from === to) return;
    const api = kc.makeApiClient(CoreV1Api);
    let legacy: V1Secret;
    try {
      legacy = await api.readNamespacedSecret({ name: TRUST_SECRET, namespace: from });
    } catch (err) {
      if (isNotFound(err)) return;
      throw err;
    }
    try {
      await api.createNamespacedSecret({
        namespace: to,
        body: {
          metadata: { name: TRUST_SECRET, namespace: to, annotations: legacy.metadata?.annotations ?? {} },
          type: 'Opaque',
          data: legacy.data ?? {},
        },
      });
    } catch (err) {
      if (!isConflict(err) && !isAlreadyExists(err)) throw err;
    }
    try {
      await api.deleteNamespacedSecret({ name: TRUST_SECRET, namespace: from });
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
  }

  /** Asks the leader for a root rotation (what `isthmus trust rotate` does). */
  static async requestRotation(kc: KubeConfig, namespace: string, now = new Date()): Promise<void> {
    await kc.makeApiClient(CoreV1Api).patchNamespacedSecret(
      {
        name: TRUST_SECRET,
        namespace,
        body: { metadata: { annotations: { [ROTATION_REQUEST_ANNOTATION]: now.toISOString() } } },
      },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
  }

  /** Reads the trust state without creating anything (for the CLI). */
  static async read(kc: KubeConfig, namespace: string, trustDomain: string): Promise<TrustStore> {
    const store = new TrustStore(kc, namespace, { trustDomain, rootTtlMs: 0 }, false);
    if (!(await store.refresh()))
      throw new IsthmusError('ISTHMUS_HUB_UNAVAILABLE', `no Secret ${namespace}/${TRUST_SECRET}: has the hub started?`);
    return store;
  }

  get state(): TrustState {
    return this.#state;
  }

  get bundle(): TrustBundle {
    return this.#state.bundle;
  }

  /** The pending `isthmus trust rotate` request, if one has not been acted on yet. */
  get pendingRotationRequest(): string | undefined {
    return this.#requested && this.#requested !== this.#state.handledRequest ? this.#requested : undefined;
  }

  /** The root that signs intermediates and agent certificates right now. */
  signingAuthority(): RootAuthority {
    const fingerprint = signingRoot(this.#state.rotation);
    const root = this.#state.roots.get(fingerprint);
    if (!root) throw new IsthmusError('ISTHMUS_PKI_INVALID', `the hub holds no key for signing root ${fingerprint}`);
    return root;
  }

  /** Re-reads the Secret; false when it does not exist. */
  async refresh(): Promise<boolean> {
    let secret: V1Secret;
    try {
      secret = await this.#api.readNamespacedSecret({ name: TRUST_SECRET, namespace: this.#namespace });
    } catch (err) {
      if (isNotFound(err)) return false;
      throw err;
    }
    if (secret.metadata?.resourceVersion === this.#resourceVersion) return true;
    const decoded = await decode(secret, this.#options.trustDomain, this.#external, this.#withKeys);
    this.#state = decoded.state;
    this.#holdsExternalKey = decoded.holdsExternalKey;
    this.#resourceVersion = secret.metadata?.resourceVersion;
    this.#annotations = secret.metadata?.annotations ?? {};
    this.#requested = this.#annotations[ROTATION_REQUEST_ANNOTATION];
    return true;
  }

  /** Writes `next` if nobody else wrote since we read; returns false on a conflict (re-read done). */
  async save(next: TrustState): Promise<boolean> {
    try {
      const written = await this.#api.replaceNamespacedSecret({
        name: TRUST_SECRET,
        namespace: this.#namespace,
        body: {
          metadata: {
            name: TRUST_SECRET,
            namespace: this.#namespace,
            resourceVersion: this.#resourceVersion,
            annotations: this.#annotations,
          },
          type: 'Opaque',
          data: await encode(next, this.#external),
        },
      });
      this.#state = next;
      this.#holdsExternalKey = false;
      this.#resourceVersion = written.metadata?.resourceVersion;
      return true;
    } catch (err) {
      if (!isConflict(err)) throw err;
      await this.refresh();
      return false;
    }
  }

  /** The root from certificates.rootCertFile/rootKeyFile, if configured. */
  async #externalRoot(): Promise<RootAuthority | undefined> {
    const { rootCertFile, rootKeyFile, trustDomain } = this.#options;
    if (rootCertFile === undefined || rootKeyFile === undefined) return undefined;
    let certificatePem: string;
    let privateKeyPem: string;
    try {
      [certificatePem, privateKeyPem] = await Promise.all([
        readFile(rootCertFile, 'utf8'),
        readFile(rootKeyFile, 'utf8'),
      ]);
    } catch (err) {
      throw new IsthmusError('ISTHMUS_CONFIG_INVALID', `certificates.rootCertFile/rootKeyFile: ${describeError(err)}`);
    }
    return RootAuthority.load({ trustDomain, certificatePem, privateKeyPem });
  }
}

async function encode(state: TrustState, external: RootAuthority | undefined): Promise<Record<string, string>> {
  const roots = await Promise.all(
    [...state.roots.values()].map(async (r) =>
      r.fingerprint === external?.fingerprint
        ? { certificatePem: r.certificatePem }
        : { certificatePem: r.certificatePem, privateKeyPem: await r.exportPrivateKeyPem() },
    ),
  );
  const b64 = (s: string): string => Buffer.from(s).toString('base64');
  return {
    'roots.json': b64(JSON.stringify(roots)),
    'bundle.json': b64(bundleToSpiffeJson(state.bundle)),
    'rotation.json': b64(JSON.stringify(state.rotation)),
    'handled-request': b64(state.handledRequest),
  };
}

async function decode(
  secret: V1Secret,
  trustDomain: string,
  external: RootAuthority | undefined,
  withKeys: boolean,
): Promise<{ state: TrustState; holdsExternalKey: boolean }> {
  const text = (key: string): string => Buffer.from(secret.data?.[key] ?? '', 'base64').toString('utf8');
  try {
    const roots = rootsSchema.parse(JSON.parse(text('roots.json')));
    let holdsExternalKey = false;
    const authorities = withKeys
      ? await Promise.all(
          roots.map(async (r) => {
            const fingerprint = rootFingerprint(new X509Certificate(r.certificatePem));
            if (fingerprint === external?.fingerprint) {
              holdsExternalKey ||= r.privateKeyPem !== undefined;
              return external;
            }
            if (r.privateKeyPem === undefined)
              throw new Error(
                `root ${fingerprint} is held outside the cluster, and this hub's certificates.rootCertFile/rootKeyFile do not hold it`,
              );
            return RootAuthority.load({
              trustDomain,
              certificatePem: r.certificatePem,
              privateKeyPem: r.privateKeyPem,
            });
          }),
        )
      : [];
    return {
      holdsExternalKey,
      state: {
        roots: new Map(authorities.map((a) => [a.fingerprint, a])),
        bundle: parseSpiffeBundle(text('bundle.json'), trustDomain),
        rotation: rotationStateSchema.parse(JSON.parse(text('rotation.json'))),
        handledRequest: text('handled-request'),
      },
    };
  } catch (err) {
    throw new IsthmusError('ISTHMUS_PKI_INVALID', `Secret ${TRUST_SECRET} is damaged: ${describeError(err)}`, {
      cause: err,
    });
  }
}
