// Each member cluster's own NATS identity (DESIGN §5), decided by the hub through NATS auth callout:
// - every agent connect (and reconnect) is sent by nats-server to `$SYS.REQ.USER.AUTH`; every hub
//   replica answers (a queue group) with the hub's own verdict on the client certificate NATS
//   verified — the same verifier as the hub's mTLS calls (chain to the bundle, agent SVID of a
//   current member) — so a removed cluster's reconnect is refused at once, and a certificate any
//   member's intermediate could mint for another cluster is refused too (certificate-subject
//   mapping in nats-server's configuration cannot tell them apart: every intermediate chains to
//   the root it trusts);
// - the accepted agent becomes a user of the AGENTS account named by its cluster id, with the
//   read-only permissions of common/nats-authorization.ts for that member (the shared buckets, its
//   own scoped catalog bucket and inboxes under its own prefix);
// - the leader enforces removal: on every membership change (and periodically) it lists AGENTS
//   connections on every NATS server (system account CONNZ) and disconnects (KICK) those whose
//   cluster is no longer a current member.
import { X509Certificate, createHash } from 'node:crypto';
import { fromSeed, type KeyPair } from '@nats-io/nkeys';
import type { Msg, NatsConnection } from '@nats-io/transport-node';
import { z } from 'zod';
import { describeError } from '../common/errors.ts';
import type { Logger } from '../common/logger.ts';
import { AGENTS_ACCOUNT, agentPermissions } from '../common/nats-authorization.ts';
import type { CallContext } from '../common/hub-api/service.ts';
import { currentMemberIds, type MemberCache } from './membership.ts';

export const AUTH_CALLOUT_SUBJECT = '$SYS.REQ.USER.AUTH';
/** How long user credentials the callout issues stay valid; a connection outlives them only as long as membership lasts (removal kicks it). */
const USER_VALIDITY_S = 24 * 3600;

const authRequestSchema = z.object({
  nats: z.object({
    server_id: z.object({ id: z.string().min(1) }),
    user_nkey: z.string().min(1),
    client_tls: z
      .object({ certs: z.array(z.string()).optional(), verified_chains: z.array(z.array(z.string())).optional() })
      .optional(),
  }),
});

const connzSchema = z.object({
  server: z.object({ id: z.string() }),
  data: z
    .object({
      connections: z
        .array(
          z.object({ cid: z.number().int(), account: z.string().optional(), authorized_user: z.string().optional() }),
        )
        .nullish(),
    })
    .nullish(),
});

function b64url(data: string | Uint8Array): string {
  return Buffer.from(data).toString('base64url');
}

/** A NATS JWT (ed25519-nkey) signed by `signer`. */
export function signNatsJwt(claims: Record<string, unknown>, signer: KeyPair): string {
  const header = b64url(JSON.stringify({ typ: 'JWT', alg: 'ed25519-nkey' }));
  const body = { ...claims, iat: Math.floor(Date.now() / 1000), iss: signer.getPublicKey() };
  const jti = createHash('sha256').update(JSON.stringify(body)).digest('base64url');
  const payload = b64url(JSON.stringify({ jti, ...body }));
  return `${header}.${payload}.${b64url(signer.sign(new TextEncoder().encode(`${header}.${payload}`)))}`;
}

function decodeJwtClaims(token: string): unknown {
  const payload = token.split('.')[1] ?? '';
  return JSON.parse(Buffer.from(payload, 'base64url').toString('utf8'));
}

export interface NatsAccessOptions {
  /** Connection in the HUB account (the callout account). */
  readonly nc: NatsConnection;
  /** Connection as a system account user (CONNZ and KICK). */
  readonly system: NatsConnection;
  /** Seed of the account nkey nats-server's auth_callout names as issuer. */
  readonly issuerSeed: string;
  /** The hub's verdict on a client certificate: its cluster id, or throws the refusal. */
  readonly authenticate: (context: CallContext) => string;
  readonly memberCache: MemberCache;
  readonly log: Logger;
}

export class NatsAccess {
  readonly #options: NatsAccessOptions;
  readonly #issuer: KeyPair;
  #enforcing: Promise<void> | undefined;
  #again = false;

