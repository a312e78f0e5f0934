// The SNI that names a service port between gateways: what serviceSni writes parseServiceSni reads
// back, and nothing else names a service.
import { describe, expect, it } from 'vitest';
import { PROBE_SNI, parseServiceSni, serviceSni } from './gateway-contract.ts';

describe('serviceSni', () => {
  it('writes <port>.<service>.<namespace>.svc.clusterset.local', () => {
    expect(serviceSni('shop', 'cart', 8080)).toBe('8080.cart.shop.svc.clusterset.local');
  });

  it.each([
    ['default', 'web', 1],
    ['default', 'web', 80],
    ['kube-system', 'my-service-1', 65535],
    ['a', 'b', 15443],
  ])('round-trips %s/%s:%i', (namespace, name, port) => {
    expect(parseServiceSni(serviceSni(namespace, name, port))).toEqual({ namespace, name, port });
  });
});

describe('parseServiceSni', () => {
  it.each([
    ['wrong suffix', '80.web.default.svc.cluster.local'],
    ['suffix only in the middle', '80.web.default.svc.clusterset.local.evil.example'],
    ['no suffix at all', '80.web.default'],
    ['4 labels before the suffix', '80.extra.web.default.svc.clusterset.local'],
    ['2 labels before the suffix', 'web.default.svc.clusterset.local'],
    ['port 0', '0.web.default.svc.clusterset.local'],
    ['port 70000', '70000.web.default.svc.clusterset.local'],
    ['port 65536', '65536.web.default.svc.clusterset.local'],
    ['non-digit port', 'http.web.default.svc.clusterset.local'],
    ['negative port', '-80.web.default.svc.clusterset.local'],
    ['hex port', '0x50.web.default.svc.clusterset.local'],
    ['exponent port', '8e1.web.default.svc.clusterset.local'],
    ['fractional port', '8.0.web.default.svc.clusterset.local'],
    ['port with spaces', ' 80.web.default.svc.clusterset.local'],
    ['six-digit port', '000080.web.default.svc.clusterset.local'],
    ['empty port', '.web.default.svc.clusterset.local'],
    ['empty service', '80..default.svc.clusterset.local'],
    ['empty namespace', '80.web..svc.clusterset.local'],
    ['only the suffix', '.svc.clusterset.local'],
    ['empty', ''],
    ['the probe SNI', PROBE_SNI],
  ])('refuses %s', (_why, sni) => {
    expect(parseServiceSni(sni)).toBeUndefined();
  });
});
