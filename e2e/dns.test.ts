// clusterset DNS as users run it: stock CoreDNS, with the README's stanza forwarding
// clusterset.local to the importing cluster's agent, resolves an export of another cluster to
// the VIP of the ServiceImport in the importing cluster, per-port SRV included, and NXDOMAIN once
// it is unexported; a (refused) Headless import has a name and no address; an agent restarted
// while NATS is down still answers. CoreDNS's own MCS support (the kubernetes plugin's
// `multicluster`), reading the same ServiceImports, agrees.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dnsOutcome, resolverFor } from '../spoke-agent/dns/dns.testkit.ts';
import { exportService, exportServiceSpec, readServiceImport, unexportService } from '../local/exports.ts';
import { Federation } from '../local/federation/index.ts';
import { startCoreDns, waitFor, type LocalCluster, type LocalCoreDns } from '../local/testbed/index.ts';

const NS = 'shop';

describe('clusterset DNS through stock CoreDNS', () => {
  let fed: Federation;
  let a: LocalCluster;
  let b: LocalCluster;
  /** Cluster B's DNS: its zone clusterset.local goes to B's agent. */
  let coredns: LocalCoreDns;

  beforeAll(async () => {
    fed = await Federation.start({ members: 2, heartbeatInterval: '1s' });
    [a, b] = fed.members as [LocalCluster, LocalCluster];
    await fed.joinAll(NS);
    // The README's stanza.
    coredns = await startCoreDns({
      name: 'coredns-cluster-b',
      dir: fed.dir,
      zone: 'clusterset.local',
      plugins: [`forward . ${fed.agentDnsAddress(b.name)}`],
      startProcess: (options) => fed.bed.startProcess(options),
    });
  });
  afterAll(async () => {
    await fed?.[Symbol.asyncDispose]();
  });

  it('resolves an export of cluster A to the VIP of the ServiceImport in cluster B, and NXDOMAIN after the unexport', async () => {
    const resolver = resolverFor(coredns.address);
    const name = `cart.${NS}.svc.clusterset.local`;
    // SERVFAIL until B's agent has its ServiceImport cache; then a denial, before the export.
    await waitFor(
      `${name} is NXDOMAIN before the export`,
      async () => (await dnsOutcome(resolver.resolve4(name))) === 'ENOTFOUND',
      30_000,
    );
    await exportService(a.kubeConfig(), { namespace: NS, name: 'cart', ports: [{ name: 'http', port: 8080 }] });
    let vip: string | undefined;
    await waitFor(
      'B: ServiceImport with a VIP',
      async () => (vip = (await readServiceImport(b.kubeConfig(), NS, 'cart'))?.spec?.ips?.[0]) !== undefined,
      20_000,
    );
    await waitFor(
      `${name} resolves through CoreDNS`,
      async () => (await resolver.resolve4(name)).join() === vip,
      20_000,
    );
    expect(await resolver.resolveSrv(`_http._tcp.${name}`)).toMatchObject([{ name, port: 8080 }]);
    // The real agent counts what it answered.
    expect(await fed.agentMetrics(b.name)).toMatch(
      /^isthmus_agent_dns_responses_total\{[^}]*rcode="NOERROR"[^}]*\} [1-9]\d*$/m,
    );

    await unexportService(a.kubeConfig(), NS, 'cart');
    await waitFor(
      `${name} is NXDOMAIN through CoreDNS`,
      async () => (await dnsOutcome(resolver.resolve4(name))) === 'ENOTFOUND',
      30_000,
    );
    expect(await readServiceImport(b.kubeConfig(), NS, 'cart')).toBeUndefined();
  });

  it("gives the same VIP through CoreDNS's own multicluster support, which reads cluster B's ServiceImports itself", async () => {
    const multicluster = await startCoreDns({
      name: 'coredns-multicluster-cluster-b',
      dir: fed.dir,
      zone: 'clusterset.local',
      plugins: [
        `kubernetes clusterset.local {\n    kubeconfig ${b.kubeconfigPath}\n    multicluster clusterset.local\n  }`,
      ],
      startProcess: (options) => fed.bed.startProcess(options),
    });
    const name = `search.${NS}.svc.clusterset.local`;
    await exportService(a.kubeConfig(), { namespace: NS, name: 'search', ports: [{ name: 'http', port: 8080 }] });
    let vip: string | undefined;
    await waitFor(
      'B: ServiceImport with a VIP',
      async () => (vip = (await readServiceImport(b.kubeConfig(), NS, 'search'))?.spec?.ips?.[0]) !== undefined,
      20_000,
    );
    for (const [via, address] of [
      ['the agent', coredns.address],
      ["CoreDNS's multicluster", multicluster.address],
    ] as const) {
      const resolver = resolverFor(address);
      await waitFor(
        `${name} resolves through ${via}`,
        async () => (await resolver.resolve4(name)).join() === vip,
        20_000,
      );
    }
  });

  it("keeps answering from the cluster's ServiceImports when the agent restarts while NATS is down", async () => {
    const resolver = resolverFor(coredns.address);
    const name = `stock.${NS}.svc.clusterset.local`;
    await exportService(a.kubeConfig(), { namespace: NS, name: 'stock', ports: [{ name: 'http', port: 8080 }] });
    let vip: string | undefined;
    await waitFor(
      'B: ServiceImport with a VIP',
      async () => (vip = (await readServiceImport(b.kubeConfig(), NS, 'stock'))?.spec?.ips?.[0]) !== undefined,
      20_000,
    );
    const nats = fed.bed.nats as NonNullable<typeof fed.bed.nats>;
    await nats.stop();
    try {
      await fed.stopAgent(b.name);
      await fed.startAgent(b.name);
      // The new agent cannot reach NATS (no importer runs), yet its cache of ServiceImports answers.
      await waitFor(
        `${name} resolves through the restarted agent`,
        async () => (await resolver.resolve4(name)).join() === vip,
        30_000,
      );
    } finally {
      await nats.restart();
    }
  });

  it("answers a Headless import with no address (NODATA), never a gateway's", async () => {
    const resolver = resolverFor(coredns.address);
    const name = `ledger.${NS}.svc.clusterset.local`;
    await exportServiceSpec(a.kubeConfig(), NS, 'ledger', {
      clusterIP: 'None',
      ports: [{ name: 'pg', port: 5432 }],
      selector: { app: 'ledger' },
    });
    await waitFor(
      `${name} exists with no address`,
      async () => (await dnsOutcome(resolver.resolve4(name))) === 'ENODATA',
      20_000,
    );
    expect(await dnsOutcome(resolver.resolveSrv(`_pg._tcp.${name}`))).toBe('ENOTFOUND');
  });
});
