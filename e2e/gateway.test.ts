// The east-west data plane end to end: three member clusters, each in its own network namespace
// with a real address, an agent and a gateway; test backends and clients are processes inside
// those namespaces. A client in B dials what B's Kubernetes API names (the clusterset Service's
// endpoints, the MCS source slices) and reaches a backend in A through both gateways over mTLS;
// whatever A's gateway must refuse, it refuses before a backend sees a byte, with the reason in
// its metrics; failed backends cost clients nothing; certificates rotate and SIGTERM drains
// without dropping a transfer.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  CoreV1Api,
  DiscoveryV1Api,
  PatchStrategy,
  setHeaderOptions,
  type V1EndpointSlice,
} from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LABEL_SERVICE_NAME, LABEL_SOURCE_CLUSTER } from '../common/api/mcs.ts';
import {
  GATEWAY_INBOUND_PORT,
  TUNNEL_CONNECTED,
  gatewayTlsSecretName,
  serviceSni,
} from '../common/gateway-contract.ts';
import { ClusterAuthority } from '../common/pki/index.ts';
import { issueSvid } from '../common/pki/svid.ts';
import { importKeyPair, parseCertificates, type x509 } from '../common/pki/x509.ts';
import { AgentSecrets } from '../spoke-agent/credentials.ts';
import { readServiceImport } from '../local/exports.ts';
import {
  clustersetEndpoint as clustersetEndpointOf,
  connect as connectFrom,
  exportWithBackends as exportBackends,
  metric,
  routeShares,
  type Backend,
  type ConnectReport,
} from './gateway/scenario.ts';
import { Federation } from '../local/federation/index.ts';
import { netnsAvailable, waitFor, type LocalCluster } from '../local/testbed/index.ts';

const NS = 'shop';
const available = await netnsAvailable();
if (!available.ok) console.info(`gateway e2e skipped: ${available.reason}`);

