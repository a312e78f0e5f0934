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
import { candidateOrder, planTraffic, type Candidate, type Locality, type TrafficPlan } from './picker.ts';
import { DEFAULT_SERVICE_POLICY, type ServicePolicy } from './policies.ts';
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
  /** The policy of a service (its FailoverPolicy); the defaults of DESIGN §6 when none. */
  readonly policyFor?: (namespace: string, name: string) => ServicePolicy;
  readonly now?: () => number;
}

/** One cluster as the picker saw it, and why. */
export interface RouteCandidate {
  readonly cluster: string;
  readonly level: number;
  readonly share: number;
  readonly healthy: number;
  readonly total: number;
  /** Why it takes less than its endpoints suggest (empty when nothing holds it back). */
  readonly reason: string;
}

export interface RoutePlan {
  readonly client: Locality;
  readonly sources: ReadonlyMap<string, SourceCluster>;
  readonly plan: TrafficPlan;
  readonly policy: ServicePolicy;
  readonly candidates: readonly RouteCandidate[];
}

/**
 * Outlier-detection target of a remote cluster for one service port: a cluster whose backends of
 * one service are gone is ejected for that service only (its gateway's health is the prober's).
 */
export function remoteTarget(clusterId: string, port: ImportedPort): string {
  return `cluster:${clusterId}:${port.namespace}/${port.name}/${port.port}`;
}

export function parseRemoteTarget(target: string): { clusterId: string; port: ImportedPort } | undefined {
  const match = /^cluster:([^:]+):([^/]+)\/([^/]+)\/(\d+)$/.exec(target);
  if (!match) return undefined;
  const [, clusterId, namespace, name, port] = match as unknown as [string, string, string, string, string];
  return { clusterId, port: { namespace, name, protocol: 'TCP', port: Number(port) } };
}

/** Health of a remote cluster's path as the picker sees it. */
export function remoteCandidate(source: SourceCluster, reachable: boolean): Candidate {
  const total = Math.max(source.totalEndpoints, source.readyEndpoints);
  return { locality: source.locality, healthy: reachable ? source.readyEndpoints : 0, total };
}

interface FailbackState {
  /** The cluster had no healthy endpoint (or no healthy path) since it last served. */
  down: boolean;
  /** When it became healthy again, while held back. */
  healthySince: number | undefined;
}

export class OutboundRouter {
  readonly #options: RouterOptions;
  readonly #now: () => number;
  /** Per service port and cluster: failback hysteresis. */
  readonly #failback = new Map<string, FailbackState>();
  /** Per service port: the clusters taking traffic, to log each change once. */
  readonly #serving = new Map<string, string>();
  /** Connect attempts in flight per remote cluster, abandoned when its gateway fails a probe. */
  readonly #inFlight = new Map<string, Set<AbortController>>();

  constructor(options: RouterOptions) {
    this.#options = options;
    this.#now = options.now ?? Date.now;
  }

  policyOf(port: ImportedPort): ServicePolicy {
    return this.#options.policyFor?.(port.namespace, port.name) ?? DEFAULT_SERVICE_POLICY;
  }

  /** The cluster's gateway failed its probe: attempts waiting on it that have a healthy alternative move on now. */
  abandonAttempts(clusterId: string): number {
    const attempts = this.#inFlight.get(clusterId);
    if (!attempts) return 0;
    for (const attempt of attempts) attempt.abort();
    return attempts.size;
  }

