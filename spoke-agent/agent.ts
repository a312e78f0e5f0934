// The spoke agent's life: wait for a join request, join (or resume from the credentials Secret),
// then keep membership alive: heartbeats with failover across hub replicas (carrying what the
// extensions report, e.g. the FailoverPolicy copies this cluster holds; sent early, at most once a
// second, when they ask), certificate renewal, trust bundle updates, root-rotation re-issue.
// Nothing here deletes state when the hub is away.
import { X509Certificate } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { KubeConfig } from '@kubernetes/client-node';
import { backoffDelay } from '../common/backoff.ts';
import { describeError, isIsthmusError } from '../common/errors.ts';
import {
  MAX_APPLIED_POLICIES,
  isHubCallError,
  type AppliedPolicy,
  type ClusterFacts,
} from '../common/hub-api/index.ts';
import { ensureNamespace } from '../common/kube/index.ts';
import { loadKubeConfig } from '../common/kubeconfig.ts';
import type { Logger } from '../common/logger.ts';
import type { Running } from '../common/main.ts';
import {
  ClusterAuthority,
  createCertificateRequest,
  generateKeyPair,
  parseBundlePem,
  privateKeyToPem,
  rootFingerprint,
  startRenewal,
  type RenewalHandle,
} from '../common/pki/index.ts';
import { processMetricsRegistry, startStatusServer } from '../common/status-server.ts';
import { writeClusterProperties } from './about.ts';
import { writeIstioCacerts } from './istio-cacerts.ts';
import { writeAgentStatus, type AgentStatus } from './agent-status.ts';
import { AGENT_VERSION, type AgentConfig } from './config.ts';
import { AgentSecrets, type AgentCredentials, type Bootstrap } from './credentials.ts';
import { HubSession } from './hub-session.ts';
import { isTerminalJoinError, join, loadJoinKeys } from './join.ts';

export interface RunningAgent extends Running {
  readonly statusPort: number;
  /** Resolves once the agent holds member credentials. */
  joined(): Promise<AgentCredentials>;
  credentials(): AgentCredentials | undefined;
}

/** Hooks for what runs on top of membership (the service catalog). */
export interface MemberExtension {
  /**
   * Runs from the join until `context.signal` aborts (the agent stops), then resolves once
   * everything it started has stopped. `heartbeatSoon` asks for the next heartbeat early (at most
   * one a second), e.g. after the applied policies changed.
   */
  run(context: {
    kc: KubeConfig;
    credentials: AgentCredentials;
    session: HubSession;
    signal: AbortSignal;
    heartbeatSoon: () => void;
  }): Promise<void>;
  exportCount(): number;
  /** The FailoverPolicy copies this cluster holds, for the heartbeat; undefined while not known yet. */
  appliedPolicies?(): readonly AppliedPolicy[] | undefined;
  /** New credentials (renewal, rotation): connections that authenticate with them must follow. */
  credentialsChanged?(credentials: AgentCredentials): void;
}

/** Join retries while the hub has not accepted this cluster yet: 0.5 s doubling up to 10 s. */
const JOIN_RETRY_BACKOFF = { initialMs: 500, maxMs: 10_000 } as const;

/** Heartbeats while no hub answers: from 0.25 s up to 1 s (or the interval, if shorter), jittered. */
const UNREACHABLE_HEARTBEAT_BACKOFF = { initialMs: 250, maxMs: 1_000, jitter: 0.5 } as const;

/** An early heartbeat (heartbeatSoon) comes at least this long after the previous one. */
const EARLY_HEARTBEAT_SPACING_MS = 1_000;

function factsOf(config: AgentConfig): ClusterFacts {
  return {
    clusterId: config.clusterId,
    region: config.region ?? '',
    zone: config.zone ?? '',
    network: config.network ?? '',
    gatewayAddresses: config.gatewayAddresses,
    labels: config.labels,
    agentVersion: AGENT_VERSION,
  };
}

/**
 * Fingerprint of the bundle root that both the intermediate and the agent certificate chain to;
 * empty while they chain to different roots (mid-rotation), which the hub reads as "not yet".
 */
function rootInUse(credentials: AgentCredentials): string {
  const bundle = parseBundlePem(credentials.trustBundlePem, credentials.trustDomain, credentials.trustBundleSequence);
  const rootOf = (pem: string): string => {
    const cert = new X509Certificate(pem);
    const root = bundle.roots.find((r) => cert.checkIssued(r) && cert.verify(r.publicKey));
    return root ? rootFingerprint(root) : '';
  };
  const intermediateRoot = rootOf(credentials.intermediateCertificate);
  return intermediateRoot === rootOf(credentials.agentCertificate) ? intermediateRoot : '';
}

