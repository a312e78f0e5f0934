// The clusterset.local responder over real UDP and TCP sockets on 127.0.0.1, fed by a real
// informer cache of ServiceImports in a real kube-apiserver, asked by Node's resolver (c-ares,
// which retries a truncated UDP answer over TCP) and by a raw TCP client.
import type { Resolver } from 'node:dns/promises';
import { connect } from 'node:net';
import { CustomObjectsApi, type KubeConfig, type KubernetesObject } from '@kubernetes/client-node';
import packet, { type DecodedPacket } from 'dns-packet';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MCS_API_VERSION, MCS_GROUP, MCS_VERSION, SERVICE_IMPORT_PLURAL } from '../../common/api/mcs.ts';
import { Informer, ensureNamespace } from '../../common/kube/index.ts';
import { createLogger } from '../../common/logger.ts';
import { startTestbed, waitFor, type Testbed } from '../../local/testbed/index.ts';
import { serviceImportResource } from '../imports/importer.ts';
import { dnsOutcome, resolverFor } from './dns.testkit.ts';
import { startClustersetDns, type DnsServer } from './index.ts';

const log = createLogger({ component: 'dns-test', level: process.env.ISTHMUS_TEST_LOG === '1' ? 'debug' : 'silent' });

let bed: Testbed;
let kc: KubeConfig;

beforeAll(async () => {
  bed = await startTestbed({ clusters: 1, nats: false });
  kc = (bed.clusters[0] as Testbed['clusters'][number]).kubeConfig();
});
afterAll(async () => {
  await bed?.[Symbol.asyncDispose]();
});

async function createServiceImport(namespace: string, name: string, spec: Record<string, unknown>): Promise<void> {
  await ensureNamespace(kc, namespace);
  await kc.makeApiClient(CustomObjectsApi).createNamespacedCustomObject({
    group: MCS_GROUP,
    version: MCS_VERSION,
    namespace,
    plural: SERVICE_IMPORT_PLURAL,
    body: { apiVersion: MCS_API_VERSION, kind: 'ServiceImport', metadata: { name }, spec },
  });
}

/** A responder on a free port of 127.0.0.1 answering from `informer`, and a resolver that asks it. */
async function responder(
  informer: Informer<KubernetesObject>,
): Promise<{ dns: DnsServer; resolver: Resolver } & AsyncDisposable> {
  const dns = await startClustersetDns({ host: '127.0.0.1', port: 0, serviceImports: () => informer, log });
  const resolver = resolverFor(`127.0.0.1:${dns.port}`);
  return {
    dns,
    resolver,
    [Symbol.asyncDispose]: async () => {
      await dns.close();
      await informer.stop();
    },
  };
}

/** Length-prefixed queries written at once on one TCP connection, and the responses read back in order. */
async function overTcp(
  port: number,
  questions: readonly { name: string; type: 'A' | 'SRV' }[],
): Promise<DecodedPacket[]> {
  const socket = connect(port, '127.0.0.1');
  try {
    socket.write(
      Buffer.concat(questions.map((question, id) => packet.streamEncode({ type: 'query', id, questions: [question] }))),
    );
    const responses: DecodedPacket[] = [];
    let pending = Buffer.alloc(0);
    for await (const chunk of socket) {
      pending = Buffer.concat([pending, chunk as Buffer]);
      while (pending.length >= 2 && pending.length >= 2 + pending.readUInt16BE(0)) {
        responses.push(packet.decode(pending.subarray(2, 2 + pending.readUInt16BE(0))));
        pending = pending.subarray(2 + pending.readUInt16BE(0));
      }
      if (responses.length === questions.length) return responses;
    }
    throw new Error(`connection closed after ${responses.length} of ${questions.length} responses`);
  } finally {
    socket.destroy();
  }
}

describe('clusterset DNS responder', () => {
  it("answers SERVFAIL until the cache has synced, then the ServiceImport's IP, and NXDOMAIN once it is deleted", async () => {
    const informer = new Informer({ kubeConfig: kc, resource: serviceImportResource, namespace: 'sync', logger: log });
    await using server = await responder(informer);
    expect(await dnsOutcome(server.resolver.resolve4('cart.sync.svc.clusterset.local'))).toBe('ESERVFAIL');
    // Outside the zone it never answers, synced or not.
    expect(await dnsOutcome(server.resolver.resolve4('example.com'))).toBe('EREFUSED');

    informer.start();
    await informer.synced();
    expect(await dnsOutcome(server.resolver.resolve4('cart.sync.svc.clusterset.local'))).toBe('ENOTFOUND');
    await createServiceImport('sync', 'cart', {
      type: 'ClusterSetIP',
      ips: ['10.96.0.20'],
      ports: [{ name: 'http', protocol: 'TCP', port: 80 }],
    });
    await waitFor(
      'cart resolves',
      async () => (await server.resolver.resolve4('cart.sync.svc.clusterset.local')).join() === '10.96.0.20',
      20_000,
    );
    expect(await server.resolver.resolveSrv('_http._tcp.cart.sync.svc.clusterset.local')).toMatchObject([
      { name: 'cart.sync.svc.clusterset.local', port: 80, priority: 0, weight: 100 },
    ]);
    expect(await dnsOutcome(server.resolver.resolve6('cart.sync.svc.clusterset.local'))).toBe('ENODATA');

    await kc.makeApiClient(CustomObjectsApi).deleteNamespacedCustomObject({
      group: MCS_GROUP,
      version: MCS_VERSION,
      namespace: 'sync',
      plural: SERVICE_IMPORT_PLURAL,
      name: 'cart',
    });
    await waitFor(
      'cart is NXDOMAIN',
      async () => (await dnsOutcome(server.resolver.resolve4('cart.sync.svc.clusterset.local'))) === 'ENOTFOUND',
      20_000,
    );
  });

  it('serves several queries on one TCP connection, and what UDP cannot carry through the TCP retry', async () => {
    const ports = Array.from({ length: 60 }, (_, i) => ({ name: 'grpc', protocol: 'TCP', port: 9000 + i }));
    await createServiceImport('tcp', 'big', { type: 'ClusterSetIP', ips: ['10.96.0.30'], ports });
    await createServiceImport('tcp', 'db', { type: 'Headless', ports: [{ name: 'pg', protocol: 'TCP', port: 5432 }] });
    const informer = new Informer({ kubeConfig: kc, resource: serviceImportResource, namespace: 'tcp', logger: log });
    informer.start();
    await informer.synced();
    await using server = await responder(informer);

    const [a, srv, headless] = await overTcp(server.dns.port, [
      { name: 'big.tcp.svc.clusterset.local', type: 'A' },
      { name: '_grpc._tcp.big.tcp.svc.clusterset.local', type: 'SRV' },
      { name: 'db.tcp.svc.clusterset.local', type: 'A' },
    ]);
    expect(a).toMatchObject({ id: 0, flag_aa: true, answers: [{ type: 'A', data: '10.96.0.30' }] });
    expect(srv?.answers).toHaveLength(60);
    // A Headless import: the name exists, with no address to give (NODATA, not NXDOMAIN).
    expect(headless).toMatchObject({
      id: 2,
      rcode: 'NOERROR',
      answers: [],
      authorities: [{ type: 'SOA', name: 'clusterset.local' }],
    });

    // 60 SRV records do not fit 512 bytes of UDP: truncated, and c-ares asks again over TCP.
    expect(
      (await server.resolver.resolveSrv('_grpc._tcp.big.tcp.svc.clusterset.local')).map((r) => r.port).sort(),
    ).toEqual(ports.map((p) => p.port));
  });
});
