// Inbound :15443 (DESIGN §6): TLS 1.3 with a client certificate, the peer verified as DESIGN §3
// (only gateways of current members), the SNI naming `<port>.<service>.<namespace>.svc.clusterset.local`.
// Only services this cluster exports, on a port they have, to clusters the export allows, are
// reachable; every other connection is refused — counted by reason and logged — before a byte
// reaches a backend. A ready local endpoint in the caller's zone is preferred; a backend that
// refuses is skipped for the next. The caller learns the outcome from the first byte.
import { connect as tcpConnect, type Socket } from 'node:net';
import type { Server, TLSSocket } from 'node:tls';
import {
  PROBE_SNI,
  TUNNEL_ALPN,
  TUNNEL_CONNECTED,
  TUNNEL_REFUSED,
  parseServiceSni,
} from '../common/gateway-contract.ts';
import type { Logger } from '../common/logger.ts';
import { createMtlsServer, type MtlsCredentials, type VerifiedPeer } from '../common/pki/index.ts';
import type { ClusterState, LocalEndpoint } from './cluster-state.ts';
import type { ConnectionTracker, FlowLabels } from './connections.ts';
import type { TargetHealthTable } from './health.ts';
import { gatewayMetrics } from './metrics.ts';
import { PeerChainMemory } from './tls-sessions.ts';

export interface InboundOptions {
  readonly clusterId: string;
  readonly credentials: MtlsCredentials;
  readonly state: ClusterState;
  readonly health: TargetHealthTable;
  readonly connections: ConnectionTracker;
  readonly connectTimeoutMs: number;
  readonly idleTimeoutMs: number;
  readonly log: Logger;
}

/** Ready endpoints, the caller's zone first, each group in random order (spreads the load). */
export function orderEndpoints(
  endpoints: readonly LocalEndpoint[],
  callerZone: string,
  random: () => number = Math.random,
): LocalEndpoint[] {
  const ready = endpoints
    .filter((e) => e.ready)
    .map((e) => ({ e, key: (e.zone === callerZone && callerZone !== '' ? 0 : 1) + random() }));
  return ready.sort((a, b) => a.key - b.key).map(({ e }) => e);
}

/** Connects to the first endpoint that accepts within the timeout, recording each outcome. */
export async function connectFirst(
  endpoints: readonly LocalEndpoint[],
  options: { health: TargetHealthTable; timeoutMs: number; clusterId: string },
): Promise<{ socket: Socket; target: string } | undefined> {
  const usable = endpoints.filter((e) => options.health.hasCapacity(targetOf(e)));
  const preferred = usable.filter((e) => !options.health.isEjected(targetOf(e)));
  // Ejected endpoints are a last resort, not a dead end.
  for (const endpoint of [...preferred, ...usable.filter((e) => !preferred.includes(e))]) {
    const target = targetOf(endpoint);
    const started = performance.now();
    const socket = await tcpConnectWithin(endpoint.address, endpoint.port, options.timeoutMs);
    if (socket) {
      options.health.recordSuccess(target);
      gatewayMetrics.connectDuration.observe(
        { destination_cluster: options.clusterId, target: 'endpoint' },
        (performance.now() - started) / 1000,
      );
      return { socket, target };
    }
    options.health.recordFailure(target);
  }
  return undefined;
}

export function targetOf(endpoint: { address: string; port: number }): string {
  return endpoint.address.includes(':')
    ? `[${endpoint.address}]:${endpoint.port}`
    : `${endpoint.address}:${endpoint.port}`;
}

/** A TCP connection, or undefined if refused, unreachable or not established in time. */
export function tcpConnectWithin(host: string, port: number, timeoutMs: number): Promise<Socket | undefined> {
  return new Promise((resolve) => {
    const socket = tcpConnect({ host, port, allowHalfOpen: true, noDelay: true });
    const timer = setTimeout(() => {
      socket.destroy();
      resolve(undefined);
    }, timeoutMs);
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.removeAllListeners('error');
      resolve(socket);
    });
    socket.once('error', () => {
      clearTimeout(timer);
      resolve(undefined);
    });
  });
}

export class InboundServer {
  readonly #options: InboundOptions;
  readonly #server: Server;
  readonly #chains = new PeerChainMemory();

