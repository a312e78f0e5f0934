// The Isthmus side of the gateway benchmark: two real east-west gateway processes, each reading
// its configuration from its own cluster's real kube-apiserver, as in production. The objects the
// agents would write are written here directly (no hub, no NATS: the data plane is measured):
//   bench-a (hop 1, outbound): its certificate, the bundle, the membership, a ServiceImport of
//     bench/echo and the source slice saying bench-b's gateway is at 127.0.0.1:<inbound port>;
//   bench-b (hop 2, inbound): its certificate, the bundle, the membership, and the exported
//     Service bench/echo whose endpoint is the backend. EndpointSlices refuse loopback IPs: the
//     benchmark runs in a namespace of its own where BENCH_ADDRESS is local (./bench-netns.ts).
// The entry is hop 1's outbound listener, read from the listener table it publishes.
import { CoreV1Api, CustomObjectsApi, DiscoveryV1Api, type KubeConfig } from '@kubernetes/client-node';
import { join } from 'node:path';
import { writeFileSync } from 'node:fs';
import { stringify as stringifyYaml } from 'yaml';
import {
  ENDPOINTSLICE_MANAGED_BY_AGENT,
  LABEL_ENDPOINTSLICE_MANAGED_BY,
  LABEL_SERVICE_NAME,
  LABEL_SOURCE_CLUSTER,
  MCS_API_VERSION,
  MCS_GROUP,
  MCS_VERSION,
} from '../../common/api/mcs.ts';
import {
  ANNOTATION_EXPORTED_PORTS,
  ANNOTATION_GATEWAY_ADDRESSES,
  ANNOTATION_LOCALITY,
  ANNOTATION_READY_ENDPOINTS,
  MEMBERS_CONFIGMAP,
  TRUST_BUNDLE_CONFIGMAP,
  gatewayListenersConfigMapName,
  gatewayTlsSecretName,
  listenersDocumentSchema,
  type MembersDocument,
} from '../../common/gateway-contract.ts';
import { ensureNamespace } from '../../common/kube/index.ts';
import { bundleToPem, type X509Svid } from '../../common/pki/index.ts';
import { freePort } from '../../local/testbed/ports.ts';
import {
  startTestbed,
  waitFor,
  waitForProcess,
  type LocalCluster,
  type ManagedProcess,
} from '../../local/testbed/index.ts';
import { benchHost } from './bench-netns.ts';
import {
  BENCH_MEMBERSHIP_EPOCH,
  accepts,
  connectionsWithin,
  openFileLimit,
  waitForListening,
  type BenchCertificates,
  type Endpoint,
  type TopologyFactory,
} from './topology.ts';

const GATEWAY_NAME = 'bench';
const SYSTEM_NS = 'isthmus-system';
const SERVICE_NS = 'bench';
const SERVICE = 'echo';
const SERVICE_PORT = 8080;
const repo = new URL('../../', import.meta.url).pathname;
const gatewayComponent = { 'app.kubernetes.io/component': 'east-west-gateway' };

async function writeIdentity(kc: KubeConfig, svid: X509Svid, certs: BenchCertificates): Promise<void> {
  await ensureNamespace(kc, SYSTEM_NS);
  const core = kc.makeApiClient(CoreV1Api);
  await core.createNamespacedSecret({
    namespace: SYSTEM_NS,
    body: {
      metadata: { name: gatewayTlsSecretName(GATEWAY_NAME) },
      type: 'kubernetes.io/tls',
      stringData: { 'tls.crt': svid.certificateChainPem, 'tls.key': svid.privateKeyPem, 'spiffe-id': svid.spiffeId },
    },
  });
  await core.createNamespacedConfigMap({
    namespace: SYSTEM_NS,
    body: {
      metadata: { name: TRUST_BUNDLE_CONFIGMAP, labels: gatewayComponent },
      data: {
        'bundle.pem': bundleToPem(certs.bundle),
        sequence: String(certs.bundle.sequence),
        'trust-domain': certs.trustDomain,
      },
    },
  });
  const members: MembersDocument['members'] = certs.members.map((clusterId) => ({
    clusterId,
    epoch: BENCH_MEMBERSHIP_EPOCH,
    region: 'bench',
    zone: clusterId,
    network: '',
    gatewayAddresses: [],
    labels: {},
    endpointsStale: false,
  }));
  await core.createNamespacedConfigMap({
    namespace: SYSTEM_NS,
    body: {
      metadata: { name: MEMBERS_CONFIGMAP, labels: gatewayComponent },
      data: { 'members.json': JSON.stringify({ members }) },
    },
  });
}

