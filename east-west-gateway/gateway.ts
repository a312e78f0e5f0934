// The east-west gateway of one cluster, assembled: its cluster's state (the only input) → the
// inbound :15443 listener and one outbound listener per imported service port → the router and
// its picker → connections spliced and tracked. The certificate and trust bundle apply to new
// handshakes as soon as the agent rewrites them (open connections keep theirs); a cluster that
// leaves the federation loses its open connections; SIGTERM drains.
import type { VerifiedPeer } from '../common/pki/index.ts';
import { MtlsCredentials, membershipOf } from '../common/pki/index.ts';
import type { Logger } from '../common/logger.ts';
import type { Running } from '../common/main.ts';
import { loadKubeConfig } from '../common/kubeconfig.ts';
import { WorkQueue } from '../common/kube/index.ts';
import { processMetricsRegistry, startStatusServer } from '../common/status-server.ts';
import { ClusterState } from './cluster-state.ts';
import type { GatewayConfig } from './config.ts';
import { ConnectionTracker } from './connections.ts';
import { TargetHealthTable } from './health.ts';
import { InboundServer, tcpConnectWithin } from './inbound.ts';
import { splitEndpoint } from '../common/tls-handshake.ts';
import { ListenerManager } from './listeners.ts';
import { gatewayMetrics } from './metrics.ts';
import { PolicyTable } from './policies.ts';
import { RemoteProber } from './prober.ts';
import { OutboundRouter, parseRemoteTarget } from './router.ts';
import { openTunnel } from './tunnel.ts';
import { serviceSni } from '../common/gateway-contract.ts';
import { SessionCache } from './tls-sessions.ts';

export interface RunningGateway extends Running {
  readonly statusPort: number;
}

/** How often listener health is republished even without a change event (ejections expire silently). */
const HEALTH_REFRESH_MS = 2_000;

