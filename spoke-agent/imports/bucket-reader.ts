// Reads a JetStream KV bucket with requests that cannot write (DESIGN §5): the stream's last
// revision by stream info, and its messages in order by batch direct get. No consumer is
// created, so no deliver subject exists to abuse; agents reach these two requests through the
// AGENTS account's imports (common/nats-authorization.ts), where replies never touch a bucket.
import type { NatsConnection } from '@nats-io/transport-node';
import { z } from 'zod';
import { IsthmusError } from '../../common/errors.ts';
import { bucketReadRequests } from '../../common/nats-authorization.ts';

/** One message of the bucket: a key's value (PUT) or its removal (DEL, PURGE), at its revision. */
export interface BucketMessage {
  readonly key: string;
  readonly revision: number;
  readonly operation: 'PUT' | 'DEL' | 'PURGE';
  readonly value: Uint8Array;
}

const streamInfoSchema = z.union([
  z.object({ state: z.object({ last_seq: z.number().int().min(0) }) }),
  z.object({ error: z.object({ code: z.number(), err_code: z.number().optional(), description: z.string() }) }),
]);

/** How long one request may wait for its (first or next) reply, unless the caller says otherwise. */
const REQUEST_TIMEOUT_MS = 5_000;
const BATCH = 256;

/** JetStream's error code for a stream that does not exist. */
const STREAM_NOT_FOUND = 10059;

/** The bucket's last revision; throws ISTHMUS_NATS_BUCKET_MISSING if the bucket does not exist (yet). */
export async function lastRevision(
  nc: NatsConnection,
  bucket: string,
  timeoutMs = REQUEST_TIMEOUT_MS,
): Promise<number> {
  const reply = await nc.request(bucketReadRequests(bucket).streamInfo, '', { timeout: timeoutMs });
  const info = streamInfoSchema.parse(reply.json());
  if ('error' in info) {
    const code = info.error.err_code === STREAM_NOT_FOUND ? 'ISTHMUS_NATS_BUCKET_MISSING' : 'ISTHMUS_NATS_READ_FAILED';
    throw new IsthmusError(code, `stream info of bucket ${bucket}: ${info.error.description} (${info.error.code})`);
  }
  return info.state.last_seq;
}

/**
 * Calls `onMessage` for every message of the bucket from revision `from` on, in order, until the
 * end of the stream as it was when the last batch was served.
 */
export async function readFrom(
  nc: NatsConnection,
  bucket: string,
  from: number,
  onMessage: (message: BucketMessage) => void,
  timeoutMs = REQUEST_TIMEOUT_MS,
): Promise<void> {
  let next = Math.max(1, from);
  for (;;) {
    const { last, more } = await readBatch(nc, bucket, next, onMessage, timeoutMs);
    if (!more) return;
    next = last + 1;
  }
}

/**
 * One batch direct get, through the connection's own request inboxes (an agent may subscribe only
 * under its own inbox prefix): ends at its end-of-batch marker (or "no results").
 */
async function readBatch(
  nc: NatsConnection,
  bucket: string,
  from: number,
  onMessage: (message: BucketMessage) => void,
  timeoutMs: number,
): Promise<{ last: number; more: boolean }> {
  const prefix = `$KV.${bucket}.`;
  let last = from - 1;
  const replies = await nc.requestMany(
    bucketReadRequests(bucket).directGet,
    JSON.stringify({ seq: from, next_by_subj: `${prefix}>`, batch: BATCH }),
    { strategy: 'sentinel', maxWait: timeoutMs, noMux: true },
  );
  for await (const msg of replies) {
    const headers = msg.headers;
    if (headers?.code === 404) return { last, more: false };
    if (headers?.code === 204) return { last, more: Number(headers.get('Nats-Num-Pending') || '0') > 0 };
    if (!headers || headers.hasError)
      throw new IsthmusError(
        'ISTHMUS_NATS_READ_FAILED',
        `bucket ${bucket}: direct get failed: ${headers?.code ?? ''} ${headers?.description ?? 'no headers'}`,
      );
    const subject = headers.last('Nats-Subject');
    const revision = Number(headers.last('Nats-Sequence'));
    if (!subject.startsWith(prefix) || !Number.isSafeInteger(revision))
      throw new IsthmusError(
        'ISTHMUS_NATS_READ_FAILED',
        `bucket ${bucket}: direct get returned ${subject} #${revision}`,
      );
    const operation = headers.last('KV-Operation');
    last = revision;
    onMessage({
      key: subject.slice(prefix.length),
      revision,
      operation: operation === 'DEL' || operation === 'PURGE' ? operation : 'PUT',
      value: msg.data,
    });
  }
  throw new IsthmusError(
    'ISTHMUS_NATS_READ_FAILED',
    `bucket ${bucket}: the direct get did not finish within ${timeoutMs} ms`,
  );
}
