// Bootstrap tokens, kubeadm style: "<id>.<secret>". Only a SHA-256 of the secret is stored, in a
// Secret in the hub's namespace; uses are counted down with optimistic concurrency so two
// concurrent joins can never both spend the last use.
import { createHash, randomInt, timingSafeEqual } from 'node:crypto';
import { CoreV1Api, type KubeConfig, type V1Secret } from '@kubernetes/client-node';
import { IsthmusError } from '../common/errors.ts';
import { isNotFound, isConflict } from '../common/kube/index.ts';

const TOKEN_FORMAT = /^([a-z0-9]{6})\.([a-z0-9]{16})$/;
const ALPHABET = 'abcdefghijklmnopqrstuvwxyz0123456789';
const SECRET_TYPE = 'isthmus.dev/bootstrap-token';
export const TOKEN_LABEL = 'isthmus.dev/bootstrap-token';

export interface TokenRecord {
  readonly id: string;
  readonly expiresAt: Date;
  readonly usesLeft: number;
  readonly maxUses: number;
  readonly revoked: boolean;
  readonly description: string;
  readonly createdAt: Date | undefined;
}

export interface CreatedToken {
  readonly token: string;
  readonly record: TokenRecord;
}

function randomString(length: number): string {
  return Array.from({ length }, () => ALPHABET[randomInt(ALPHABET.length)]).join('');
}

function hashSecret(secret: string): string {
  return createHash('sha256').update(secret).digest('hex');
}

function secretName(id: string): string {
  return `isthmus-token-${id}`;
}

function decode(secret: V1Secret): TokenRecord & { secretHash: string } {
  const data = secret.data ?? {};
  const field = (key: string): string => Buffer.from(data[key] ?? '', 'base64').toString('utf8');
  return {
    id: field('token-id'),
    secretHash: field('secret-hash'),
    expiresAt: new Date(field('expiration')),
    usesLeft: Number(field('uses-left')),
    maxUses: Number(field('max-uses')),
    revoked: field('revoked') === 'true',
    description: field('description'),
    createdAt: secret.metadata?.creationTimestamp ? new Date(secret.metadata.creationTimestamp) : undefined,
  };
}

function encode(record: TokenRecord & { secretHash: string }): Record<string, string> {
  const b64 = (s: string): string => Buffer.from(s).toString('base64');
  return {
    'token-id': b64(record.id),
    'secret-hash': b64(record.secretHash),
    expiration: b64(record.expiresAt.toISOString()),
    'uses-left': b64(String(record.usesLeft)),
    'max-uses': b64(String(record.maxUses)),
    revoked: b64(String(record.revoked)),
    description: b64(record.description),
  };
}

export class TokenStore {
  readonly #api: CoreV1Api;
  readonly #namespace: string;

  constructor(kc: KubeConfig, namespace: string) {
    this.#api = kc.makeApiClient(CoreV1Api);
    this.#namespace = namespace;
  }

