// The hub serves Join (no client certificate yet: the bootstrap token authenticates) and the
// mTLS calls on one port. grpc-js's createSsl either demands a client certificate or never asks
// for one, so this asks for one without demanding it; every handler but Join then requires an
// authorized peer. updateIdentity() hot-swaps certificate and trust bundle for new connections.
import * as grpc from '@grpc/grpc-js';

export interface ServerIdentity {
  /** PEM: leaf first, then any intermediates. */
  readonly certChain: string;
  readonly key: string;
  /** PEM roots that client certificates must chain to. */
  readonly trustedRoots: string;
}

export class OptionalClientCertCredentials extends grpc.ServerCredentials {
  constructor(identity: ServerIdentity) {
    super({ requestCert: true, rejectUnauthorized: false, minVersion: 'TLSv1.3' }, toContextOptions(identity));
  }

  updateIdentity(identity: ServerIdentity): void {
    this.updateSecureContextOptions(toContextOptions(identity));
  }

  _equals(other: grpc.ServerCredentials): boolean {
    return other === this;
  }
}

function toContextOptions(identity: ServerIdentity): { cert: Buffer; key: Buffer; ca: Buffer } {
  return {
    cert: Buffer.from(identity.certChain),
    key: Buffer.from(identity.key),
    ca: Buffer.from(identity.trustedRoots),
  };
}
