// splice() on real loopback TCP: client -> [downstream | splice | upstream] -> backend. Every wait
// is on an event (data, end, close, onClose); timeouts are only failure guards.
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { describe, expect, it } from 'vitest';
import { splice, type Splice, type SpliceStats } from './splice.ts';

interface Rig extends AsyncDisposable {
  /** The far client: its bytes reach the splice as `downstream`. */
  readonly client: Socket;
  /** The backend: what `upstream` is connected to. */
  readonly backend: Socket;
  readonly downstream: Socket;
  readonly upstream: Socket;
  readonly splice: Splice;
  /** Settles with the stats of the first onClose call. */
  readonly closed: Promise<SpliceStats>;
  /** How many times onClose ran. */
  onCloseCalls(): number;
}

async function listen(server: Server): Promise<number> {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return (server.address() as AddressInfo).port;
}

function accepted(server: Server): Promise<Socket> {
  return new Promise((resolve) => server.once('connection', resolve));
}

/**
 * Both halves as the gateway has them: sockets that allow half-open, downstream paused on
 * connect. The client and the backend allow half-open only when asked (a plain socket answers a
 * FIN with its own and closes).
 */
async function rig(
  options: {
    idleTimeoutMs?: number;
    clientHalfOpen?: boolean;
    backendHalfOpen?: boolean;
    beforeSplice?: (r: { client: Socket; downstream: Socket }) => Promise<void>;
  } = {},
): Promise<Rig> {
  const backendServer = createServer({ allowHalfOpen: options.backendHalfOpen ?? false });
  const frontServer = createServer({ allowHalfOpen: true, pauseOnConnect: true });
  const sockets: Socket[] = [];
  const dispose = async (): Promise<void> => {
    for (const socket of sockets) socket.destroy();
    await Promise.all(
      [backendServer, frontServer].map((server) => new Promise<void>((resolve) => server.close(() => resolve()))),
    );
  };
  try {
    const [backendPort, frontPort] = await Promise.all([listen(backendServer), listen(frontServer)]);
    const backendAccepted = accepted(backendServer);
    const frontAccepted = accepted(frontServer);
    const client = connect({ host: '127.0.0.1', port: frontPort, allowHalfOpen: options.clientHalfOpen ?? false });
    const upstream = connect({ host: '127.0.0.1', port: backendPort, allowHalfOpen: true });
    sockets.push(client, upstream);
    const [backend, downstream] = await Promise.all([
      backendAccepted,
      frontAccepted,
      once(client, 'connect'),
      once(upstream, 'connect'),
    ]);
    sockets.push(backend, downstream);
    await options.beforeSplice?.({ client, downstream });
    let calls = 0;
    let settle: (stats: SpliceStats) => void = () => undefined;
    const closed = new Promise<SpliceStats>((resolve) => (settle = resolve));
    const joined = splice(downstream, upstream, {
      idleTimeoutMs: options.idleTimeoutMs ?? 60_000,
      onClose: (stats) => {
        calls++;
        settle(stats);
      },
    });
    return {
      client,
      backend,
      downstream,
      upstream,
      splice: joined,
      closed,
      onCloseCalls: () => calls,
      [Symbol.asyncDispose]: dispose,
    };
  } catch (err) {
    await dispose();
    throw err;
  }
}

/** Everything `socket` receives until its peer's FIN. */
async function readToEnd(socket: Socket): Promise<Buffer> {
  const chunks: Buffer[] = [];
  socket.on('data', (chunk: Buffer) => chunks.push(chunk));
  await once(socket, 'end');
  return Buffer.concat(chunks);
}

/** The first `length` bytes `socket` receives. */
function readBytes(socket: Socket, length: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let got = 0;
    const onData = (chunk: Buffer): void => {
      chunks.push(chunk);
      got += chunk.length;
      if (got < length) return;
      socket.off('data', onData);
      socket.off('close', onClose);
      socket.pause();
      const all = Buffer.concat(chunks);
      if (got > length) socket.unshift(all.subarray(length));
      resolve(all.subarray(0, length));
    };
    const onClose = (): void => reject(new Error(`closed after ${got} of ${length} bytes`));
    socket.on('data', onData);
    socket.once('close', onClose);
    socket.resume();
  });
}

/** Resolves when every socket has emitted 'close' (at once if it already has). */
async function allClosed(...sockets: Socket[]): Promise<void> {
  await Promise.all(sockets.filter((socket) => !socket.closed).map((socket) => once(socket, 'close')));
}

