// A byte-for-byte stream forwarder, run as its own process by the network lab (netns.ts): it
// listens on one endpoint and, for every connection it accepts, opens one to the other endpoint
// and pipes both ways. Guarantees: backpressure (a slow reader slows the writer, nothing piles up
// in memory), half-close (an end in one direction reaches the far side while the other direction
// keeps flowing), a far side that fails to connect or errors aborts the near one (with an RST
// where the near side is TCP; a unix socket can only close, so across the lab's two hops a
// refused target reaches the client as a close), and one line
// `portal listening <listen>` on stdout once connections are accepted.
// Plain node, no dependencies:  node portal.ts <listen> <connect>
// where each endpoint is `tcp:<host>:<port>` or `unix:<path>` (a unix socket path crosses network
// namespaces, which is what the lab uses it for).
import { connect, createServer, type Socket } from 'node:net';
import { rmSync } from 'node:fs';

type Endpoint =
  | { readonly kind: 'tcp'; readonly host: string; readonly port: number }
  | { readonly kind: 'unix'; readonly path: string };

function parseEndpoint(spec: string | undefined): Endpoint {
  const tcp = /^tcp:(.+):(\d+)$/.exec(spec ?? '');
  if (tcp) return { kind: 'tcp', host: tcp[1] ?? '', port: Number(tcp[2]) };
  if (spec?.startsWith('unix:')) return { kind: 'unix', path: spec.slice('unix:'.length) };
  console.error(
    `usage: node portal.ts <listen> <connect>; endpoints are tcp:<host>:<port> or unix:<path> (got ${spec})`,
  );
  process.exit(2);
}

/** Closes a socket so that its peer notices an error: an RST for TCP, a plain close for unix. */
function abort(socket: Socket): void {
  try {
    socket.resetAndDestroy();
  } catch {
    socket.destroy();
  }
}

const listenOn = parseEndpoint(process.argv[2]);
const connectTo = parseEndpoint(process.argv[3]);

const server = createServer({ allowHalfOpen: true }, (near) => {
  const far =
    connectTo.kind === 'tcp'
      ? connect({ host: connectTo.host, port: connectTo.port, allowHalfOpen: true })
      : connect({ path: connectTo.path, allowHalfOpen: true });
  near.on('error', () => abort(far));
  far.on('error', () => abort(near));
  // pipe() applies backpressure and, on `end`, ends the other side's writable half only.
  near.pipe(far);
  far.pipe(near);
});

const cleanup = (): void => {
  if (listenOn.kind === 'unix') rmSync(listenOn.path, { force: true });
};
process.once('SIGTERM', () => {
  cleanup();
  process.exit(0);
});
process.once('SIGINT', () => {
  cleanup();
  process.exit(0);
});

server.once('error', (err) => {
  console.error(`portal cannot listen on ${process.argv[2]}: ${err.message}`);
  process.exit(1);
});
if (listenOn.kind === 'unix') {
  cleanup(); // a socket file left by an earlier, killed portal
  server.listen(listenOn.path, () => console.log(`portal listening ${process.argv[2]}`));
} else {
  server.listen(listenOn.port, listenOn.host, () => console.log(`portal listening ${process.argv[2]}`));
}