describe.skipIf(!available.ok)('east-west gateway', () => {
  let fed: Federation;
  let a: LocalCluster;
  let b: LocalCluster;

  beforeAll(async () => {
    fed = await Federation.start({ members: 3, heartbeatInterval: '1s', gateways: true });
    [a, b] = fed.members as [LocalCluster, LocalCluster];
    await fed.joinAll(NS);
    await Promise.all(fed.members.map((m) => fed.gatewayReady(m.name)));
  });
  afterAll(async () => {
    await fed?.[Symbol.asyncDispose]();
  });

  const exportWithBackends = (
    cluster: LocalCluster,
    name: string,
    ids: readonly string[],
    dead = 0,
  ): Promise<Backend[]> => exportBackends(fed, cluster, NS, name, ids, { dead });
  const clustersetEndpoint = (cluster: LocalCluster, name: string): Promise<{ address: string; port: number }> =>
    clustersetEndpointOf(cluster, NS, name);
  const connect = (
    from: LocalCluster,
    target: { address: string; port: number },
    count: number,
  ): Promise<ConnectReport> => connectFrom(fed, from, target, count);

  it('carries a client in B to a backend exported by A through both gateways, and says Ready', async () => {
    await exportWithBackends(a, 'cart', ['cart-a1']);
    const vip = await clustersetEndpoint(b, 'cart');
    expect(vip.address).toBe(fed.lab?.cluster(b.name).gatewayAddress);
    const report = await connect(b, vip, 5);
    expect(report).toMatchObject({ served: { 'cart-a1': 5 }, failed: 0 });
    await waitFor(
      'ServiceImport Ready in B',
      async () => {
        const imported = (await readServiceImport(b.kubeConfig(), NS, 'cart')) as
          { status?: { conditions?: { type: string; status: string }[] } } | undefined;
        return imported?.status?.conditions?.find((c) => c.type === 'Ready')?.status === 'True';
      },
      30_000,
      200,
    );
    const metrics = await fed.gatewayMetrics(a.name);
    expect(
      metric(metrics, 'isthmus_gateway_connections_total', {
        direction: 'inbound',
        service: 'cart',
        source_cluster: b.name,
        result: 'connected',
      }),
    ).toBeGreaterThanOrEqual(5);
    // `isthmus routes` from B: cluster A takes every new connection.
    expect((await routeShares(fed, b, NS, 'cart')).shares.get(a.name)).toBe(1);
  });

  it('answers plain TCP at the address and port of every MCS source slice (Gateway API and DNS consumers)', async () => {
    await exportWithBackends(a, 'catalog', ['catalog-a1']);
    const discovery = b.kubeConfig().makeApiClient(DiscoveryV1Api);
    let slice: V1EndpointSlice | undefined;
    await waitFor(
      'source slice of A in B with an endpoint',
      async () => {
        const slices = await discovery.listNamespacedEndpointSlice({
          namespace: NS,
          labelSelector: `${LABEL_SERVICE_NAME}=catalog,${LABEL_SOURCE_CLUSTER}=${a.name}`,
        });
        slice = slices.items.find((s) => (s.endpoints?.length ?? 0) > 0);
        return slice !== undefined;
      },
      30_000,
      200,
    );
    const target = { address: slice?.endpoints?.[0]?.addresses[0] as string, port: slice?.ports?.[0]?.port as number };
    expect(await connect(b, target, 3)).toMatchObject({ served: { 'catalog-a1': 3 }, failed: 0 });
  });

  it('skips a backend that refuses connections, with zero failed client connections', async () => {
    await exportWithBackends(a, 'flaky', ['flaky-a1'], 2);
    const vip = await clustersetEndpoint(b, 'flaky');
    const report = await connect(b, vip, 30);
    expect(report.failed).toBe(0);
    expect(report.served['flaky-a1']).toBe(30);
  });

  it('refuses at A what it must, before any backend, with the reason in its metrics', async () => {
    await exportWithBackends(a, 'orders', ['orders-a1']);
    await clustersetEndpoint(b, 'orders');
    const aGateway = fed.lab?.cluster(a.name).gatewayAddress as string;
    const dir = fed.dir;
    const before = await fed.gatewayMetrics(a.name);
    const refusals = (text: string, reason: string): number =>
      metric(text, 'isthmus_gateway_refusals_total', { reason });

    // 1. No client certificate.
    const noCert = JSON.parse(
      await fed.inCluster(b.name, ['tls', aGateway, String(GATEWAY_INBOUND_PORT), serviceSni(NS, 'orders', 8080)]),
    ) as { firstByte: number | null };
    expect(noCert.firstByte).toBeNull();

    // B's own gateway certificate, asking for a service A does not export.
    const bCredentials = await new AgentSecrets(b.kubeConfig(), 'isthmus-system').loadCredentials();
    if (!bCredentials) throw new Error('B has no credentials');
    const bSecret = await b
      .kubeConfig()
      .makeApiClient(CoreV1Api)
      .readNamespacedSecret({ name: gatewayTlsSecretName('east-west'), namespace: 'isthmus-system' });
    const decode = (key: string): string => Buffer.from(bSecret.data?.[key] ?? '', 'base64').toString('utf8');
    writeFileSync(join(dir, 'b-gw.crt'), decode('tls.crt'));
    writeFileSync(join(dir, 'b-gw.key'), decode('tls.key'));
    const unexported = JSON.parse(
      await fed.inCluster(b.name, [
        'tls',
        aGateway,
        String(GATEWAY_INBOUND_PORT),
        serviceSni(NS, 'nothing-here', 8080),
        join(dir, 'b-gw.crt'),
        join(dir, 'b-gw.key'),
      ]),
    ) as { firstByte: number | null };
    expect(unexported.firstByte).toBeNull();
    // The same certificate for an exported service is let through: the refusals above are about what they asked.
    const allowed = JSON.parse(
      await fed.inCluster(b.name, [
        'tls',
        aGateway,
        String(GATEWAY_INBOUND_PORT),
        serviceSni(NS, 'orders', 8080),
        join(dir, 'b-gw.crt'),
        join(dir, 'b-gw.key'),
      ]),
    ) as { firstByte: number | null };
    expect(allowed.firstByte).toBe(TUNNEL_CONNECTED);

    // 2. B's intermediate minting an identity of cluster C.
    const [intermediate] = parseCertificates(bCredentials.intermediateCertificate) as [x509.X509Certificate];
    const forged = await issueSvid(
      { certificate: intermediate, keys: await importKeyPair(bCredentials.intermediateKey, intermediate) },
      `spiffe://${bCredentials.trustDomain}/cluster/${fed.members[2]?.name ?? ''}/gateway/east-west`,
      { chainPem: bCredentials.intermediateCertificate },
    );
    writeFileSync(join(dir, 'forged.crt'), forged.certificateChainPem);
    writeFileSync(join(dir, 'forged.key'), forged.privateKeyPem);
    const minted = JSON.parse(
      await fed.inCluster(b.name, [
        'tls',
        aGateway,
        String(GATEWAY_INBOUND_PORT),
        serviceSni(NS, 'orders', 8080),
        join(dir, 'forged.crt'),
        join(dir, 'forged.key'),
      ]),
    ) as { firstByte: number | null };
    expect(minted.firstByte).toBeNull();

    let after = '';
    await waitFor(
      'refusals counted',
      async () => {
        after = await fed.gatewayMetrics(a.name);
        return (
          refusals(after, 'NO_CERTIFICATE') > refusals(before, 'NO_CERTIFICATE') &&
          refusals(after, 'NOT_EXPORTED') > refusals(before, 'NOT_EXPORTED') &&
          refusals(after, 'CLUSTER_MISMATCH') > refusals(before, 'CLUSTER_MISMATCH')
        );
      },
      10_000,
      250,
    );
  });

  interface StreamReport {
    readonly id: string;
    readonly sent: number;
    readonly received: number;
    readonly intact: boolean;
    readonly error: string;
  }

  function stream(
    from: LocalCluster,
    target: { address: string; port: number },
    seconds: number,
  ): Promise<StreamReport> {
    return fed
      .inCluster(from.name, ['stream', target.address, String(target.port), String(seconds), '64'])
      .then((out) => JSON.parse(out) as StreamReport);
  }

  async function activeInbound(cluster: LocalCluster): Promise<number> {
    return metric(await fed.gatewayMetrics(cluster.name), 'isthmus_gateway_active_connections', {
      direction: 'inbound',
    });
  }

  function gatewayLogged(cluster: LocalCluster, text: string, since: number): Promise<boolean> {
    return Promise.resolve(
      readFileSync(fed.gateway(cluster.name)?.logFile ?? '', 'utf8')
        .slice(since)
        .includes(text),
    );
  }

  function gatewayLogLength(cluster: LocalCluster): number {
    return readFileSync(fed.gateway(cluster.name)?.logFile ?? '', 'utf8').length;
  }

  it("rotates both gateways' certificates without dropping a long-running transfer", async () => {
    await exportWithBackends(a, 'video', ['video-a1']);
    const vip = await clustersetEndpoint(b, 'video');
    const transfer = stream(b, vip, 6);
    await waitFor('transfer open at A', async () => (await activeInbound(a)) >= 1, 20_000, 200);
    const marks = new Map(fed.members.slice(0, 2).map((m) => [m.name, gatewayLogLength(m)]));
    for (const member of [a, b]) {
      const credentials = await new AgentSecrets(member.kubeConfig(), 'isthmus-system').loadCredentials();
      if (!credentials) throw new Error(`${member.name} has no credentials`);
      const authority = await ClusterAuthority.create({
        trustDomain: credentials.trustDomain,
        clusterId: member.name,
        privateKey: credentials.intermediateKey,
        intermediatePem: credentials.intermediateCertificate,
      });
      const svid = await authority.issueLeaf({
        kind: 'gateway',
        trustDomain: credentials.trustDomain,
        clusterId: member.name,
        name: 'east-west',
      });
      await member
        .kubeConfig()
        .makeApiClient(CoreV1Api)
        .patchNamespacedSecret(
          {
            name: gatewayTlsSecretName('east-west'),
            namespace: 'isthmus-system',
            body: { stringData: { 'tls.crt': svid.certificateChainPem, 'tls.key': svid.privateKeyPem } },
          },
          setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
        );
    }
    for (const member of [a, b]) {
      await waitFor(
        `${member.name} reloaded its certificate`,
        () => gatewayLogged(member, 'gateway certificate reloaded', marks.get(member.name) ?? 0),
        20_000,
        200,
      );
    }
    // New handshakes (with the new certificates) work while the old connection carries on.
    expect(await connect(b, vip, 3)).toMatchObject({ served: { 'video-a1': 3 }, failed: 0 });
    const report = await transfer;
    expect(report).toMatchObject({ id: 'video-a1', intact: true, error: '' });
    expect(report.sent).toBeGreaterThan(0);
  });

  it('drains on SIGTERM: stops accepting, lets the open transfer finish, then exits', async () => {
    await exportWithBackends(a, 'upload', ['upload-a1']);
    const vip = await clustersetEndpoint(b, 'upload');
    const transfer = stream(b, vip, 5);
    await waitFor('transfer open at A', async () => (await activeInbound(a)) >= 1, 20_000, 200);
    const gateway = fed.gateway(a.name);
    if (!gateway) throw new Error('no gateway in A');
    const stopped = fed.stopGateway(a.name, 'SIGTERM', 60_000);
    const aGateway = fed.lab?.cluster(a.name).gatewayAddress as string;
    await waitFor(
      'A stops accepting',
      async () => (await fed.lab?.cluster(b.name).tcpProbe(aGateway, GATEWAY_INBOUND_PORT, 2_000)) === 'refused',
      20_000,
      200,
    );
    expect(gateway.running).toBe(true); // still draining the transfer
    const report = await transfer;
    expect(report).toMatchObject({ id: 'upload-a1', intact: true, error: '' });
    await stopped;
    expect(gateway.child.exitCode).toBe(0);
    expect(gateway.logTail(50)).toContain('"closedAtDeadline":0');
    await fed.startGateway(a.name);
    await fed.gatewayReady(a.name);
    expect(await connect(b, vip, 2)).toMatchObject({ served: { 'upload-a1': 2 }, failed: 0 });
  });

  // Last: it removes cluster C from the federation.
  it("refuses a removed cluster's certificate and closes its open connections", async () => {
    const c = fed.members[2] as LocalCluster;
    await exportWithBackends(a, 'ledger', ['ledger-a1']);
    const vip = await clustersetEndpoint(c, 'ledger');
    const cSecret = await c
      .kubeConfig()
      .makeApiClient(CoreV1Api)
      .readNamespacedSecret({ name: gatewayTlsSecretName('east-west'), namespace: 'isthmus-system' });
    const decode = (key: string): string => Buffer.from(cSecret.data?.[key] ?? '', 'base64').toString('utf8');
    writeFileSync(join(fed.dir, 'c-gw.crt'), decode('tls.crt'));
    writeFileSync(join(fed.dir, 'c-gw.key'), decode('tls.key'));
    const transfer = stream(c, vip, 60);
    await waitFor("C's transfer open at A", async () => (await activeInbound(a)) >= 1, 20_000, 200);
    const before = await fed.gatewayMetrics(a.name);
    expect((await fed.cli(['cluster', 'remove', c.name], 'hub')).code).toBe(0);
    // The open connection is cut well before its 60 s are up.
    const report = await transfer;
    expect(report.id).toBe('ledger-a1');
    expect(report.intact).toBe(false);
    const aGateway = fed.lab?.cluster(a.name).gatewayAddress as string;
    const removed = JSON.parse(
      await fed.inCluster(c.name, [
        'tls',
        aGateway,
        String(GATEWAY_INBOUND_PORT),
        serviceSni(NS, 'ledger', 8080),
        join(fed.dir, 'c-gw.crt'),
        join(fed.dir, 'c-gw.key'),
      ]),
    ) as { firstByte: number | null };
    expect(removed.firstByte).toBeNull();
    await waitFor(
      'NOT_A_MEMBER counted at A',
      async () =>
        metric(await fed.gatewayMetrics(a.name), 'isthmus_gateway_refusals_total', { reason: 'NOT_A_MEMBER' }) >
        metric(before, 'isthmus_gateway_refusals_total', { reason: 'NOT_A_MEMBER' }),
      10_000,
      250,
    );
  });
});
