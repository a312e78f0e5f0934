import { describe, expect, it } from 'vitest';
import { catalogEntrySchema, type CatalogEntry } from '../../common/catalog.ts';
import type { ExportedService } from '../../common/hub-api/index.ts';
import { exported, locality } from './catalog.testkit.ts';
import { resolveEntry, type ClusterExport } from './resolution.ts';

const T0 = '2025-01-01T00:00:00Z';
const T1 = '2025-01-02T00:00:00Z';
const T2 = '2025-01-03T00:00:00Z';

function resolve(exports: Record<string, Partial<ExportedService>>): CatalogEntry {
  const list: ClusterExport[] = Object.entries(exports).map(([clusterId, overrides]) => ({
    clusterId,
    service: exported(overrides),
  }));
  const entry = resolveEntry('shop', 'cart', list, (id) => locality(id));
  if (!entry) throw new Error('expected an entry');
  return entry;
}

describe('resolveEntry', () => {
  it('builds the entry from one export, per-cluster fields from the member and the report, in canonical form', () => {
    const entry = resolve({ a: { allowedClusters: ['b', 'c'], endpoints: [{ zone: 'z1', ready: 3, total: 3 }] } });
    expect(entry).toEqual({
      namespace: 'shop',
      name: 'cart',
      type: 'ClusterSetIP',
      ports: [{ name: 'http', protocol: 'TCP', port: 80, appProtocol: '' }],
      sessionAffinity: 'None',
      sessionAffinityTimeoutSeconds: 0,
      clusters: [
        {
          clusterId: 'a',
          region: 'region-of-a',
          zone: 'zone-of-a',
          network: 'net',
          labels: { tier: 'gold' },
          gatewayAddresses: [{ address: '127.0.0.1', port: 15443 }],
          exportCreatedAt: T0,
          type: 'ClusterSetIP',
          ports: [{ name: 'http', protocol: 'TCP', port: 80, appProtocol: '' }],
          sessionAffinity: 'None',
          sessionAffinityTimeoutSeconds: 0,
          endpoints: [{ zone: 'z1', ready: 3, total: 3 }],
          allowedClusters: ['b', 'c'],
          ipFamilies: ['IPv4'],
          internalTrafficPolicy: 'Cluster',
          trafficDistribution: '',
          exportedLabels: {},
          exportedAnnotations: {},
        },
      ],
      conflicts: [],
      ipFamilies: ['IPv4'],
      internalTrafficPolicy: 'Cluster',
      trafficDistribution: '',
      exportedLabels: {},
      exportedAnnotations: {},
    });
    // The publisher compares JSON: what resolution writes must be what parsing a stored entry gives.
    expect(JSON.stringify(catalogEntrySchema.parse(JSON.parse(JSON.stringify(entry))))).toBe(JSON.stringify(entry));
  });

  it('returns nothing when no export is left', () => {
    expect(resolveEntry('shop', 'cart', [], (id) => locality(id))).toBeUndefined();
  });

  it('lets the oldest export win the type, names the winner and every dissenter, and raises the conflict on every exporter', () => {
    const entry = resolve({
      c: { exportCreatedAt: T2, type: 'Headless' },
      a: { exportCreatedAt: T0 },
      b: { exportCreatedAt: T1 },
    });
    expect(entry.clusters.map((c) => c.clusterId)).toEqual(['a', 'b', 'c']);
    expect(entry.type).toBe('ClusterSetIP');
    expect(entry.conflicts).toEqual([
      {
        type: 'TypeConflict',
        message: 'type: a (oldest export) has ClusterSetIP, which applies; c has Headless',
        clusters: ['a', 'b', 'c'],
      },
    ]);
    // Each cluster's own export stays as it reported it.
    expect(entry.clusters[2]?.type).toBe('Headless');
  });

  it('breaks a tie in age by cluster id, and compares instants across time-zone offsets', () => {
    const tie = resolve({ b: { type: 'Headless' }, a: {} });
    expect(tie.type).toBe('ClusterSetIP');
    expect(tie.conflicts[0]?.message).toBe('type: a (oldest export) has ClusterSetIP, which applies; b has Headless');
    // 01:00+02:00 is 23:00 the day before in UTC: b is older although its string sorts later.
    const offsets = resolve({
      a: { exportCreatedAt: '2025-01-01T00:00:00Z' },
      b: { exportCreatedAt: '2025-01-01T01:00:00+02:00', type: 'Headless' },
    });
    expect(offsets.type).toBe('Headless');
    expect(offsets.clusters.map((c) => c.clusterId)).toEqual(['b', 'a']);
  });

  it('exposes the union of ports that differ and still reports a PortConflict on every export, as upstream requires', () => {
    const entry = resolve({
      a: { exportCreatedAt: T0, ports: [{ name: 'http', protocol: 'TCP', port: 80, appProtocol: '' }] },
      b: {
        exportCreatedAt: T1,
        ports: [
          { name: 'http', protocol: 'TCP', port: 80, appProtocol: '' },
          { name: 'stcp', protocol: 'SCTP', port: 142, appProtocol: '' },
        ],
      },
      c: { exportCreatedAt: T2, ports: [{ name: 'http', protocol: 'TCP', port: 80, appProtocol: '' }] },
    });
    expect(entry.ports).toEqual([
      { name: 'http', protocol: 'TCP', port: 80, appProtocol: '' },
      { name: 'stcp', protocol: 'SCTP', port: 142, appProtocol: '' },
    ]);
    expect(entry.conflicts).toEqual([
      {
        type: 'PortConflict',
        message:
          'ports differ between exports, their union applies: a has http 80/TCP; b has http 80/TCP, stcp 142/SCTP',
        clusters: ['a', 'b', 'c'],
      },
    ]);
  });

  it('reports no PortConflict when every export lists the same ports, in any order', () => {
    const http = { name: 'http', protocol: 'TCP', port: 80, appProtocol: '' } as const;
    const grpc = { name: 'grpc', protocol: 'TCP', port: 9090, appProtocol: 'kubernetes.io/h2c' } as const;
    const entry = resolve({
      a: { exportCreatedAt: T0, ports: [http, grpc] },
      b: { exportCreatedAt: T1, ports: [grpc, http] },
    });
    expect(entry.ports).toEqual([http, grpc]);
    expect(entry.conflicts).toEqual([]);
  });

  it('treats the empty name as a name: a second unnamed port is a PortConflict and the oldest one applies', () => {
    const entry = resolve({
      a: { exportCreatedAt: T0, ports: [{ name: '', protocol: 'TCP', port: 80, appProtocol: '' }] },
      b: { exportCreatedAt: T1, ports: [{ name: '', protocol: 'UDP', port: 53, appProtocol: '' }] },
    });
    expect(entry.ports).toEqual([{ name: '', protocol: 'TCP', port: 80, appProtocol: '' }]);
    expect(entry.conflicts).toEqual([
      {
        type: 'PortConflict',
        message: 'port 80/TCP: a (oldest export) has 80/TCP, which applies; b has 53/UDP',
        clusters: ['a', 'b'],
      },
    ]);
  });

  it('merges by name first, then by port/protocol: an unnamed port that another export names is a PortConflict', () => {
    const entry = resolve({
      a: { exportCreatedAt: T0, ports: [{ name: 'http', protocol: 'TCP', port: 80, appProtocol: '' }] },
      b: { exportCreatedAt: T1, ports: [{ name: '', protocol: 'TCP', port: 80, appProtocol: '' }] },
    });
    expect(entry.ports).toEqual([{ name: 'http', protocol: 'TCP', port: 80, appProtocol: '' }]);
    expect(entry.conflicts).toMatchObject([
      { type: 'PortConflict', message: 'port http: a (oldest export) has http 80/TCP, which applies; b has 80/TCP' },
    ]);
  });

  it('keeps the oldest definition of a port and reports a PortConflict for a different one under the same name', () => {
    const entry = resolve({
      a: { exportCreatedAt: T0, ports: [{ name: 'http', protocol: 'TCP', port: 80, appProtocol: '' }] },
      b: { exportCreatedAt: T1, ports: [{ name: 'http', protocol: 'TCP', port: 8080, appProtocol: '' }] },
      c: { exportCreatedAt: T2, ports: [{ name: 'http', protocol: 'TCP', port: 80, appProtocol: 'http' }] },
    });
    expect(entry.ports).toEqual([{ name: 'http', protocol: 'TCP', port: 80, appProtocol: '' }]);
    expect(entry.conflicts).toEqual([
      {
        type: 'PortConflict',
        message:
          'port http: a (oldest export) has http 80/TCP, which applies; b has http 8080/TCP, c has http 80/TCP (appProtocol http)',
        clusters: ['a', 'b', 'c'],
      },
    ]);
  });

  it('reports a PortConflict for the same port number and protocol under another name, which a Service cannot list twice', () => {
    const entry = resolve({
      a: { exportCreatedAt: T0, ports: [{ name: 'http', protocol: 'TCP', port: 80, appProtocol: '' }] },
      b: { exportCreatedAt: T1, ports: [{ name: 'web', protocol: 'TCP', port: 80, appProtocol: '' }] },
    });
    expect(entry.ports).toEqual([{ name: 'http', protocol: 'TCP', port: 80, appProtocol: '' }]);
    expect(entry.conflicts).toMatchObject([
      {
        type: 'PortConflict',
        clusters: ['a', 'b'],
        message: 'port http: a (oldest export) has http 80/TCP, which applies; b has web 80/TCP',
      },
    ]);
  });

  it('reports SessionAffinityConflict, and SessionAffinityConfigConflict only between ClientIP exports', () => {
    const affinity = resolve({
      a: { exportCreatedAt: T0, sessionAffinity: 'ClientIP', sessionAffinityTimeoutSeconds: 3600 },
      b: { exportCreatedAt: T1, sessionAffinity: 'None' },
      c: { exportCreatedAt: T2, sessionAffinity: 'ClientIP', sessionAffinityTimeoutSeconds: 60 },
    });
    expect(affinity.sessionAffinity).toBe('ClientIP');
    expect(affinity.sessionAffinityTimeoutSeconds).toBe(3600);
    expect(affinity.conflicts).toEqual([
      {
        type: 'SessionAffinityConflict',
        message: 'sessionAffinity: a (oldest export) has ClientIP, which applies; b has None',
        clusters: ['a', 'b', 'c'],
      },
      {
        type: 'SessionAffinityConfigConflict',
        message: 'sessionAffinityConfig.clientIP.timeoutSeconds: a (oldest export) has 3600s, which applies; c has 60s',
        clusters: ['a', 'b', 'c'],
      },
    ]);

    const none = resolve({
      a: { exportCreatedAt: T0, sessionAffinityTimeoutSeconds: 10 },
      b: { exportCreatedAt: T1, sessionAffinityTimeoutSeconds: 20 },
    });
    expect(none.sessionAffinityTimeoutSeconds).toBe(0);
    expect(none.conflicts).toEqual([]);
  });

  it('lists conflicts of every kind at once, type and affinity before ports', () => {
    const entry = resolve({
      a: { exportCreatedAt: T0 },
      b: {
        exportCreatedAt: T1,
        type: 'Headless',
        sessionAffinity: 'ClientIP',
        ports: [{ name: 'http', protocol: 'TCP', port: 81, appProtocol: '' }],
      },
    });
    expect(entry.conflicts.map((c) => c.type)).toEqual(['TypeConflict', 'SessionAffinityConflict', 'PortConflict']);
  });

  it('lets the oldest export win the exported labels and annotations, with LabelsConflict and AnnotationsConflict on every export', () => {
    const entry = resolve({
      a: { exportCreatedAt: T0, exportedLabels: { tier: 'web', team: 'shop' }, exportedAnnotations: { note: 'a' } },
      b: { exportCreatedAt: T1, exportedLabels: { team: 'shop', tier: 'web' }, exportedAnnotations: { note: 'b' } },
      c: { exportCreatedAt: T2, exportedLabels: { tier: 'db' }, exportedAnnotations: { note: 'a' } },
    });
    expect(entry.exportedLabels).toEqual({ tier: 'web', team: 'shop' });
    expect(entry.exportedAnnotations).toEqual({ note: 'a' });
    expect(entry.conflicts).toEqual([
      {
        type: 'LabelsConflict',
        message: 'exportedLabels: a (oldest export) has {team=shop, tier=web}, which applies; c has {tier=db}',
        clusters: ['a', 'b', 'c'],
      },
      {
        type: 'AnnotationsConflict',
        message: 'exportedAnnotations: a (oldest export) has {note=a}, which applies; b has {note=b}',
        clusters: ['a', 'b', 'c'],
      },
    ]);
  });

  it('reports an export without exported labels against one with them as a LabelsConflict', () => {
    const entry = resolve({
      a: { exportCreatedAt: T0, exportedLabels: { 'dummy-label': 'true' } },
      b: { exportCreatedAt: T1 },
    });
    expect(entry.exportedLabels).toEqual({ 'dummy-label': 'true' });
    expect(entry.conflicts).toMatchObject([
      {
        type: 'LabelsConflict',
        message: 'exportedLabels: a (oldest export) has {dummy-label=true}, which applies; b has none',
      },
    ]);
  });

  it('lets the oldest export win ipFamilies, internalTrafficPolicy and trafficDistribution, each with its conflict', () => {
    const entry = resolve({
      a: {
        exportCreatedAt: T0,
        ipFamilies: ['IPv4'],
        internalTrafficPolicy: 'Cluster',
        trafficDistribution: 'PreferClose',
      },
      b: { exportCreatedAt: T1, ipFamilies: ['IPv6', 'IPv4'], internalTrafficPolicy: 'Local', trafficDistribution: '' },
    });
    expect(entry).toMatchObject({
      ipFamilies: ['IPv4'],
      internalTrafficPolicy: 'Cluster',
      trafficDistribution: 'PreferClose',
    });
    expect(entry.conflicts).toEqual([
      {
        type: 'IPFamilyConflict',
        message: 'ipFamilies: a (oldest export) has IPv4, which applies; b has IPv4,IPv6',
        clusters: ['a', 'b'],
      },
      {
        type: 'InternalTrafficPolicyConflict',
        message: 'internalTrafficPolicy: a (oldest export) has Cluster, which applies; b has Local',
        clusters: ['a', 'b'],
      },
      {
        type: 'TrafficDistributionConflict',
        message: 'trafficDistribution: a (oldest export) has PreferClose, which applies; b has none',
        clusters: ['a', 'b'],
      },
    ]);
  });

  it('compares IP families as a set, and leaves exports that reported no family or policy (older agents) out of the comparison', () => {
    const order = resolve({
      a: { exportCreatedAt: T0, ipFamilies: ['IPv4', 'IPv6'] },
      b: { exportCreatedAt: T1, ipFamilies: ['IPv6', 'IPv4'] },
    });
    expect(order.ipFamilies).toEqual(['IPv4', 'IPv6']);
    expect(order.conflicts).toEqual([]);
    const older = resolve({
      a: { exportCreatedAt: T0, ipFamilies: [], internalTrafficPolicy: '' },
      b: { exportCreatedAt: T1, ipFamilies: ['IPv6'], internalTrafficPolicy: 'Local' },
    });
    expect(older).toMatchObject({ ipFamilies: ['IPv6'], internalTrafficPolicy: 'Local', conflicts: [] });
  });

  it('takes per-cluster locality from the lookup and leaves it empty for an unknown cluster', () => {
    const entry = resolveEntry('shop', 'cart', [{ clusterId: 'gone', service: exported() }], () => undefined);
    expect(entry?.clusters[0]).toMatchObject({
      clusterId: 'gone',
      region: '',
      zone: '',
      network: '',
      labels: {},
      gatewayAddresses: [],
    });
  });
});
