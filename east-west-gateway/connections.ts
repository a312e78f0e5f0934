// Every connection the gateway carries, from the moment both ends are connected: spliced, counted
// in the metrics, logged once when it ends (the access log), closed when its peer cluster leaves
// the federation, and waited for on drain.
import type { Socket } from 'node:net';
import type { Logger } from '../common/logger.ts';
import { gatewayMetrics } from './metrics.ts';
import { splice, type Splice } from './splice.ts';

export interface FlowLabels {
  readonly direction: 'inbound' | 'outbound';
  readonly namespace: string;
  readonly service: string;
  readonly source_cluster: string;
  readonly destination_cluster: string;
}

interface Tracked {
  readonly splice: Splice;
  /** The other cluster: the caller of an inbound connection, the destination of an outbound one. */
  readonly peerCluster: string;
}

export class ConnectionTracker {
  readonly #log: Logger;
  readonly #open = new Set<Tracked>();
  readonly #idleWaiters = new Set<() => void>();

  constructor(log: Logger) {
    this.#log = log;
  }

  get size(): number {
    return this.#open.size;
  }

  track(
    direction: FlowLabels['direction'],
    peerCluster: string,
    labels: FlowLabels,
    target: string,
    downstream: Socket,
    upstream: Socket,
    idleTimeoutMs: number,
    onClose: () => void,
  ): void {
    const started = performance.now();
    gatewayMetrics.activeConnections.inc({ direction });
    gatewayMetrics.connections.inc({ ...labels, result: 'connected' });
    const tracked: Tracked = {
      peerCluster,
      splice: splice(downstream, upstream, {
        idleTimeoutMs,
        onClose: (stats) => {
          this.#open.delete(tracked);
          gatewayMetrics.activeConnections.dec({ direction });
          gatewayMetrics.bytes.inc({ ...labels, flow: 'sent' }, stats.sent);
          gatewayMetrics.bytes.inc({ ...labels, flow: 'received' }, stats.received);
          this.#log.info(
            {
              access: true,
              ...labels,
              target,
              client: `${downstream.remoteAddress}:${downstream.remotePort}`,
              sent: stats.sent,
              received: stats.received,
              durationMs: Math.round(performance.now() - started),
              end: stats.reason,
            },
            'connection',
          );
          onClose();
          if (this.#open.size === 0) for (const resolve of this.#idleWaiters) resolve();
        },
      }),
    };
    this.#open.add(tracked);
  }

  /** Closes every connection to or from `clusterId` (it left the federation); returns how many. */
  closeCluster(clusterId: string, reason: string): number {
    let closed = 0;
    for (const tracked of this.#open) {
      if (tracked.peerCluster !== clusterId) continue;
      tracked.splice.close(reason);
      closed++;
    }
    return closed;
  }

  /** Resolves when no connection is open, or after `timeoutMs` having closed what is left. */
  async drain(timeoutMs: number): Promise<{ closedAtDeadline: number }> {
    if (this.#open.size === 0) return { closedAtDeadline: 0 };
    let timer: NodeJS.Timeout | undefined;
    const idle = new Promise<boolean>((resolve) => {
      const waiter = (): void => resolve(true);
      this.#idleWaiters.add(waiter);
      timer = setTimeout(() => {
        this.#idleWaiters.delete(waiter);
        resolve(false);
      }, timeoutMs);
    });
    const drained = await idle;
    clearTimeout(timer);
    if (drained) return { closedAtDeadline: 0 };
    const left = this.#open.size;
    for (const tracked of this.#open) tracked.splice.close('drain deadline');
    return { closedAtDeadline: left };
  }
}
