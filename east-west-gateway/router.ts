// The outbound path of one client connection: the candidates for its service port (this
// cluster's own endpoints, and each remote cluster through its gateway) ordered by the picker,
// then tried in that order — a refused, late or reset connect moves on to the next candidate
// inside the same client connection, replaying the bytes the client sent so far, so a dead
// backend or cluster costs the client nothing but time. Outcomes feed outlier detection.
import type { Socket } from 'node:net';
import { serviceSni } from '../common/gateway-contract.ts';
import type { Logger } from '../common/logger.ts';
import type { MtlsCredentials, VerifiedPeer } from '../common/pki/index.ts';
import type { ClusterState, ImportedPort, SourceCluster } from './cluster-state.ts';
import type { ConnectionTracker } from './connections.ts';
import type { TargetHealthTable } from './health.ts';
import { connectFirst, targetOf } from './inbound.ts';
import { gatewayMetrics } from './metrics.ts';
import { DEFAULT_PICKER_POLICY, candidateOrder, planTraffic, type Candidate, type Locality, type PickerPolicy, type TrafficPlan } from './picker.ts';
import type { RemoteProber } from './prober.ts';
import type { SessionCache } from './tls-sessions.ts';
import { openTunnel } from './tunnel.ts';

export interface RouterOptions {
  readonly clusterId: string;
  readonly state: ClusterState;
  readonly credentials: () => MtlsCredentials | undefined;
  readonly health: TargetHealthTable;
  readonly prober: RemoteProber;
  readonly sessions: SessionCache<VerifiedPeer>;
  readonly connections: ConnectionTracker;
  readonly connectTimeoutMs: number;
  readonly idleTimeoutMs: number;
  readonly log: Logger;
  /** The policy for a service (FailoverPolicy); the defaults of DESIGN §6 when none. */
  readonly policyFor?: (namespace: string, name: string) => PickerPolicy;
}

export interface RoutePlan {
  readonly client: Locality;
  readonly sources: ReadonlyMap<string, SourceCluster>;
  readonly plan: TrafficPlan;
}

/** Health of a remote cluster's path as the picker sees it. */
export function remoteCandidate(source: SourceCluster, reachable: boolean): Candidate {
  const total = Math.max(source.totalEndpoints, source.readyEndpoints);
  return { locality: source.locality, healthy: reachable ? source.readyEndpoints : 0, total };
}

export class OutboundRouter {
  readonly #options: RouterOptions;

  constructor(options: RouterOptions) {
    this.#options = options;
  }

  /** The traffic plan for a service port now: who would take how much of new connections. */
  plan(port: ImportedPort): RoutePlan {
    const { state, clusterId, health, prober } = this.#options;
    const key = `TCP/${port.port}`;
    const sources = new Map(state.sourceClusters(port.namespace, port.name).filter((s) => s.ports.size === 0 || s.ports.has(key)).map((s) => [s.locality.clusterId, s]));
    const self = state.members?.get(clusterId);
    const client: Locality = sources.get(clusterId)?.locality ?? { clusterId, region: self?.region ?? '', zone: self?.zone ?? '', network: self?.network ?? '', labels: self?.labels ?? {} };
    const candidates: Candidate[] = [];
    for (const source of sources.values()) {
      if (source.locality.clusterId === clusterId) {
        const endpoints = state.localEndpoints(port.namespace, port.name, port.port);
        const healthy = endpoints.filter((e) => e.ready && !health.isEjected(targetOf(e))).length;
        candidates.push({ locality: source.locality, healthy, total: endpoints.length });
      } else {
        const reachable = prober.isUp(source.locality.clusterId) && !health.isEjected(source.locality.clusterId) && source.gatewayAddresses.length > 0;
        candidates.push(remoteCandidate(source, reachable));
      }
    }
    const policy = this.#options.policyFor?.(port.namespace, port.name) ?? DEFAULT_PICKER_POLICY;
    return { client, sources, plan: planTraffic(client, candidates, policy) };
  }

