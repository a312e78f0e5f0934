// The hub's NATS settings: bucket replicas are 1 unless set, and only an odd cluster size is accepted.
import { describe, expect, it } from 'vitest';
import { hubConfigSchema } from './config.ts';

const nats = {
  urls: ['tls://nats-0:4222', 'tls://nats-1:4222', 'tls://nats-2:4222'],
  caFile: 'ca.crt',
  certFile: 'hub.crt',
  keyFile: 'hub.key',
};

describe('hub configuration: nats.replicas', () => {
  it('defaults to 1 and takes 3 or 5', () => {
    expect(hubConfigSchema.parse({ nats }).nats.replicas).toBe(1);
    expect(hubConfigSchema.parse({ nats: { ...nats, replicas: 3 } }).nats.replicas).toBe(3);
    expect(hubConfigSchema.parse({ nats: { ...nats, replicas: 5 } }).nats.replicas).toBe(5);
  });

  it('refuses another count, saying which are allowed', () => {
    const parsed = hubConfigSchema.safeParse({ nats: { ...nats, replicas: 2 } });
    expect(parsed.success).toBe(false);
    expect(parsed.error?.issues).toEqual([
      expect.objectContaining({
        path: ['nats', 'replicas'],
        message: expect.stringContaining('must be 1, 3 or 5') as string,
      }),
    ]);
  });
});