function validityOf(pem: string): { notBefore: Date; notAfter: Date } {
  const cert = new X509Certificate(pem);
  return { notBefore: new Date(cert.validFrom), notAfter: new Date(cert.validTo) };
}

export async function startAgent(
  config: AgentConfig,
  log: Logger,
  extensions: readonly MemberExtension[] = [],
): Promise<RunningAgent> {
  const kc = loadKubeConfig(config.kubeconfig || undefined);
  await ensureNamespace(kc, config.namespace);
  const secrets = new AgentSecrets(kc, config.namespace);
  const abort = new AbortController();
  const { signal } = abort;
  let credentials: AgentCredentials | undefined;
  let session: HubSession | undefined;
  const renewals: RenewalHandle[] = [];
  let status: AgentStatus = {
    phase: 'WaitingForJoin',
    clusterId: config.clusterId,
    lastHeartbeatTime: '',
    heartbeatIntervalSeconds: 10,
    lastError: '',
    lastErrorCode: '',
    trustBundleSequence: 0,
    hubEndpoint: '',
  };
  let resolveJoined!: (c: AgentCredentials) => void;
  const joinedPromise = new Promise<AgentCredentials>((resolve) => (resolveJoined = resolve));

  /** Aborted to send the next heartbeat early. */
  let wakeHeartbeat = new AbortController();
  let lastHeartbeat = 0;
  const heartbeatSoon = (): void => wakeHeartbeat.abort();
  signal.addEventListener('abort', heartbeatSoon, { once: true });

  const publishStatus = async (next: Partial<AgentStatus>): Promise<void> => {
    status = { ...status, ...next };
    await writeAgentStatus(kc, config.namespace, status).catch((err: unknown) =>
      log.warn({ err: describeError(err) }, 'cannot write agent status'),
    );
  };

  /** Waits for a join request and joins; a refused request is reported and not retried until it changes. */
  async function obtainCredentials(): Promise<AgentCredentials> {
    let refused: string | undefined;
    let announced = false;
    let attempt = 0;
    while (!signal.aborted) {
      const bootstrap: Bootstrap | undefined = await secrets.loadBootstrap().catch((err: unknown) => {
        log.warn({ err: describeError(err) }, 'join request unreadable');
        return undefined;
      });
      const fingerprint = bootstrap && JSON.stringify(bootstrap);
      if (!bootstrap || fingerprint === refused) {
        if (!announced) log.info('waiting for a join request (`isthmus join`)');
        announced = true;
        await sleep(config.joinPollInterval, undefined, { signal }).catch(() => undefined);
        continue;
      }
      await publishStatus({ phase: 'Joining' });
      // `isthmus join` shows this while the hub is asked (a Join call may wait up to its deadline).
      await secrets
        .reportJoin('Pending', `asking the hub (${bootstrap.hubEndpoints.join(', ')}) to admit this cluster`)
        .catch(() => undefined);
      try {
        const joined = await join(bootstrap, factsOf(config), await loadJoinKeys(secrets));
        await secrets.saveCredentials(joined);
        await secrets.reportJoin(
          'Joined',
          `cluster ${config.clusterId} joined the federation (trust domain ${joined.trustDomain})`,
        );
        await secrets.finishJoin();
        log.info({ clusterId: config.clusterId, hubEndpoints: joined.hubEndpoints }, 'joined the federation');
        return joined;
      } catch (err) {
        const message = describeError(err);
        const code = isHubCallError(err) || isIsthmusError(err) ? err.code : undefined;
        if (isTerminalJoinError(err)) {
          refused = fingerprint;
          log.error({ code, err: message }, 'join refused');
          await secrets.reportJoin('Failed', `${message}${code ? ` [${code}]` : ''}`);
          await publishStatus({ phase: 'WaitingForJoin', lastError: message, lastErrorCode: code ?? '' });
        } else {
          attempt++;
          log.warn({ code, err: message, attempt }, 'join not done yet; retrying');
          await secrets.reportJoin('Pending', message).catch(() => undefined);
          await sleep(backoffDelay(attempt, JOIN_RETRY_BACKOFF), undefined, { signal }).catch(() => undefined);
        }
      }
    }
    throw new Error('stopped');
  }

  async function adopt(next: AgentCredentials): Promise<void> {
    // Refuse unusable credentials early: the intermediate must match the key kept here.
    await ClusterAuthority.create({
      trustDomain: next.trustDomain,
      clusterId: next.clusterId,
      privateKey: next.intermediateKey,
      intermediatePem: next.intermediateCertificate,
    });
    const previous = credentials;
    credentials = next;
    const identity = {
      trustDomain: next.trustDomain,
      trustBundlePem: next.trustBundlePem,
      agentCertificate: next.agentCertificate,
      agentKey: next.agentKey,
    };
    if (session) session.updateIdentity(identity, next.hubEndpoints);
    else session = new HubSession(next.hubEndpoints, identity);
    if (previous) for (const extension of extensions) extension.credentialsChanged?.(next);
  }

  async function saveAndAdopt(next: AgentCredentials): Promise<void> {
    await adopt(next);
    await secrets.saveCredentials(next);
    await publishIstioCacerts();
  }

  async function publishIstioCacerts(): Promise<void> {
    if (!config.istioCacerts.enabled || !credentials) return;
    const written = await writeIstioCacerts(kc, config.istioCacerts.namespace, credentials);
    if (!written)
      log.warn(
        { namespace: config.istioCacerts.namespace },
        'istioCacerts is on but the namespace does not exist; nothing written',
      );
  }

  /** One Renew call for the agent certificate, the intermediate (same key), or both (root rotation). */
  async function renew(what: { agent: boolean; intermediate: boolean }): Promise<AgentCredentials> {
    const current = credentials as AgentCredentials;
    const agentKeys = what.agent ? await generateKeyPair() : undefined;
    const authority = what.intermediate
      ? await ClusterAuthority.create({
          trustDomain: current.trustDomain,
          clusterId: current.clusterId,
          privateKey: current.intermediateKey,
          intermediatePem: current.intermediateCertificate,
        })
      : undefined;
    const response = await (session as HubSession).call('Renew', {
      agentCsr: agentKeys ? await createCertificateRequest(agentKeys, `CN=isthmus agent ${current.clusterId}`) : '',
      intermediateCsr: authority ? await authority.createRequest() : '',
    });
    const renewed: AgentCredentials = {
      ...current,
      ...bundleFields(response.credentials),
      ...(agentKeys
        ? {
            agentCertificate: response.credentials.agentCertificate,
            agentKey: await privateKeyToPem(agentKeys.privateKey),
          }
        : {}),
      ...(authority ? { intermediateCertificate: response.credentials.intermediateCertificate } : {}),
    };
    await saveAndAdopt(renewed);
    if (agentKeys) log.info('agent certificate renewed');
    if (authority) log.info('cluster intermediate renewed');
    return renewed;
  }

  function bundleFields(c: {
    trustBundlePem: string;
    trustBundleJson: string;
    trustBundleSequence: number;
  }): Partial<AgentCredentials> {
    return c.trustBundlePem
      ? {
          trustBundlePem: c.trustBundlePem,
          trustBundleJson: c.trustBundleJson,
          trustBundleSequence: c.trustBundleSequence,
        }
      : {};
  }

  /** The policy copies every extension that tracks them reports; known only once all of them know. */
  function appliedPolicies(): { appliedPolicies: AppliedPolicy[]; appliedPoliciesKnown: boolean } {
    const reports = extensions.filter((e) => e.appliedPolicies !== undefined).map((e) => e.appliedPolicies?.());
    const known = reports.length > 0 && reports.every((r) => r !== undefined);
    return {
      appliedPolicies: known ? reports.flatMap((r) => r ?? []).slice(0, MAX_APPLIED_POLICIES) : [],
      appliedPoliciesKnown: known,
    };
  }

  async function heartbeatLoop(): Promise<void> {
    let intervalMs = (credentials?.heartbeatIntervalSeconds ?? config.heartbeatInterval / 1000) * 1000;
    let unreachable = 0;
    while (!signal.aborted) {
      let delayMs = intervalMs;
      const current = credentials as AgentCredentials;
      lastHeartbeat = Date.now();
      try {
        const response = await (session as HubSession).call('Heartbeat', {
          agentVersion: AGENT_VERSION,
          trustBundleSequence: current.trustBundleSequence,
          exportCount: extensions.reduce((sum, extension) => sum + extension.exportCount(), 0),
          intermediateExpiry: validityOf(current.intermediateCertificate).notAfter.toISOString(),
          rootInUse: rootInUse(current),
          ...appliedPolicies(),
        });
        intervalMs = response.heartbeatIntervalSeconds * 1000;
        if (response.trustBundlePem) {
          await saveAndAdopt({
            ...current,
            trustBundlePem: response.trustBundlePem,
            trustBundleJson: response.trustBundleJson,
            trustBundleSequence: response.trustBundleSequence,
          });
          log.info({ sequence: response.trustBundleSequence }, 'trust bundle updated');
        }
        // Root rotation: both the intermediate and the agent certificate move to the new root.
        if (response.reissueIntermediate) await renew({ agent: true, intermediate: true });
        if (response.resendExports) (session as HubSession).exportsWanted();
        unreachable = 0;
        delayMs = intervalMs;
        await publishStatus({
          phase: 'Member',
          lastHeartbeatTime: new Date().toISOString(),
          heartbeatIntervalSeconds: response.heartbeatIntervalSeconds,
          lastError: '',
          lastErrorCode: '',
          trustBundleSequence: (credentials as AgentCredentials).trustBundleSequence,
        });
      } catch (err) {
        const code = isHubCallError(err) ? err.code : undefined;
        // Removed, or removed and joined again under this id with other certificates.
        const removed = code === 'ISTHMUS_CLUSTER_NOT_MEMBER' || code === 'ISTHMUS_MEMBERSHIP_SUPERSEDED';
        // No hub reachable: probe again soon, so the hub's return is seen (and pending work flushed) within seconds.
        if (!isHubCallError(err) || err.retryable)
          delayMs = backoffDelay(++unreachable, {
            ...UNREACHABLE_HEARTBEAT_BACKOFF,
            maxMs: Math.min(intervalMs, UNREACHABLE_HEARTBEAT_BACKOFF.maxMs),
          });
        log[removed ? 'error' : 'warn'](
          { code, err: describeError(err) },
          removed ? 'the hub says this cluster is no longer a member' : 'heartbeat failed',
        );
        await publishStatus({
          phase: removed ? 'Removed' : status.phase,
          lastError: describeError(err),
          lastErrorCode: code ?? '',
        });
      }
      await sleep(delayMs, undefined, { signal: wakeHeartbeat.signal }).catch(() => undefined);
      if (wakeHeartbeat.signal.aborted && !signal.aborted) {
        wakeHeartbeat = new AbortController();
        const spacing = lastHeartbeat + Math.min(intervalMs, EARLY_HEARTBEAT_SPACING_MS) - Date.now();
        if (spacing > 0) await sleep(spacing, undefined, { signal }).catch(() => undefined);
      }
    }
  }

  const extensionRuns: Promise<void>[] = [];
  const run = async (): Promise<void> => {
    const stored = await secrets.loadCredentials();
    if (stored) log.info({ clusterId: stored.clusterId }, 'resuming membership from stored credentials');
    await adopt(stored ?? (await obtainCredentials()));
    const current = credentials as AgentCredentials;
    await writeClusterProperties(kc, current.clusterId, config.clustersetName);
    await publishIstioCacerts();
    await publishStatus({
      phase: 'Member',
      heartbeatIntervalSeconds: current.heartbeatIntervalSeconds,
      trustBundleSequence: current.trustBundleSequence,
    });
    resolveJoined(current);
    const onError = (what: string) => (err: unknown, retryInMs: number) =>
      log.warn({ err: describeError(err), retryInMs }, `${what} renewal failed`);
    renewals.push(
      startRenewal({
        kind: 'leaf',
        validity: validityOf(current.agentCertificate),
        renew: async () => validityOf((await renew({ agent: true, intermediate: false })).agentCertificate),
        onError: onError('agent certificate'),
      }),
    );
    renewals.push(
      startRenewal({
        kind: 'authority',
        validity: validityOf(current.intermediateCertificate),
        renew: async () => validityOf((await renew({ agent: false, intermediate: true })).intermediateCertificate),
        onError: onError('intermediate'),
      }),
    );
    // The catalog may wait for NATS; membership (heartbeats, renewal) must not wait for it.
    for (const extension of extensions) {
      extensionRuns.push(
        extension
          .run({ kc, credentials: current, session: session as HubSession, signal, heartbeatSoon })
          .catch((err: unknown) => log.error({ err }, 'member extension failed')),
      );
    }
    await heartbeatLoop();
  };

  const loop = run().catch((err: unknown) => {
    if (!signal.aborted) log.fatal({ err }, 'agent stopped working');
  });

  const registry = processMetricsRegistry('spoke-agent');
  const statusServer = await startStatusServer({
    host: config.status.host,
    port: config.status.port,
    registry,
    notReadyReason: () =>
      status.phase === 'Member' ? undefined : `phase ${status.phase}${status.lastError ? `: ${status.lastError}` : ''}`,
  });

  return {
    statusPort: statusServer.port,
    joined: () => joinedPromise,
    credentials: () => credentials,
    stop: async () => {
      abort.abort();
      for (const renewal of renewals) renewal.stop();
      await loop;
      await Promise.all(extensionRuns);
      session?.close();
      await statusServer.close();
    },
  };
}
