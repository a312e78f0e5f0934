// The agent's credentials live in a Secret in its own cluster, so a restarted agent resumes its
// membership without joining again, and the intermediate CA key never leaves the cluster.
import { CoreV1Api, PatchStrategy, setHeaderOptions, type KubeConfig, type V1Secret } from '@kubernetes/client-node';
import { z } from 'zod';
import { parseInput } from '../common/config.ts';
import { isNotFound, putSecret } from '../common/kube/index.ts';

export const CREDENTIALS_SECRET = 'isthmus-agent-credentials';
export const BOOTSTRAP_SECRET = 'isthmus-join';
/** The keys of a join in progress: every retry must offer the same keys (the hub pins them). */
export const JOIN_KEYS_SECRET = 'isthmus-join-keys';
export const JOIN_STATUS_ANNOTATION = 'isthmus.dev/join-status';
export const JOIN_MESSAGE_ANNOTATION = 'isthmus.dev/join-message';

const pem = z.string().includes('-----BEGIN');

export const agentCredentialsSchema = z.object({
  clusterId: z.string().min(1),
  trustDomain: z.string().min(1),
  agentCertificate: pem,
  agentKey: pem,
  intermediateCertificate: pem,
  intermediateKey: pem,
  trustBundlePem: pem,
  trustBundleJson: z.string().min(2),
  trustBundleSequence: z.coerce.number().int().min(0),
  hubEndpoints: z.array(z.string().min(1)).min(1),
  natsUrls: z.array(z.string()).default([]),
  heartbeatIntervalSeconds: z.coerce.number().int().min(1),
});
export type AgentCredentials = z.infer<typeof agentCredentialsSchema>;

export const bootstrapSchema = z.object({
  hubEndpoints: z.array(z.string().regex(/^[^\s:]+:\d+$/, 'must be host:port')).min(1),
  token: z.string().min(1),
  caPin: z.string().regex(/^sha256:[0-9a-f]{64}$/, 'must be sha256:<64 hex digits>'),
});
export type Bootstrap = z.infer<typeof bootstrapSchema>;

const JSON_KEY = 'credentials.json';

async function readSecret(api: CoreV1Api, namespace: string, name: string): Promise<V1Secret | undefined> {
  try {
    return await api.readNamespacedSecret({ name, namespace });
  } catch (err) {
    if (isNotFound(err)) return undefined;
    throw err;
  }
}

function field(secret: V1Secret, key: string): string | undefined {
  const value = secret.data?.[key];
  return value === undefined ? undefined : Buffer.from(value, 'base64').toString('utf8');
}

export class AgentSecrets {
  readonly #api: CoreV1Api;
  readonly #kc: KubeConfig;
  readonly #namespace: string;

  constructor(kc: KubeConfig, namespace: string) {
    this.#kc = kc;
    this.#api = kc.makeApiClient(CoreV1Api);
    this.#namespace = namespace;
  }

