// Active probes of remote gateways: every interval a new probe starts (they overlap, so a slow
// one does not delay the next) — a TLS handshake with the cluster's gateway and its answer to the
// probe SNI. `unhealthyThreshold` consecutive failed or late probes take the cluster out of new
// connections (with 250 ms, 500 ms and 2: within a second of a blackhole, yet one probe slowed by
// a busy machine is not enough); `healthyThreshold` consecutive successes bring it back. A cluster
// never probed yet counts as up: the catalog says it has ready endpoints, and connects fail over.
import type { GatewayAddress } from '../common/api/isthmus.ts';
import { PROBE_SNI } from '../common/gateway-contract.ts';
import type { Logger } from '../common/logger.ts';
import type { MtlsCredentials, VerifiedPeer } from '../common/pki/index.ts';
import { gatewayMetrics } from './metrics.ts';
import type { SessionCache } from './tls-sessions.ts';
import { openTunnel } from './tunnel.ts';
import { whenAborted } from '../common/lifecycle.ts';

export interface ProbeSettings {
  readonly interval: number;
  readonly timeout: number;
  readonly healthyThreshold: number;
  readonly unhealthyThreshold: number;
}

interface ProbeState {
  up: boolean;
  successes: number;
  failures: number;
  inFlight: number;
  lastError: string;
}

/** Probes of one cluster allowed in flight at once (a dead gateway leaves them all waiting). */
const MAX_IN_FLIGHT = 4;

export class RemoteProber {
  readonly #settings: ProbeSettings;
  readonly #credentials: () => MtlsCredentials | undefined;
  readonly #sessions: SessionCache<VerifiedPeer>;
  readonly #log: Logger;
  readonly #onChange: (clusterId: string, up: boolean) => void;
  readonly #states = new Map<string, ProbeState>();
  #targets = new Map<string, readonly GatewayAddress[]>();
  readonly #inFlight = new Set<Promise<void>>();

  constructor(options: {
    settings: ProbeSettings;
    credentials: () => MtlsCredentials | undefined;
    sessions: SessionCache<VerifiedPeer>;
    log: Logger;
    onChange: (clusterId: string, up: boolean) => void;
  }) {
    this.#settings = options.settings;
    this.#credentials = options.credentials;
    this.#sessions = options.sessions;
    this.#log = options.log;
    this.#onChange = options.onChange;
  }

  /** The remote clusters to probe and their gateway addresses. */
  setTargets(targets: ReadonlyMap<string, readonly GatewayAddress[]>): void {
    this.#targets = new Map(targets);
    for (const clusterId of this.#states.keys()) if (!targets.has(clusterId)) this.#states.delete(clusterId);
  }

  isUp(clusterId: string): boolean {
    return this.#states.get(clusterId)?.up ?? true;
  }

  /** Why a cluster is down, for status and logs. */
  lastError(clusterId: string): string {
    return this.#states.get(clusterId)?.lastError ?? '';
  }

  /** Probes every interval until `signal` aborts; resolves once the probes in flight have ended. */
  async run(signal: AbortSignal): Promise<void> {
    const timer = setInterval(() => this.#round(), this.#settings.interval);
    this.#round();
    await whenAborted(signal);
    clearInterval(timer);
    await Promise.all(this.#inFlight);
  }

  #round(): void {
    const credentials = this.#credentials();
    if (!credentials) return;
    for (const [clusterId, addresses] of this.#targets) {
      const state = this.#states.get(clusterId) ?? { up: true, successes: 0, failures: 0, inFlight: 0, lastError: '' };
      this.#states.set(clusterId, state);
      const [address] = addresses;
      if (state.inFlight >= MAX_IN_FLIGHT || address === undefined) continue;
      state.inFlight++;
      const probe = openTunnel({
        address,
        sni: PROBE_SNI,
        expectCluster: clusterId,
        credentials,
        sessions: this.#sessions,
        timeoutMs: this.#settings.timeout,
      }).then((result) => {
        state.inFlight--;
        if (result.ok) result.socket.destroy();
        if (this.#states.get(clusterId) !== state) return;
        this.#record(clusterId, state, result.ok ? undefined : result.reason);
      });
      this.#inFlight.add(probe);
      void probe.finally(() => this.#inFlight.delete(probe));
    }
  }

  #record(clusterId: string, state: ProbeState, error: string | undefined): void {
    if (error === undefined) {
      state.failures = 0;
      state.successes++;
      if (!state.up && state.successes >= this.#settings.healthyThreshold) {
        state.up = true;
        state.lastError = '';
        this.#log.info({ cluster: clusterId }, 'remote gateway answers probes again; taking traffic');
        this.#onChange(clusterId, true);
      }
      return;
    }
    state.successes = 0;
    state.failures++;
    state.lastError = error;
    if (!state.up || state.failures < this.#settings.unhealthyThreshold) return;
    state.up = false;
    gatewayMetrics.ejections.inc({ target: clusterId, cause: 'probe' });
    this.#log.warn({ cluster: clusterId, err: error }, 'remote gateway failed its probe; no new connections go there');
    this.#onChange(clusterId, false);
  }
}
