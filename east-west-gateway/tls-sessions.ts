// TLS session resumption between gateways. A resumed TLS 1.3 session carries no certificate chain
// (the server sees only the client's leaf, the client sees nothing), so verification must not be
// skipped on resumption: the server remembers the chain each leaf came with on a full handshake,
// and the client keeps, with each session, the peer it verified; both re-check against the
// current bundle and membership on every connection. A trust change forgets everything.
import { randomBytes } from 'node:crypto';
import type { TLSSocket } from 'node:tls';
import { peerChainOf } from '../common/pki/index.ts';

const MEMORY_LIMIT = 4096;

export class PeerChainMemory {
  readonly #chains = new Map<string, Buffer[]>();

  static freshTicketKeys(): Buffer {
    return randomBytes(48);
  }

  /** The peer's chain as presented, or, for a resumed session, as it was presented in full before. */
  chainOf(socket: TLSSocket): Buffer[] {
    const chain = peerChainOf(socket.getPeerCertificate(true));
    const [leaf] = chain;
    if (chain.length !== 1 || leaf === undefined || !socket.isSessionReused()) return chain;
    return this.#chains.get(fingerprint(socket)) ?? chain;
  }

  /** After a verified full handshake. */
  remember(socket: TLSSocket): void {
    if (socket.isSessionReused()) return;
    const chain = peerChainOf(socket.getPeerCertificate(true));
    if (chain.length < 2) return;
    if (this.#chains.size >= MEMORY_LIMIT) this.#chains.delete(this.#chains.keys().next().value as string);
    this.#chains.set(fingerprint(socket), chain);
  }

  clear(): void {
    this.#chains.clear();
  }
}

function fingerprint(socket: TLSSocket): string {
  return socket.getPeerCertificate().fingerprint256;
}

/** Client side: the last session per remote gateway and SNI, with the identity verified when it was made. */
export class SessionCache<P> {
  readonly #sessions = new Map<string, { session: Buffer; peer: P }>();

  get(target: string): { session: Buffer; peer: P } | undefined {
    return this.#sessions.get(target);
  }

  set(target: string, session: Buffer, peer: P): void {
    if (this.#sessions.size >= MEMORY_LIMIT && !this.#sessions.has(target))
      this.#sessions.delete(this.#sessions.keys().next().value as string);
    this.#sessions.set(target, { session, peer });
  }

  delete(target: string): void {
    this.#sessions.delete(target);
  }

  clear(): void {
    this.#sessions.clear();
  }
}
