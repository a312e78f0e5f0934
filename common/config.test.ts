import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { loadConfig } from './config.ts';
import { isIsthmusError } from './errors.ts';

const schema = z
  .object({
    trustDomain: z.string().regex(/^[a-z0-9._-]+$/, 'must be a SPIFFE trust domain'),
    grpc: z.object({ port: z.number().int().min(1).max(65535).default(9443) }).prefault({}),
  })
  .strict();

describe('loadConfig', () => {
  it('merges a YAML file with --set overrides and applies defaults', () => {
    const dir = mkdtempSync(join(tmpdir(), 'isthmus-config-'));
    try {
      const file = join(dir, 'hub.yaml');
      writeFileSync(file, 'trustDomain: example.org\n');
      expect(loadConfig(schema, ['--config', file])).toEqual({ trustDomain: 'example.org', grpc: { port: 9443 } });
      expect(loadConfig(schema, ['--config', file, '--set', 'grpc.port=7000'])).toEqual({
        trustDomain: 'example.org',
        grpc: { port: 7000 },
      });
    } finally {
      rmSync(dir, { recursive: true });
    }
  });

  it('names every bad field in one message', () => {
    try {
      loadConfig(schema, ['--set', 'trustDomain=Bad Domain', '--set', 'grpc.port=70000']);
      expect.unreachable();
    } catch (err) {
      expect(isIsthmusError(err, 'ISTHMUS_CONFIG_INVALID')).toBe(true);
      expect((err as Error).message).toMatch(/trustDomain: must be a SPIFFE trust domain/);
      expect((err as Error).message).toMatch(/grpc\.port: Too big/);
    }
  });

  it('refuses unknown arguments and unreadable files', () => {
    expect(() => loadConfig(schema, ['--verbose'])).toThrow(/unknown argument "--verbose"/);
    expect(() => loadConfig(schema, ['--config', '/nonexistent/hub.yaml'])).toThrow(
      /cannot read \/nonexistent\/hub.yaml/,
    );
  });
});

describe('a component started with bad configuration', () => {
  it('exits 2 with one line naming the field and no stack trace', async () => {
    const demo = fileURLToPath(new URL('../scripts/demo.ts', import.meta.url));
    const result = await promisify(execFile)(process.execPath, [demo, '--set', 'members=0']).then(
      () => ({ code: 0, stderr: '' }),
      (err: { code: number; stderr: string }) => err,
    );
    expect(result.code).toBe(2);
    expect(result.stderr.trim().split('\n')).toEqual([
      'isthmus-demo: invalid configuration: members: the failover scenario needs exactly 3 members (cluster-a and cluster-b in eu-west, cluster-c in us-east)',
    ]);
  });
});
