// openTunnel against the real InboundServer on loopback, with real certificates: a root, one
// intermediate per cluster, gateway leaves. Cluster a dials; b (and c) answer. The inbound side's
// view of its cluster is a hand-built stand-in for ClusterState (only what InboundServer reads).
import { once } from 'node:events';
import { createServer as createTcpServer, type AddressInfo, type Server as TcpServer, type Socket } from 'node:net';
import { createServer as createTlsServer, type TLSSocket } from 'node:tls';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { TUNNEL_ALPN, serviceSni } from '../common/gateway-contract.ts';
import { secureContextOptionsFor } from '../common/pki/credentials.ts';
import { RootAuthority, formatSpiffeId, type MtlsCredentials, type VerifiedPeer } from '../common/pki/index.ts';
import { TRUST_DOMAIN, bundleOf, credentialsFor, joinCluster, testMembership } from '../common/pki/test-support.ts';
import type { ClusterState, ExportedPort, LocalEndpoint } from './cluster-state.ts';
import { ConnectionTracker } from './connections.ts';
import { TargetHealthTable } from './health.ts';
import { InboundServer } from './inbound.ts';
import { SessionCache } from './tls-sessions.ts';
import { openTunnel, type TunnelOptions, type TunnelResult } from './tunnel.ts';

const SERVICE = { namespace: 'shop', name: 'echo', port: 7 };
const SNI = serviceSni(SERVICE.namespace, SERVICE.name, SERVICE.port);
/** A second exported service, served by the same backend. */
const OTHER = { namespace: 'shop', name: 'other', port: 9 };
const OTHER_SNI = serviceSni(OTHER.namespace, OTHER.name, OTHER.port);
const silent = pino({ level: 'silent' });

/** Root, one intermediate per cluster, and a gateway leaf per cluster; every cluster a member. */
async function federation(clusters: readonly string[]) {
  const root = await RootAuthority.generate({ trustDomain: TRUST_DOMAIN });
  const bundle = bundleOf(1, root);
  const credentials = new Map<string, MtlsCredentials>();
  for (const clusterId of clusters) {
    const authority = await joinCluster(root, clusterId);
    const svid = await authority.issueLeaf({
      kind: 'gateway',
      trustDomain: TRUST_DOMAIN,
      clusterId,
      name: 'east-west',
    });
    credentials.set(clusterId, credentialsFor(svid, bundle, clusters));
  }
  const of = (clusterId: string): MtlsCredentials => {
    const found = credentials.get(clusterId);
    if (!found) throw new Error(`no cluster ${clusterId}`);
    return found;
  };
  return { root, of };
}

async function listening(server: TcpServer): Promise<number> {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return (server.address() as AddressInfo).port;
}

function closeServer(server: TcpServer): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}

/** A backend that echoes every byte; destroys its connections on dispose. */
async function echoBackend(): Promise<{ port: number; endpoint: LocalEndpoint } & AsyncDisposable> {
  const sockets = new Set<Socket>();
  const server = createTcpServer({ allowHalfOpen: true }, (socket) => {
    sockets.add(socket);
    socket.on('error', () => undefined);
    socket.pipe(socket);
  });
  const port = await listening(server);
  return {
    port,
    endpoint: { address: '127.0.0.1', port, zone: '', ready: true },
    async [Symbol.asyncDispose]() {
      for (const socket of sockets) socket.destroy();
      await closeServer(server);
    },
  };
}

/** The real inbound side of cluster `clusterId`, exporting SERVICE and OTHER with `endpoints`. */
async function inbound(
  clusterId: string,
  credentials: MtlsCredentials,
  endpoints: readonly LocalEndpoint[],
): Promise<{ port: number; connections: ConnectionTracker; server: InboundServer } & AsyncDisposable> {
  const exports = [SERVICE, OTHER];
  const state = {
    members: new Map<string, { zone: string }>(),
    exportedPort: (namespace: string, name: string, port: number): ExportedPort | 'NOT_EXPORTED' | 'NO_SUCH_PORT' => {
      const service = exports.find((e) => e.namespace === namespace && e.name === name);
      if (!service) return 'NOT_EXPORTED';
      return port === service.port ? { ...service, allowedClusters: [] } : 'NO_SUCH_PORT';
    },
    localEndpoints: () => [...endpoints],
  } as unknown as ClusterState;
  const connections = new ConnectionTracker(silent);
  const server = new InboundServer({
    clusterId,
    credentials,
    state,
    health: new TargetHealthTable({
      settings: { consecutiveFailures: 5, baseEjectionTime: 30_000, maxEjectionTime: 300_000 },
      maxConnections: 100,
    }),
    connections,
    connectTimeoutMs: 5_000,
    idleTimeoutMs: 60_000,
    log: silent,
  });
  const port = await server.listen('127.0.0.1', 0);
  return {
    port,
    connections,
    server,
    async [Symbol.asyncDispose]() {
      server.close();
      await connections.drain(0);
    },
  };
}

