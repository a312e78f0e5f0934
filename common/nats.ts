// One way to connect to NATS for every component: TLS with a client certificate, reconnecting
// forever (nats.js gives up after 10 attempts by default), status changes logged.
import { readFile } from 'node:fs/promises';
import { connect, nkeyAuthenticator, type NatsConnection } from '@nats-io/transport-node';
import type { Logger } from './logger.ts';

export interface NatsTls {
  readonly ca: string;
  readonly cert: string;
  readonly key: string;
}

export async function tlsFromFiles(files: { caFile: string; certFile: string; keyFile: string }): Promise<NatsTls> {
  const [ca, cert, key] = await Promise.all([readFile(files.caFile, 'utf8'), readFile(files.certFile, 'utf8'), readFile(files.keyFile, 'utf8')]);
  return { ca, cert, key };
}

export async function connectNats(options: { urls: readonly string[]; name: string; tls: NatsTls; log: Logger; nkeySeed?: string }): Promise<NatsConnection> {
  const nc = await connect({
    servers: [...options.urls],
    name: options.name,
    tls: { ca: options.tls.ca, cert: options.tls.cert, key: options.tls.key },
    ...(options.nkeySeed ? { authenticator: nkeyAuthenticator(new TextEncoder().encode(options.nkeySeed.trim())) } : {}),
    maxReconnectAttempts: -1,
    reconnectTimeWait: 500,
    reconnectJitter: 250,
    waitOnFirstConnect: true,
    timeout: 5_000,
  });
  void (async () => {
    for await (const status of nc.status()) {
      if (status.type === 'disconnect' || status.type === 'reconnect' || status.type === 'error') {
        options.log.warn({ nats: status.type, server: 'server' in status ? status.server : undefined }, 'NATS connection status');
      }
    }
  })();
  return nc;
}