  constructor(options: NatsAccessOptions) {
    this.#options = options;
    this.#issuer = fromSeed(new TextEncoder().encode(options.issuerSeed.trim()));
  }

  /** Answers auth callout requests until `signal` aborts (every replica). */
  serve(signal: AbortSignal): void {
    const sub = this.#options.nc.subscribe(AUTH_CALLOUT_SUBJECT, {
      queue: 'isthmus-hub-auth',
      callback: (err, msg) => (err ? undefined : this.#answer(msg)),
    });
    signal.addEventListener('abort', () => sub.unsubscribe(), { once: true });
  }

  #answer(msg: Msg): void {
    const { log } = this.#options;
    let request: z.infer<typeof authRequestSchema>;
    try {
      request = authRequestSchema.parse(decodeJwtClaims(msg.string()));
    } catch (err) {
      log.warn({ err: describeError(err) }, 'malformed NATS auth callout request ignored');
      return;
    }
    const { user_nkey: userNkey, server_id: server, client_tls: tls } = request.nats;
    const leafPem = tls?.verified_chains?.[0]?.[0] ?? tls?.certs?.[0];
    let verdict: { jwt: string } | { error: string };
    try {
      if (!leafPem) throw new Error('no verified client certificate');
      const clusterId = this.#options.authenticate({ peerCertificate: new X509Certificate(leafPem).raw, peer: 'nats' });
      const permissions = agentPermissions(clusterId);
      verdict = {
        jwt: signNatsJwt(
          {
            sub: userNkey,
            aud: AGENTS_ACCOUNT,
            name: clusterId,
            exp: Math.floor(Date.now() / 1000) + USER_VALIDITY_S,
            nats: {
              pub: { allow: permissions.publish },
              sub: { allow: permissions.subscribe },
              subs: -1,
              data: -1,
              payload: -1,
              type: 'user',
              version: 2,
            },
          },
          this.#issuer,
        ),
      };
      log.info({ clusterId, server: server.id }, 'NATS connection of a member admitted');
    } catch (err) {
      verdict = { error: describeError(err) };
      log.warn({ err: verdict.error, server: server.id }, 'NATS connection refused');
    }
    msg.respond(
      signNatsJwt(
        { sub: userNkey, aud: server.id, nats: { ...verdict, type: 'authorization_response', version: 2 } },
        this.#issuer,
      ),
    );
  }

  /** Disconnects every agent connection whose cluster is no longer a current member (coalesces overlapping calls). */
  enforce(): Promise<void> {
    if (this.#enforcing) {
      this.#again = true;
      return this.#enforcing;
    }
    this.#enforcing = (async () => {
      do {
        this.#again = false;
        await this.#enforceOnce().catch((err: unknown) =>
          this.#options.log.warn(
            { err: describeError(err) },
            'enforcing NATS membership failed; retried at the next change or check',
          ),
        );
      } while (this.#again);
    })().finally(() => {
      this.#enforcing = undefined;
    });
    return this.#enforcing;
  }

  async #enforceOnce(): Promise<void> {
    const { system, memberCache, log } = this.#options;
    const members = currentMemberIds(memberCache.list());
    const replies = await system.requestMany(
      '$SYS.REQ.SERVER.PING.CONNZ',
      JSON.stringify({ acc: AGENTS_ACCOUNT, auth: true, limit: 100_000 }),
      { strategy: 'stall', stall: 250, maxWait: 2_000 },
    );
    const kicks: Promise<unknown>[] = [];
    for await (const reply of replies) {
      const parsed = connzSchema.safeParse(reply.json());
      if (!parsed.success) continue;
      for (const conn of parsed.data.data?.connections ?? []) {
        // nats-server reports a callout user by the name the hub gave it: the cluster id.
        const clusterId = conn.authorized_user;
        if (conn.account !== AGENTS_ACCOUNT || !clusterId || members.has(clusterId)) continue;
        log.info(
          { clusterId, server: parsed.data.server.id, cid: conn.cid },
          'disconnecting the NATS connection of a removed cluster',
        );
        kicks.push(
          system.request(`$SYS.REQ.SERVER.${parsed.data.server.id}.KICK`, JSON.stringify({ cid: conn.cid }), {
            timeout: 2_000,
          }),
        );
      }
    }
    await Promise.all(kicks);
  }
}
