// The agent's line to the hub: one typed client per hub endpoint, mTLS with the agent
// certificate, the hub verified as spiffe://<td>/hub. A call that finds a replica unavailable
// (down, or a standby) moves on to the next endpoint; the last good one is tried first. The first
// call that gets through after one that reached no hub tells `onReachable` listeners, so work that
// waits out a backoff (the export report) goes at once instead of up to its longest delay later,
// and the export set is sent whole again (the hub may be a new process that lost it). The hub can
// also ask for the export set (a heartbeat answer): `exportsWanted` tells the same listeners.
import type { PeerCertificate } from 'node:tls';
import { HubClient, hubChannelCredentials, type HubMethod, type HubMethods } from '../common/hub-api/index.ts';
import { HubCallError, isHubCallError } from '../common/hub-api/status.ts';
import { serverIdentityCheck } from '../common/pki/index.ts';

export interface SessionIdentity {
  readonly trustDomain: string;
  readonly trustBundlePem: string;
  readonly agentCertificate: string;
  readonly agentKey: string;
}

/**
 * grpc-js calls this instead of a host-name check: the hub is verified by its SPIFFE ID
 * (spiffe://<td>/hub, which only the root issues), never by a host name.
 */
export function hubIdentityCheck(
  trustDomain: string,
  bundlePem: string,
): (hostname: string, cert: PeerCertificate) => Error | undefined {
  return serverIdentityCheck(trustDomain, bundlePem, 'hub');
}

export class HubSession {
  #endpoints: string[];
  #clients = new Map<string, HubClient>();
  #identity: SessionIdentity;
  #preferred = 0;
  /** The last call reached no hub replica. */
  #unreachable = false;
  readonly #reachableListeners = new Set<() => void>();

  constructor(endpoints: readonly string[], identity: SessionIdentity) {
    this.#endpoints = [...endpoints];
    this.#identity = identity;
  }

  /** New certificate or bundle: later calls use fresh channels. */
  updateIdentity(identity: SessionIdentity, endpoints?: readonly string[]): void {
    this.#identity = identity;
    if (endpoints && endpoints.length > 0) this.#endpoints = [...endpoints];
    this.close();
  }

  async call<M extends HubMethod>(
    method: M,
    request: HubMethods[M]['request'],
    deadlineMs = 10_000,
  ): Promise<HubMethods[M]['response']> {
    let lastError: unknown;
    for (let i = 0; i < this.#endpoints.length; i++) {
      const index = (this.#preferred + i) % this.#endpoints.length;
      const endpoint = this.#endpoints[index] as string;
      try {
        const response = await this.#client(endpoint).call(method, request, deadlineMs);
        this.#preferred = index;
        this.#reached();
        return response;
      } catch (err) {
        lastError = err;
        if (!(isHubCallError(err) && err.retryable)) {
          this.#reached(); // a hub answered, with a refusal
          throw err;
        }
      }
    }
    this.#unreachable = true;
    throw lastError instanceof HubCallError ? lastError : new Error(`no hub endpoint answered ${method}`);
  }

  /** The hub asked for this cluster's full export set (e.g. a new leader): tells the onReachable listeners. */
  exportsWanted(): void {
    this.#tellListeners();
  }

  /** Calls `listener` each time a call gets through after one that reached no hub, or the hub asks for the exports; returns the unsubscribe. */
  onReachable(listener: () => void): () => void {
    this.#reachableListeners.add(listener);
    return () => this.#reachableListeners.delete(listener);
  }

  #reached(): void {
    if (!this.#unreachable) return;
    this.#unreachable = false;
    this.#tellListeners();
  }

  #tellListeners(): void {
    for (const listener of this.#reachableListeners) listener();
  }

  close(): void {
    for (const client of this.#clients.values()) client.close();
    this.#clients.clear();
  }

  #client(endpoint: string): HubClient {
    let client = this.#clients.get(endpoint);
    if (!client) {
      const { trustDomain, trustBundlePem, agentCertificate, agentKey } = this.#identity;
      const credentials = hubChannelCredentials(
        trustBundlePem,
        { certChain: agentCertificate, key: agentKey },
        { checkServerIdentity: hubIdentityCheck(trustDomain, trustBundlePem) },
      );
      client = new HubClient(endpoint, credentials);
      this.#clients.set(endpoint, client);
    }
    return client;
  }
}
