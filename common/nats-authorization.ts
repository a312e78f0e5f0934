// NATS authorization for a federation (DESIGN §5: the hub is the only writer; agents read).
// Two accounts. HUB holds the JetStream buckets; only nkey users live there (the hub, and
// operators' tools): a certificate subject alone could be minted by any cluster's intermediate,
// which chains to the root NATS trusts. AGENTS holds the agents (each member its own user, decided
// by the hub through auth callout: hub/nats-access.ts) and has no JetStream at all: what agents may
// do is request the read-only services HUB exports (batch direct get, stream info) and receive the
// live messages of the buckets' subjects (a stream export). A reply subject, a consumer's deliver
// subject or any other subject an agent names exists only in AGENTS, where nothing stores a
// message, so no request of an agent can write a bucket, whatever the request (nats-server
// delivers JetStream replies, direct-get replies and push-consumer deliveries to any subject the
// client names, publish permissions notwithstanding; e2e/nats-authorization.test.ts shows it).
//
// Which bucket an agent reads is decided per user, not per account: HUB exports the read services
// and live subjects of every bucket, and each agent's permissions name the shared buckets plus its
// own scoped catalog bucket (a member's view of exports scoped to it); its inboxes sit under its own
// prefix, so no member can subscribe to the replies NATS sends another (e2e/catalog-scoping.test.ts).
import { CATALOG_BUCKET, MEMBERS_BUCKET, scopedCatalogBucket } from './catalog.ts';
import { AGENT_CERTIFICATE_SUBJECT } from './pki/index.ts';

/** Buckets agents read. */
export const AGENT_READABLE_BUCKETS = [CATALOG_BUCKET, MEMBERS_BUCKET, 'isthmus_trust', 'isthmus_policies'] as const;

/** The account that holds the buckets (the hub writes there). */
export const HUB_ACCOUNT = 'HUB';
/** The account agents are placed in: no JetStream, only imports of HUB's read services. */
export const AGENTS_ACCOUNT = 'AGENTS';

/**
 * Where AGENTS imports HUB's JetStream read requests (`$JS.API` in HUB). Not `$JS.API` itself:
 * nats-server answers that in an account without JetStream with "not enabled".
 */
export const AGENT_API_PREFIX = 'ISTHMUS.HUB.API';

/** The subjects that read a bucket, batch direct get and stream info (for its last revision), under an API prefix. */
export function bucketReadRequests(
  bucket: string,
  apiPrefix = AGENT_API_PREFIX,
): { directGet: string; streamInfo: string } {
  return { directGet: `${apiPrefix}.DIRECT.GET.KV_${bucket}`, streamInfo: `${apiPrefix}.STREAM.INFO.KV_${bucket}` };
}

/** The subjects a bucket's writes are published on (what a live reader subscribes to). */
export function bucketSubjects(bucket: string): string {
  return `$KV.${bucket}.>`;
}

const q = (s: string): string => JSON.stringify(s);

/**
 * nats-server's authorization timeout with auth callout, in seconds: while no hub replica answers
 * (an outage), every agent connect waits this long before it can try again, so it bounds how late
 * agents are back once the hub is. The server's default with TLS is 3 s; a handshake and the
 * hub's verdict take milliseconds.
 */
const AUTH_TIMEOUT_S = 2;

/** Where an agent's inboxes live (nats.js `inboxPrefix`): only that member may subscribe under it. */
export function agentInboxPrefix(clusterId: string): string {
  return `_INBOX.${clusterId}`;
}

/** Every stream's read requests (a wildcard over the stream name), under an API prefix. */
function everyStreamReadRequests(apiPrefix = AGENT_API_PREFIX): { directGet: string; streamInfo: string } {
  return { directGet: `${apiPrefix}.DIRECT.GET.*`, streamInfo: `${apiPrefix}.STREAM.INFO.*` };
}

