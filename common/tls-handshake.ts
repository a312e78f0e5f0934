import { connect, type ConnectionOptions, type DetailedPeerCertificate } from 'node:tls';
import { IsthmusError, describeError } from './errors.ts';

/** "host:port" (IPv6 as "[::1]:port") split in two. */
export function splitEndpoint(endpoint: string): { host: string; port: number } {
  const colon = endpoint.lastIndexOf(':');
  return { host: endpoint.slice(0, colon).replace(/^\[(.*)\]$/, '$1'), port: Number(endpoint.slice(colon + 1)) };
}

/** Completes one TLS handshake with `endpoint` and returns the certificate chain it presented. */
export function tlsHandshake(
  endpoint: string,
  options: ConnectionOptions,
  timeoutMs = 5_000,
): Promise<DetailedPeerCertificate> {
  const { host, port } = splitEndpoint(endpoint);
  return new Promise((resolve, reject) => {
    const socket = connect({ ...options, host, port, ALPNProtocols: ['h2'], timeout: timeoutMs }, () => {
      const peer = socket.getPeerCertificate(true);
      socket.end();
      resolve(peer);
    });
    socket.once('timeout', () => socket.destroy(new Error(`no TLS handshake within ${timeoutMs} ms`)));
    socket.once('error', (err) =>
      reject(new IsthmusError('ISTHMUS_HUB_UNAVAILABLE', `${endpoint}: ${describeError(err)}`)),
    );
  });
}
