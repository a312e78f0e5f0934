// The MCS API's finer points end to end on two local clusters (the upstream conformance suite's
// expectations, checked here without it): exported labels and annotations reach the
// ServiceImport, the oldest export's win and a disagreement is a LabelsConflict on both exports;
// the ServiceImport names the IP family of each clusterset IP and carries the export's
// internalTrafficPolicy and trafficDistribution; a Headless export is refused in every importing
// cluster (Ready=False, HeadlessNotSupported) with no EndpointSlice naming a gateway.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { findCondition } from '../common/api/conditions.ts';
import {
  createBackend,
  createServiceExport,
  exportServiceSpec,
  importedSlices,
  readServiceExport,
  readServiceImport,
} from '../local/exports.ts';
import { Federation } from '../local/federation/index.ts';
import { waitFor, type LocalCluster } from '../local/testbed/index.ts';

const NS = 'mcs';

describe('MCS API details', () => {
  let fed: Federation;
  let a: LocalCluster;
  let b: LocalCluster;

  beforeAll(async () => {
    fed = await Federation.start({ members: 2, heartbeatInterval: '1s' });
    [a, b] = fed.members as [LocalCluster, LocalCluster];
    await fed.joinAll(NS);
  });
  afterAll(async () => {
    await fed?.[Symbol.asyncDispose]();
  });

  async function conflictOf(
    cluster: LocalCluster,
    name: string,
  ): Promise<{ status: string; reason: string; message: string } | undefined> {
    return findCondition((await readServiceExport(cluster.kubeConfig(), NS, name)).status?.conditions, 'Conflict');
  }

  it("puts the oldest export's exportedLabels and exportedAnnotations on every ServiceImport, and a disagreement is a LabelsConflict on both exports", async () => {
    const ports = [{ name: 'http', port: 8080 }];
    await createBackend(a.kubeConfig(), { namespace: NS, name: 'catalog', ports });
    await createServiceExport(a.kubeConfig(), NS, 'catalog', undefined, {
      exportedLabels: { tier: 'web' },
      exportedAnnotations: { 'example.com/owner': 'team-a' },
    });
    for (const cluster of [a, b]) {
      await waitFor(
        `${cluster.name}: ServiceImport with the exported labels`,
        async () => (await readServiceImport(cluster.kubeConfig(), NS, 'catalog'))?.metadata.labels?.['tier'] === 'web',
        20_000,
      );
      const imported = await readServiceImport(cluster.kubeConfig(), NS, 'catalog');
      expect(imported?.metadata.annotations).toMatchObject({ 'example.com/owner': 'team-a' });
    }
    await waitFor('a: Conflict=False', async () => (await conflictOf(a, 'catalog'))?.status === 'False', 20_000);

    // The newer export in B asks for other labels and annotations: A's stay, both exports say so.
    await createBackend(b.kubeConfig(), { namespace: NS, name: 'catalog', ports });
    await createServiceExport(b.kubeConfig(), NS, 'catalog', undefined, {
      exportedLabels: { tier: 'db' },
      exportedAnnotations: { 'example.com/owner': 'team-b' },
    });
    for (const cluster of [a, b]) {
      await waitFor(
        `${cluster.name}: Conflict=True`,
        async () => (await conflictOf(cluster, 'catalog'))?.status === 'True',
        20_000,
      );
      const conflict = await conflictOf(cluster, 'catalog');
      expect(conflict?.reason.split(',').sort()).toEqual(['AnnotationsConflict', 'LabelsConflict']);
      expect(conflict?.message).toContain(
        'exportedLabels: cluster-a (oldest export) has {tier=web}, which applies; cluster-b has {tier=db}',
      );
    }
    await waitFor(
      'B imports from both',
      async () => (await readServiceImport(b.kubeConfig(), NS, 'catalog'))?.status?.clusters?.length === 2,
      20_000,
    );
    for (const cluster of [a, b]) {
      const imported = await readServiceImport(cluster.kubeConfig(), NS, 'catalog');
      expect(imported?.metadata.labels?.['tier']).toBe('web');
      expect(imported?.metadata.annotations?.['example.com/owner']).toBe('team-a');
    }
  });

  it('names the IP family of each clusterset IP and copies internalTrafficPolicy and trafficDistribution onto the ServiceImport', async () => {
    await exportServiceSpec(a.kubeConfig(), NS, 'search', {
      ports: [{ name: 'http', port: 80 }],
      selector: { app: 'search' },
      internalTrafficPolicy: 'Local',
      trafficDistribution: 'PreferClose',
    });
    for (const cluster of [a, b]) {
      await waitFor(
        `${cluster.name}: ServiceImport with a clusterset IP`,
        async () => ((await readServiceImport(cluster.kubeConfig(), NS, 'search'))?.spec?.ips?.length ?? 0) > 0,
        20_000,
      );
      const spec = (await readServiceImport(cluster.kubeConfig(), NS, 'search'))?.spec;
      expect(spec?.ipFamilies).toEqual(spec?.ips?.map((ip) => (ip.includes(':') ? 'IPv6' : 'IPv4')));
      expect(spec?.ipFamilies).toEqual(['IPv4']);
      expect(spec).toMatchObject({ internalTrafficPolicy: 'Local', trafficDistribution: 'PreferClose' });
    }
  });

  it('refuses a Headless export in every importing cluster: Ready=False HeadlessNotSupported, and no EndpointSlice', async () => {
    await exportServiceSpec(a.kubeConfig(), NS, 'ledger', {
      clusterIP: 'None',
      ports: [{ name: 'pg', port: 5432 }],
      selector: { app: 'ledger' },
    });
    for (const cluster of [a, b]) {
      // The Ready condition is written after the slices in the same reconcile: none were written.
      await waitFor(
        `${cluster.name}: ledger import refused`,
        async () =>
          findCondition((await readServiceImport(cluster.kubeConfig(), NS, 'ledger'))?.status?.conditions, 'Ready')
            ?.reason === 'HeadlessNotSupported',
        20_000,
      );
      const imported = await readServiceImport(cluster.kubeConfig(), NS, 'ledger');
      expect(findCondition(imported?.status?.conditions, 'Ready')).toMatchObject({
        status: 'False',
        message: expect.stringContaining(
          'per-endpoint routing through the east-west gateways is not supported; export a ClusterSetIP service',
        ) as string,
      });
      expect(imported?.spec).toMatchObject({ type: 'Headless' });
      expect(imported?.spec?.ips).toBeUndefined();
      expect(imported?.status?.clusters).toEqual([{ cluster: 'cluster-a' }]);
      expect([...(await importedSlices(cluster.kubeConfig(), NS, 'ledger')).keys()]).toEqual([]);
    }
  });
});
