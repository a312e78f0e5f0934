// One client connection to a test backend (local/workloads/backend.ts) through whatever is in between:
// read the greeting "<id>\n", send "ping\n" and half-close, read the echo, wait for the close.
// Resolves with the backend's id; any other outcome (timeout, reset, a close before the greeting
// or without the echo) rejects. Imports only node:* — it runs inside network namespaces.
import { connect as tcpConnect } from 'node:net';

export function dialGreeting(host: string, port: number, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = tcpConnect({ host, port, allowHalfOpen: true });
    let text = '';
    const timer = setTimeout(() => {
      socket.destroy();
      reject(
        new Error(
          `timeout after ${timeoutMs} ms (${text.includes('\n') ? `greeted by ${text.split('\n')[0]}` : 'no greeting'})`,
        ),
      );
    }, timeoutMs);
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      text += chunk;
      if (text.includes('\n') && !socket.writableEnded) socket.end('ping\n');
    });
    // The far side ending before its greeting is a failure now, not a half-open socket waited on.
    socket.on('end', () => {
      if (!text.includes('\n')) socket.destroy(new Error('closed before the greeting'));
    });
    socket.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    socket.on('close', () => {
      clearTimeout(timer);
      const [id, echo] = text.split('\n');
      if (echo === 'ping' && id) resolve(id);
      else reject(new Error(`unexpected reply ${JSON.stringify(text)}`));
    });
  });
}