  async loadCredentials(): Promise<AgentCredentials | undefined> {
    const secret = await readSecret(this.#api, this.#namespace, CREDENTIALS_SECRET);
    const text = secret && field(secret, JSON_KEY);
    return text === undefined
      ? undefined
      : parseInput(agentCredentialsSchema, JSON.parse(text), `Secret ${this.#namespace}/${CREDENTIALS_SECRET}`);
  }

  /** Creates or replaces the credentials Secret. */
  async saveCredentials(credentials: AgentCredentials): Promise<void> {
    const body: V1Secret = {
      metadata: {
        name: CREDENTIALS_SECRET,
        namespace: this.#namespace,
        labels: { 'app.kubernetes.io/managed-by': 'isthmus-agent' },
      },
      type: 'Opaque',
      data: { [JSON_KEY]: Buffer.from(JSON.stringify(credentials)).toString('base64') },
    };
    await putSecret(this.#kc, body);
  }

  async deleteCredentials(): Promise<void> {
    try {
      await this.#api.deleteNamespacedSecret({ name: CREDENTIALS_SECRET, namespace: this.#namespace });
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
  }

  /** The join request `isthmus join` left for this agent, if any. */
  async loadBootstrap(): Promise<Bootstrap | undefined> {
    const secret = await readSecret(this.#api, this.#namespace, BOOTSTRAP_SECRET);
    if (!secret) return undefined;
    return parseInput(
      bootstrapSchema,
      {
        hubEndpoints: (field(secret, 'hub-endpoints') ?? '').split(',').filter(Boolean),
        token: field(secret, 'token'),
        caPin: field(secret, 'ca-pin'),
      },
      `Secret ${this.#namespace}/${BOOTSTRAP_SECRET}`,
    );
  }

  /** Written by `isthmus join`. */
  async saveBootstrap(bootstrap: Bootstrap): Promise<void> {
    const b64 = (s: string): string => Buffer.from(s).toString('base64');
    const body: V1Secret = {
      metadata: { name: BOOTSTRAP_SECRET, namespace: this.#namespace },
      type: 'Opaque',
      data: {
        'hub-endpoints': b64(bootstrap.hubEndpoints.join(',')),
        token: b64(bootstrap.token),
        'ca-pin': b64(bootstrap.caPin),
      },
    };
    await putSecret(this.#kc, body);
  }

  /** The agent reports the outcome of a join on the bootstrap Secret for `isthmus join` to read. */
  async reportJoin(status: 'Joined' | 'Failed' | 'Pending', message: string): Promise<void> {
    await this.#api.patchNamespacedSecret(
      {
        name: BOOTSTRAP_SECRET,
        namespace: this.#namespace,
        body: { metadata: { annotations: { [JOIN_STATUS_ANNOTATION]: status, [JOIN_MESSAGE_ANNOTATION]: message } } },
      },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
  }

  async hasBootstrap(): Promise<boolean> {
    return (await readSecret(this.#api, this.#namespace, BOOTSTRAP_SECRET)) !== undefined;
  }

  async joinOutcome(): Promise<{ status: string; message: string } | undefined> {
    const secret = await readSecret(this.#api, this.#namespace, BOOTSTRAP_SECRET);
    const annotations = secret?.metadata?.annotations ?? {};
    const status = annotations[JOIN_STATUS_ANNOTATION];
    return status === undefined ? undefined : { status, message: annotations[JOIN_MESSAGE_ANNOTATION] ?? '' };
  }

  async deleteBootstrap(): Promise<void> {
    await this.#deleteSecret(BOOTSTRAP_SECRET);
  }

  /** The private keys (PKCS#8 PEM) of the join in progress, created on first use and kept until it completes. */
  async joinKeys(
    generate: () => Promise<{ intermediateKey: string; agentKey: string }>,
  ): Promise<{ intermediateKey: string; agentKey: string }> {
    const secret = await readSecret(this.#api, this.#namespace, JOIN_KEYS_SECRET);
    const intermediateKey = secret && field(secret, 'intermediate.key');
    const agentKey = secret && field(secret, 'agent.key');
    if (intermediateKey && agentKey) return { intermediateKey, agentKey };
    const keys = await generate();
    const b64 = (s: string): string => Buffer.from(s).toString('base64');
    await putSecret(this.#kc, {
      metadata: {
        name: JOIN_KEYS_SECRET,
        namespace: this.#namespace,
        labels: { 'app.kubernetes.io/managed-by': 'isthmus-agent' },
      },
      type: 'Opaque',
      data: { 'intermediate.key': b64(keys.intermediateKey), 'agent.key': b64(keys.agentKey) },
    });
    return keys;
  }

  /**
   * Once joined: the credentials Secret holds the keys, and the bootstrap token (spent or not)
   * must not stay readable in the cluster. `isthmus join` reads the outcome from the agent
   * status when the bootstrap Secret is gone.
   */
  async finishJoin(): Promise<void> {
    await this.#deleteSecret(JOIN_KEYS_SECRET);
    await this.#deleteSecret(BOOTSTRAP_SECRET);
  }

  async #deleteSecret(name: string): Promise<void> {
    try {
      await this.#api.deleteNamespacedSecret({ name, namespace: this.#namespace });
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
  }
}
