// node:tls glue for Isthmus mTLS endpoints. OpenSSL performs the handshake (which proves the peer
// holds its leaf key) and nothing else: `rejectUnauthorized: false` turns its chain check off and
// verifyPeer decides, so every refusal carries an Isthmus reason. Identity and trust are read
// from MtlsCredentials per connection, so renewal and rotation never touch open connections.
import {
  connect,
  createServer,
  type ConnectionOptions,
  type DetailedPeerCertificate,
  type PeerCertificate,
  type Server,
  type TLSSocket,
  type TlsOptions,
} from 'node:tls';
import type { Logger } from '../logger.ts';
import { parseBundlePem } from './bundle.ts';
import { secureContextOptionsFor, type MtlsCredentials } from './credentials.ts';
import type { SpiffeId } from './spiffe.ts';
import { PeerRefusedError, verifyPeer, type PeerVerdict, type VerifiedPeer } from './verify.ts';

export interface MtlsEndpointOptions {
  /** Endpoint policy on top of identity, e.g. only gateways on :15443. */
  readonly authorize?: (id: SpiffeId) => boolean;
  /** Refusals are logged here at warn level. */
  readonly logger?: Logger;
  /** The chain to verify; default as presented (a resumed session presents none: see the gateway). */
  readonly peerChain?: (socket: TLSSocket) => Buffer[];
  /** Told of every refusal (after logging), e.g. to count it by reason. */
  readonly onRefused?: (reason: string) => void;
}

export interface MtlsServerOptions extends MtlsEndpointOptions {
  /** Further node:tls server options (ALPN, allowHalfOpen, ...); identity and trust stay ours. */
  readonly server?: Omit<TlsOptions, 'key' | 'cert' | 'requestCert' | 'rejectUnauthorized'>;
}

/**
 * The peer's chain as sent (leaf first). Node links each certificate to its issuer; a
 * self-signed root links to itself, hence the repeat check.
 */
export function peerChainOf(certificate: PeerCertificate | DetailedPeerCertificate): Buffer[] {
  const chain: Buffer[] = [];
  // Without a certificate Node returns {}, hence Partial.
  let current: Partial<DetailedPeerCertificate> | undefined = certificate;
  for (; current?.raw !== undefined; current = current.issuerCertificate) {
    const raw = current.raw;
    if (chain.some((seen) => seen.equals(raw))) break;
    chain.push(raw);
  }
  return chain;
}

/** Verifies the peer of a connected socket; on refusal logs, destroys the socket and says why. */
export function verifyTlsPeer(
  socket: TLSSocket,
  credentials: MtlsCredentials,
  options: MtlsEndpointOptions = {},
): PeerVerdict {
  const chain = options.peerChain?.(socket) ?? peerChainOf(socket.getPeerCertificate(true));
  const verdict = verifyPeer(chain, credentials.verificationContext(options.authorize));
  if (!verdict.ok) {
    options.logger?.warn(
      { reason: verdict.reason, detail: verdict.detail, remote: `${socket.remoteAddress}:${socket.remotePort}` },
      'mTLS peer refused',
    );
    options.onRefused?.(verdict.reason);
    socket.destroy();
  }
  return verdict;
}

/**
 * A TLS server that asks every client for its certificate and hands `onPeer` only verified
 * peers. A new SVID applies to the next handshake (server.setSecureContext).
 */
export function createMtlsServer(
  credentials: MtlsCredentials,
  onPeer: (socket: TLSSocket, peer: VerifiedPeer) => void,
  options: MtlsServerOptions = {},
): Server {
  const server = createServer({
    ...options.server,
    ...secureContextOptionsFor(credentials.svid),
    requestCert: true,
    rejectUnauthorized: false,
  });
  const unsubscribe = credentials.onSvidChange((svid) => server.setSecureContext(secureContextOptionsFor(svid)));
  server.once('close', unsubscribe);
  server.on('secureConnection', (socket) => {
    const verdict = verifyTlsPeer(socket, credentials, options);
    if (verdict.ok) onPeer(socket, verdict.peer);
  });
  return server;
}

/**
 * Options for a client that drives tls.connect itself (session resumption, custom sockets):
 * it must call verifyTlsPeer on 'secureConnect' before sending anything.
 */
export function mtlsClientOptions(credentials: MtlsCredentials): ConnectionOptions {
  return { secureContext: credentials.secureContext, rejectUnauthorized: false };
}

export interface MtlsConnectOptions extends MtlsEndpointOptions {
  readonly host: string;
  readonly port: number;
  /** SNI, e.g. `<port>.<service>.<namespace>.svc.clusterset.local` towards a gateway. */
  readonly servername?: string;
}

/** Connects and resolves once the server is verified; rejects with PeerRefusedError otherwise. */
export function connectMtls(
  credentials: MtlsCredentials,
  options: MtlsConnectOptions,
): Promise<{ socket: TLSSocket; peer: VerifiedPeer }> {
  return new Promise((resolve, reject) => {
    const socket = connect({
      ...mtlsClientOptions(credentials),
      host: options.host,
      port: options.port,
      servername: options.servername,
    });
    socket.once('error', reject);
    socket.once('secureConnect', () => {
      socket.off('error', reject);
      const verdict = verifyTlsPeer(socket, credentials, options);
      if (verdict.ok) resolve({ socket, peer: verdict.peer });
      else reject(new PeerRefusedError(verdict.reason, verdict.detail));
    });
  });
}

/**
 * For clients whose TLS stack does verify the chain against `ca` (grpc-js
 * `ChannelCredentials.createSsl(bundlePem, key, chain, { checkServerIdentity })`): replaces the
 * host-name check, which means nothing for SPIFFE identities, with the SPIFFE verifier.
 */
export function spiffeServerIdentityCheck(
  credentials: MtlsCredentials,
  authorize?: (id: SpiffeId) => boolean,
): (hostname: string, certificate: PeerCertificate) => Error | undefined {
  return (_hostname, certificate) => {
    const verdict = verifyPeer(peerChainOf(certificate), credentials.verificationContext(authorize));
    return verdict.ok ? undefined : new PeerRefusedError(verdict.reason, verdict.detail);
  };
}

/**
 * checkServerIdentity for a client of a root-issued server identity (the hub, NATS) whose TLS
 * stack verifies the chain against the bundle PEM: the server must present exactly
 * `spiffe://<td>/<server>`; host names in its certificate mean nothing here. The full chain is
 * judged, so a member's intermediate that minted that identity is refused by name.
 */
export function serverIdentityCheck(
  trustDomain: string,
  bundlePem: string,
  server: 'hub' | 'nats',
): (hostname: string, certificate: PeerCertificate) => Error | undefined {
  const bundle = parseBundlePem(bundlePem, trustDomain, 0);
  return (_hostname, certificate) => {
    const verdict = verifyPeer(peerChainOf(certificate), {
      bundle,
      members: new Map(),
      authorize: (id) => id.kind === server,
    });
    return verdict.ok ? undefined : new PeerRefusedError(verdict.reason, verdict.detail);
  };
}
