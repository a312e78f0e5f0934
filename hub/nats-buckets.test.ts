// The hub's buckets on a real 3-node JetStream cluster: created with the configured replicas, and
// an existing bucket with another replica count is opened as it is, with a warning naming it.
import { Kvm } from '@nats-io/kv';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { startTestbed, type Testbed } from '../local/testbed/index.ts';
import { openBucket } from './nats-buckets.ts';

/** A logger whose warnings the test reads. */
function recordingLogger(): { log: pino.Logger; warnings: Array<Record<string, unknown>> } {
  const warnings: Array<Record<string, unknown>> = [];
  const log = pino(
    { level: 'warn' },
    { write: (line: string) => void warnings.push(JSON.parse(line) as Record<string, unknown>) },
  );
  return { log, warnings };
}

describe('hub buckets on a NATS cluster', () => {
  it('creates a bucket with the configured replicas, and warns about an existing one with fewer', async () => {
    await using bed = await startTestbed({ clusters: 0, natsNodes: 3 });
    const nats = bed.nats as NonNullable<Testbed['nats']>;
    const nc = await nats.connect('buckets-test');
    try {
      const { log, warnings } = recordingLogger();
      const replicated = await openBucket(nc, 'isthmus_replicated', { replicas: 3 }, log);
      const status = await replicated.status();
      expect(status.replicas).toBe(3);
      expect(status.history).toBe(1);
      expect(status.streamInfo.cluster?.replicas?.length).toBe(2);
      expect(warnings).toEqual([]);

      await new Kvm(nc).create('isthmus_single', { history: 1, replicas: 1 });
      const existing = await openBucket(nc, 'isthmus_single', { replicas: 3 }, log);
      expect((await existing.status()).replicas).toBe(1);
      expect(warnings).toEqual([
        expect.objectContaining({
          bucket: 'isthmus_single',
          replicas: 1,
          configured: 3,
          msg: expect.stringContaining('nats.replicas') as string,
        }),
      ]);
    } finally {
      await nc.close();
    }
  });
});
