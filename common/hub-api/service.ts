// The Hub gRPC service, typed on both sides from messages.ts: the server validates every request
// with zod before a handler sees it; the client is promise-based with a deadline on every call.
// Server guarantees, in this order, before a request body is decoded: the caller is authenticated
// (every method but Join: its verified client certificate), admitted by the per-peer limiter
// (rate and calls in flight, keyed by cluster id, or by remote address for Join), and its
// message is within the method's byte limit. Only then is the protobuf decoded and validated.
import type { PeerCertificate } from 'node:tls';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import type { z } from 'zod';
import { formatIssues } from '../config.ts';
import { IsthmusError } from '../errors.ts';
import type { Logger } from '../logger.ts';
import { requestSchemas, type HubMethod, type HubMethods } from './messages.ts';
import { PeerLimiter, type LimitPolicy } from './peer-limiter.ts';
import { HubCallError, toServiceError } from './status.ts';

const protoFile = fileURLToPath(new URL('./hub.proto', import.meta.url));
const definition = loadSync(protoFile, {
  keepCase: false,
  longs: Number,
  enums: String,
  defaults: true,
  arrays: true,
  objects: true,
});
const loaded = grpc.loadPackageDefinition(definition) as unknown as {
  isthmus: { hub: { v1: { Hub: grpc.ServiceClientConstructor } } };
};
const HubServiceClient = loaded.isthmus.hub.v1.Hub;

/** What a handler knows about the caller. */
export interface CallContext {
  /** DER of the client certificate when the TLS layer verified it against the trusted roots. */
  readonly peerCertificate: Buffer | undefined;
  readonly peer: string;
  /** Set for every method but Join: the cluster id the server's authenticate hook derived from the certificate. */
  readonly clusterId?: string;
}

/** What the server enforces before decoding a request (see the file comment). */
export interface HubServerGuards {
  /** Verifies the caller of a non-Join method and returns its cluster id; throws an IsthmusError otherwise. */
  readonly authenticate: (context: CallContext) => string;
  /** Largest encoded request per method, in bytes. */
  readonly maxMessageBytes: { readonly [M in HubMethod]: number };
  /** Join: per remote address. Every other method: per cluster id. */
  readonly joinLimit: LimitPolicy;
  readonly agentLimit: LimitPolicy;
  readonly limiter?: PeerLimiter;
}

/** The remote address without the port ("ipv4:10.0.0.1:5123" → "10.0.0.1"). */
export function remoteAddress(peer: string): string {
  const withoutScheme = peer.replace(/^(ipv4|ipv6|unix):/, '');
  const bracketed = /^\[([^\]]+)\]/.exec(withoutScheme);
  if (bracketed) return bracketed[1] as string;
  const colon = withoutScheme.lastIndexOf(':');
  return colon > 0 && withoutScheme.indexOf(':') === colon ? withoutScheme.slice(0, colon) : withoutScheme;
}

export type HubHandlers = {
  [M in HubMethod]: (request: HubMethods[M]['request'], context: CallContext) => Promise<HubMethods[M]['response']>;
};

export const keepaliveServerOptions: grpc.ServerOptions = {
  'grpc.keepalive_time_ms': 30_000,
  'grpc.keepalive_timeout_ms': 10_000,
  'grpc.keepalive_permit_without_calls': 1,
  'grpc.http2.min_ping_interval_without_data_ms': 5_000,
  // The server-wide cap; each method has a smaller one of its own (HubServerGuards).
  'grpc.max_receive_message_length': 16 * 1024 * 1024,
};

export const keepaliveClientOptions: grpc.ClientOptions = {
  'grpc.keepalive_time_ms': 30_000,
  'grpc.keepalive_timeout_ms': 10_000,
  'grpc.keepalive_permit_without_calls': 1,
  'grpc.max_send_message_length': 64 * 1024 * 1024,
  // Hub endpoints are often IP addresses, which must not go into SNI; the hub is verified by its
  // SPIFFE ID (checkServerIdentity), not by a host name.
  'grpc.ssl_target_name_override': 'hub.isthmus.internal',
  // grpc-js fails calls fast while a channel waits out its reconnect backoff, which by default
  // grows to 120 s: a hub back after an outage would go unseen that long. Keep it at most 1 s.
  'grpc.initial_reconnect_backoff_ms': 250,
  'grpc.max_reconnect_backoff_ms': 1_000,
};

