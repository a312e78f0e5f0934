// Joins two established connections into one: bytes flow both ways with backpressure (pipe
// pauses the reader while the writer's buffer is full), a FIN on one side is passed on as a FIN
// on the other while the reverse direction keeps flowing (half-close), an error or reset on either
// side destroys both, and no byte either way for `idleTimeoutMs` closes both. Calls `onClose`
// once, with the byte counts, when both are gone.
import type { Socket } from 'node:net';

export interface SpliceStats {
  /** Bytes from `downstream` to `upstream`. */
  readonly sent: number;
  /** Bytes from `upstream` to `downstream`. */
  readonly received: number;
  /** Why it ended: 'closed' (both sides finished), 'idle', 'error: ...', or what `close(reason)` said. */
  readonly reason: string;
}

export interface Splice {
  /** Ends both sides now (drain deadline, membership change). */
  close(reason: string): void;
}

export function splice(
  downstream: Socket,
  upstream: Socket,
  options: { idleTimeoutMs: number; onClose: (stats: SpliceStats) => void },
): Splice {
  let sent = 0;
  let received = 0;
  let reason = 'closed';
  let finished = false;
  downstream.on('data', (chunk: Buffer) => (sent += chunk.length));
  upstream.on('data', (chunk: Buffer) => (received += chunk.length));
  const destroyBoth = (why: string): void => {
    if (reason === 'closed') reason = why;
    downstream.destroy();
    upstream.destroy();
  };
  for (const socket of [downstream, upstream]) {
    socket.setTimeout(options.idleTimeoutMs, () => destroyBoth('idle'));
    socket.on('error', (err: Error) => destroyBoth(`error: ${err.message}`));
  }
  // end: false — the FIN is passed on by hand, so the other direction stays open.
  downstream.pipe(upstream, { end: false });
  upstream.pipe(downstream, { end: false });
  downstream.on('end', () => upstream.end());
  upstream.on('end', () => downstream.end());
  // A FIN that arrived before the splice (read while connecting) is passed on now.
  if (downstream.readableEnded) upstream.end();
  if (upstream.readableEnded) downstream.end();
  let closedCount = 0;
  const onSocketClose = (): void => {
    closedCount++;
    // A side that closed without its FIN reaching the other (reset, destroy) takes the other down,
    // also one whose own FIN came already: the FIN it still waits for will never come.
    if (closedCount === 1) {
      if (!downstream.writableEnded || !upstream.writableEnded) {
        if (downstream.destroyed && !upstream.destroyed) upstream.destroy();
        if (upstream.destroyed && !downstream.destroyed) downstream.destroy();
      }
      return;
    }
    if (finished) return;
    finished = true;
    options.onClose({ sent, received, reason });
  };
  downstream.once('close', onSocketClose);
  upstream.once('close', onSocketClose);
  return { close: (why) => destroyBoth(why) };
}
