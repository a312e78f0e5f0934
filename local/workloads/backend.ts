// A test backend, run inside a cluster's network namespace: a TCP server that greets each
// connection with one line naming itself ("<id>\n"), then echoes what it receives and ends its
// side after the client ends theirs (half-close). `node backend.ts <host> <port> <id>`.
import { createServer } from 'node:net';

const [host = '0.0.0.0', port = '0', id = 'backend'] = process.argv.slice(2);
const server = createServer({ allowHalfOpen: true }, (socket) => {
  socket.on('error', () => undefined);
  socket.write(`${id}\n`);
  socket.pipe(socket);
});
server.listen(Number(port), host, () => console.log(`listening ${host}:${port} as ${id}`));
process.on('SIGTERM', () => process.exit(0));
