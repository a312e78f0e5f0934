// How the hub makes its JetStream KV buckets, in one place: one revision per key, and as many
// replicas as the hub's configuration says (`nats.replicas`; 3 on a 3-node NATS cluster, so
// losing one node loses nothing: DESIGN §5). A bucket that already exists is opened as it is:
// when its replica count differs, the hub says so (changing it is an operator's decision, e.g.
// `nats stream edit KV_<bucket> --replicas 3`), rather than running on fewer copies unawares.
import { Kvm, type KV, type KvOptions } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import type { Logger } from '../common/logger.ts';

/** What every bucket the hub creates shares (from the hub's `nats` configuration). */
export interface BucketSettings {
  /** Copies of each bucket in a NATS cluster (1 on a single server). */
  readonly replicas: number;
}

/** Single-server NATS: the default where no configuration is at hand (tests, tools). */
export const SINGLE_SERVER_BUCKETS: BucketSettings = { replicas: 1 };

/** The options for creating a hub bucket. */
export function bucketOptions(settings: BucketSettings): Partial<KvOptions> {
  return { history: 1, replicas: settings.replicas };
}

/** Creates the bucket if missing, or opens it; warns when an existing one has another replica count. */
export async function openBucket(
  nc: NatsConnection,
  bucket: string,
  settings: BucketSettings,
  log: Logger,
): Promise<KV> {
  const kv = await new Kvm(nc).create(bucket, bucketOptions(settings));
  const { replicas } = await kv.status();
  if (replicas !== settings.replicas) {
    log.warn(
      { bucket, replicas, configured: settings.replicas },
      `bucket ${bucket} exists with ${replicas} replica(s), not the ${settings.replicas} configured (nats.replicas); it keeps ${replicas} until its stream KV_${bucket} is edited`,
    );
  }
  return kv;
}
