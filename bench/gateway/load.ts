// The gateway benchmark's load client: ping-pongs on an open connection, connect + ping-pong +
// close, parallel bulk streams into the backend's sink, idle connections; and the /proc readings
// (CPU time, RSS, open-file limit) the benchmark takes of the proxy processes and of itself.
import { execFileSync } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { SINK_ACK, SINK_HEADER_BYTES, SINK_MARK } from './backend.ts';
import type { Endpoint } from './topology.ts';

export const PING_BYTES = 64;
const PING = Buffer.alloc(PING_BYTES, 'p');
/** A socket with no traffic for this long while a test is using it has stalled: the test fails. */
export const STALL_MS = 10_000;

/**
 * Connects with TCP_NODELAY; rejects on error or when nothing answers within STALL_MS. Later
 * errors are left to the caller's listeners ('close' always follows), never thrown.
 */
export function connectTo(target: Endpoint): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: target.host, port: target.port, noDelay: true });
    let connected = false;
    const fail = (err: Error): void => {
      if (connected) return;
      socket.destroy();
      reject(err);
    };
    socket.setTimeout(STALL_MS, () =>
      fail(new Error(`connect to ${target.host}:${target.port}: no answer in ${STALL_MS} ms`)),
    );
    socket.on('error', fail);
    socket.once('connect', () => {
      connected = true;
      socket.setTimeout(0);
      resolve(socket);
    });
  });
}

function stalled(socket: Socket, what: string): () => void {
  return () => socket.destroy(new Error(`${what}: no traffic for ${STALL_MS} ms`));
}

/** One long-lived connection for sequential 64-byte ping-pongs through the echo backend. */
export class PingConnection {
  readonly #socket: Socket;
  #received = 0;
  #pending: { resolve: () => void; reject: (err: Error) => void } | undefined;
  #failure: Error | undefined;

  private constructor(socket: Socket) {
    this.#socket = socket;
    socket.on('data', (chunk: Buffer) => {
      this.#received += chunk.length;
      if (this.#received >= PING_BYTES && this.#pending !== undefined) {
        const { resolve } = this.#pending;
        this.#pending = undefined;
        resolve();
      }
    });
    const fail = (err?: Error): void => {
      this.#failure ??= err ?? new Error('connection closed by the peer');
      this.#pending?.reject(this.#failure);
      this.#pending = undefined;
    };
    socket.on('error', fail);
    socket.on('close', () => fail());
  }

  static async open(target: Endpoint): Promise<PingConnection> {
    return new PingConnection(await connectTo(target));
  }

