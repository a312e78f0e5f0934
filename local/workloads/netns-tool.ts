// Test clients run inside a cluster's network namespace (`ip netns exec`), printing one JSON line:
//   connect <host> <port> <count> [timeoutMs]  — `count` sequential connections; each reads the
//       backend's greeting, sends a line, reads the echo, half-closes and waits for the close.
//       {"served":{"<id>":n},"failed":n,"errors":[...]}
//   stream <host> <port> <seconds> <rateKiB>   — one connection sending and reading back data for
//       `seconds`, then half-closing; {"id","sent","received","intact","error"}
//   tls <host> <port> <sni> [certFile keyFile] — one mTLS attempt with ALPN isthmus-tunnel/1;
//       {"firstByte":n|null,"closed":bool,"error"}
//   timeline <host> <port> <seconds> [timeoutMs] — new connections one after another for `seconds`;
//       {"startedAt":epochMs,"connections":[[startOffsetMs, "<id>"|"!<error>", durationMs], ...]}
//   get <url>                                  — an HTTP GET; prints the body
//   loop <host> <port> <perSecond> [timeoutMs] — new connections at a steady rate, each on its own
//       (no waiting for the previous), until killed; once a second, what ended in that second:
//       {"at":epochMs,"served":{"<id>":n},"failed":n,"failedStarts":[epochMs,...],"errors":[...],"open":n,"maxMs":n}
//       (failedStarts: when each failed connection began, so a late timeout is laid at the right door)
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { connect as tcpConnect } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { dialGreeting as once } from './greeting-client.ts';

const [mode, ...args] = process.argv.slice(2);

async function connectMany(host: string, port: number, count: number, timeoutMs: number): Promise<void> {
  const served: Record<string, number> = {};
  const errors: string[] = [];
  for (let i = 0; i < count; i++) {
    try {
      const id = await once(host, port, timeoutMs);
      served[id] = (served[id] ?? 0) + 1;
    } catch (err) {
      errors.push((err as Error).message);
    }
  }
  console.log(JSON.stringify({ served, failed: errors.length, errors: errors.slice(0, 10) }));
}

async function stream(host: string, port: number, seconds: number, rateKiB: number): Promise<void> {
  const socket = tcpConnect({ host, port, allowHalfOpen: true });
  const sentHash = createHash('sha256');
  const receivedHash = createHash('sha256');
  let id = '';
  let header = true;
  let sent = 0;
  let received = 0;
  let error = '';
  socket.on('data', (chunk: Buffer) => {
    if (header) {
      const newline = chunk.indexOf(10);
      if (newline < 0) return;
      id = chunk.subarray(0, newline).toString();
      chunk = chunk.subarray(newline + 1);
      header = false;
    }
    received += chunk.length;
    receivedHash.update(chunk);
  });
  socket.on('error', (err: Error) => (error = err.message));
  await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
  const chunk = Buffer.alloc((1024 * rateKiB) / 10, 7);
  const deadline = Date.now() + seconds * 1000;
  while (Date.now() < deadline && !socket.destroyed) {
    const piece = Buffer.from(chunk.map((_, i) => (sent + i) % 251));
    socket.write(piece);
    sentHash.update(piece);
    sent += piece.length;
    await new Promise((r) => setTimeout(r, 100));
  }
  socket.end();
  if (!socket.closed) await new Promise<void>((resolve) => socket.once('close', () => resolve()));
  console.log(
    JSON.stringify({
      id,
      sent,
      received,
      intact: sent === received && sentHash.digest('hex') === receivedHash.digest('hex'),
      error,
    }),
  );
}

async function tls(host: string, port: number, sni: string, certFile?: string, keyFile?: string): Promise<void> {
  const socket = tlsConnect({
    host,
    port,
    servername: sni,
    rejectUnauthorized: false,
    ALPNProtocols: ['isthmus-tunnel/1'],
    ...(certFile && keyFile ? { cert: readFileSync(certFile, 'utf8'), key: readFileSync(keyFile, 'utf8') } : {}),
  });
  let firstByte: number | null = null;
  let error = '';
  socket.on('data', (chunk: Buffer) => {
    if (firstByte === null) firstByte = chunk[0] ?? null;
    socket.destroy();
  });
  socket.on('error', (err: Error) => (error = err.message));
  await new Promise<void>((resolve) => {
    const timer = setTimeout(() => socket.destroy(), 10_000);
    socket.once('close', () => {
      clearTimeout(timer);
      resolve();
    });
  });
  console.log(JSON.stringify({ firstByte, closed: true, error }));
}

async function timeline(host: string, port: number, seconds: number, timeoutMs: number): Promise<void> {
  const startedAt = Date.now();
  const connections: [number, string, number][] = [];
  while (Date.now() - startedAt < seconds * 1000) {
    const began = Date.now();
    const outcome = await once(host, port, timeoutMs).catch((err: Error) => `!${err.message}`);
    connections.push([began - startedAt, outcome, Date.now() - began]);
  }
  console.log(JSON.stringify({ startedAt, connections }));
}

/** Steady new connections (the demo's client): counts per backend id and failures, one line per second. */
function loop(host: string, port: number, perSecond: number, timeoutMs: number): void {
  let served: Record<string, number> = {};
  let failed = 0;
  let failedStarts: number[] = [];
  let errors: string[] = [];
  let maxMs = 0;
  let open = 0;
  setInterval(() => {
    const began = performance.now();
    const startedAt = Date.now();
    open++;
    void once(host, port, timeoutMs)
      .then(
        (id) => (served[id] = (served[id] ?? 0) + 1),
        (err: Error) => {
          failed++;
          failedStarts.push(startedAt);
          if (errors.length < 3) errors.push(err.message);
        },
      )
      .finally(() => {
        open--;
        maxMs = Math.max(maxMs, performance.now() - began);
      });
  }, 1000 / perSecond);
  setInterval(() => {
    console.log(
      JSON.stringify({ at: Date.now(), served, failed, failedStarts, errors, open, maxMs: Math.round(maxMs) }),
    );
    served = {};
    failed = 0;
    failedStarts = [];
    errors = [];
    maxMs = 0;
  }, 1000);
  for (const signal of ['SIGTERM', 'SIGINT'] as const) process.on(signal, () => process.exit(0));
}

switch (mode) {
  case 'timeline':
    await timeline(args[0] as string, Number(args[1]), Number(args[2] ?? 5), Number(args[3] ?? 15_000));
    break;
  case 'connect':
    await connectMany(args[0] as string, Number(args[1]), Number(args[2] ?? 1), Number(args[3] ?? 10_000));
    break;
  case 'stream':
    await stream(args[0] as string, Number(args[1]), Number(args[2] ?? 5), Number(args[3] ?? 64));
    break;
  case 'tls':
    await tls(args[0] as string, Number(args[1]), args[2] ?? '', args[3], args[4]);
    break;
  case 'loop':
    loop(args[0] as string, Number(args[1]), Number(args[2] ?? 20), Number(args[3] ?? 10_000));
    break;
  case 'get':
    console.log(await (await fetch(args[0] as string)).text());
    break;
  default:
    console.error(`unknown mode ${mode}`);
    process.exit(2);
}
