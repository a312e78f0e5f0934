// What an mTLS endpoint needs at any instant: the identity it presents and what it trusts. Both
// change at runtime (renewal, root rotation, membership), and every new handshake must see the
// latest of each while established connections keep what they negotiated.
import { createSecureContext, type SecureContext, type SecureContextOptions } from 'node:tls';
import { IsthmusError } from '../errors.ts';
import type { TrustBundle } from './bundle.ts';
import type { Membership } from './membership.ts';
import { parseSpiffeId, type SpiffeId } from './spiffe.ts';
import type { X509Svid } from './svid.ts';
import type { PeerVerificationContext } from './verify.ts';

/** TLS 1.3 only: one round trip, and client certificates travel encrypted. */
export function secureContextOptionsFor(svid: X509Svid): SecureContextOptions {
  return { key: svid.privateKeyPem, cert: svid.certificateChainPem, minVersion: 'TLSv1.3' };
}

type SvidListener = (svid: X509Svid) => void;

export class MtlsCredentials {
  #svid!: X509Svid;
  #secureContext!: SecureContext;
  #bundle: TrustBundle;
  #members: Membership;
  readonly #svidListeners = new Set<SvidListener>();

  constructor(init: { readonly svid: X509Svid; readonly bundle: TrustBundle; readonly members: Membership }) {
    this.#bundle = init.bundle;
    this.#members = new Map(init.members);
    this.#install(init.svid);
  }

  get svid(): X509Svid {
    return this.#svid;
  }

  /** Built once per identity, reused by every client connection. */
  get secureContext(): SecureContext {
    return this.#secureContext;
  }

  get bundle(): TrustBundle {
    return this.#bundle;
  }

  /** Current members with their membership epochs. */
  get members(): Membership {
    return this.#members;
  }

  /** Presents `svid` from the next handshake on; throws (and keeps the old one) if it is unusable. */
  updateSvid(svid: X509Svid): void {
    this.#install(svid);
    for (const listener of this.#svidListeners) listener(svid);
  }

  /**
   * Trusts `bundle` from the next verification on. A bundle older than the current one (a
   * replayed watch event) is ignored and false returned.
   */
  updateBundle(bundle: TrustBundle): boolean {
    if (bundle.trustDomain !== this.#bundle.trustDomain) {
      throw new IsthmusError(
        'ISTHMUS_PKI_BUNDLE_INVALID',
        `bundle is for ${bundle.trustDomain}, not ${this.#bundle.trustDomain}`,
      );
    }
    if (bundle.sequence < this.#bundle.sequence) return false;
    this.#bundle = bundle;
    return true;
  }

  updateMembers(members: Membership): void {
    this.#members = new Map(members);
  }

  verificationContext(authorize?: (id: SpiffeId) => boolean): PeerVerificationContext {
    return { bundle: this.#bundle, members: this.#members, authorize };
  }

  /** Called after each identity change (servers swap their secure context); returns an unsubscribe. */
  onSvidChange(listener: SvidListener): () => void {
    this.#svidListeners.add(listener);
    return () => this.#svidListeners.delete(listener);
  }

  #install(svid: X509Svid): void {
    const id = parseSpiffeId(svid.spiffeId);
    if (id.trustDomain !== this.#bundle.trustDomain) {
      throw new IsthmusError(
        'ISTHMUS_PKI_INVALID',
        `${svid.spiffeId} is outside trust domain ${this.#bundle.trustDomain}`,
      );
    }
    // Throws on a key that does not match the certificate, before anything is replaced.
    const secureContext = createSecureContext(secureContextOptionsFor(svid));
    this.#svid = svid;
    this.#secureContext = secureContext;
  }
}
