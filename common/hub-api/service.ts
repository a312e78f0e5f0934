// The Hub gRPC service, typed on both sides from messages.ts: the server validates every request
// with zod before a handler sees it; the client is promise-based with a deadline on every call.
import type { PeerCertificate } from 'node:tls';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import type { z } from 'zod';
import { formatIssues } from '../config.ts';
import { IsthmusError } from '../errors.ts';
import type { Logger } from '../logger.ts';
import { requestSchemas, type HubMethod, type HubMethods } from './messages.ts';
import { HubCallError, toServiceError } from './status.ts';

const protoFile = fileURLToPath(new URL('./hub.proto', import.meta.url));
const definition = loadSync(protoFile, { keepCase: false, longs: Number, enums: String, defaults: true, arrays: true, objects: true });
const loaded = grpc.loadPackageDefinition(definition) as unknown as {
  isthmus: { hub: { v1: { Hub: grpc.ServiceClientConstructor } } };
};
const HubServiceClient = loaded.isthmus.hub.v1.Hub;

/** What a handler knows about the caller. */
export interface CallContext {
  /** DER of the client certificate when the TLS layer verified it against the trusted roots. */
  readonly peerCertificate: Buffer | undefined;
  readonly peer: string;
}

export type HubHandlers = {
  [M in HubMethod]: (request: HubMethods[M]['request'], context: CallContext) => Promise<HubMethods[M]['response']>;
};

export const keepaliveServerOptions: grpc.ServerOptions = {
  'grpc.keepalive_time_ms': 30_000,
  'grpc.keepalive_timeout_ms': 10_000,
  'grpc.keepalive_permit_without_calls': 1,
  'grpc.http2.min_ping_interval_without_data_ms': 5_000,
  'grpc.max_receive_message_length': 64 * 1024 * 1024,
};

export const keepaliveClientOptions: grpc.ClientOptions = {
  'grpc.keepalive_time_ms': 30_000,
  'grpc.keepalive_timeout_ms': 10_000,
  'grpc.keepalive_permit_without_calls': 1,
  'grpc.max_send_message_length': 64 * 1024 * 1024,
  // Hub endpoints are often IP addresses, which must not go into SNI; the hub is verified by its
  // SPIFFE ID (checkServerIdentity), not by a host name.
  'grpc.ssl_target_name_override': 'hub.isthmus.internal',
};

export function addHubService(server: grpc.Server, handlers: HubHandlers, log: Logger): void {
  const implementation: grpc.UntypedServiceImplementation = {};
  for (const method of Object.keys(requestSchemas) as HubMethod[]) {
    const lower = method.charAt(0).toLowerCase() + method.slice(1);
    implementation[lower] = ((call: grpc.ServerUnaryCall<unknown, unknown>, callback: grpc.sendUnaryData<unknown>) => {
      const parsed = (requestSchemas[method] as z.ZodType).safeParse(call.request);
      if (!parsed.success) {
        callback(toServiceError(new IsthmusError('ISTHMUS_INPUT_INVALID', `${method}: ${formatIssues(parsed.error)}`)));
        return;
      }
      const auth = call.getAuthContext();
      const context: CallContext = { peerCertificate: auth?.sslPeerCertificate?.raw, peer: call.getPeer() };
      const handler = handlers[method] as (request: unknown, context: CallContext) => Promise<unknown>;
      handler(parsed.data, context).then(
        (response) => callback(null, response),
        (err: unknown) => {
          if (err instanceof IsthmusError) {
            log.info({ method, peer: context.peer, code: err.code, err: err.message }, 'hub call refused');
            callback(toServiceError(err));
          } else {
            log.error({ method, peer: context.peer, err }, 'hub call failed');
            callback({ code: grpc.status.INTERNAL, details: `${method} failed on the hub; see the hub log` });
          }
        },
      );
    }) as grpc.handleUnaryCall<unknown, unknown>;
  }
  server.addService(HubServiceClient.service, implementation);
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

  call<M extends HubMethod>(method: M, request: HubMethods[M]['request'], deadlineMs = 10_000): Promise<HubMethods[M]['response']> {
    const lower = method.charAt(0).toLowerCase() + method.slice(1);
    const fn = (this.#client as unknown as Record<string, grpc.requestCallback<unknown> & ((...args: unknown[]) => void)>)[lower];
    if (!fn) throw new Error(`hub client has no method ${method}`);
    return new Promise((resolve, reject) => {
      fn.call(this.#client, request, { deadline: Date.now() + deadlineMs }, (err: grpc.ServiceError | null, response: unknown) => {
        if (err) reject(new HubCallError(method, err));
        else resolve(response as HubMethods[M]['response']);
      });
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
