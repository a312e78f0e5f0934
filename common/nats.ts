// One way to connect to NATS for every component: TLS with a client certificate, reconnecting
// forever (nats.js gives up after 10 attempts by default), status changes logged. The server is
// verified by its SPIFFE ID, spiffe://<td>/nats, which only the root issues (DESIGN §3): the
// chain must end at a root of `ca` (the trust bundle), and the host name counts for nothing, so a
// member's intermediate cannot stand in for NATS whatever names it puts in a certificate.
import { readFile } from 'node:fs/promises';
import { connect, nkeyAuthenticator, type NatsConnection } from '@nats-io/transport-node';
import type { Logger } from './logger.ts';
import { serverIdentityCheck } from './pki/index.ts';

export interface NatsTls {
  /** PEM roots NATS's certificate must chain to (the federation's trust bundle). */
  readonly ca: string;
  readonly cert: string;
  readonly key: string;
}

/** nats.js's TLS options type omits node:tls's checkServerIdentity, which it passes on all the same. */
type NatsTlsOptions = NonNullable<Parameters<typeof connect>[0]>['tls'];

export async function tlsFromFiles(files: { caFile: string; certFile: string; keyFile: string }): Promise<NatsTls> {
  const [ca, cert, key] = await Promise.all([
    readFile(files.caFile, 'utf8'),
    readFile(files.certFile, 'utf8'),
    readFile(files.keyFile, 'utf8'),
  ]);
  return { ca, cert, key };
}

/**
 * nats.js hands these to tls.connect: OpenSSL checks the chain against the bundle (and the
 * intermediates' name constraints), then Node calls checkServerIdentity, which wants spiffe://<td>/nats.
 */
export function natsTlsOptions(trustDomain: string, tls: NatsTls): NatsTlsOptions {
  return {
    ca: tls.ca,
    cert: tls.cert,
    key: tls.key,
    checkServerIdentity: serverIdentityCheck(trustDomain, tls.ca, 'nats'),
  } as NatsTlsOptions;
}

export async function connectNats(options: {
  urls: readonly string[];
  name: string;
  trustDomain: string;
  tls: NatsTls;
  log: Logger;
  nkeySeed?: string;
  /** Where the connection's inboxes live: an agent's own prefix (agentInboxPrefix), the only one it may subscribe to. */
  inboxPrefix?: string;
}): Promise<NatsConnection> {
  const nc = await connect({
    // Every node of a NATS cluster, tried in random order (nats.js's default), so clients spread
    // over the nodes and a reconnect goes to a surviving one (the cluster gossips its other nodes too).
    servers: [...options.urls],
    name: options.name,
    tls: natsTlsOptions(options.trustDomain, options.tls),
    ...(options.inboxPrefix ? { inboxPrefix: options.inboxPrefix } : {}),
    ...(options.nkeySeed
      ? { authenticator: nkeyAuthenticator(new TextEncoder().encode(options.nkeySeed.trim())) }
      : {}),
    maxReconnectAttempts: -1,
    // Agents are admitted by the hub (auth callout): while no hub replica answers, NATS refuses
    // them, and nats.js would otherwise give up for good after the same refusal twice.
    ignoreAuthErrorAbort: true,
    reconnectTimeWait: 500,
    reconnectJitter: 250,
    waitOnFirstConnect: true,
    timeout: 5_000,
  });
  void (async () => {
    for await (const status of nc.status()) {
      if (status.type === 'disconnect' || status.type === 'reconnect' || status.type === 'error') {
        options.log.warn(
          { nats: status.type, server: 'server' in status ? status.server : undefined },
          'NATS connection status',
        );
      }
    }
  })();
  return nc;
}