/**
 * What an agent user may publish and subscribe to in AGENTS. A member (`clusterId`, auth callout):
 * the read requests and live subjects of the shared buckets and of its own scoped catalog bucket,
 * and its own inboxes. Without a cluster id (every agent one user, certificate mapping: test beds)
 * members cannot be told apart, so that user reads every bucket and scoping is not enforced.
 */
export function agentPermissions(clusterId?: string): { publish: string[]; subscribe: string[] } {
  if (!clusterId)
    return { publish: Object.values(everyStreamReadRequests()), subscribe: ['_INBOX.>', bucketSubjects('*')] };
  const buckets = [...AGENT_READABLE_BUCKETS, scopedCatalogBucket(clusterId)];
  return {
    publish: buckets.flatMap((bucket) => Object.values(bucketReadRequests(bucket))),
    subscribe: [`${agentInboxPrefix(clusterId)}.>`, ...buckets.map(bucketSubjects)],
  };
}

/** With auth callout (hub/nats-access.ts): the account nkey signing its verdicts and the system user the hub kicks removed clusters with. */
export interface NatsAuthCallout {
  readonly issuer: string;
  readonly systemNkey: string;
}

/**
 * nats-server's authorization configuration: HUB with JetStream, the given nkeys and the
 * read-only exports; AGENTS importing them. Agents are users of AGENTS either by certificate
 * subject, all of them one user (`mapCertificates`: the `tls` block sets `verify_and_map`), or,
 * with `callout`, each member its own user decided by the hub per connect (the `tls` block sets
 * `verify`), and a system account for the hub's removal enforcement.
 */
export function federationNatsAccounts(
  hubNkeys: readonly string[],
  callout?: NatsAuthCallout,
): { config: string; mapCertificates: boolean } {
  // Every stream's read services and every bucket's live subjects: which of them an agent may use is in its user's permissions.
  const [hub, local] = [everyStreamReadRequests('$JS.API'), everyStreamReadRequests()];
  const exports = [
    `{ service: ${q(hub.directGet)}, response_type: stream }`,
    `{ service: ${q(hub.streamInfo)} }`,
    `{ stream: ${q(bucketSubjects('*'))} }`,
  ];
  const imports = [
    `{ service: { account: ${HUB_ACCOUNT}, subject: ${q(hub.directGet)} }, to: ${q(local.directGet)} }`,
    `{ service: { account: ${HUB_ACCOUNT}, subject: ${q(hub.streamInfo)} }, to: ${q(local.streamInfo)} }`,
    `{ stream: { account: ${HUB_ACCOUNT}, subject: ${q(bucketSubjects('*'))} } }`,
  ];
  const permissions = agentPermissions();
  // Certificate mapping admits every agent as one user: no scoped catalog is private then (see agentPermissions).
  const certificateUser = `{ user: ${q(AGENT_CERTIFICATE_SUBJECT)}, permissions: { publish: { allow: [${permissions.publish.map(q).join(', ')}] }, subscribe: { allow: [${permissions.subscribe.map(q).join(', ')}] } } }`;
  const config = [
    'accounts {',
    `  ${HUB_ACCOUNT}: {`,
    '    jetstream: enabled',
    `    users: [ ${hubNkeys.map((k) => `{ nkey: ${q(k)} }`).join(', ')} ]`,
    `    exports: [\n      ${exports.join(',\n      ')}\n    ]`,
    '  }',
    `  ${AGENTS_ACCOUNT}: {`,
    ...(callout ? [] : [`    users: [ ${certificateUser} ]`]),
    `    imports: [\n      ${imports.join(',\n      ')}\n    ]`,
    '  }',
    ...(callout ? [`  SYS: { users: [ { nkey: ${q(callout.systemNkey)} } ] }`] : []),
    '}',
    ...(callout
      ? [
          'system_account: SYS',
          `authorization { timeout: ${AUTH_TIMEOUT_S}, auth_callout { issuer: ${q(callout.issuer)}, account: ${HUB_ACCOUNT}, auth_users: [ ${[...hubNkeys, callout.systemNkey].map(q).join(', ')} ] } }`,
        ]
      : []),
  ].join('\n');
  return { config, mapCertificates: !callout };
}
