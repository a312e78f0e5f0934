// The service catalog on top of membership: the exporter reports this cluster's ServiceExports
// to the hub; the importer turns the hub's KV catalog into ServiceImports and EndpointSlices that
// lead to the local gateway's outbound listeners, and tells the exporter about conflicts the hub
// found later (another cluster's export); the membership and the hub's FailoverPolicies are
// mirrored for the gateway, and the policy copies this cluster holds are reported in heartbeats.
import { setTimeout as sleep } from 'node:timers/promises';
import type { KubeConfig } from '@kubernetes/client-node';
import type { Registry } from 'prom-client';
import { parseCatalogKey } from '../common/catalog.ts';
import type { Logger } from '../common/logger.ts';
import { agentInboxPrefix } from '../common/nats-authorization.ts';
import { connectNats } from '../common/nats.ts';
import type { MemberExtension } from './agent.ts';
import { whenAborted } from '../common/lifecycle.ts';
import type { AgentCredentials } from './credentials.ts';
import { createExporter, hubReportSink, type Exporter } from './exports/index.ts';
import { gatewayListeners, type GatewayListeners } from './gateway-listeners.ts';
import type { KubernetesObject } from '@kubernetes/client-node';
import type { Informer } from '../common/kube/index.ts';
import {
  createImporter,
  ownedServiceImports,
  registerImporterMetrics,
  type Importer,
  type ImporterStatus,
} from './imports/index.ts';
import { membersMirror } from './members-mirror.ts';
import { policyCopies, policyMirror, type PolicyCopies } from './policy-mirror.ts';

interface ImportSide {
  readonly importer: Importer;
  readonly close: () => Promise<void>;
}

const IMPORTER_NOT_STARTED: ImporterStatus = {
  synced: false,
  entries: 0,
  revision: 0,
  watchRestarts: 0,
  malformedEntries: 0,
  writes: 0,
  reconciles: 0,
  pending: 0,
  conflicts: [],
};

export interface CatalogExtensionOptions {
  readonly log: Logger;
  readonly registry?: Registry;
  /** The agent's namespace, where the gateway's listener table and the membership mirror live. */
  readonly namespace: string;
  readonly gatewayName: string;
  /** How long an import outlives a catalog key that vanished without a tombstone. */
  readonly vanishedGraceMs?: number;
}

export interface CatalogExtension extends MemberExtension {
  /**
   * The ServiceImports the importer wrote, cached from the extension's start on (even while NATS
   * is unreachable, so the clusterset DNS keeps answering after a restart); undefined before.
   */
  serviceImports(): Informer<KubernetesObject> | undefined;
}