  async create(options: { ttlMs: number; maxUses: number; description?: string }): Promise<CreatedToken> {
    if (!(options.ttlMs > 0)) throw new IsthmusError('ISTHMUS_INPUT_INVALID', 'token TTL must be positive');
    if (!Number.isInteger(options.maxUses) || options.maxUses < 1)
      throw new IsthmusError('ISTHMUS_INPUT_INVALID', 'token usages must be a whole number ≥ 1');
    const id = randomString(6);
    const secret = randomString(16);
    const record = {
      id,
      secretHash: hashSecret(secret),
      expiresAt: new Date(Date.now() + options.ttlMs),
      usesLeft: options.maxUses,
      maxUses: options.maxUses,
      revoked: false,
      description: options.description ?? '',
      createdAt: new Date(),
    };
    await this.#api.createNamespacedSecret({
      namespace: this.#namespace,
      body: {
        metadata: { name: secretName(id), labels: { [TOKEN_LABEL]: 'true' } },
        type: SECRET_TYPE,
        data: encode(record),
      },
    });
    return { token: `${id}.${secret}`, record };
  }

  async list(): Promise<TokenRecord[]> {
    const secrets = await this.#api.listNamespacedSecret({ namespace: this.#namespace, labelSelector: TOKEN_LABEL });
    return secrets.items.map((s) => {
      const { secretHash: _hash, ...record } = decode(s);
      return record;
    });
  }

  async revoke(id: string): Promise<void> {
    await this.#update(id, (record) => ({ ...record, revoked: true }));
  }

  /**
   * Checks the token (format, secret, revocation, expiry) without spending a use.
   * Throws ISTHMUS_TOKEN_* with a distinct code for each refusal.
   */
  async authenticate(token: string, now = new Date()): Promise<TokenRecord> {
    const match = TOKEN_FORMAT.exec(token);
    if (!match)
      throw new IsthmusError(
        'ISTHMUS_TOKEN_MALFORMED',
        'expected "<6 characters>.<16 characters>" as printed by `isthmus token create`',
      );
    const [, id, secret] = match as unknown as [string, string, string];
    const stored = await this.#read(id);
    const given = Buffer.from(hashSecret(secret), 'hex');
    const expected = Buffer.from(stored?.secretHash ?? '', 'hex');
    if (!stored || expected.length !== given.length || !timingSafeEqual(expected, given)) {
      throw new IsthmusError(
        'ISTHMUS_TOKEN_UNKNOWN',
        `token ${id} does not exist on this hub; create one with \`isthmus token create\``,
      );
    }
    if (stored.revoked) throw new IsthmusError('ISTHMUS_TOKEN_REVOKED', `token ${id}`);
    if (stored.expiresAt.getTime() <= now.getTime()) {
      throw new IsthmusError(
        'ISTHMUS_TOKEN_EXPIRED',
        `token ${id} expired at ${stored.expiresAt.toISOString()}; create a new one`,
      );
    }
    const { secretHash: _hash, ...record } = stored;
    return record;
  }

  /** Spends one use of an authenticated token (still unrevoked and unexpired as of this write). */
  async consume(id: string, now = new Date()): Promise<TokenRecord> {
    return this.#update(id, (record) => {
      if (record.revoked) throw new IsthmusError('ISTHMUS_TOKEN_REVOKED', `token ${id}`);
      if (record.expiresAt.getTime() <= now.getTime())
        throw new IsthmusError(
          'ISTHMUS_TOKEN_EXPIRED',
          `token ${id} expired at ${record.expiresAt.toISOString()}; create a new one`,
        );
      if (record.usesLeft <= 0) {
        throw new IsthmusError(
          'ISTHMUS_TOKEN_EXHAUSTED',
          `token ${id} was already used ${record.maxUses} time(s); create a new one`,
        );
      }
      return { ...record, usesLeft: record.usesLeft - 1 };
    });
  }

  async #read(id: string): Promise<(TokenRecord & { secretHash: string }) | undefined> {
    try {
      return decode(await this.#api.readNamespacedSecret({ name: secretName(id), namespace: this.#namespace }));
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  }

  /** Read-modify-write with the resourceVersion as a precondition; retried on conflicts. */
  async #update(
    id: string,
    change: (record: TokenRecord & { secretHash: string }) => TokenRecord & { secretHash: string },
  ): Promise<TokenRecord> {
    for (let attempt = 0; attempt < 10; attempt++) {
      let current: V1Secret;
      try {
        current = await this.#api.readNamespacedSecret({ name: secretName(id), namespace: this.#namespace });
      } catch (err) {
        if (isNotFound(err)) throw new IsthmusError('ISTHMUS_TOKEN_UNKNOWN', `token ${id}`);
        throw err;
      }
      const next = change(decode(current));
      try {
        await this.#api.replaceNamespacedSecret({
          name: secretName(id),
          namespace: this.#namespace,
          body: { ...current, data: encode(next) },
        });
        const { secretHash: _hash, ...record } = next;
        return record;
      } catch (err) {
        if (!isConflict(err)) throw err;
      }
    }
    throw new IsthmusError('ISTHMUS_KUBE_REQUEST_FAILED', `token ${id}: too many concurrent updates`);
  }
}
