// The hub process: trust store, MemberCluster cache, the gRPC API (on every replica; standbys
// answer UNAVAILABLE with a pointer to the leader), and leader-only loops (hub info, health,
// membership publishing, FailoverPolicy distribution). Exactly one replica writes, elected
// through a coordination Lease.
import { X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import * as grpc from '@grpc/grpc-js';
import type { NatsConnection } from '@nats-io/transport-node';
import type { KubernetesObject } from '@kubernetes/client-node';
import {
  ISTHMUS_GROUP,
  ISTHMUS_VERSION,
  MEMBER_CLUSTER_KIND,
  MEMBER_CLUSTER_PLURAL,
  type MemberCluster,
} from '../common/api/isthmus.ts';
import {
  OptionalClientCertCredentials,
  addHubService,
  keepaliveServerOptions,
  type ServerIdentity,
} from '../common/hub-api/index.ts';
import { Informer, LeaderElector, customResource, ensureNamespace } from '../common/kube/index.ts';
import { loadKubeConfig } from '../common/kubeconfig.ts';
import type { Logger } from '../common/logger.ts';
import type { Running } from '../common/main.ts';
import { connectNats, tlsFromFiles } from '../common/nats.ts';
import { bundleToPem, rootPin } from '../common/pki/index.ts';
import { processMetricsRegistry, startStatusServer, type StatusServer } from '../common/status-server.ts';
import type { HubConfig } from './config.ts';
import { runHealthMonitor } from './health-monitor.ts';
import { writeHubInfo } from './hub-info.ts';
import { createCatalog } from './catalog/index.ts';
import { createAgentAuthenticator, createHubHandlers } from './hub-service.ts';
import { MemberClusterStore } from './members.ts';
import { MembershipPublisher } from './membership-publisher.ts';
import { PolicyController } from './policies/index.ts';
import { MEMBERS_BUCKET } from '../common/catalog.ts';
import type { MemberCache } from './membership.ts';
import { TokenStore } from './tokens.ts';
import { TrustStore } from './trust-store.ts';
import { stepTrustRotation, type TrustRotationDeps } from './trust-rotation.ts';
import { NatsTlsPublisher } from './nats-tls.ts';
import { runPeriodically } from '../common/periodic.ts';
import { NatsAccess } from './nats-access.ts';
import { openBucket } from './nats-buckets.ts';

const memberClusters = customResource({
  group: ISTHMUS_GROUP,
  version: ISTHMUS_VERSION,
  kind: MEMBER_CLUSTER_KIND,
  plural: MEMBER_CLUSTER_PLURAL,
  namespaced: false,
});

/** How long Join waits for `isthmus cluster accept` before telling the agent to ask again. */
const ACCEPTANCE_WAIT_MS = 20_000;

export interface RunningHub extends Running {
  readonly grpcPort: number;
  readonly statusPort: number;
  readonly endpoints: readonly string[];
  isLeader(): boolean;
}

async function serverIdentity(trust: TrustStore): Promise<ServerIdentity> {
  const signer = trust.signingAuthority();
  const svid = await signer.issueHubSvid();
  // The root rides along in the chain so a joining agent can check it against its CA pin.
  return {
    certChain: svid.certificateChainPem + signer.certificatePem,
    key: svid.privateKeyPem,
    trustedRoots: bundleToPem(trust.bundle),
  };
}

function bindServer(server: grpc.Server, address: string, credentials: grpc.ServerCredentials): Promise<number> {
  return new Promise((resolve, reject) =>
    server.bindAsync(address, credentials, (err, port) => (err ? reject(err) : resolve(port))),
  );
}

export async function startHub(config: HubConfig, log: Logger): Promise<RunningHub> {
  const kc = loadKubeConfig(config.kubeconfig || undefined);
  await ensureNamespace(kc, config.namespace);
  await ensureNamespace(kc, config.trustNamespace);
  await TrustStore.relocate(kc, config.namespace, config.trustNamespace);
  const trust = await TrustStore.open(kc, config.trustNamespace, {
    trustDomain: config.trustDomain,
    rootTtlMs: config.certificates.rootTtl,
    rootCertFile: config.certificates.rootCertFile,
    rootKeyFile: config.certificates.rootKeyFile,
  });

  const informer = new Informer<KubernetesObject>({
    kubeConfig: kc,
    resource: memberClusters,
    logger: log.child({ informer: 'memberclusters' }),
  });
  const memberCache: MemberCache = {
    get: (id) => informer.get(undefined, id) as unknown as MemberCluster | undefined,
    list: () => informer.list() as unknown as MemberCluster[],
  };
  informer.start();
  await informer.synced();

  const members = new MemberClusterStore(kc);
  const tokens = new TokenStore(kc, config.namespace);
  const nkeySeed = config.nats.nkeySeedFile ? await readFile(config.nats.nkeySeedFile, 'utf8') : undefined;
  const natsClientTls = await tlsFromFiles(config.nats);
  const nc: NatsConnection = await connectNats({
    urls: config.nats.urls,
    name: `isthmus-hub-${config.replicaId}`,
    trustDomain: config.trustDomain,
    tls: natsClientTls,
    log,
    ...(nkeySeed ? { nkeySeed } : {}),
  });
  const catalog = createCatalog({
    nc,
    memberCache,
    log: log.child({ part: 'catalog' }),
    limits: { exportsPerCluster: config.limits.exportsPerCluster, entryMaxBytes: config.limits.catalogEntryMaxBytes },
    tombstoneRetentionMs: config.limits.catalogTombstoneRetention,
    buckets: config.nats,
  });
  informer.addEventHandler(() => catalog.onMembersChanged());

  const lifetime = new AbortController();
  const access = config.nats.authCallout ? await startNatsAccess(config.nats.authCallout) : undefined;
  const credentials = new OptionalClientCertCredentials(await serverIdentity(trust));
  // What this replica presents: re-issued when the signing root or the bundle changes (rotation).
  let svidRoot = trust.signingAuthority().fingerprint;
  let identitySequence = trust.bundle.sequence;
  const publishHubInfo = (): Promise<void> =>
    writeHubInfo(kc, config.namespace, {
      endpoints,
      caPin: rootPin(new X509Certificate(trust.signingAuthority().certificatePem)),
      trustDomain: trust.bundle.trustDomain,
      trustNamespace: config.trustNamespace,
    });
  const natsServerTls = config.nats.serverTlsSecret;
  const natsTls = natsServerTls
    ? new NatsTlsPublisher({
        kc,
        namespace: natsServerTls.namespace,
        name: natsServerTls.name,
        hostNames: { dns: natsServerTls.dnsNames, ip: natsServerTls.ipAddresses },
        lifetimeMs: natsServerTls.lifetime,
        log: log.child({ part: 'nats-tls' }),
      })
    : undefined;
  const rotation: TrustRotationDeps = {
    trust,
    memberCache,
    hubRootInUse: () => svidRoot,
    natsIssuedRoot: natsTls && (() => natsTls.issuedRoot),
    rootTtlMs: config.certificates.rootTtl,
    stageTimeoutMs: config.rotation.stageTimeout,
    log: log.child({ part: 'trust-rotation' }),
  };
  /** Every replica: re-read the trust state; the leader advances a rotation; then follow it. */
  const trustTick = async (): Promise<void> => {
    await trust.refresh();
    if (elector.isLeader()) {
      await stepTrustRotation(rotation);
      await natsTls?.sync(trust.bundle, trust.signingAuthority());
    }
    const signer = trust.signingAuthority();
    if (signer.fingerprint === svidRoot && trust.bundle.sequence === identitySequence) return;
    credentials.updateIdentity(await serverIdentity(trust));
    [svidRoot, identitySequence] = [signer.fingerprint, trust.bundle.sequence];
    log.info({ root: svidRoot, bundleSequence: identitySequence }, 'hub identity and trusted roots reloaded');
    if (elector.isLeader()) await publishHubInfo();
  };
  const server = new grpc.Server({
    ...keepaliveServerOptions,
    'grpc.max_receive_message_length': config.limits.reportMaxBytes,
  });
  const grpcPort = await bindServer(server, `${config.grpc.host}:${config.grpc.port}`, credentials);
  const endpoints =
    config.advertiseEndpoints.length > 0
      ? config.advertiseEndpoints
      : [`${config.grpc.host === '0.0.0.0' ? '127.0.0.1' : config.grpc.host}:${grpcPort}`];

  /** This term's FailoverPolicy controller; heartbeats report to it. */
  let policies: PolicyController | undefined;
  const elector = new LeaderElector({
    kubeConfig: kc,
    leaseName: 'isthmus-hub',
    namespace: config.namespace,
    identity: config.replicaId,
    leaseDurationMs: config.leaderElection.leaseDuration,
    renewDeadlineMs: config.leaderElection.renewDeadline,
    retryPeriodMs: config.leaderElection.retryPeriod,
    logger: log.child({ part: 'leader-election' }),
    onStartedLeading: async (signal) => {
      log.info({ replica: config.replicaId }, 'leading');
      // The term's loops run until its signal aborts. The catalog starts first so that a failure
      // below cannot leave a leader without a catalog.
      const term: Promise<void>[] = [catalog.onStartedLeading(signal)];
      try {
        await trust.refresh();
        await publishHubInfo();
        term.push(
          runHealthMonitor(
            memberCache,
            members,
            { intervalMs: config.heartbeat.interval, missedBeforeUnknown: config.heartbeat.missedBeforeUnknown },
            log.child({ part: 'health' }),
            signal,
          ),
        );
        term.push(runPolicies(signal));
        const kv = await openBucket(nc, MEMBERS_BUCKET, config.nats, log.child({ part: 'membership' }));
        const publisher = new MembershipPublisher(kv, memberCache, log.child({ part: 'membership' }), {
          staleAfterMs: config.heartbeat.staleAfter,
        });
        term.push(
          runWithInformerHook(
            () => publisher.trigger(),
            (s) => publisher.run(s),
            signal,
          ),
        );
        if (access) term.push(runNatsMembership(access.enforcer, signal));
      } catch (err) {
        log.error({ err }, 'leading without every loop of the term: one failed to start');
      }
      // Resolves when the term ends, so a graceful stop flushes the catalog and the membership
      // before releasing the lease.
      await Promise.all(term);
    },
    onStoppedLeading: () => {
      log.info({ replica: config.replicaId }, 'no longer leading');
      catalog.onStoppedLeading();
    },
  });

  /** Every replica answers NATS auth callout; the leader disconnects removed clusters. */
  async function startNatsAccess(files: {
    issuerSeedFile: string;
    systemNkeySeedFile: string;
  }): Promise<{ enforcer: NatsAccess; system: NatsConnection }> {
    const [issuerSeed, systemSeed] = await Promise.all([
      readFile(files.issuerSeedFile, 'utf8'),
      readFile(files.systemNkeySeedFile, 'utf8'),
    ]);
    const system = await connectNats({
      urls: config.nats.urls,
      name: `isthmus-hub-${config.replicaId}-system`,
      trustDomain: config.trustDomain,
      tls: natsClientTls,
      log,
      nkeySeed: systemSeed,
    });
    const enforcer = new NatsAccess({
      nc,
      system,
      issuerSeed,
      authenticate: createAgentAuthenticator({ trust, memberCache }),
      memberCache,
      log: log.child({ part: 'nats-access' }),
    });
    enforcer.serve(lifetime.signal);
    return { enforcer, system };
  }

  /** Runs a term's loop with a hook on every MemberCluster change, removed when the term ends. */
  async function runWithInformerHook(
    onMembersChanged: () => void,
    loop: (signal: AbortSignal) => Promise<void>,
    signal: AbortSignal,
  ): Promise<void> {
    const removeHook = informer.addEventHandler(onMembersChanged);
    try {
      await loop(signal);
    } finally {
      removeHook();
    }
  }

  /** For one term: on every membership change, and every 10 s in case a change was missed. */
  function runNatsMembership(enforcer: NatsAccess, signal: AbortSignal): Promise<void> {
    const enforce = (): Promise<void> => enforcer.enforce();
    return runWithInformerHook(
      () => void enforce(),
      (s) =>
        runPeriodically(enforce, 10_000, s, (err) => log.warn({ err }, 'enforcing NATS membership failed; retrying')),
      signal,
    );
  }

  /** FailoverPolicy distribution for one term: stops (no write starts) when the term's signal aborts. */
  async function runPolicies(signal: AbortSignal): Promise<void> {
    const controller = new PolicyController({
      kc,
      nc,
      memberCache,
      buckets: config.nats,
      log: log.child({ part: 'policies' }),
    });
    policies = controller;
    try {
      await runWithInformerHook(
        () => controller.membersChanged(),
        (s) => controller.run(s),
        signal,
      );
    } finally {
      if (policies === controller) policies = undefined;
    }
  }

  addHubService(
    server,
    createHubHandlers({
      trust,
      tokens,
      members,
      memberCache,
      exports: catalog.sink,
      appliedPolicies: { report: (clusterId, applied) => policies?.reportApplied(clusterId, applied) },
      isLeader: () => elector.isLeader(),
      leader: () => elector.leader(),
      log: log.child({ part: 'api' }),
      settings: {
        autoAccept: config.autoAccept,
        agentTtlMs: config.certificates.agentTtl,
        intermediateTtlMs: config.certificates.intermediateTtl,
        heartbeatIntervalMs: config.heartbeat.interval,
        acceptanceWaitMs: ACCEPTANCE_WAIT_MS,
        hubEndpoints: endpoints,
        natsUrls: config.nats.urls,
      },
    }),
    log.child({ part: 'api' }),
    {
      authenticate: createAgentAuthenticator({ trust, memberCache }),
      maxMessageBytes: {
        Join: config.limits.joinMaxBytes,
        Renew: config.limits.smallCallMaxBytes,
        Heartbeat: config.limits.smallCallMaxBytes,
        Leave: config.limits.smallCallMaxBytes,
        ReportExports: config.limits.reportMaxBytes,
      },
      joinLimit: config.limits.join,
      agentLimit: config.limits.agent,
    },
  );
  elector.start();
  void runPeriodically(trustTick, 1_000, lifetime.signal, (err) =>
    log.warn({ err }, 'trust state refresh or rotation step failed; retrying'),
  );

  const registry = processMetricsRegistry('hub');
  const status: StatusServer = await startStatusServer({
    host: config.status.host,
    port: config.status.port,
    registry,
    notReadyReason: () =>
      !informer.hasSynced ? 'member cache not synced' : nc.isClosed() ? 'NATS connection closed' : undefined,
  });
  log.info({ grpcPort, statusPort: status.port, endpoints, trustDomain: config.trustDomain }, 'hub serving');

  return {
    grpcPort,
    statusPort: status.port,
    endpoints,
    isLeader: () => elector.isLeader(),
    stop: async () => {
      lifetime.abort();
      // Release the lease first so a standby takes over while this replica drains.
      await elector.stop({ release: true });
      await new Promise<void>((resolve) => {
        const force = setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, 5_000);
        server.tryShutdown(() => {
          clearTimeout(force);
          resolve();
        });
      });
      await informer.stop();
      await access?.system.drain();
      await nc.drain();
      await status.close();
    },
  };
}