export function catalogExtension(options: CatalogExtensionOptions): CatalogExtension {
  const { log, registry } = options;
  let listeners: GatewayListeners | undefined;
  let copies: PolicyCopies | undefined;
  let exporter: Exporter | undefined;
  let imports: Promise<ImportSide> | undefined;
  let context: { kc: KubeConfig; signal: AbortSignal } | undefined;
  let natsCertificate = '';
  let activeImporter: Importer | undefined;
  // One cache for every importer (new credentials mean a new importer), started before NATS is reached.
  let serviceImports: Informer<KubernetesObject> | undefined;
  // Registered once, reading whichever importer runs now (new credentials replace it).
  if (registry) registerImporterMetrics(registry, () => activeImporter?.status() ?? IMPORTER_NOT_STARTED);

  /** NATS reads its TLS certificate once per connection: new credentials mean a new connection. */
  async function startImports(credentials: AgentCredentials): Promise<ImportSide> {
    const { kc, signal } = context as { kc: KubeConfig; signal: AbortSignal };
    natsCertificate = credentials.agentCertificate;
    // While NATS is unreachable this keeps retrying, and nothing imported is touched.
    const nc = await connectNats({
      urls: credentials.natsUrls,
      name: `isthmus-agent-${credentials.clusterId}`,
      trustDomain: credentials.trustDomain,
      tls: { ca: credentials.trustBundlePem, cert: credentials.agentCertificate, key: credentials.agentKey },
      inboxPrefix: agentInboxPrefix(credentials.clusterId),
      log,
    });
    const outbound = listeners as GatewayListeners;
    const members = membersMirror({ kc, nc, namespace: options.namespace, log });
    const importer = createImporter({
      kc,
      clusterId: credentials.clusterId,
      nc,
      log: log.child({ part: 'imports' }),
      outboundListener: outbound.lookup,
      isStale: (clusterId) => members.isStale(clusterId),
      ...(options.vanishedGraceMs ? { vanishedGraceMs: options.vanishedGraceMs } : {}),
      ...(serviceImports ? { serviceImports } : {}),
    });
    outbound.onChange(() => importer.resync());
    members.onChange(() => importer.resync());
    // This side runs until the agent stops or new credentials replace it.
    const replaced = new AbortController();
    const sideSignal = AbortSignal.any([signal, replaced.signal]);
    const target = exporter as Exporter;
    importer.onEntry((key, entry) => {
      const { namespace, name } = entry ?? parseCatalogKey(key);
      target.applyCatalogConflicts(namespace, name, entry?.conflicts ?? []);
    });
    activeImporter = importer;
    const running = Promise.all([
      members.run(sideSignal),
      policyMirror({ kc, nc, copies: copies as PolicyCopies, log }).run(sideSignal),
      importer.run(sideSignal),
    ]);
    return {
      importer,
      close: async () => {
        replaced.abort();
        await running;
        await nc.drain();
      },
    };
  }

  return {
    async run({ kc, credentials, session, signal, heartbeatSoon }) {
      context = { kc, signal };
      const outbound = gatewayListeners({ kc, namespace: options.namespace, gatewayName: options.gatewayName, log });
      listeners = outbound;
      outbound.start();
      // Read from this cluster, not NATS: the hub hears which copies exist even while NATS is down.
      const ownCopies = policyCopies({ kc, log });
      copies = ownCopies;
      ownCopies.onChange(() => heartbeatSoon());
      ownCopies.start();
      const imported = ownedServiceImports(kc, log.child({ part: 'imports' }));
      serviceImports = imported;
      imported.start();
      exporter = createExporter({
        kc,
        clusterId: credentials.clusterId,
        hub: hubReportSink(session),
        log: log.child({ part: 'exports' }),
      });
      const exporting = exporter
        .run(signal)
        .catch((err: unknown) => log.error({ err }, 'exporter stopped with an error'));
      imports = startImports(credentials);
      imports.catch((err: unknown) => log.error({ err }, 'cannot start the catalog side'));
      await whenAborted(signal);
      await exporting;
      // A connection still waiting for an unreachable NATS has nothing to close; don't wait for it.
      const side = await Promise.race([imports.catch(() => undefined), sleep(2_000)]);
      await side?.close();
      await Promise.all([outbound.stop(), ownCopies.stop(), imported.stop()]);
    },
    serviceImports: () => serviceImports,
    exportCount: () => exporter?.exportCount() ?? 0,
    appliedPolicies: () => copies?.applied(),
    credentialsChanged: (credentials) => {
      if (!imports || credentials.agentCertificate === natsCertificate) return;
      const previous = imports;
      // The new importer takes over from the cached state of the old one's objects: unchanged
      // imports cause no writes.
      // Closing the old side can fail (its connection already cut, e.g. by NATS reloading its
      // TLS); the new connection must come up regardless, or the catalog stops for good.
      imports = previous
        .catch(() => undefined)
        .then(async (side) => {
          await side
            ?.close()
            .catch((err: unknown) => log.warn({ err }, 'closing the catalog connection of the old certificate failed'));
          return startImports(credentials);
        });
      imports.catch((err: unknown) => log.error({ err }, 'cannot reconnect the catalog with the new certificate'));
    },
  };
}
