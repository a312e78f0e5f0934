import { describe, expect, it } from 'vitest';
import {
  MESSAGE_LIMITS,
  clusterFactsSchema,
  exportedServiceSchema,
  joinRequestSchema,
  reportExportsRequestSchema,
} from './messages.ts';

const service = {
  namespace: 'shop',
  name: 'cart',
  type: 'ClusterSetIP',
  ports: [{ name: 'http', protocol: 'TCP', port: 80 }],
  exportCreatedAt: '2026-01-01T00:00:00Z',
};

describe('hub API messages', () => {
  it('refuses Join facts the MemberCluster CRD would refuse', () => {
    const facts = { clusterId: 'a', region: 'eu-west', zone: 'eu-west-1a', network: 'net' };
    expect(clusterFactsSchema.safeParse(facts).success).toBe(true);
    expect(clusterFactsSchema.safeParse({ ...facts, network: 'Not_A_Dns_Label' }).success).toBe(false);
    expect(clusterFactsSchema.safeParse({ ...facts, labels: { 'not a key!': 'x' } }).success).toBe(false);
    expect(
      clusterFactsSchema.safeParse({
        ...facts,
        labels: Object.fromEntries(Array.from({ length: 33 }, (_, i) => [`k${i}`, 'v'])),
      }).success,
    ).toBe(false);
    const twice = { address: '192.0.2.1', port: 15443 };
    expect(clusterFactsSchema.safeParse({ ...facts, gatewayAddresses: [twice, twice] }).success).toBe(false);
    expect(
      joinRequestSchema.safeParse({
        token: 'a',
        facts,
        intermediateCsr: `-----BEGIN${'x'.repeat(20_000)}`,
        agentCsr: '-----BEGIN',
      }).success,
    ).toBe(false);
  });

  it('validates service, port and zone names as the Service API does', () => {
    expect(exportedServiceSchema.safeParse(service).success).toBe(true);
    const refused = [
      { ...service, name: '1cart' }, // Service names are DNS-1035 labels
      { ...service, ports: [{ name: 'Not_A_Port', protocol: 'TCP', port: 80 }] },
      { ...service, ports: [{ name: 'http', protocol: 'TCP', port: 80, appProtocol: 'not a protocol' }] },
      {
        ...service,
        ports: [
          { name: '', protocol: 'TCP', port: 80 },
          { name: 'b', protocol: 'TCP', port: 81 },
        ],
      }, // several ports need names
      {
        ...service,
        ports: [
          { name: 'a', protocol: 'TCP', port: 80 },
          { name: 'a', protocol: 'TCP', port: 81 },
        ],
      },
      {
        ...service,
        ports: [
          { name: 'a', protocol: 'TCP', port: 80 },
          { name: 'b', protocol: 'TCP', port: 80 },
        ],
      },
      { ...service, endpoints: [{ zone: 'zone with spaces', ready: 1 }] },
    ];
    for (const bad of refused)
      expect(exportedServiceSchema.safeParse(bad).success, JSON.stringify(bad.ports ?? bad)).toBe(false);
    expect(
      exportedServiceSchema.safeParse({
        ...service,
        ports: [
          { name: 'a', protocol: 'TCP', port: 80 },
          { name: 'b', protocol: 'UDP', port: 80 },
        ],
      }).success,
    ).toBe(true);
  });

  it('bounds every list in a report', () => {
    const many = <T>(n: number, item: (i: number) => T): T[] => Array.from({ length: n }, (_, i) => item(i));
    expect(
      exportedServiceSchema.safeParse({
        ...service,
        endpoints: many(MESSAGE_LIMITS.endpointZones + 1, (i) => ({ zone: `z${i}`, ready: 1 })),
      }).success,
    ).toBe(false);
    expect(
      exportedServiceSchema.safeParse({
        ...service,
        allowedClusters: many(MESSAGE_LIMITS.allowedClusters + 1, (i) => `c${i}`),
      }).success,
    ).toBe(false);
    expect(
      exportedServiceSchema.safeParse({
        ...service,
        ports: many(MESSAGE_LIMITS.ports + 1, (i) => ({ name: `p${i}`, protocol: 'TCP', port: i + 1 })),
      }).success,
    ).toBe(false);
    expect(
      reportExportsRequestSchema.safeParse({
        generation: 1,
        services: many(MESSAGE_LIMITS.services + 1, () => service),
      }).success,
    ).toBe(false);
  });
});