async function exportBackend(kc: KubeConfig, backend: Endpoint): Promise<void> {
  await ensureNamespace(kc, SERVICE_NS);
  await kc.makeApiClient(CoreV1Api).createNamespacedService({
    namespace: SERVICE_NS,
    body: { metadata: { name: SERVICE }, spec: { ports: [{ name: 'tcp', port: SERVICE_PORT }] } },
  });
  await kc.makeApiClient(DiscoveryV1Api).createNamespacedEndpointSlice({
    namespace: SERVICE_NS,
    body: {
      metadata: { name: `${SERVICE}-local`, labels: { 'kubernetes.io/service-name': SERVICE } },
      addressType: 'IPv4',
      ports: [{ name: 'tcp', port: backend.port }],
      endpoints: [{ addresses: [backend.host], conditions: { ready: true } }],
    },
  });
  await kc.makeApiClient(CustomObjectsApi).createNamespacedCustomObject({
    group: MCS_GROUP,
    version: MCS_VERSION,
    namespace: SERVICE_NS,
    plural: 'serviceexports',
    body: { apiVersion: MCS_API_VERSION, kind: 'ServiceExport', metadata: { name: SERVICE } },
  });
}

async function importFrom(kc: KubeConfig, source: string, gateway: Endpoint): Promise<void> {
  await ensureNamespace(kc, SERVICE_NS);
  const owned = { 'app.kubernetes.io/managed-by': 'isthmus-agent', [LABEL_SERVICE_NAME]: SERVICE };
  await kc.makeApiClient(CustomObjectsApi).createNamespacedCustomObject({
    group: MCS_GROUP,
    version: MCS_VERSION,
    namespace: SERVICE_NS,
    plural: 'serviceimports',
    body: {
      apiVersion: MCS_API_VERSION,
      kind: 'ServiceImport',
      metadata: { name: SERVICE, labels: owned },
      spec: { type: 'ClusterSetIP', ports: [{ name: 'tcp', protocol: 'TCP', port: SERVICE_PORT }] },
    },
  });
  await kc.makeApiClient(DiscoveryV1Api).createNamespacedEndpointSlice({
    namespace: SERVICE_NS,
    body: {
      metadata: {
        name: `${SERVICE}-${source}`,
        labels: {
          ...owned,
          [LABEL_ENDPOINTSLICE_MANAGED_BY]: ENDPOINTSLICE_MANAGED_BY_AGENT,
          [LABEL_SOURCE_CLUSTER]: source,
        },
        annotations: {
          [ANNOTATION_GATEWAY_ADDRESSES]: JSON.stringify([{ address: gateway.host, port: gateway.port }]),
          [ANNOTATION_LOCALITY]: JSON.stringify({ region: 'bench', zone: source, network: '', labels: {} }),
          [ANNOTATION_READY_ENDPOINTS]: JSON.stringify([{ zone: source, ready: 1 }]),
          [ANNOTATION_EXPORTED_PORTS]: JSON.stringify([`TCP/${SERVICE_PORT}`]),
        },
      },
      addressType: 'IPv4',
      endpoints: [],
    },
  });
}

