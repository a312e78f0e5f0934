// Every component serves /healthz (process alive), /readyz (ready for work) and /metrics
// (Prometheus) on one small HTTP listener.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { collectDefaultMetrics, register, type Registry } from 'prom-client';

export interface StatusServerOptions {
  readonly host: string;
  readonly port: number;
  readonly registry: Registry;
  /** Returns undefined when ready, otherwise why not. */
  readonly notReadyReason: () => string | undefined;
}

export interface StatusServer {
  readonly port: number;
  close(): Promise<void>;
}

let defaultMetricsCollected = false;

/**
 * The process's registry: prom-client's global one, so metrics that library code declares at
 * module level (e.g. peer verification failures) are served too. One component per process.
 */
export function processMetricsRegistry(component: string): Registry {
  register.setDefaultLabels({ component });
  if (!defaultMetricsCollected) collectDefaultMetrics({ register });
  defaultMetricsCollected = true;
  return register;
}

export async function startStatusServer(options: StatusServerOptions): Promise<StatusServer> {
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (path === '/healthz') {
      res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
    } else if (path === '/readyz') {
      const reason = options.notReadyReason();
      res.writeHead(reason === undefined ? 200 : 503, { 'content-type': 'text/plain' }).end(`${reason ?? 'ready'}\n`);
    } else if (path === '/metrics') {
      options.registry.metrics().then(
        (text) => res.writeHead(200, { 'content-type': options.registry.contentType }).end(text),
        (err: unknown) => res.writeHead(500).end(String(err)),
      );
    } else {
      res.writeHead(404).end();
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, resolve);
  });
  return {
    port: (server.address() as AddressInfo).port,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}