  ping(): Promise<void> {
    if (this.#failure !== undefined) return Promise.reject(this.#failure);
    return new Promise((resolve, reject) => {
      this.#received = 0;
      this.#pending = { resolve, reject };
      this.#socket.write(PING);
    });
  }

  /** Runs up to `count` timed ping-pongs, stopping early at `untilMs` (performance.now()); appends the round trips in ms. */
  async run(count: number, untilMs: number, latencies: number[]): Promise<void> {
    this.#socket.setTimeout(STALL_MS, stalled(this.#socket, 'ping-pong'));
    try {
      for (let i = 0; i < count && performance.now() < untilMs; i++) {
        const start = performance.now();
        await this.ping();
        latencies.push(performance.now() - start);
      }
    } finally {
      this.#socket.setTimeout(0);
    }
  }

  close(): void {
    this.#socket.destroy();
  }
}

/**
 * Connect, one 64-byte ping-pong, close: returns the ms from connect() to the echo, then closes
 * and waits until the connection is closed at both ends of the client's socket (not timed).
 */
export async function connectPingClose(target: Endpoint): Promise<number> {
  const start = performance.now();
  const socket = connect({ host: target.host, port: target.port, noDelay: true });
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  try {
    const echoed = new Promise<number>((resolve, reject) => {
      let received = 0;
      socket.on('data', (chunk: Buffer) => {
        received += chunk.length;
        if (received >= PING_BYTES) resolve(performance.now() - start);
      });
      socket.on('error', reject);
      socket.once('close', () =>
        reject(new Error(`connection closed after ${received} of ${PING_BYTES} echoed bytes`)),
      );
    });
    socket.setTimeout(STALL_MS, stalled(socket, 'connect + ping-pong'));
    socket.once('connect', () => socket.write(PING));
    const elapsed = await echoed;
    socket.end();
    await closed;
    return elapsed;
  } finally {
    socket.destroy();
  }
}

const CHUNK = Buffer.alloc(64 * 1024, 0xab);

/** Streams `bytes` into the backend's sink over one connection; resolves on the sink's acknowledgement. */
async function streamOne(target: Endpoint, bytes: number): Promise<void> {
  const socket = await connectTo(target);
  try {
    socket.setTimeout(STALL_MS, stalled(socket, 'bulk stream'));
    const acknowledged = new Promise<void>((resolve, reject) => {
      socket.on('data', (chunk: Buffer) => (chunk.includes(SINK_ACK) ? resolve() : undefined));
      socket.on('error', reject);
      socket.once('close', () => reject(new Error('connection closed before the sink acknowledged the stream')));
    });
    acknowledged.catch(() => undefined);
    const header = Buffer.alloc(SINK_HEADER_BYTES);
    header[0] = SINK_MARK;
    header.writeBigUInt64BE(BigInt(bytes), 1);
    socket.write(header);
    for (let sent = 0; sent < bytes;) {
      const n = Math.min(CHUNK.length, bytes - sent);
      sent += n;
      if (!socket.write(n === CHUNK.length ? CHUNK : CHUNK.subarray(0, n))) {
        await Promise.race([once(socket, 'drain'), acknowledged]);
      }
    }
    await acknowledged;
  } finally {
    socket.destroy();
  }
}

/** `parallel` connections stream `totalBytes` between them; resolves with the wall time in seconds. */
export async function bulkStream(target: Endpoint, totalBytes: number, parallel: number): Promise<number> {
  const per = Math.floor(totalBytes / parallel);
  const start = performance.now();
  await Promise.all(
    Array.from({ length: parallel }, (_, i) =>
      streamOne(target, i === parallel - 1 ? totalBytes - per * (parallel - 1) : per),
    ),
  );
  return (performance.now() - start) / 1000;
}

/** Idle connections held open by the client; `lost` counts those the far side closed. */
export interface IdleConnections {
  readonly sockets: readonly Socket[];
  readonly lost: number;
  close(): void;
}

/**
 * Opens `count` connections that send nothing, `batch` at a time; after each batch,
 * `established(opened)` must resolve once that many have reached the far end (a barrier, so the
 * handshakes in flight through a proxy stay bounded by `batch`).
 */
export async function openIdle(
  target: Endpoint,
  count: number,
  batch: number,
  established: (opened: number) => Promise<void>,
): Promise<IdleConnections> {
  const sockets: Socket[] = [];
  let lost = 0;
  const idle: IdleConnections = {
    sockets,
    get lost() {
      return lost;
    },
    close() {
      for (const socket of sockets) socket.destroy();
    },
  };
  try {
    while (sockets.length < count) {
      const outcomes = await Promise.allSettled(
        Array.from({ length: Math.min(batch, count - sockets.length) }, async () => {
          const socket = await connectTo(target);
          socket.once('close', () => lost++);
          sockets.push(socket);
        }),
      );
      const failure = outcomes.find((outcome) => outcome.status === 'rejected');
      if (failure !== undefined)
        throw new Error(`idle connection ${sockets.length + 1} of ${count}: ${String(failure.reason)}`);
      await established(sockets.length);
      if (lost > 0) throw new Error(`${lost} of ${sockets.length} idle connections were closed by the far side`);
    }
    return idle;
  } catch (err) {
    idle.close();
    throw err;
  }
}

const CLOCK_TICKS = ((): number => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    return 100;
  }
})();

/** User + system CPU seconds a process has used (all its threads), from /proc/<pid>/stat. */
export function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the parenthesised command name, which may itself hold spaces: state is field 3.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[14 - 3]) + Number(fields[15 - 3])) / CLOCK_TICKS;
}

/** Resident set size in bytes, from /proc/<pid>/status. */
export function rssBytes(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = /^VmRSS:\s+(\d+) kB/m.exec(status)?.[1];
  if (kb === undefined) throw new Error(`no VmRSS for pid ${pid}`);
  return Number(kb) * 1024;
}
