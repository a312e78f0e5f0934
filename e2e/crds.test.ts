// The CRDs on a real kube-apiserver: valid objects are accepted, invalid ones refused with a
// message that names the problem.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { invalidObjects, validObjects } from './crds.fixtures.ts';
import { startTestbed, type LocalCluster, type Testbed } from '../local/testbed/index.ts';

const plurals: Record<string, { plural: string; namespaced: boolean }> = {
  MemberCluster: { plural: 'memberclusters', namespaced: false },
  FailoverPolicy: { plural: 'failoverpolicies', namespaced: true },
  ServiceExport: { plural: 'serviceexports', namespaced: true },
  ServiceImport: { plural: 'serviceimports', namespaced: true },
};

function collectionPath(object: { apiVersion: string; kind: string; metadata?: { namespace?: string } }): string {
  const kind = plurals[object.kind];
  if (!kind) throw new Error(`no plural known for ${object.kind}`);
  const ns = kind.namespaced ? `/namespaces/${object.metadata?.namespace ?? 'default'}` : '';
  return `/apis/${object.apiVersion}${ns}/${kind.plural}`;
}

describe('CRDs on a real apiserver', () => {
  let bed: Testbed;
  let cluster: LocalCluster;
  beforeAll(async () => {
    bed = await startTestbed({ clusters: 1, nats: false });
    cluster = bed.clusters[0] as LocalCluster;
  });
  afterAll(async () => {
    await bed?.[Symbol.asyncDispose]();
  });

  it.each(validObjects.map((o) => [`${o.kind}/${o.metadata.name}`, o] as const))(
    'accepts valid %s',
    async (_name, object) => {
      const created = (await cluster.rawRequest('POST', collectionPath(object), object)) as {
        metadata: { uid: string };
      };
      expect(created.metadata.uid).toBeTruthy();
    },
  );

  it.each(invalidObjects.map((f) => [f.name, f] as const))('refuses %s', async (_name, fixture) => {
    const object = fixture.object as { apiVersion: string; kind: string; metadata?: { namespace?: string } };
    await expect(cluster.rawRequest('POST', collectionPath(object), object)).rejects.toThrow(fixture.expect);
  });

  it('validates FailoverPolicy status.clusters on the status subresource', async () => {
    const path = '/apis/isthmus.dev/v1alpha1/namespaces/default/failoverpolicies';
    const created = (await cluster.rawRequest('POST', path, {
      apiVersion: 'isthmus.dev/v1alpha1',
      kind: 'FailoverPolicy',
      metadata: { name: 'status-clusters', namespace: 'default' },
      spec: { service: 'status-clusters' },
    })) as Record<string, unknown> & { metadata: Record<string, unknown> };
    const statusPath = `${path}/status-clusters/status`;
    const withStatus = (status: unknown): unknown => ({ ...created, status });
    const stored = (await cluster.rawRequest(
      'PUT',
      statusPath,
      withStatus({
        observedGeneration: 1,
        clusters: [
          { cluster: 'east-1', appliedGeneration: 1 },
          { cluster: 'west-2', appliedGeneration: 1 },
        ],
      }),
    )) as {
      status: { clusters: unknown[] };
      metadata: { resourceVersion: string };
    };
    expect(stored.status.clusters).toEqual([
      { cluster: 'east-1', appliedGeneration: 1 },
      { cluster: 'west-2', appliedGeneration: 1 },
    ]);
    const current = { ...created, metadata: { ...created.metadata, resourceVersion: stored.metadata.resourceVersion } };
    const put = (status: unknown): Promise<unknown> => cluster.rawRequest('PUT', statusPath, { ...current, status });
    await expect(put({ clusters: [{ cluster: 'east-1', appliedGeneration: 0 }] })).rejects.toThrow(
      /status\.clusters\[0\]\.appliedGeneration: Invalid value: 0: .*should be greater than or equal to 1/,
    );
    await expect(put({ clusters: [{ cluster: 'East_1', appliedGeneration: 1 }] })).rejects.toThrow(
      /status\.clusters\[0\]\.cluster: Invalid value: "East_1": .*should match/,
    );
    await expect(put({ clusters: [{ cluster: 'east-1' }] })).rejects.toThrow(
      'status.clusters[0].appliedGeneration: Required value',
    );
    await expect(
      put({
        clusters: [
          { cluster: 'east-1', appliedGeneration: 1 },
          { cluster: 'east-1', appliedGeneration: 2 },
        ],
      }),
    ).rejects.toThrow('status.clusters[1]: Duplicate value');
    const crd = (await cluster.rawRequest(
      'GET',
      '/apis/apiextensions.k8s.io/v1/customresourcedefinitions/failoverpolicies.isthmus.dev',
    )) as {
      spec: { versions: { additionalPrinterColumns: { name: string }[] }[] };
    };
    expect(crd.spec.versions[0]?.additionalPrinterColumns.map((c) => c.name)).toEqual([
      'Service',
      'Priority',
      'Ready',
      'Reason',
      'Applied-In',
      'Age',
    ]);
  });

  it('serves the printer columns the design names', async () => {
    const crd = (await cluster.rawRequest(
      'GET',
      '/apis/apiextensions.k8s.io/v1/customresourcedefinitions/memberclusters.isthmus.dev',
    )) as {
      spec: { versions: { additionalPrinterColumns: { name: string }[] }[] };
    };
    const columns = crd.spec.versions[0]?.additionalPrinterColumns.map((c) => c.name);
    expect(columns).toEqual(
      expect.arrayContaining(['Cluster', 'Region', 'Zone', 'Accepted', 'Available', 'Exports', 'Age']),
    );
  });
});
