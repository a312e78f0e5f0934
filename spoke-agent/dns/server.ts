// The responder's sockets: UDP and TCP on one address and port (CoreDNS's forward plugin sends
// UDP and retries a truncated answer over TCP at the same address). TCP carries length-prefixed
// messages (RFC 1035 §4.2.2), several per connection, in order; an idle connection is closed. The
// zone data is read per query, so every answer reflects the cache at that moment.
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { createServer, isIPv6, type Server, type Socket } from 'node:net';
import type { Logger } from '../../common/logger.ts';
import { respond, type Response } from './message.ts';
import type { Rcode, ZoneData } from './zone.ts';

export interface DnsServerOptions {
  readonly host: string;
  /** 0: any free port (the same one for UDP and TCP). */
  readonly port: number;
  /** The zone data now, or undefined while it is not synced (answered SERVFAIL). */
  readonly zone: () => ZoneData | undefined;
  readonly log: Logger;
  /** Told of every response sent. */
  readonly onResponse?: (rcode: Rcode, transport: 'udp' | 'tcp') => void;
  /** A TCP connection without a complete query for this long is closed. Default 10 s. */
  readonly tcpIdleTimeoutMs?: number;
}

export interface DnsServer {
  readonly host: string;
  readonly port: number;
  close(): Promise<void>;
}

/** Attempts at a port free for both UDP and TCP, when any port will do. */
const ANY_PORT_ATTEMPTS = 10;
const MAX_TCP_CONNECTIONS = 256;
/** SOA serials are 32-bit. */
const MAX_SERIAL = 2 ** 32;

function bindUdp(host: string, port: number): Promise<UdpSocket> {
  const socket = createSocket({ type: isIPv6(host) ? 'udp6' : 'udp4' });
  return new Promise((resolve, reject) => {
    socket.once('error', (err) => {
      socket.close();
      reject(err);
    });
    socket.bind(port, host, () => {
      socket.removeAllListeners('error');
      resolve(socket);
    });
  });
}

function listenTcp(server: Server, host: string, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
}

export async function startDnsServer(options: DnsServerOptions): Promise<DnsServer> {
  const { host, log } = options;
  // The start time: nothing transfers this zone, so the serial only has to be plausible.
  const serial = Math.floor(Date.now() / 1000) % MAX_SERIAL;
  const idleMs = options.tcpIdleTimeoutMs ?? 10_000;
  const connections = new Set<Socket>();

  const answer = (request: Buffer, udp: boolean): Response | undefined => {
    const response = respond(request, options.zone(), { serial, udp });
    if (response?.error !== undefined)
      log.warn({ err: response.error }, 'clusterset DNS: cannot read the imported services; answered SERVFAIL');
    if (response) options.onResponse?.(response.rcode, udp ? 'udp' : 'tcp');
    return response;
  };

  const tcp = createServer((socket) => {
    connections.add(socket);
    socket.setTimeout(idleMs, () => socket.destroy());
    let pending = Buffer.alloc(0);
    socket.on('data', (chunk: Buffer) => {
      pending = Buffer.concat([pending, chunk]);
      while (pending.length >= 2 && pending.length >= 2 + pending.readUInt16BE(0)) {
        const request = pending.subarray(2, 2 + pending.readUInt16BE(0));
        pending = pending.subarray(2 + request.length);
        const response = answer(request, false);
        if (!response) continue;
        const length = Buffer.alloc(2);
        length.writeUInt16BE(response.bytes.length);
        socket.write(Buffer.concat([length, response.bytes]));
      }
    });
    socket.on('error', () => socket.destroy());
    socket.on('close', () => connections.delete(socket));
  });

  // CoreDNS keeps a few pooled connections per upstream; this bounds what a misbehaving client can hold.
  tcp.maxConnections = MAX_TCP_CONNECTIONS;

  // With port 0 the UDP socket picks the port and TCP must get the same one: retry if it is taken.
  for (let attempt = 1; ; attempt++) {
    const udp = await bindUdp(host, options.port);
    const { port } = udp.address();
    try {
      await listenTcp(tcp, host, port);
    } catch (err) {
      udp.close();
      if (options.port !== 0 || attempt >= ANY_PORT_ATTEMPTS || (err as NodeJS.ErrnoException).code !== 'EADDRINUSE')
        throw err;
      continue;
    }
    udp.on('message', (request, peer) => {
      const response = answer(request, true);
      if (response) udp.send(response.bytes, peer.port, peer.address);
    });
    // A send error (e.g. ICMP unreachable from a peer that left) must not end the socket.
    udp.on('error', (err) => log.debug({ err }, 'clusterset DNS: UDP socket error'));
    log.info({ host, port }, 'clusterset DNS responder listening (UDP and TCP)');
    return {
      host,
      port,
      close: async () => {
        for (const socket of connections) socket.destroy();
        await Promise.all([
          new Promise<void>((resolve) => udp.close(() => resolve())),
          new Promise<void>((resolve) => tcp.close(() => resolve())),
        ]);
      },
    };
  }
}
