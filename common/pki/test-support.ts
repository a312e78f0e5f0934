// Shared by the PKI tests: real authorities, real credentials, real TLS sockets on loopback.
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { connect, type Server, type TLSSocket } from 'node:tls';
import { pino } from 'pino';
import { createTrustBundle, type TrustBundle } from './bundle.ts';
import { ClusterAuthority, createIntermediateRequest } from './cluster-authority.ts';
import { MtlsCredentials } from './credentials.ts';
import type { Membership } from './membership.ts';
import type { RootAuthority } from './root-authority.ts';
import type { X509Svid } from './svid.ts';
import { connectMtls, createMtlsServer } from './tls.ts';
import type { RefusalReason, VerifiedPeer } from './verify.ts';
import { generateKeyPair } from './x509.ts';

export const TRUST_DOMAIN = 'isthmus.test';
/** The membership epoch the tests' clusters join with unless they say otherwise. */
export const TEST_EPOCH = 1;

/** Every id a member of epoch TEST_EPOCH. */
export function testMembership(clusterIds: readonly string[]): Membership {
  return new Map(clusterIds.map((id) => [id, TEST_EPOCH]));
}

/** What an agent does at Join: key here, CSR to the hub, intermediate back. */
export async function joinCluster(
  root: RootAuthority,
  clusterId: string,
  epoch = TEST_EPOCH,
): Promise<ClusterAuthority> {
  const keys = await generateKeyPair('P-256');
  const { certificatePem } = await root.signIntermediate(
    clusterId,
    epoch,
    await createIntermediateRequest(keys, clusterId),
  );
  return ClusterAuthority.create({
    trustDomain: root.trustDomain,
    clusterId,
    privateKey: keys.privateKey,
    intermediatePem: certificatePem,
  });
}

/** Splits concatenated PEM certificates, e.g. an SVID chain into leaf and intermediate. */
export function pemBlocks(pem: string): string[] {
  return pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n?/g) ?? [];
}

export function bundleOf(sequence: number, ...roots: readonly RootAuthority[]): TrustBundle {
  return createTrustBundle({ trustDomain: TRUST_DOMAIN, sequence, roots: roots.map((root) => root.certificatePem) });
}

export function credentialsFor(
  svid: X509Svid,
  bundle: TrustBundle,
  members: readonly string[] | Membership,
): MtlsCredentials {
  return new MtlsCredentials({
    svid,
    bundle,
    members: Array.isArray(members) ? testMembership(members) : (members as Membership),
  });
}

export interface TestServer {
  readonly port: number;
  /** Peers the server accepted. */
  readonly accepted: VerifiedPeer[];
  /** Reasons the server refused peers with, read back from its warn log. */
  readonly refusals: RefusalReason[];
  close(): Promise<void>;
}

/** A server that answers "ok" to each accepted peer and hangs up. */
export async function startServer(credentials: MtlsCredentials): Promise<TestServer> {
  const accepted: VerifiedPeer[] = [];
  const refusals: RefusalReason[] = [];
  const logger = pino(
    { level: 'warn' },
    { write: (line: string) => refusals.push((JSON.parse(line) as { reason: RefusalReason }).reason) },
  );
  const server: Server = createMtlsServer(
    credentials,
    (socket, peer) => {
      accepted.push(peer);
      socket.end('ok');
    },
    { logger },
  );
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    port: (server.address() as AddressInfo).port,
    accepted,
    refusals,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

/**
 * Full mutual verification: rejects with PeerRefusedError if the client refuses the server;
 * true when the server accepted the client too.
 */
export async function exchange(client: MtlsCredentials, server: TestServer): Promise<boolean> {
  const { socket } = await connectMtls(client, { host: '127.0.0.1', port: server.port });
  return (await readToEnd(socket)) === 'ok';
}

/**
 * Presents `svid` (or nothing) to the server without judging the server back, and returns
 * 'accepted' or the reason the server refused it.
 */
export async function presentTo(server: TestServer, svid?: X509Svid): Promise<'accepted' | RefusalReason> {
  const refusalsBefore = server.refusals.length;
  const credentials = svid === undefined ? {} : { key: svid.privateKeyPem, cert: svid.certificateChainPem };
  const reply = await readToEnd(
    connect({ host: '127.0.0.1', port: server.port, rejectUnauthorized: false, ...credentials }),
  );
  if (reply === 'ok') return 'accepted';
  const reason = server.refusals[refusalsBefore];
  if (reason === undefined) throw new Error('connection closed without a reply or a refusal');
  return reason;
}

/** A refused client may see a reset rather than a clean close; both end the read. */
export async function readToEnd(socket: TLSSocket): Promise<string> {
  return new Promise((resolve) => {
    let text = '';
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => (text += chunk));
    socket.on('error', () => undefined);
    socket.on('close', () => resolve(text));
  });
}