/** hop 1's published outbound listener for bench/echo. */
async function outboundEntry(kc: KubeConfig): Promise<Endpoint> {
  let entry: Endpoint | undefined;
  await waitFor(
    'the outbound gateway publishes its listener for bench/echo',
    async () => {
      const configMap = await kc
        .makeApiClient(CoreV1Api)
        .readNamespacedConfigMap({ name: gatewayListenersConfigMapName(GATEWAY_NAME), namespace: SYSTEM_NS });
      const listener = listenersDocumentSchema
        .parse(JSON.parse(configMap.data?.['listeners.json'] ?? '{}'))
        .listeners.find((l) => l.name === SERVICE);
      entry = listener && listener.healthy ? { host: listener.address, port: listener.listenPort } : undefined;
      return entry !== undefined;
    },
    60_000,
    100,
  );
  return entry as Endpoint;
}

export const isthmusTopology: TopologyFactory = async (backend, certs) => {
  const bed = await startTestbed({ names: [certs.outbound.clusterId, certs.inbound.clusterId], nats: false });
  try {
    const [outboundCluster, inboundCluster] = bed.clusters as [LocalCluster, LocalCluster];
    const host = benchHost();
    const inboundListen: Endpoint = { host, port: await freePort(host) };
    const nofile = Math.min(openFileLimit().hard, 2 * 20_000 + 1_000);
    await Promise.all([
      writeIdentity(outboundCluster.kubeConfig(), certs.outbound.svid, certs),
      writeIdentity(inboundCluster.kubeConfig(), certs.inbound.svid, certs),
      exportBackend(inboundCluster.kubeConfig(), backend),
      importFrom(outboundCluster.kubeConfig(), certs.inbound.clusterId, inboundListen),
    ]);
    const start = async (
      cluster: LocalCluster,
      hop: 'outbound' | 'inbound',
      inbound: Endpoint,
    ): Promise<ManagedProcess> => {
      const file = join(bed.dir, `gateway-${hop}.yaml`);
      writeFileSync(
        file,
        stringifyYaml({
          clusterId: cluster.name,
          name: GATEWAY_NAME,
          kubeconfig: cluster.kubeconfigPath,
          inbound: { host: inbound.host, port: inbound.port },
          outbound: { address: host },
          status: { host: '127.0.0.1', port: 0 },
          maxConnectionsPerCandidate: connectionsWithin(nofile),
        }),
      );
      // Info logs would be one access-log line per connection: the benchmark measures forwarding.
      return bed.startProcess({
        name: `gateway-${hop}`,
        command: 'bash',
        args: [
          '-c',
          `ulimit -n ${nofile} && exec "$0" "$1" --config "$2"`,
          process.execPath,
          join(repo, 'east-west-gateway/main.ts'),
          file,
        ],
        env: { ...process.env, ISTHMUS_LOG_LEVEL: 'warn' },
      });
    };
    const inbound = await start(inboundCluster, 'inbound', inboundListen);
    const outbound = await start(outboundCluster, 'outbound', { host, port: await freePort(host) });
    const describe = (): string =>
      [inbound, outbound].map((p) => `${p.name} (${p.running ? 'running' : 'exited'}):\n${p.logTail(15)}`).join('\n');
    await waitForListening([inboundListen], Promise.race([inbound.exited(), outbound.exited()]), describe, 60_000);
    const entry = await outboundEntry(outboundCluster.kubeConfig());
    await waitForProcess(outbound, 'outbound listener accepts', () => accepts(entry), 10_000);
    return {
      name: 'isthmus',
      entry,
      pids: { outbound: outbound.pid, inbound: inbound.pid },
      [Symbol.asyncDispose]: async () => {
        // Warnings and errors (the hops log nothing else here) explain a failed measurement.
        for (const hop of [outbound, inbound]) {
          const lines = hop
            .logTail(2_000)
            .split('\n')
            .filter((line) => line.includes('"level":40') || line.includes('"level":50'));
          if (lines.length > 0)
            console.log(`${hop.name}: ${lines.length} warnings/errors, last: ${lines.slice(-3).join('\n')}`);
        }
        await bed[Symbol.asyncDispose]();
      },
    };
  } catch (err) {
    await bed[Symbol.asyncDispose]();
    throw err;
  }
};
