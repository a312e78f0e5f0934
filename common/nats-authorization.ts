// NATS authorization for a federation (DESIGN §5: the hub is the only writer; agents read).
// The hub authenticates with an nkey: a certificate subject alone could be minted by any
// cluster's intermediate, which chains to the root NATS trusts. Agents are mapped by their
// certificate subject (verify_and_map), the same for every agent, to one read-only user.
import { CATALOG_BUCKET, MEMBERS_BUCKET } from './catalog.ts';
import { AGENT_CERTIFICATE_SUBJECT } from './pki/index.ts';

/** Buckets agents read. */
export const AGENT_READABLE_BUCKETS = [CATALOG_BUCKET, MEMBERS_BUCKET, 'isthmus_trust', 'isthmus_policies'] as const;

/** What a KV reader needs: stream info, consumers for watches, direct gets, flow-control replies. */
function kvReadSubjects(bucket: string): string[] {
  const stream = `KV_${bucket}`;
  return [
    `$JS.API.STREAM.INFO.${stream}`,
    `$JS.API.CONSUMER.CREATE.${stream}`,
    `$JS.API.CONSUMER.CREATE.${stream}.>`,
    `$JS.API.CONSUMER.INFO.${stream}.>`,
    `$JS.API.CONSUMER.DELETE.${stream}.>`,
    `$JS.API.DIRECT.GET.${stream}`,
    `$JS.API.DIRECT.GET.${stream}.>`,
    `$JS.API.STREAM.MSG.GET.${stream}`,
    `$JS.FC.${stream}.>`,
  ];
}

/**
 * nats-server `users` entries (the `tls` block must set `verify_and_map: true`): the hub's nkey
 * with full permissions, and every agent read-only.
 */
export function federationNatsUsers(hubNkeyPublic: string): string[] {
  const publish = AGENT_READABLE_BUCKETS.flatMap(kvReadSubjects).map((s) => JSON.stringify(s));
  return [
    `{ nkey: ${JSON.stringify(hubNkeyPublic)} }`,
    `{ user: ${JSON.stringify(AGENT_CERTIFICATE_SUBJECT)}, permissions: { publish: { allow: [${publish.join(', ')}] }, subscribe: { allow: ["_INBOX.>"] } } }`,
  ];
}
