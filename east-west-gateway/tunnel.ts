// The outbound end of a gateway-to-gateway tunnel: TLS 1.3 to a remote gateway with this
// gateway's certificate, the server verified as a gateway of the expected cluster (on a resumed
// session: the identity verified when the session was made, re-checked against the current
// bundle and membership), the client's first bytes sent along, and the far side's first byte
// awaited — CONNECTED hands over a socket ready to splice, anything else is a failure the caller
// may retry elsewhere, replaying the same bytes (no backend saw them).
import { connect, type ConnectionOptions, type TLSSocket } from 'node:tls';
import type { GatewayAddress } from '../common/api/isthmus.ts';
import { TUNNEL_ALPN, TUNNEL_CONNECTED } from '../common/gateway-contract.ts';
import {
  mtlsClientOptions,
  peerChainOf,
  rootFingerprint,
  verifyPeer,
  type MtlsCredentials,
  type VerifiedPeer,
} from '../common/pki/index.ts';
import type { SessionCache } from './tls-sessions.ts';

export type TunnelResult =
  | { readonly ok: true; readonly socket: TLSSocket; readonly peer: VerifiedPeer }
  | { readonly ok: false; readonly reason: string };

export interface TunnelOptions {
  readonly address: GatewayAddress;
  readonly sni: string;
  readonly expectCluster: string;
  readonly credentials: MtlsCredentials;
  readonly sessions: SessionCache<VerifiedPeer>;
  readonly timeoutMs: number;
  /** Client bytes read so far, sent as soon as the server is verified. */
  readonly firstBytes?: readonly Buffer[];
  /** Gives up at once (the prober found the gateway dead: fail over without waiting out the timeout). */
  readonly signal?: AbortSignal;
}

/** Sessions are kept per gateway and SNI: a server resumes a session only for the name it was made for. */
function sessionKey(address: GatewayAddress, sni: string): string {
  const host = address.address.includes(':') ? `[${address.address}]` : address.address;
  return `${host}:${address.port} ${sni}`;
}

/** Still acceptable now: a member of the same membership epoch, in date, chaining to a root the current bundle holds. */
function stillTrusted(peer: VerifiedPeer, credentials: MtlsCredentials): string | undefined {
  const epoch = peer.clusterId === undefined ? undefined : credentials.members.get(peer.clusterId);
  if (epoch === undefined) return 'NOT_A_MEMBER';
  if (peer.epoch !== epoch) return (peer.epoch ?? 0) < epoch ? 'EPOCH_SUPERSEDED' : 'EPOCH_UNKNOWN';
  if (peer.notAfter.getTime() <= Date.now()) return 'EXPIRED';
  if (!credentials.bundle.roots.some((root) => rootFingerprint(root) === peer.root)) return 'UNKNOWN_ROOT';
  return undefined;
}

export function openTunnel(options: TunnelOptions): Promise<TunnelResult> {
  const key = sessionKey(options.address, options.sni);
  const cached = options.sessions.get(key);
  return new Promise((resolve) => {
    let settled = false;
    // allowHalfOpen is a net.connect option tls.connect passes on (missing from its types).
    const socket = connect({
      ...mtlsClientOptions(options.credentials),
      host: options.address.address,
      port: options.address.port,
      servername: options.sni,
      ALPNProtocols: [TUNNEL_ALPN],
      allowHalfOpen: true,
      ...(cached ? { session: cached.session } : {}),
    } as ConnectionOptions);
    socket.setNoDelay(true);
    let verified: VerifiedPeer | undefined;
    const finish = (result: TunnelResult): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      options.signal?.removeEventListener('abort', onAbort);
      socket.removeListener('data', onData);
      if (!result.ok) {
        socket.destroy();
        if (cached) options.sessions.delete(key);
      }
      resolve(result);
    };
    const timer = setTimeout(
      () => finish({ ok: false, reason: `no answer within ${options.timeoutMs} ms` }),
      options.timeoutMs,
    );
    const onAbort = (): void => finish({ ok: false, reason: 'abandoned: the gateway failed its probe' });
    if (options.signal?.aborted) onAbort();
    options.signal?.addEventListener('abort', onAbort, { once: true });
    socket.once('error', (err: Error) => finish({ ok: false, reason: err.message }));
    socket.once('close', () => finish({ ok: false, reason: 'closed before answering' }));
    // allowHalfOpen: the far side's FIN alone does not close the socket, so it is an answer too.
    socket.once('end', () => finish({ ok: false, reason: 'closed before answering' }));
    socket.on('session', (session: Buffer) => {
      if (verified) options.sessions.set(key, session, verified);
    });
    const onData = (chunk: Buffer): void => {
      socket.pause();
      if (chunk[0] !== TUNNEL_CONNECTED) {
        finish({ ok: false, reason: `refused: ${chunk.subarray(1).toString('utf8') || 'no reason given'}` });
        return;
      }
      if (chunk.length > 1) socket.unshift(chunk.subarray(1));
      finish({ ok: true, socket, peer: verified as VerifiedPeer });
    };
    socket.once('secureConnect', () => {
      if (socket.isSessionReused() && cached) {
        const problem = stillTrusted(cached.peer, options.credentials);
        if (problem || cached.peer.clusterId !== options.expectCluster)
          return finish({ ok: false, reason: `resumed session no longer trusted: ${problem ?? 'other cluster'}` });
        verified = cached.peer;
      } else {
        const verdict = verifyPeer(
          peerChainOf(socket.getPeerCertificate(true)),
          options.credentials.verificationContext(
            (id) => id.kind === 'gateway' && id.clusterId === options.expectCluster,
          ),
        );
        if (!verdict.ok) return finish({ ok: false, reason: `${verdict.reason}: ${verdict.detail}` });
        verified = verdict.peer;
      }
      for (const bytes of options.firstBytes ?? []) socket.write(bytes);
      socket.on('data', onData);
    });
  });
}
