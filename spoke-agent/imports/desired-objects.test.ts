import { describe, expect, it } from 'vitest';
import { catalogEntrySchema, type CatalogEntry } from '../../common/catalog.ts';
import { planImport } from './desired-objects.ts';
import { ANNOTATION_INTENT_HASH, derivedServiceName, sourceSliceName } from './naming.ts';
import { satisfies } from './object-writer.ts';

function entry(overrides: Record<string, unknown> = {}): CatalogEntry {
  return catalogEntrySchema.parse({
    namespace: 'shop',
    name: 'web',
    type: 'ClusterSetIP',
    ports: [{ name: 'http', port: 80 }],
    clusters: [
      {
        clusterId: 'west',
        zone: 'w-1',
        gatewayAddresses: [{ address: '10.1.0.1', port: 15443 }],
        exportCreatedAt: '2024-01-01T00:00:00Z',
        type: 'ClusterSetIP',
        ports: [{ name: 'http', port: 80 }],
        endpoints: [{ zone: 'w-1', ready: 1 }],
      },
    ],
    ...overrides,
  });
}

describe('naming', () => {
  it('keeps every name within 63 characters and apart where dashes would join them', () => {
    const long = 'a'.repeat(63);
    expect(sourceSliceName(long, long).length).toBeLessThanOrEqual(63);
    expect(sourceSliceName('a-b', 'c')).not.toBe(sourceSliceName('a', 'b-c'));
    expect(sourceSliceName('web', 'west')).toMatch(/^web-west-[0-9a-f]{8}$/);
    expect(derivedServiceName('shop', 'web')).toMatch(/^derived-[0-9a-f]{10}$/);
    expect(derivedServiceName('shop', 'web')).not.toBe(derivedServiceName('shop2', 'web'));
  });
});