  /** The traffic plan for a service port now: who takes how much of new connections, and why. */
  plan(port: ImportedPort): RoutePlan {
    const { state, clusterId, health, prober } = this.#options;
    const policy = this.policyOf(port);
    const key = `TCP/${port.port}`;
    const sources = new Map(
      state
        .sourceClusters(port.namespace, port.name)
        .filter((s) => s.ports.size === 0 || s.ports.has(key))
        .map((s) => [s.locality.clusterId, s]),
    );
    const self = state.members?.get(clusterId);
    const client: Locality = sources.get(clusterId)?.locality ?? {
      clusterId,
      region: self?.region ?? '',
      zone: self?.zone ?? '',
      network: self?.network ?? '',
      labels: self?.labels ?? {},
    };
    const remotes = [...sources.keys()].filter((id) => id !== clusterId);
    // maxEjectionPercent: beyond it, ejected clusters count as healthy again (as Envoy does).
    const maxEjected = Math.floor((remotes.length * (policy.outlier?.maxEjectionPercent ?? 100)) / 100);
    let ejectedSoFar = 0;
    const candidates: Candidate[] = [];
    const reasons = new Map<string, string>();
    for (const source of sources.values()) {
      const id = source.locality.clusterId;
      let candidate: Candidate;
      let reason = '';
      if (id === clusterId) {
        const endpoints = state.localEndpoints(port.namespace, port.name, port.port);
        const ready = endpoints.filter((e) => e.ready);
        const healthy = ready.filter((e) => !health.isEjected(targetOf(e))).length;
        candidate = { locality: source.locality, healthy, total: endpoints.length };
        if (endpoints.length === 0) reason = 'no local endpoints';
        else if (healthy < endpoints.length)
          reason = `${healthy} of ${endpoints.length} local endpoints ready and not ejected`;
      } else {
        const member = state.members?.get(id);
        const ejected = health.isEjected(remoteTarget(id, port)) && ejectedSoFar++ < maxEjected;
        if (member?.endpointsStale) reason = 'member unavailable too long: endpoints marked not ready';
        else if (!prober.isUp(id)) reason = `gateway fails its probe: ${prober.lastError(id)}`;
        else if (ejected) reason = 'ejected after consecutive connect failures';
        else if (source.gatewayAddresses.length === 0) reason = 'no gateway address';
        else if (source.readyEndpoints === 0) reason = 'no ready endpoints';
        candidate = remoteCandidate(source, reason === '');
      }
      const held = this.#holdForFailback(
        `${port.namespace}/${port.name}/${port.port}|${id}`,
        candidate.healthy > 0,
        policy.failbackDelayMs,
      );
      if (held) {
        candidate = { ...candidate, healthy: 0 };
        reason = held;
      }
      reasons.set(id, reason);
      candidates.push(candidate);
    }
    const plan = planTraffic(client, candidates, policy.picker);
    const levelOfCluster = new Map(
      plan.levels.flatMap((level) => level.clusters.map((c) => [c, level.level] as const)),
    );
    const explained: RouteCandidate[] = candidates.map((c) => ({
      cluster: c.locality.clusterId,
      level: levelOfCluster.get(c.locality.clusterId) ?? -1,
      share: plan.clusters.get(c.locality.clusterId) ?? 0,
      healthy: c.healthy,
      total: c.total,
      reason: reasons.get(c.locality.clusterId) ?? '',
    }));
    explained.sort((a, b) => a.level - b.level || b.share - a.share || a.cluster.localeCompare(b.cluster));
    this.#noteServing(port, explained);
    return { client, sources, plan, policy, candidates: explained };
  }

  /** Failback: a cluster that was down takes traffic again only once healthy for `delayMs`; returns why it is held. */
  #holdForFailback(key: string, healthy: boolean, delayMs: number): string | undefined {
    const state = this.#failback.get(key) ?? { down: false, healthySince: undefined };
    this.#failback.set(key, state);
    if (!healthy) {
      state.down = true;
      state.healthySince = undefined;
      return undefined;
    }
    if (!state.down) return undefined;
    const now = this.#now();
    state.healthySince ??= now;
    if (now - state.healthySince >= delayMs) {
      state.down = false;
      state.healthySince = undefined;
      return undefined;
    }
    return Number.isFinite(delayMs)
      ? `recovered; takes traffic back after ${Math.round(delayMs / 1000)} s healthy (failback)`
      : 'recovered; failback is off';
  }

  /** One log line, and the share gauges, whenever the clusters taking a service's traffic change. */
  #noteServing(port: ImportedPort, candidates: readonly RouteCandidate[]): void {
    const key = `${port.namespace}/${port.name}/${port.port}`;
    const serving = candidates.filter((c) => c.share > 0);
    const signature = serving.map((c) => `${c.cluster}@${c.level}:${c.share.toFixed(2)}`).join(',');
    const previous = this.#serving.get(key);
    if (previous === signature) return;
    this.#serving.set(key, signature);
    for (const c of candidates)
      gatewayMetrics.trafficShare.set(
        {
          namespace: port.namespace,
          service: port.name,
          port: String(port.port),
          cluster: c.cluster,
          level: String(c.level),
        },
        c.share,
      );
    if (previous === undefined && serving.length > 0 && serving[0]?.level === 0) return; // the normal start: nothing to explain
    this.#options.log.info(
      {
        service: key,
        serving: serving.map((c) => ({ cluster: c.cluster, level: c.level, share: Math.round(c.share * 1000) / 1000 })),
        held: candidates
          .filter((c) => c.reason !== '')
          .map((c) => ({ cluster: c.cluster, level: c.level, why: c.reason })),
      },
      serving.length === 0 ? "no cluster can take this service's traffic" : 'traffic moved',
    );
  }

  /** Carries one accepted client connection (paused) to the first candidate that connects. */
  async route(port: ImportedPort, downstream: Socket): Promise<void> {
    const { clusterId, log } = this.#options;
    downstream.on('error', () => undefined);
    const { sources, plan } = this.plan(port);
    const order = candidateOrder(plan, Math.random());
    const replay: Buffer[] = [];
    const labels = {
      direction: 'outbound' as const,
      namespace: port.namespace,
      service: port.name,
      source_cluster: clusterId,
    };
    for (const [index, candidate] of order.entries()) {
      if (downstream.destroyed) return;
      // What the client sent meanwhile is replayed to each candidate until one answers.
      for (
        let chunk: Buffer | null = downstream.read() as Buffer | null;
        chunk !== null;
        chunk = downstream.read() as Buffer | null
      )
        replay.push(chunk);
      const source = sources.get(candidate);
      if (!source) continue;
      // Abandoning a slow connect helps only where something healthy is left to try.
      const alternative = order.slice(index + 1).some((c) => plan.healthy.has(c));
      const connected =
        candidate === clusterId
          ? await this.#connectLocal(port, replay)
          : await this.#connectRemote(port, source, replay, alternative);
      if (connected) {
        if (downstream.destroyed) {
          connected.socket.destroy();
          connected.release();
          return;
        }
        this.#options.connections.track(
          'outbound',
          candidate,
          { ...labels, destination_cluster: candidate },
          connected.target,
          downstream,
          connected.socket,
          this.#options.idleTimeoutMs,
          connected.release,
        );
        return;
      }
      gatewayMetrics.failovers.inc({ namespace: port.namespace, service: port.name, failed_cluster: candidate });
    }
    gatewayMetrics.connections.inc({ ...labels, destination_cluster: '', result: 'no_candidate' });
    log.warn({ ...labels, tried: order }, 'no candidate accepted the connection');
    downstream.destroy();
  }

  async #connectLocal(
    port: ImportedPort,
    replay: readonly Buffer[],
  ): Promise<{ socket: Socket; target: string; release: () => void } | undefined> {
    const { state, health, clusterId, connectTimeoutMs } = this.#options;
    const endpoints = state.localEndpoints(port.namespace, port.name, port.port).filter((e) => e.ready);
    const connected = await connectFirst(shuffle(endpoints), { health, timeoutMs: connectTimeoutMs, clusterId });
    if (!connected) return undefined;
    for (const chunk of replay) connected.socket.write(chunk);
    health.opened(connected.target);
    return { ...connected, release: () => health.closed(connected.target) };
  }

  async #connectRemote(
    port: ImportedPort,
    source: SourceCluster,
    replay: readonly Buffer[],
    abandonable: boolean,
  ): Promise<{ socket: Socket; target: string; release: () => void } | undefined> {
    const { health, connectTimeoutMs, log } = this.#options;
    const credentials = this.#options.credentials();
    const clusterId = source.locality.clusterId;
    if (!credentials || !health.hasCapacity(clusterId)) return undefined;
    for (const address of source.gatewayAddresses) {
      const started = performance.now();
      const attempt = new AbortController();
      const attempts = this.#inFlight.get(clusterId) ?? new Set<AbortController>();
      // The only way left is waited for to its timeout: a probe lost on a busy machine must not fail it.
      if (abandonable) this.#inFlight.set(clusterId, attempts.add(attempt));
      const result = await openTunnel({
        address,
        sni: serviceSni(port.namespace, port.name, port.port),
        expectCluster: clusterId,
        credentials,
        sessions: this.#options.sessions,
        timeoutMs: connectTimeoutMs,
        firstBytes: replay,
        signal: attempt.signal,
      });
      attempts.delete(attempt);
      if (result.ok) {
        gatewayMetrics.connectDuration.observe(
          { destination_cluster: clusterId, target: 'gateway' },
          (performance.now() - started) / 1000,
        );
        health.recordSuccess(remoteTarget(clusterId, port));
        health.opened(clusterId);
        return {
          socket: result.socket,
          target: `${address.address}:${address.port}`,
          release: () => health.closed(clusterId),
        };
      }
      log.info(
        {
          cluster: clusterId,
          gateway: `${address.address}:${address.port}`,
          service: `${port.namespace}/${port.name}:${port.port}`,
          err: result.reason,
        },
        'remote connect failed; trying the next candidate',
      );
      health.recordFailure(remoteTarget(clusterId, port), this.policyOf(port).outlier);
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
