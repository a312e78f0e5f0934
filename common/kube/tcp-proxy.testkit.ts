// Test kit (not exported from index.ts): a loopback TCP proxy in front of a real kube-apiserver,
// so tests can cut a client off the API — a network partition — and restore it.
import { createServer, connect, type Server, type Socket } from 'node:net';
import { KubeConfig } from '@kubernetes/client-node';

export class TcpProxy implements AsyncDisposable {
  readonly port: number;
  readonly #server: Server;
  readonly #state: { blocked: boolean; sockets: Set<Socket> };

  private constructor(server: Server, port: number, state: { blocked: boolean; sockets: Set<Socket> }) {
    this.#server = server;
    this.port = port;
    this.#state = state;
  }

  /** Proxies 127.0.0.1:<free port> to `target` (e.g. "https://127.0.0.1:6443"). */
  static async start(target: string): Promise<TcpProxy> {
    const url = new URL(target);
    const state = { blocked: false, sockets: new Set<Socket>() };
    const server = createServer((client) => {
      if (state.blocked) {
        client.destroy();
        return;
      }
      const upstream = connect(Number(url.port), url.hostname);
      for (const [from, to] of [
        [client, upstream],
        [upstream, client],
      ] as const) {
        state.sockets.add(from);
        from.on('error', () => to.destroy());
        from.on('close', () => {
          state.sockets.delete(from);
          to.destroy();
        });
        from.pipe(to);
      }
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', resolve);
    });
    const address = server.address();
    if (address === null || typeof address === 'string') throw new Error('proxy has no port');
    return new TcpProxy(server, address.port, state);
  }

  /** A copy of `kc` whose current cluster is reached through this proxy. */
  kubeConfig(kc: KubeConfig): KubeConfig {
    const current = kc.getCurrentCluster()?.name;
    const copy = new KubeConfig();
    copy.loadFromOptions({
      clusters: kc.clusters.map((c) => (c.name === current ? { ...c, server: `https://127.0.0.1:${this.port}` } : c)),
      users: kc.users,
      contexts: kc.contexts,
      currentContext: kc.currentContext,
    });
    return copy;
  }

  /** Drops every open connection and refuses new ones until `restore()`. */
  cut(): void {
    this.#state.blocked = true;
    for (const socket of this.#state.sockets) socket.destroy();
    this.#state.sockets.clear();
  }

  restore(): void {
    this.#state.blocked = false;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.cut();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}