describe('planImport', () => {
  it('imports nothing when no exporter allows this cluster', () => {
    const onlyOther = entry({ clusters: [{ ...entry().clusters[0], allowedClusters: ['north'] }] });
    expect(planImport(onlyOther, 'east')).toBeUndefined();
    expect(planImport(onlyOther, 'north')).toBeDefined();
  });

  it('names unnamed ports of a multi-port service and keeps the ServiceImport ports as exported', () => {
    const plan = planImport(entry({ ports: [{ port: 80 }, { port: 53, protocol: 'UDP' }] }), 'east');
    expect((plan?.service['spec'] as { ports: { name?: string }[] }).ports.map((p) => p.name)).toEqual([
      'tcp-80',
      'udp-53',
    ]);
    const spec = plan?.serviceImport([])['spec'] as { ports: { name?: string }[] };
    expect(spec.ports.map((p) => p.name)).toEqual([undefined, undefined]);
  });

  it('names the family of each clusterset IP in order, and copies internalTrafficPolicy and trafficDistribution', () => {
    const plan = planImport(
      entry({ ipFamilies: ['IPv6', 'IPv4'], internalTrafficPolicy: 'Local', trafficDistribution: 'PreferClose' }),
      'east',
    );
    expect(plan?.serviceImport(['fd00::9', '10.96.0.9'])['spec']).toMatchObject({
      ips: ['fd00::9', '10.96.0.9'],
      ipFamilies: ['IPv6', 'IPv4'],
      internalTrafficPolicy: 'Local',
      trafficDistribution: 'PreferClose',
    });
    // Before the clusterset Service has an IP, and when the export set no policy, the fields are removed.
    expect(planImport(entry(), 'east')?.serviceImport([])['spec']).toMatchObject({
      ips: null,
      ipFamilies: null,
      internalTrafficPolicy: null,
      trafficDistribution: null,
    });
    // A Headless import has no IP: its families are the clusterset Service's.
    expect(
      planImport(entry({ type: 'Headless' }), 'east')?.serviceImport([], { ipFamilies: ['IPv4'] })['spec'],
    ).toMatchObject({ ips: null, ipFamilies: ['IPv4'] });
  });

  it('puts the exported labels and annotations under its own, and removes those no longer exported', () => {
    const exported = entry({
      exportedLabels: { tier: 'web', 'app.kubernetes.io/managed-by': 'someone' },
      exportedAnnotations: { note: 'hi' },
    });
    const first = planImport(exported, 'east')?.serviceImport([]);
    expect(first?.metadata.labels).toMatchObject({ tier: 'web', 'app.kubernetes.io/managed-by': 'isthmus-agent' });
    expect(first?.metadata.annotations).toMatchObject({
      note: 'hi',
      'isthmus.dev/exported-keys': JSON.stringify({ labels: ['tier'], annotations: ['note'] }),
    });
    const stored = {
      metadata: {
        labels: { ...first?.metadata.labels } as Record<string, string>,
        annotations: { ...first?.metadata.annotations, 'kept-by-someone': 'x' } as Record<string, string>,
      },
    };
    const next = planImport(entry({ exportedLabels: { team: 'a' } }), 'east')?.serviceImport([], { stored });
    expect(next?.metadata.labels).toMatchObject({ tier: null, team: 'a' });
    expect(next?.metadata.annotations).toMatchObject({
      note: null,
      'isthmus.dev/exported-keys': JSON.stringify({ labels: ['team'], annotations: [] }),
    });
    expect(next?.metadata.annotations).not.toHaveProperty('kept-by-someone');
    const none = planImport(entry(), 'east')?.serviceImport([], {
      stored: {
        metadata: {
          labels: { team: 'a' },
          annotations: { 'isthmus.dev/exported-keys': JSON.stringify({ labels: ['team'], annotations: [] }) },
        },
      },
    });
    expect(none?.metadata.labels).toMatchObject({ team: null });
    expect(none?.metadata.annotations).toMatchObject({ 'isthmus.dev/exported-keys': null });
  });

  it('makes a headless clusterset Service and no IPs for a Headless import', () => {
    const plan = planImport(entry({ type: 'Headless' }), 'east');
    expect(plan?.service['spec']).toMatchObject({ clusterIP: 'None' });
    expect(plan?.serviceImport(['10.96.0.9'])['spec']).toMatchObject({
      type: 'Headless',
      ips: null,
      sessionAffinityConfig: null,
    });
  });

  it('refuses a Headless import: Ready=False HeadlessNotSupported and no slice naming the gateway, even while the gateway listens', () => {
    const plan = planImport(entry({ type: 'Headless' }), 'east', () => ({ address: '10.0.0.10', port: 20_080 }));
    expect(plan?.slices).toEqual([]);
    expect(plan?.refusedAddresses).toEqual([]);
    expect(plan?.ready).toMatchObject({ type: 'Ready', status: 'False', reason: 'HeadlessNotSupported' });
    expect(plan?.ready.message).toContain(
      'per-endpoint routing through the east-west gateways is not supported; export a ClusterSetIP service',
    );
    // The import itself stays, listing its exporters, so the refusal can be read where it applies.
    expect(plan?.status.clusters).toEqual([{ cluster: 'west' }]);
  });

  it('names the local outbound listener in every source slice and keeps the remote gateways in an annotation', () => {
    const cluster = {
      ...entry().clusters[0],
      gatewayAddresses: [
        { address: 'gw.example.org', port: 15443 },
        { address: '10.1.0.2', port: 15443 },
        { address: 'fd00::1', port: 15443 },
      ],
    };
    const plan = planImport(entry({ clusters: [cluster] }), 'east', () => ({ address: '10.0.0.10', port: 20_080 }));
    const [slice] = plan?.slices ?? [];
    expect(slice).toMatchObject({
      addressType: 'IPv4',
      endpoints: [{ addresses: ['10.0.0.10'], zone: 'w-1', conditions: { ready: true } }],
      ports: [{ name: 'http', port: 20_080 }],
    });
    expect(slice?.metadata.labels).toMatchObject({
      'kubernetes.io/service-name': derivedServiceName('shop', 'web'),
      'multicluster.kubernetes.io/source-cluster': 'west',
    });
    expect(JSON.parse(slice?.metadata.annotations['isthmus.dev/gateway-addresses'] ?? '')).toHaveLength(3);
  });

  it('has no endpoints and a Ready=False condition until the gateway listens', () => {
    const plan = planImport(entry(), 'east', () => undefined);
    expect(plan?.slices.map((s) => s['endpoints'])).toEqual([[]]);
    expect(plan?.ready).toMatchObject({ status: 'False', reason: 'ListenerPending' });
    const unhealthy = planImport(entry(), 'east', () => ({
      address: '10.0.0.10',
      port: 1,
      healthy: false,
      reason: 'every candidate ejected',
    }));
    expect(unhealthy?.ready).toMatchObject({
      status: 'False',
      reason: 'NoHealthyCandidate',
      message: 'every candidate ejected',
    });
    expect(planImport(entry(), 'east', () => ({ address: '10.0.0.10', port: 1 }))?.ready).toMatchObject({
      status: 'True',
    });
  });

  it('leaves out listener addresses an EndpointSlice may not name, and says which', () => {
    const plan = planImport(entry(), 'east', () => ({ address: '127.0.0.1', port: 1 }));
    expect(plan?.slices.map((s) => s['endpoints'])).toEqual([[]]);
    expect(plan?.refusedAddresses).toEqual(['127.0.0.1']);
  });

  it('lists each exported port with its listener port', () => {
    const plan = planImport(
      entry({
        ports: [
          { name: 'http', port: 80 },
          { name: 'grpc', port: 9090 },
        ],
      }),
      'east',
      (_ns, _name, port) => ({ address: '10.0.0.10', port: 20_000 + port.port }),
    );
    const west = {
      ...entry().clusters[0],
      ports: [
        { name: 'http', port: 80 },
        { name: 'grpc', port: 9090 },
      ],
    };
    const both = planImport(entry({ ports: west.ports, clusters: [west] }), 'east', (_ns, _name, port) => ({
      address: '10.0.0.10',
      port: 20_000 + port.port,
    }));
    expect(plan?.slices.map((s) => s['ports'])).toEqual([
      [{ name: 'http', protocol: 'TCP', port: 20_080, appProtocol: undefined }],
    ]);
    expect(both?.slices.map((s) => s['ports'])).toEqual([
      [
        { name: 'http', protocol: 'TCP', port: 20_080, appProtocol: undefined },
        { name: 'grpc', protocol: 'TCP', port: 29_090, appProtocol: undefined },
      ],
    ]);
  });

  it('changes the intent hash with the intent only', () => {
    const a = planImport(entry(), 'east')?.serviceImport(['10.96.0.1']);
    const b = planImport(entry(), 'east')?.serviceImport(['10.96.0.1']);
    const c = planImport(entry({ sessionAffinity: 'ClientIP' }), 'east')?.serviceImport(['10.96.0.1']);
    expect(a?.metadata.annotations[ANNOTATION_INTENT_HASH]).toBe(b?.metadata.annotations[ANNOTATION_INTENT_HASH]);
    expect(a?.metadata.annotations[ANNOTATION_INTENT_HASH]).not.toBe(c?.metadata.annotations[ANNOTATION_INTENT_HASH]);
  });
});

describe('satisfies', () => {
  it('accepts server defaults, refuses changed and leftover fields', () => {
    expect(satisfies({ a: 1, b: { c: 2, d: 3 } }, { b: { c: 2 } })).toBe(true);
    expect(satisfies({ ports: [{ port: 80, targetPort: 80 }] }, { ports: [{ port: 80 }] })).toBe(true);
    expect(satisfies({ ports: [{ port: 80 }, { port: 81 }] }, { ports: [{ port: 80 }] })).toBe(false);
    expect(satisfies({ ips: ['10.0.0.1'] }, { ips: null })).toBe(false);
    expect(satisfies({}, { ips: null, endpoints: [], labels: {} })).toBe(true);
    expect(satisfies({ a: 'x' }, { a: 'y' })).toBe(false);
  });
});