export function addHubService(server: grpc.Server, handlers: HubHandlers, log: Logger, guards: HubServerGuards): void {
  const limiter = guards.limiter ?? new PeerLimiter();
  const definition: Record<string, grpc.MethodDefinition<unknown, unknown>> = {};
  const decoders = new Map<string, (buffer: Buffer) => unknown>();
  // Requests reach the handler undecoded: decoding waits until the caller is authenticated and admitted.
  for (const [name, method] of Object.entries(HubServiceClient.service)) {
    decoders.set(name, method.requestDeserialize);
    definition[name] = { ...method, requestDeserialize: (buffer: Buffer) => buffer };
  }
  const implementation: grpc.UntypedServiceImplementation = {};
  for (const method of Object.keys(requestSchemas) as HubMethod[]) {
    const lower = method.charAt(0).toLowerCase() + method.slice(1);
    const decode = decoders.get(method);
    if (!decode) throw new Error(`hub.proto has no method ${method}`);
    implementation[lower] = ((call: grpc.ServerUnaryCall<Buffer, unknown>, callback: grpc.sendUnaryData<unknown>) => {
      const auth = call.getAuthContext();
      const base: CallContext = { peerCertificate: auth?.sslPeerCertificate?.raw, peer: call.getPeer() };
      const refuse = (err: IsthmusError): void => {
        log.info({ method, peer: base.peer, code: err.code, err: err.message }, 'hub call refused');
        callback(toServiceError(err));
      };
      let context: CallContext;
      let admission: ReturnType<PeerLimiter['acquire']>;
      let request: unknown;
      try {
        context = method === 'Join' ? base : { ...base, clusterId: guards.authenticate(base) };
        const key = method === 'Join' ? `address:${remoteAddress(base.peer)}` : `cluster:${context.clusterId}`;
        admission = limiter.acquire(key, method === 'Join' ? guards.joinLimit : guards.agentLimit);
        if (!admission.ok) {
          throw new IsthmusError(
            'ISTHMUS_RATE_LIMITED',
            `${method}: ${admission.reason === 'rate' ? 'too many calls per second' : 'too many calls in flight'} from ${key}; retry later`,
          );
        }
        try {
          const size = call.request.length;
          if (size > guards.maxMessageBytes[method])
            throw new IsthmusError(
              'ISTHMUS_MESSAGE_TOO_LARGE',
              `${method} request of ${size} bytes; the limit is ${guards.maxMessageBytes[method]}`,
            );
          let decoded: unknown;
          try {
            decoded = decode(call.request);
          } catch (err) {
            throw new IsthmusError('ISTHMUS_INPUT_INVALID', `${method}: not a valid protobuf message`, { cause: err });
          }
          const parsed = (requestSchemas[method] as z.ZodType).safeParse(decoded);
          if (!parsed.success)
            throw new IsthmusError('ISTHMUS_INPUT_INVALID', `${method}: ${formatIssues(parsed.error)}`);
          request = parsed.data;
        } catch (err) {
          admission.release();
          throw err;
        }
      } catch (err) {
        if (err instanceof IsthmusError) refuse(err);
        else callback({ code: grpc.status.INTERNAL, details: `${method} failed on the hub; see the hub log` });
        return;
      }
      const handler = handlers[method] as (request: unknown, context: CallContext) => Promise<unknown>;
      const admitted = admission;
      handler(request, context)
        .then(
          (response) => callback(null, response),
          (err: unknown) => {
            if (err instanceof IsthmusError) {
              refuse(err);
            } else {
              log.error({ method, peer: context.peer, err }, 'hub call failed');
              callback({ code: grpc.status.INTERNAL, details: `${method} failed on the hub; see the hub log` });
            }
          },
        )
        .finally(() => admitted.ok && admitted.release());
    }) as grpc.handleUnaryCall<Buffer, unknown>;
  }
  server.addService(definition, implementation);
}

export interface HubClientOptions {
  /** Verifies the hub's certificate instead of the host name (the hub has a SPIFFE identity). */
  readonly checkServerIdentity?: (hostname: string, cert: PeerCertificate) => Error | undefined;
}

/** A typed client for one hub endpoint. */
export class HubClient {
  readonly endpoint: string;
  readonly #client: grpc.Client;

  constructor(endpoint: string, credentials: grpc.ChannelCredentials) {
    this.endpoint = endpoint;
    this.#client = new HubServiceClient(endpoint, credentials, keepaliveClientOptions);
  }

  call<M extends HubMethod>(
    method: M,
    request: HubMethods[M]['request'],
    deadlineMs = 10_000,
  ): Promise<HubMethods[M]['response']> {
    const lower = method.charAt(0).toLowerCase() + method.slice(1);
    const fn = (
      this.#client as unknown as Record<string, grpc.requestCallback<unknown> & ((...args: unknown[]) => void)>
    )[lower];
    if (!fn) throw new Error(`hub client has no method ${method}`);
    return new Promise((resolve, reject) => {
      fn.call(
        this.#client,
        request,
        { deadline: Date.now() + deadlineMs },
        (err: grpc.ServiceError | null, response: unknown) => {
          if (err) reject(new HubCallError(method, err));
          else resolve(response as HubMethods[M]['response']);
        },
      );
    });
  }

  close(): void {
    this.#client.close();
  }
}

/** Channel credentials: server-auth TLS (Join) when no client identity is given, mTLS otherwise. */
export function hubChannelCredentials(
  trustedRoots: string,
  client: { certChain: string; key: string } | undefined,
  options: HubClientOptions = {},
): grpc.ChannelCredentials {
  const verify = options.checkServerIdentity ? { checkServerIdentity: options.checkServerIdentity } : {};
  return grpc.credentials.createSsl(
    Buffer.from(trustedRoots),
    client ? Buffer.from(client.key) : null,
    client ? Buffer.from(client.certChain) : null,
    verify,
  );
}