interface SilentConnection {
  /** Resolves when the first connection is over: its application bytes, as text. */
  readonly finished: Promise<string>;
}

/**
 * A TLS server with `credentials` that completes handshakes and then never says a word; it
 * records what the first client sends until that client goes away.
 */
async function silentGateway(
  credentials: MtlsCredentials,
): Promise<{ port: number } & SilentConnection & AsyncDisposable> {
  const server = createTlsServer({
    ...secureContextOptionsFor(credentials.svid),
    requestCert: true,
    rejectUnauthorized: false,
    ALPNProtocols: [TUNNEL_ALPN],
  });
  const sockets = new Set<TLSSocket>();
  const finished = new Promise<string>((resolve) => {
    server.once('secureConnection', (socket: TLSSocket) => {
      let text = '';
      socket.on('data', (chunk: Buffer) => (text += chunk.toString()));
      socket.once('close', () => resolve(text));
    });
    // A client that hangs up before the server finished its handshake sent no application bytes.
    server.once('tlsClientError', () => resolve(''));
  });
  server.on('secureConnection', (socket: TLSSocket) => {
    sockets.add(socket);
    socket.on('error', () => undefined);
  });
  const port = await listening(server);
  return {
    port,
    finished,
    async [Symbol.asyncDispose]() {
      for (const socket of sockets) socket.destroy();
      await closeServer(server);
    },
  };
}

function tunnelTo(
  port: number,
  credentials: MtlsCredentials,
  sessions: SessionCache<VerifiedPeer>,
  extra: Partial<TunnelOptions> = {},
): Promise<TunnelResult> {
  return openTunnel({
    address: { address: '127.0.0.1', port },
    sni: SNI,
    expectCluster: 'b',
    credentials,
    sessions,
    timeoutMs: 10_000,
    ...extra,
  });
}

/** Sends `text` through an open tunnel and reads the echo back. */
async function echo(socket: TLSSocket, text: string, alreadySent = ''): Promise<string> {
  const expected = alreadySent.length + text.length;
  let got = '';
  const done = new Promise<string>((resolve, reject) => {
    socket.on('data', (chunk: Buffer) => {
      got += chunk.toString();
      if (got.length >= expected) resolve(got);
    });
    socket.once('close', () => reject(new Error(`closed after ${JSON.stringify(got)}`)));
  });
  socket.resume();
  socket.write(text);
  return done;
}

function expectOk(result: TunnelResult): { socket: TLSSocket; peer: VerifiedPeer } {
  if (!result.ok) throw new Error(`tunnel failed: ${result.reason}`);
  return result;
}

/** Opens a tunnel, checks it works, and closes it; the session stays cached. */
async function roundTrip(
  port: number,
  credentials: MtlsCredentials,
  sessions: SessionCache<VerifiedPeer>,
  sni = SNI,
): Promise<{ reused: boolean; peer: VerifiedPeer }> {
  const { socket, peer } = expectOk(await tunnelTo(port, credentials, sessions, { sni }));
  try {
    expect(await echo(socket, 'ping')).toBe('ping');
    return { reused: socket.isSessionReused(), peer };
  } finally {
    socket.destroy();
  }
}

const gatewayOf = (clusterId: string): string =>
  formatSpiffeId({ kind: 'gateway', trustDomain: TRUST_DOMAIN, clusterId, name: 'east-west' });

