import { describe, expect, it } from 'vitest';
import { loadConfig } from '../common/config.ts';
import { agentConfigSchema } from './config.ts';

describe('agent configuration', () => {
  it('answers clusterset.local on 127.0.0.1:10053 unless told otherwise, and takes only an IP address to listen on', () => {
    expect(loadConfig(agentConfigSchema, ['--set', 'clusterId=east']).dns).toEqual({
      enabled: true,
      host: '127.0.0.1',
      port: 10053,
    });
    expect(
      loadConfig(agentConfigSchema, ['--set', 'clusterId=east', '--set', 'dns.host=0.0.0.0', '--set', 'dns.port=53'])
        .dns,
    ).toEqual({ enabled: true, host: '0.0.0.0', port: 53 });
    expect(() => loadConfig(agentConfigSchema, ['--set', 'clusterId=east', '--set', 'dns.host=localhost'])).toThrow(
      'dns.host: must be an IPv4 or IPv6 address',
    );
  });
});