  constructor(options: InboundOptions) {
    this.#options = options;
    const { credentials } = options;
    // Identity hot swap and peer verification are the shared mTLS server's; resumed sessions
    // verify the chain remembered from their full handshake; only gateways may connect.
    this.#server = createMtlsServer(credentials, (socket, peer) => void this.#accept(socket, peer), {
      authorize: (id) => id.kind === 'gateway',
      peerChain: (socket) => this.#chains.chainOf(socket),
      logger: options.log,
      onRefused: (reason) => gatewayMetrics.refusals.inc({ reason }),
      server: { ALPNProtocols: [TUNNEL_ALPN], allowHalfOpen: true },
    });
    // Handshake failures (no TLS, wrong version) never reach secureConnection.
    this.#server.on('tlsClientError', (err, socket) => {
      this.#refused(socket, 'TLS_HANDSHAKE', err.message);
    });
  }

  listen(host: string, port: number): Promise<number> {
    return new Promise((resolve, reject) => {
      this.#server.once('error', reject);
      this.#server.listen(port, host, () => {
        this.#server.off('error', reject);
        const address = this.#server.address();
        resolve(typeof address === 'object' && address ? address.port : port);
      });
    });
  }

  /** Stops accepting; open connections carry on (drain: the tracker waits for them). */
  close(): void {
    this.#server.close();
  }

  /** Trust changed: sessions resumed from before must do a full handshake again. */
  forgetSessions(): void {
    this.#chains.clear();
    this.#server.setTicketKeys(PeerChainMemory.freshTicketKeys());
  }

  #refused(socket: TLSSocket | Socket, reason: string, detail: string): void {
    gatewayMetrics.refusals.inc({ reason });
    this.#options.log.warn(
      { reason, detail, remote: `${socket.remoteAddress}:${socket.remotePort}` },
      'inbound connection refused',
    );
    socket.destroy();
  }

  async #accept(socket: TLSSocket, peer: VerifiedPeer): Promise<void> {
    const { state, log } = this.#options;
    socket.on('error', () => undefined);
    socket.setNoDelay(true);
    this.#chains.remember(socket);
    const caller = peer.clusterId as string;
    if (socket.alpnProtocol !== TUNNEL_ALPN)
      return this.#refused(socket, 'BAD_ALPN', `ALPN ${String(socket.alpnProtocol)} is not ${TUNNEL_ALPN}`);
    const sni = socket.servername || '';
    if (sni === PROBE_SNI) {
      socket.end(Buffer.from([TUNNEL_CONNECTED]));
      return;
    }
    const target = parseServiceSni(sni);
    if (!target)
      return this.#refused(socket, sni ? 'BAD_SNI' : 'NO_SNI', sni ? `SNI ${sni} names no service port` : 'no SNI');
    const exported = state.exportedPort(target.namespace, target.name, target.port);
    if (exported === 'NOT_EXPORTED')
      return this.#refused(
        socket,
        'NOT_EXPORTED',
        `${target.namespace}/${target.name} is not exported from this cluster`,
      );
    if (exported === 'NO_SUCH_PORT')
      return this.#refused(socket, 'NO_SUCH_PORT', `${target.namespace}/${target.name} has no TCP port ${target.port}`);
    if (exported.allowedClusters.length > 0 && !exported.allowedClusters.includes(caller)) {
      return this.#refused(
        socket,
        'NOT_ALLOWED',
        `${target.namespace}/${target.name} is not exported to cluster ${caller}`,
      );
    }
    const labels: FlowLabels = {
      direction: 'inbound',
      namespace: target.namespace,
      service: target.name,
      source_cluster: caller,
      destination_cluster: this.#options.clusterId,
    };
    const callerZone = state.members?.get(caller)?.zone ?? '';
    const endpoints = orderEndpoints(state.localEndpoints(target.namespace, target.name, target.port), callerZone);
    const backend = await connectFirst(endpoints, {
      health: this.#options.health,
      timeoutMs: this.#options.connectTimeoutMs,
      clusterId: this.#options.clusterId,
    });
    if (socket.destroyed) {
      backend?.socket.destroy();
      return;
    }
    if (!backend) {
      gatewayMetrics.connections.inc({ ...labels, result: 'no_endpoint' });
      log.info({ ...labels, endpoints: endpoints.length }, 'no local endpoint accepted; the caller fails over');
      socket.end(
        Buffer.concat([
          Buffer.from([TUNNEL_REFUSED]),
          Buffer.from(`no ready endpoint of ${target.namespace}/${target.name}:${target.port} accepted`),
        ]),
      );
      return;
    }
    socket.write(Buffer.from([TUNNEL_CONNECTED]));
    this.#options.health.opened(backend.target);
    this.#options.connections.track(
      'inbound',
      caller,
      labels,
      backend.target,
      socket,
      backend.socket,
      this.#options.idleTimeoutMs,
      () => this.#options.health.closed(backend.target),
    );
  }
}
