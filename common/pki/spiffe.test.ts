import { describe, expect, it } from 'vitest';
import { isIsthmusError } from '../errors.ts';
import {
  clusterIdOf,
  formatSpiffeId,
  parseClusterId,
  parseSpiffeId,
  parseTrustDomain,
  safeParseSpiffeId,
  trustDomainSchema,
  type SpiffeId,
} from './spiffe.ts';

describe('trust domains', () => {
  it('accepts lower-case letters, digits, ".", "-" and "_" up to 255 characters', () => {
    for (const td of ['isthmus.local', 'prod-eu_1.example.com', 'a', 'x'.repeat(255)])
      expect(parseTrustDomain(td)).toBe(td);
  });

  it.each([
    ['', 'must not be empty'],
    ['x'.repeat(256), 'at most 255'],
    ['Isthmus.local', 'lower case'],
    ['isthmus.local:8443', 'port'],
    ['user@isthmus.local', 'user info'],
    ['spiffe://isthmus.local', 'scheme'],
    ['isthmus local', 'may only contain'],
    ['ïsthmus.local', 'may only contain'],
  ])('refuses %j (%s)', (td, problem) => {
    expect(() => parseTrustDomain(td)).toThrow(problem);
    expect(trustDomainSchema.safeParse(td).success).toBe(false);
  });
});

describe('SPIFFE IDs', () => {
  const td = 'isthmus.local';
  const shapes: readonly [string, SpiffeId][] = [
    ['spiffe://isthmus.local/hub', { kind: 'hub', trustDomain: td }],
    ['spiffe://isthmus.local/nats', { kind: 'nats', trustDomain: td }],
    ['spiffe://isthmus.local/cluster/eu-1', { kind: 'cluster', trustDomain: td, clusterId: 'eu-1' }],
    ['spiffe://isthmus.local/cluster/eu-1/agent', { kind: 'agent', trustDomain: td, clusterId: 'eu-1' }],
    [
      'spiffe://isthmus.local/cluster/eu-1/gateway/east-west.v2',
      { kind: 'gateway', trustDomain: td, clusterId: 'eu-1', name: 'east-west.v2' },
    ],
    [
      'spiffe://isthmus.local/cluster/eu-1/ns/shop/sa/checkout',
      { kind: 'workload', trustDomain: td, clusterId: 'eu-1', namespace: 'shop', serviceAccount: 'checkout' },
    ],
  ];

  it.each(shapes)('parses and formats %s', (uri, id) => {
    expect(parseSpiffeId(uri)).toEqual(id);
    expect(formatSpiffeId(id)).toBe(uri);
  });

  it('extracts the cluster id', () => {
    expect(clusterIdOf(parseSpiffeId('spiffe://isthmus.local/cluster/eu-1/gateway/main'))).toBe('eu-1');
    expect(clusterIdOf(parseSpiffeId('spiffe://isthmus.local/hub'))).toBeUndefined();
    expect(clusterIdOf(parseSpiffeId('spiffe://isthmus.local/nats'))).toBeUndefined();
  });

  it.each([
    ['https://isthmus.local/hub', 'scheme'],
    ['SPIFFE://isthmus.local/hub', 'scheme'],
    ['spiffe://isthmus.local', 'trust domain, not a workload'],
    ['spiffe://isthmus.local/', 'empty segment'],
    ['spiffe://isthmus.local/hub/', 'empty segment'],
    ['spiffe://isthmus.local/cluster//agent', 'empty segment'],
    ['spiffe://isthmus.local/cluster/../hub', 'relative segment'],
    ['spiffe://isthmus.local/cluster/a%2Fb/agent', 'outside [a-zA-Z0-9._-]'],
    ['spiffe://isthmus.local/hub?x=1', 'outside [a-zA-Z0-9._-]'],
    ['spiffe://isthmus.local/hub#frag', 'outside [a-zA-Z0-9._-]'],
    ['spiffe://user@isthmus.local/hub', 'user info'],
    ['spiffe://isthmus.local:443/hub', 'port'],
    ['spiffe://Isthmus.local/hub', 'lower case'],
    ['spiffe://isthmus.local/cluster/EU/agent', 'DNS-1123 label'],
    ['spiffe://isthmus.local/cluster/eu-1/gateway/Main', 'DNS-1123 subdomain'],
    ['spiffe://isthmus.local/cluster/eu-1/ns/a.b/sa/x', 'DNS-1123 label'],
    ['spiffe://isthmus.local/cluster/eu-1/pod/x', 'not an Isthmus identity'],
    ['spiffe://isthmus.local/ns/shop/sa/checkout', 'not an Isthmus identity'],
    [`spiffe://isthmus.local/cluster/a/gateway/${'g'.repeat(2040)}`, 'longer than 2048'],
  ])('refuses %s (%s)', (uri, problem) => {
    const parsed = safeParseSpiffeId(uri);
    expect(parsed.ok).toBe(false);
    expect(parsed.ok ? '' : parsed.problem).toContain(problem);
    expect(() => parseSpiffeId(uri)).toThrow(problem);
  });

  it('throws coded errors, including when formatting an invalid id', () => {
    let thrown: unknown;
    try {
      formatSpiffeId({ kind: 'gateway', trustDomain: td, clusterId: 'eu-1', name: 'a/b' });
    } catch (err) {
      thrown = err;
    }
    expect(isIsthmusError(thrown, 'ISTHMUS_PKI_SPIFFE_ID_INVALID')).toBe(true);
    expect(() => parseClusterId('Not_A_Label')).toThrow('DNS-1123 label');
  });
});