  /** Carries one accepted client connection (paused) to the first candidate that connects. */
  async route(port: ImportedPort, downstream: Socket): Promise<void> {
    const { clusterId, log } = this.#options;
    downstream.on('error', () => undefined);
    const { sources, plan } = this.plan(port);
    const order = candidateOrder(plan, Math.random());
    const replay: Buffer[] = [];
    const labels = { direction: 'outbound' as const, namespace: port.namespace, service: port.name, source_cluster: clusterId };
    for (const candidate of order) {
      if (downstream.destroyed) return;
      // What the client sent meanwhile is replayed to each candidate until one answers.
      for (let chunk: Buffer | null = downstream.read() as Buffer | null; chunk !== null; chunk = downstream.read() as Buffer | null) replay.push(chunk);
      const source = sources.get(candidate);
      if (!source) continue;
      const connected = candidate === clusterId ? await this.#connectLocal(port, replay) : await this.#connectRemote(port, source, replay);
      if (connected) {
        if (downstream.destroyed) {
          connected.socket.destroy();
          connected.release();
          return;
        }
        this.#options.connections.track('outbound', candidate, { ...labels, destination_cluster: candidate }, connected.target, downstream, connected.socket, this.#options.idleTimeoutMs, connected.release);
        return;
      }
      gatewayMetrics.failovers.inc({ namespace: port.namespace, service: port.name, failed_cluster: candidate });
    }
    gatewayMetrics.connections.inc({ ...labels, destination_cluster: '', result: 'no_candidate' });
    log.warn({ ...labels, tried: order }, 'no candidate accepted the connection');
    downstream.destroy();
  }

  async #connectLocal(port: ImportedPort, replay: readonly Buffer[]): Promise<{ socket: Socket; target: string; release: () => void } | undefined> {
    const { state, health, clusterId, connectTimeoutMs } = this.#options;
    const endpoints = state.localEndpoints(port.namespace, port.name, port.port).filter((e) => e.ready);
    const connected = await connectFirst(shuffle(endpoints), { health, timeoutMs: connectTimeoutMs, clusterId });
    if (!connected) return undefined;
    for (const chunk of replay) connected.socket.write(chunk);
    health.opened(connected.target);
    return { ...connected, release: () => health.closed(connected.target) };
  }

  async #connectRemote(port: ImportedPort, source: SourceCluster, replay: readonly Buffer[]): Promise<{ socket: Socket; target: string; release: () => void } | undefined> {
    const { health, connectTimeoutMs, log } = this.#options;
    const credentials = this.#options.credentials();
    const clusterId = source.locality.clusterId;
    if (!credentials || !health.hasCapacity(clusterId)) return undefined;
    for (const address of source.gatewayAddresses) {
      const started = performance.now();
      const result = await openTunnel({ address, sni: serviceSni(port.namespace, port.name, port.port), expectCluster: clusterId, credentials, sessions: this.#options.sessions, timeoutMs: connectTimeoutMs, firstBytes: replay });
      if (result.ok) {
        gatewayMetrics.connectDuration.observe({ destination_cluster: clusterId, target: 'gateway' }, (performance.now() - started) / 1000);
        health.recordSuccess(clusterId);
        health.opened(clusterId);
        return { socket: result.socket, target: `${address.address}:${address.port}`, release: () => health.closed(clusterId) };
      }
      log.info({ cluster: clusterId, gateway: `${address.address}:${address.port}`, service: `${port.namespace}/${port.name}:${port.port}`, err: result.reason }, 'remote connect failed; trying the next candidate');
      health.recordFailure(clusterId);
    }
    return undefined;
  }
}

function shuffle<T>(items: readonly T[]): T[] {
  const copy = [...items];
  for (let i = copy.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [copy[i], copy[j]] = [copy[j] as T, copy[i] as T];
  }
  return copy;
}