describe('openTunnel', () => {
  it('reaches a backend through a gateway of the expected cluster, first bytes first', async () => {
    const fed = await federation(['a', 'b']);
    await using backend = await echoBackend();
    await using server = await inbound('b', fed.of('b'), [backend.endpoint]);
    const result = await tunnelTo(server.port, fed.of('a'), new SessionCache(), {
      firstBytes: [Buffer.from('hello '), Buffer.from('there, ')],
    });
    const { socket, peer } = expectOk(result);
    try {
      expect(peer.clusterId).toBe('b');
      expect(peer.spiffeId).toBe(gatewayOf('b'));
      expect(socket.alpnProtocol).toBe(TUNNEL_ALPN);
      expect(await echo(socket, 'world', 'hello there, ')).toBe('hello there, world');
      expect(server.connections.size).toBe(1);
    } finally {
      socket.destroy();
    }
  });

  it('refuses a gateway of another cluster than expected, and sends it nothing', async () => {
    const fed = await federation(['a', 'b', 'c']);
    await using impostor = await silentGateway(fed.of('c'));
    const result = await tunnelTo(impostor.port, fed.of('a'), new SessionCache(), {
      firstBytes: [Buffer.from('secret request')],
    });
    expect(result.ok).toBe(false);
    expect(!result.ok && result.reason).toMatch(/^NOT_AUTHORIZED: /);
    // The server sees the client hang up without a byte of the request.
    expect(await impostor.finished).toBe('');
  });

  it('refuses the real inbound side of another cluster', async () => {
    const fed = await federation(['a', 'b', 'c']);
    await using backend = await echoBackend();
    await using server = await inbound('c', fed.of('c'), [backend.endpoint]);
    const result = await tunnelTo(server.port, fed.of('a'), new SessionCache());
    expect(result.ok).toBe(false);
    expect(!result.ok && result.reason).toMatch(/^NOT_AUTHORIZED: .*\/cluster\/c\/gateway\/east-west/);
  });

  it('resumes the TLS session on the next connection and still knows the peer', async () => {
    const fed = await federation(['a', 'b']);
    await using backend = await echoBackend();
    await using server = await inbound('b', fed.of('b'), [backend.endpoint]);
    const sessions = new SessionCache<VerifiedPeer>();
    const first = await roundTrip(server.port, fed.of('a'), sessions);
    expect(first.reused).toBe(false);
    expect(sessions.get(`127.0.0.1:${server.port} ${SNI}`)?.peer).toEqual(first.peer);
    const second = await roundTrip(server.port, fed.of('a'), sessions);
    expect(second.reused).toBe(true);
    expect(second.peer).toEqual(first.peer);
    expect(second.peer.clusterId).toBe('b');
  });

  it('resumes per service: alternating between two services of one gateway resumes each', async () => {
    const fed = await federation(['a', 'b']);
    await using backend = await echoBackend();
    await using server = await inbound('b', fed.of('b'), [backend.endpoint]);
    const sessions = new SessionCache<VerifiedPeer>();
    const reused: boolean[] = [];
    for (const sni of [SNI, OTHER_SNI, SNI, OTHER_SNI])
      reused.push((await roundTrip(server.port, fed.of('a'), sessions, sni)).reused);
    expect(reused).toEqual([false, false, true, true]);
  });

  it('does not take a resumed session for a gateway of another cluster', async () => {
    const fed = await federation(['a', 'b', 'c']);
    await using backend = await echoBackend();
    await using server = await inbound('b', fed.of('b'), [backend.endpoint]);
    const sessions = new SessionCache<VerifiedPeer>();
    await roundTrip(server.port, fed.of('a'), sessions);
    const result = await tunnelTo(server.port, fed.of('a'), sessions, { expectCluster: 'c' });
    expect(result).toEqual({ ok: false, reason: 'resumed session no longer trusted: other cluster' });
    expect(sessions.get(`127.0.0.1:${server.port} ${SNI}`)).toBeUndefined();
  });

  it('refuses a resumed session once the peer cluster is no longer a member, and recovers after it re-joins', async () => {
    const fed = await federation(['a', 'b']);
    await using backend = await echoBackend();
    await using server = await inbound('b', fed.of('b'), [backend.endpoint]);
    const client = fed.of('a');
    const sessions = new SessionCache<VerifiedPeer>();
    await roundTrip(server.port, client, sessions);
    client.updateMembers(testMembership(['a']));
    const refused = await tunnelTo(server.port, client, sessions);
    expect(refused).toEqual({ ok: false, reason: 'resumed session no longer trusted: NOT_A_MEMBER' });
    // The session is forgotten: the next attempt does a full handshake, refused the same way.
    expect(sessions.get(`127.0.0.1:${server.port} ${SNI}`)).toBeUndefined();
    const full = await tunnelTo(server.port, client, sessions);
    expect(full.ok).toBe(false);
    expect(!full.ok && full.reason).toMatch(/^NOT_A_MEMBER: /);
    client.updateMembers(testMembership(['a', 'b']));
    expect(await roundTrip(server.port, client, sessions)).toMatchObject({ reused: false, peer: { clusterId: 'b' } });
  });

  it('makes a full handshake again, and succeeds, after the inbound side forgot its sessions', async () => {
    const fed = await federation(['a', 'b']);
    await using backend = await echoBackend();
    await using server = await inbound('b', fed.of('b'), [backend.endpoint]);
    const sessions = new SessionCache<VerifiedPeer>();
    await roundTrip(server.port, fed.of('a'), sessions);
    server.server.forgetSessions();
    expect(await roundTrip(server.port, fed.of('a'), sessions)).toMatchObject({
      reused: false,
      peer: { clusterId: 'b' },
    });
    expect((await roundTrip(server.port, fed.of('a'), sessions)).reused).toBe(true);
  });

  it('is refused by the inbound side on resumption once the caller is no longer a member there', async () => {
    const fed = await federation(['a', 'b']);
    await using backend = await echoBackend();
    await using server = await inbound('b', fed.of('b'), [backend.endpoint]);
    const sessions = new SessionCache<VerifiedPeer>();
    expect((await roundTrip(server.port, fed.of('a'), sessions)).reused).toBe(false);
    expect((await roundTrip(server.port, fed.of('a'), sessions)).reused).toBe(true);
    // The resumed session carries only the caller's leaf: the inbound side must re-check the
    // chain it remembered against today's membership.
    fed.of('b').updateMembers(testMembership(['b']));
    const result = await tunnelTo(server.port, fed.of('a'), sessions);
    expect(result.ok).toBe(false);
    expect(server.connections.size).toBe(0);
  });

  it('refuses a resumed session whose root left the bundle', async () => {
    const fed = await federation(['a', 'b']);
    await using backend = await echoBackend();
    await using server = await inbound('b', fed.of('b'), [backend.endpoint]);
    const client = fed.of('a');
    const sessions = new SessionCache<VerifiedPeer>();
    await roundTrip(server.port, client, sessions);
    const otherRoot = await RootAuthority.generate({ trustDomain: TRUST_DOMAIN });
    expect(client.updateBundle(bundleOf(2, otherRoot))).toBe(true);
    expect(await tunnelTo(server.port, client, sessions)).toEqual({
      ok: false,
      reason: 'resumed session no longer trusted: UNKNOWN_ROOT',
    });
  });

  it('reports a REFUSED answer with its reason', async () => {
    const fed = await federation(['a', 'b']);
    await using server = await inbound('b', fed.of('b'), []);
    const result = await tunnelTo(server.port, fed.of('a'), new SessionCache(), { firstBytes: [Buffer.from('GET /')] });
    expect(result).toEqual({ ok: false, reason: 'refused: no ready endpoint of shop/echo:7 accepted' });
  });

  // The inbound side refuses these by hanging up. The tunnel must notice the FIN at once, not
  // wait for its timeout (10 s here): the caller fails over meanwhile.
  it.each([
    ['a service it does not export', { sni: serviceSni('shop', 'not-exported', 80) }, ['a', 'b']],
    ['a port the service does not have', { sni: serviceSni('shop', 'echo', 8) }, ['a', 'b']],
    ['a caller that is not a member there', {}, ['b']],
  ] as const)('fails at once when the inbound side hangs up unanswered: %s', async (_why, extra, serverMembers) => {
    const fed = await federation(['a', 'b']);
    fed.of('b').updateMembers(testMembership(serverMembers));
    await using backend = await echoBackend();
    await using server = await inbound('b', fed.of('b'), [backend.endpoint]);
    const result = await tunnelTo(server.port, fed.of('a'), new SessionCache(), extra);
    expect(result.ok).toBe(false);
    // A FIN reads as "closed before answering", a reset as its socket error; never the timeout.
    expect(!result.ok && result.reason).not.toMatch(/^no answer/);
    expect(server.connections.size).toBe(0);
  });

  it('gives up on a gateway that never answers after the timeout', async () => {
    const fed = await federation(['a', 'b']);
    await using mute = await silentGateway(fed.of('b'));
    const result = await tunnelTo(mute.port, fed.of('a'), new SessionCache(), {
      timeoutMs: 200,
      firstBytes: [Buffer.from('anyone?')],
    });
    expect(result).toEqual({ ok: false, reason: 'no answer within 200 ms' });
    // The server was verified (the first bytes went out), then the client hung up.
    expect(await mute.finished).toBe('anyone?');
  });
});
