// The backend behind hop 2 (and the direct baseline): a plain TCP server in the bench process that
// echoes, or sinks a stream and acknowledges it, and counts its open connections so the idle test
// can wait for connections established end to end.
//
// Protocol, decided by the first byte a connection sends:
//   'S' + 8-byte big-endian length n → sink: read n more bytes, then answer one byte 'K';
//   anything else                    → echo every byte back (ping-pongs; pings never start with 'S').
// A connection that sends nothing just stays open (the idle test).
import { once } from 'node:events';
import { createServer, type Server, type Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Endpoint } from './topology.ts';

export const SINK_MARK = 0x53; // 'S'
export const SINK_HEADER_BYTES = 9;
export const SINK_ACK = 0x4b; // 'K'

export interface Backend extends AsyncDisposable {
  readonly endpoint: Endpoint;
  /** Connections open right now. */
  readonly open: number;
  /**
   * Resolves once `open` satisfies `done`; rejects, saying what it saw, when the count has not
   * moved for `stallMs`.
   */
  waitForOpen(what: string, done: (open: number) => boolean, stallMs: number): Promise<void>;
}

function serve(socket: Socket): void {
  socket.setNoDelay(true);
  socket.on('error', () => undefined);
  let mode: 'new' | 'echo' | 'sink' = 'new';
  let header: Buffer = Buffer.alloc(0);
  let remaining = 0;
  let acked = false;
  const sink = (bytes: number): void => {
    remaining -= bytes;
    if (remaining <= 0 && !acked) {
      acked = true;
      socket.write(Buffer.of(SINK_ACK));
    }
  };
  socket.on('data', (chunk: Buffer) => {
    if (mode === 'echo') {
      socket.write(chunk);
    } else if (mode === 'sink') {
      sink(chunk.length);
    } else {
      header = header.length === 0 ? chunk : Buffer.concat([header, chunk]);
      if (header[0] !== SINK_MARK) {
        mode = 'echo';
        socket.write(header);
      } else if (header.length >= SINK_HEADER_BYTES) {
        mode = 'sink';
        remaining = Number(header.readBigUInt64BE(1));
        sink(header.length - SINK_HEADER_BYTES);
      }
    }
  });
}

export async function startBackend(host = '127.0.0.1'): Promise<Backend> {
  const sockets = new Set<Socket>();
  const server: Server = createServer({ noDelay: true }, (socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    serve(socket);
  });
  server.maxConnections = 1_000_000;
  server.listen({ host, port: 0, backlog: 4096 });
  await once(server, 'listening');
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('backend has no TCP address');
  return {
    endpoint: { host, port: address.port },
    get open() {
      return sockets.size;
    },
    async waitForOpen(what, done, stallMs) {
      let last = sockets.size;
      let moved = performance.now();
      while (!done(sockets.size)) {
        if (sockets.size !== last) [last, moved] = [sockets.size, performance.now()];
        if (performance.now() - moved > stallMs)
          throw new Error(`${what}: the backend has had ${sockets.size} connections open for ${stallMs} ms`);
        await sleep(5);
      }
    },
    async [Symbol.asyncDispose]() {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