export async function startGateway(config: GatewayConfig, log: Logger): Promise<RunningGateway> {
  const kc = loadKubeConfig(config.kubeconfig || undefined);
  const state = new ClusterState({
    kc,
    namespace: config.namespace,
    gatewayName: config.name,
    log: log.child({ part: 'state' }),
  });
  const health = new TargetHealthTable({
    settings: config.outlierDetection,
    maxConnections: config.maxConnectionsPerCandidate,
    onEject: (target, forMs) => {
      gatewayMetrics.ejections.inc({ target, cause: 'outlier' });
      log.warn({ target, forMs }, 'connect target ejected after consecutive failures');
      listeners.republish();
    },
  });
  const connections = new ConnectionTracker(log.child({ part: 'access' }));
  const sessions = new SessionCache<VerifiedPeer>();
  let credentials: MtlsCredentials | undefined;
  let inbound: InboundServer | undefined;
  let inboundPort: number | undefined;
  let draining = false;

  const policies = new PolicyTable({ kc, log: log.child({ part: 'policies' }) });
  const prober = new RemoteProber({
    settings: config.probe,
    credentials: () => credentials,
    sessions,
    log,
    onChange: (clusterId, up) => {
      if (!up) {
        const abandoned = router.abandonAttempts(clusterId);
        if (abandoned > 0) log.info({ cluster: clusterId, abandoned }, 'connects waiting on a dead gateway move on');
      }
      listeners.republish();
    },
  });
  const stopProbing = new AbortController();
  /** The prober's run, once the inbound listener is open (it probes with the same credentials). */
  let probing: Promise<void> | undefined;
  const router = new OutboundRouter({
    clusterId: config.clusterId,
    state,
    credentials: () => credentials,
    health,
    prober,
    sessions,
    connections,
    connectTimeoutMs: config.connectTimeout,
    idleTimeoutMs: config.idleTimeout,
    log,
    policyFor: (namespace, name) => policies.policyFor(namespace, name),
  });
  const listeners = new ListenerManager({
    kc,
    namespace: config.namespace,
    gatewayName: config.name,
    address: config.outbound.address,
    portRange: config.outbound.portRange,
    log,
    onConnection: (port, socket) => void router.route(port, socket),
    health: (port) => {
      const { candidates, policy } = router.plan(port);
      const healthy = candidates.some((c) => c.share > 0);
      const routes = candidates.map((c) => ({ ...c, share: Math.round(c.share * 1000) / 1000 }));
      const policyName = policy.source ? `${policy.source} (generation ${policy.generation})` : '';
      return {
        healthy,
        reason: healthy ? '' : 'no cluster has a ready endpoint the gateway can reach',
        routes,
        policy: policyName,
      };
    },
  });

  // Route changes are coalesced: one reconcile of listeners and probe targets at a time.
  const routesQueue = new WorkQueue<string>({ name: 'gateway-routes', logger: log, maxDelayMs: 10_000 });
  const reconcileRoutes = async (): Promise<void> => {
    const ports = state.importedPorts();
    const remotes = new Map<string, readonly { address: string; port: number }[]>();
    for (const port of ports) {
      for (const source of state.sourceClusters(port.namespace, port.name)) {
        if (source.locality.clusterId !== config.clusterId)
          remotes.set(source.locality.clusterId, source.gatewayAddresses);
      }
    }
    prober.setTargets(remotes);
    await listeners.reconcile(ports);
  };

  const applyIdentity = async (): Promise<void> => {
    const identity = state.identity;
    if (!identity) return;
    if (!credentials) {
      credentials = new MtlsCredentials({
        svid: identity.svid,
        bundle: identity.bundle,
        members: membershipOf(state.members?.values() ?? []),
      });
      inbound = new InboundServer({
        clusterId: config.clusterId,
        credentials,
        state,
        health,
        connections,
        connectTimeoutMs: config.connectTimeout,
        idleTimeoutMs: config.idleTimeout,
        log: log.child({ part: 'inbound' }),
      });
      inboundPort = await inbound.listen(config.inbound.host, config.inbound.port);
      log.info(
        { host: config.inbound.host, port: inboundPort, spiffeId: identity.svid.spiffeId },
        'inbound listener open',
      );
      probing = prober.run(stopProbing.signal);
      return;
    }
    if (credentials.svid.certificateChainPem !== identity.svid.certificateChainPem) {
      credentials.updateSvid(identity.svid);
      log.info(
        { notAfter: identity.svid.notAfter.toISOString() },
        'gateway certificate reloaded; applies to new handshakes',
      );
    }
    if (credentials.updateBundle(identity.bundle)) {
      inbound?.forgetSessions();
      sessions.clear();
      log.info({ sequence: identity.bundle.sequence, roots: identity.bundle.roots.length }, 'trust bundle reloaded');
    }
  };

  const applyMembers = (): void => {
    const members = state.members;
    if (!members || !credentials) return;
    // Gone, or removed and joined again: connections of the earlier membership must not outlive it.
    const ended = [...credentials.members].filter(([id, epoch]) => members.get(id)?.epoch !== epoch).map(([id]) => id);
    credentials.updateMembers(membershipOf(members.values()));
    for (const clusterId of ended) {
      const closed = connections.closeCluster(clusterId, 'cluster left the federation');
      log.warn(
        { cluster: clusterId, closed, rejoined: members.has(clusterId) },
        'membership of the cluster ended; its connections are closed',
      );
    }
  };

  // Identity changes apply one at a time: the first opens the inbound listener.
  let identityChain: Promise<void> = Promise.resolve();
  state.onChange((what) => {
    if (what === 'identity') {
      identityChain = identityChain
        .then(applyIdentity)
        .then(applyMembers)
        .catch((err: unknown) => log.error({ err }, 'cannot apply the gateway identity'));
    } else if (what === 'members') {
      applyMembers();
      listeners.republish();
    } else {
      routesQueue.add('routes');
    }
  });

  policies.onChange(() => listeners.republish());
  state.start();
  policies.start();
  await listeners.loadPrevious();
  void routesQueue.run(1, reconcileRoutes);
  void state.synced().then(() => routesQueue.add('routes'));
  const healthRefresh = setInterval(() => listeners.republish(), HEALTH_REFRESH_MS);
  // Ejected targets are checked actively — a local endpoint by a TCP connect, a remote cluster's
  // service by a tunnel to one of its backends — and reinstated as soon as they answer, so a
  // recovered backend or cluster takes traffic back without waiting out its ejection.
  const reinstate = (target: string, ok: boolean): void => {
    if (!ok) return;
    health.reinstate(target);
    log.info({ target }, 'ejected target answers again; reinstated');
    listeners.republish();
  };
  const ejectionChecks = setInterval(() => {
    for (const target of health.ejectedTargets()) {
      const remote = parseRemoteTarget(target);
      if (!remote) {
        const { host, port } = splitEndpoint(target);
        void tcpConnectWithin(host, port, config.probe.timeout).then((socket) => {
          socket?.destroy();
          reinstate(target, socket !== undefined);
        });
        continue;
      }
      const source = state
        .sourceClusters(remote.port.namespace, remote.port.name)
        .find((s) => s.locality.clusterId === remote.clusterId);
      const [address] = source?.gatewayAddresses ?? [];
      if (!address || !credentials) continue;
      const sni = serviceSni(remote.port.namespace, remote.port.name, remote.port.port);
      void openTunnel({
        address,
        sni,
        expectCluster: remote.clusterId,
        credentials,
        sessions,
        timeoutMs: config.probe.timeout,
      }).then((result) => {
        if (result.ok) result.socket.destroy();
        reinstate(target, result.ok);
      });
    }
  }, config.probe.interval);

  const statusServer = await startStatusServer({
    host: config.status.host,
    port: config.status.port,
    registry: processMetricsRegistry('east-west-gateway'),
    notReadyReason: () => {
      if (draining) return 'draining';
      if (!credentials) return 'waiting for the gateway certificate and trust bundle from the agent';
      if (!state.members) return 'waiting for the membership from the agent';
      if (inboundPort === undefined) return 'inbound listener not open';
      return undefined;
    },
  });

  return {
    statusPort: statusServer.port,
    stop: async () => {
      draining = true;
      clearInterval(healthRefresh);
      clearInterval(ejectionChecks);
      stopProbing.abort();
      inbound?.close();
      await Promise.all([listeners.close(), routesQueue.shutDown(), probing]);
      const { closedAtDeadline } = await connections.drain(config.drainTimeout);
      log.info({ closedAtDeadline }, 'drained');
      await Promise.all([state.stop(), policies.stop()]);
      await statusServer.close();
    },
  };
}