describe('splice', () => {
  it('carries bytes both ways', async () => {
    await using r = await rig();
    r.client.write('ping from the client');
    expect((await readBytes(r.backend, 20)).toString()).toBe('ping from the client');
    r.backend.write('pong from the backend!');
    expect((await readBytes(r.client, 22)).toString()).toBe('pong from the backend!');
    r.client.write('again');
    expect((await readBytes(r.backend, 5)).toString()).toBe('again');
  });

  it('passes a half-close on: the backend sees the FIN and can still answer', async () => {
    await using r = await rig({ backendHalfOpen: true });
    const request = readToEnd(r.backend);
    const reply = readToEnd(r.client);
    r.client.end('the whole request');
    // The backend sees the request and its end ...
    expect((await request).toString()).toBe('the whole request');
    // ... and its answer still travels back over the half that stays open.
    r.backend.write('the reply, ');
    r.backend.end('then FIN');
    expect((await reply).toString()).toBe('the reply, then FIN');
    const stats = await r.closed;
    expect(stats).toEqual({ sent: 17, received: 19, reason: 'closed' });
    await allClosed(r.client, r.backend, r.downstream, r.upstream);
  });

  it('passes on a FIN that arrived before the splice', async () => {
    await using r = await rig({
      backendHalfOpen: true,
      beforeSplice: async ({ client, downstream }) => {
        client.end();
        downstream.resume();
        await once(downstream, 'end');
      },
    });
    await readToEnd(r.backend);
    r.backend.end('late answer');
    expect((await readToEnd(r.client)).toString()).toBe('late answer');
    expect(await r.closed).toEqual({ sent: 0, received: 11, reason: 'closed' });
  });

  it('takes the backend down when the client resets', async () => {
    await using r = await rig();
    r.client.write('x');
    await readBytes(r.backend, 1);
    r.client.resetAndDestroy();
    const stats = await r.closed;
    expect(stats.reason).toMatch(/^error: /);
    // The backend sees its connection end (FIN or reset) and close.
    await allClosed(r.backend, r.downstream, r.upstream);
  });

  it('takes the client down when the backend resets', async () => {
    await using r = await rig();
    r.backend.write('y');
    await readBytes(r.client, 1);
    r.backend.resetAndDestroy();
    const stats = await r.closed;
    expect(stats.reason).toMatch(/^error: /);
    await allClosed(r.client, r.downstream, r.upstream);
  });

  it('ends the client when the backend goes away', async () => {
    await using r = await rig();
    const atClient = readToEnd(r.client);
    r.backend.destroy();
    expect((await atClient).length).toBe(0);
    await r.closed;
    await allClosed(r.client, r.downstream, r.upstream);
  });

  it(
    'takes the other side down when one is destroyed, even after the other sent its FIN',
    { timeout: 10_000 },
    async () => {
      await using r = await rig({ clientHalfOpen: true, backendHalfOpen: true });
      // The backend has answered in full; the client is still sending.
      const atClient = readToEnd(r.client);
      r.backend.end('all of it');
      expect((await atClient).toString()).toBe('all of it');
      expect(r.upstream.readableEnded).toBe(true);
      // Then the client's side goes away without a FIN: the backend must not wait for one.
      r.downstream.destroy();
      const stats = await r.closed;
      expect(stats.reason).not.toBe('idle');
      await allClosed(r.upstream);
    },
  );

  it('closes both sides after the idle timeout', async () => {
    await using r = await rig({ idleTimeoutMs: 50 });
    const stats = await r.closed;
    expect(stats).toEqual({ sent: 0, received: 0, reason: 'idle' });
    // Both far ends see their connection end, and close.
    await allClosed(r.client, r.backend, r.downstream, r.upstream);
  });

  it('closes a half-closed connection that stays idle', async () => {
    await using r = await rig({ idleTimeoutMs: 50, backendHalfOpen: true, clientHalfOpen: true });
    r.client.end('half');
    expect((await readToEnd(r.backend)).toString()).toBe('half');
    const stats = await r.closed;
    expect(stats).toEqual({ sent: 4, received: 0, reason: 'idle' });
    await allClosed(r.downstream, r.upstream);
  });

  it('closes both sides on close(reason) and reports that reason', async () => {
    await using r = await rig();
    r.splice.close('drain deadline');
    expect(await r.closed).toEqual({ sent: 0, received: 0, reason: 'drain deadline' });
    await allClosed(r.client, r.backend, r.downstream, r.upstream);
  });

  it('calls onClose exactly once, with the byte counts', async () => {
    await using r = await rig({ backendHalfOpen: true });
    const toBackend = randomBytes(1_000);
    const toClient = randomBytes(2_500);
    const atBackend = readToEnd(r.backend);
    const atClient = readToEnd(r.client);
    r.client.end(toBackend);
    expect((await atBackend).equals(toBackend)).toBe(true);
    r.backend.end(toClient);
    expect((await atClient).equals(toClient)).toBe(true);
    expect(await r.closed).toEqual({ sent: 1_000, received: 2_500, reason: 'closed' });
    await allClosed(r.client, r.backend, r.downstream, r.upstream);
    // A late close changes nothing.
    r.splice.close('too late');
    await new Promise((resolve) => setImmediate(resolve));
    expect(r.onCloseCalls()).toBe(1);
  });

  it('calls onClose once when both sides fail at the same time', async () => {
    await using r = await rig();
    r.downstream.destroy(new Error('one'));
    r.upstream.destroy(new Error('two'));
    expect((await r.closed).reason).toBe('error: one');
    await allClosed(r.downstream, r.upstream);
    await new Promise((resolve) => setImmediate(resolve));
    expect(r.onCloseCalls()).toBe(1);
  });

  it('moves 32 MiB to a slow reader intact without buffering more than a few MiB', { timeout: 60_000 }, async () => {
    await using r = await rig({ backendHalfOpen: true });
    const size = 32 * 1024 * 1024;
    const payload = randomBytes(size);
    const expected = createHash('sha256').update(payload).digest('hex');
    // What the splice holds: read from the client but not yet handed to the kernel for the backend.
    let maxBuffered = 0;
    const sample = (): void => {
      maxBuffered = Math.max(maxBuffered, r.upstream.writableLength + r.downstream.readableLength);
    };
    r.downstream.on('data', sample);
    // The backend reads one chunk, then waits a millisecond: much slower than loopback.
    const hash = createHash('sha256');
    let received = 0;
    r.backend.on('data', (chunk: Buffer) => {
      hash.update(chunk);
      received += chunk.length;
      sample();
      r.backend.pause();
      setTimeout(() => r.backend.resume(), 1);
    });
    const done = once(r.backend, 'end');
    r.client.end(payload);
    await done;
    expect(received).toBe(size);
    expect(hash.digest('hex')).toBe(expected);
    expect(maxBuffered).toBeGreaterThan(0);
    expect(maxBuffered).toBeLessThan(4 * 1024 * 1024);
    r.backend.end();
    expect((await r.closed).sent).toBe(size);
  });
});
