// One outbound listener per imported TCP service port, on the gateway's in-cluster address, with
// a port that stays the same for that service port across changes and restarts (taken back from
// the published table, else derived from a hash of the port's key, then the next free one). The
// table — where each listener is and whether anything can serve it — is published in a
// ConfigMap the agent reads to point the clusterset Service and the MCS slices at it.
import { createHash } from 'node:crypto';
import { createServer, type Server, type Socket } from 'node:net';
import { CoreV1Api, type KubeConfig } from '@kubernetes/client-node';
import {
  gatewayListenersConfigMapName,
  listenerKey,
  listenersDocumentSchema,
  type ListenersDocument,
  type OutboundListenerRecord,
} from '../common/gateway-contract.ts';
import { WorkQueue, apiClient, isNotFound, putConfigMap } from '../common/kube/index.ts';
import type { Logger } from '../common/logger.ts';
import type { ImportedPort } from './cluster-state.ts';
import { gatewayMetrics } from './metrics.ts';

interface OpenListener {
  readonly port: ImportedPort;
  readonly listenPort: number;
  readonly server: Server;
}

export interface ListenerManagerOptions {
  readonly kc: KubeConfig;
  readonly namespace: string;
  readonly gatewayName: string;
  readonly address: string;
  readonly portRange: { readonly from: number; readonly to: number };
  readonly log: Logger;
  readonly onConnection: (port: ImportedPort, socket: Socket) => void;
  /** Whether a candidate can serve the port now, why not, and how traffic splits. */
  readonly health: (port: ImportedPort) => Pick<OutboundListenerRecord, 'healthy' | 'reason' | 'routes' | 'policy'>;
}

export class ListenerManager {
  readonly #options: ListenerManagerOptions;
  readonly #open = new Map<string, OpenListener>();
  /** Ports from the table published before a restart, reused for the same service port. */
  #previous = new Map<string, number>();
  readonly #publishQueue: WorkQueue<string>;
  #published = '';
  #accepting = true;

  constructor(options: ListenerManagerOptions) {
    this.#options = options;
    this.#publishQueue = new WorkQueue<string>({ name: 'listener-table', logger: options.log, maxDelayMs: 30_000 });
  }

  /** Reads the table an earlier run published, so listeners come back on the same ports. */
  async loadPrevious(): Promise<void> {
    try {
      const configMap = await apiClient(this.#options.kc, CoreV1Api).readNamespacedConfigMap({
        name: gatewayListenersConfigMapName(this.#options.gatewayName),
        namespace: this.#options.namespace,
      });
      const parsed = listenersDocumentSchema.safeParse(JSON.parse(configMap.data?.['listeners.json'] ?? '{}'));
      if (parsed.success)
        this.#previous = new Map(
          parsed.data.listeners.map((l) => [listenerKey(l.namespace, l.name, l.protocol, l.port), l.listenPort]),
        );
    } catch (err) {
      if (!isNotFound(err))
        this.#options.log.warn({ err }, 'cannot read the previous listener table; ports are assigned afresh');
    }
    void this.#publishQueue.run(1, () => this.#publish());
  }

  /** Opens listeners for new imported ports, closes those of ports no longer imported (open connections stay). */
  async reconcile(ports: readonly ImportedPort[]): Promise<void> {
    if (!this.#accepting) return;
    const wanted = new Map(ports.map((p) => [listenerKey(p.namespace, p.name, p.protocol, p.port), p]));
    for (const [key, listener] of this.#open) {
      if (wanted.has(key)) continue;
      this.#open.delete(key);
      listener.server.close();
      this.#options.log.info({ listener: key, port: listener.listenPort }, 'outbound listener closed');
    }
    for (const [key, port] of wanted) {
      if (this.#open.has(key)) continue;
      const opened = await this.#openListener(key, port);
      if (opened) this.#open.set(key, opened);
    }
    gatewayMetrics.listeners.set(this.#open.size);
    this.republish();
  }

  /** The table is due again (health changed). */
  republish(): void {
    this.#publishQueue.add('table');
  }

  /** Stops accepting on every listener (drain); the table stays as it is. */
  async close(): Promise<void> {
    this.#accepting = false;
    // Not waiting for the servers' close: that waits for their connections, which the drain bounds.
    for (const listener of this.#open.values()) listener.server.close();
    this.#open.clear();
    await this.#publishQueue.shutDown();
  }

  #candidatePorts(key: string): number[] {
    const { from, to } = this.#options.portRange;
    const size = to - from + 1;
    const start = this.#previous.get(key) ?? from + (createHash('sha256').update(key).digest().readUInt32BE(0) % size);
    const taken = new Set([...this.#open.values()].map((l) => l.listenPort));
    const ports: number[] = [];
    for (let i = 0; i < size && ports.length < 64; i++) {
      const port = from + ((start - from + i) % size);
      if (!taken.has(port)) ports.push(port);
    }
    return ports;
  }

  async #openListener(key: string, port: ImportedPort): Promise<OpenListener | undefined> {
    for (const listenPort of this.#candidatePorts(key)) {
      const server = createServer({ allowHalfOpen: true, pauseOnConnect: true, noDelay: true }, (socket) =>
        this.#options.onConnection(port, socket),
      );
      const bound = await new Promise<boolean>((resolve) => {
        server.once('error', () => resolve(false));
        server.listen({ host: this.#options.address, port: listenPort, backlog: 4096 }, () => resolve(true));
      });
      if (bound) {
        server.on('error', (err) => this.#options.log.error({ err, listener: key }, 'outbound listener error'));
        this.#options.log.info(
          { listener: key, address: this.#options.address, port: listenPort },
          'outbound listener open',
        );
        return { port, listenPort, server };
      }
    }
    this.#options.log.error({ listener: key, range: this.#options.portRange }, 'no free port for an outbound listener');
    return undefined;
  }

  async #publish(): Promise<void> {
    const listeners: OutboundListenerRecord[] = [...this.#open.values()]
      .map(({ port, listenPort }) => ({
        ...port,
        address: this.#options.address,
        listenPort,
        ...this.#options.health(port),
      }))
      .sort((a, b) =>
        listenerKey(a.namespace, a.name, a.protocol, a.port).localeCompare(
          listenerKey(b.namespace, b.name, b.protocol, b.port),
        ),
      );
    const document: ListenersDocument = { listeners };
    const json = JSON.stringify(document);
    if (json === this.#published) return;
    await putConfigMap(this.#options.kc, {
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: {
        name: gatewayListenersConfigMapName(this.#options.gatewayName),
        namespace: this.#options.namespace,
        labels: { 'app.kubernetes.io/managed-by': 'isthmus-gateway' },
      },
      data: { 'listeners.json': json },
    });
    this.#published = json;
  }
}
