// NATS authorization for a federation (DESIGN §5: the hub is the only writer; agents read).
// Two accounts. HUB holds the JetStream buckets; only nkey users live there (the hub, and
// operators' tools): a certificate subject alone could be minted by any cluster's intermediate,
// which chains to the root NATS trusts. AGENTS holds the agents (each member its own user, decided
// by the hub through auth callout: hub/nats-access.ts) and has no JetStream at all: what agents may do is request the
// read-only services HUB exports (batch direct get, stream info) and receive the live messages of
// the buckets' subjects (a stream export). A reply subject, a consumer's deliver subject or any
// other subject an agent names exists only in AGENTS, where nothing stores a message, so no
// request of an agent can write a bucket, whatever the request (nats-server delivers JetStream
// replies, direct-get replies and push-consumer deliveries to any subject the client names,
// publish permissions notwithstanding; e2e/nats-authorization.test.ts shows it).
import { CATALOG_BUCKET, MEMBERS_BUCKET } from './catalog.ts';
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
export function bucketReadRequests(bucket: string, apiPrefix = AGENT_API_PREFIX): { directGet: string; streamInfo: string } {
  return { directGet: `${apiPrefix}.DIRECT.GET.KV_${bucket}`, streamInfo: `${apiPrefix}.STREAM.INFO.KV_${bucket}` };
}

/** The subjects a bucket's writes are published on (what a live reader subscribes to). */
export function bucketSubjects(bucket: string): string {
  return `$KV.${bucket}.>`;
}

const q = (s: string): string => JSON.stringify(s);

/** What an agent user may publish and subscribe to in AGENTS: the imported read requests, its inboxes, the live subjects. */
export function agentPermissions(): { publish: string[]; subscribe: string[] } {
  return {
    publish: AGENT_READABLE_BUCKETS.flatMap((bucket) => Object.values(bucketReadRequests(bucket))),
    subscribe: ['_INBOX.>', ...AGENT_READABLE_BUCKETS.map(bucketSubjects)],
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
export function federationNatsAccounts(hubNkeys: readonly string[], callout?: NatsAuthCallout): { config: string; mapCertificates: boolean } {
  const exports = AGENT_READABLE_BUCKETS.flatMap((bucket) => {
    const r = bucketReadRequests(bucket, '$JS.API');
    return [`{ service: ${q(r.directGet)}, response_type: stream }`, `{ service: ${q(r.streamInfo)} }`, `{ stream: ${q(bucketSubjects(bucket))} }`];
  });
  const imports = AGENT_READABLE_BUCKETS.flatMap((bucket) => {
    const [hub, local] = [bucketReadRequests(bucket, '$JS.API'), bucketReadRequests(bucket)];
    return [
      `{ service: { account: ${HUB_ACCOUNT}, subject: ${q(hub.directGet)} }, to: ${q(local.directGet)} }`,
      `{ service: { account: ${HUB_ACCOUNT}, subject: ${q(hub.streamInfo)} }, to: ${q(local.streamInfo)} }`,
      `{ stream: { account: ${HUB_ACCOUNT}, subject: ${q(bucketSubjects(bucket))} } }`,
    ];
  });
  const permissions = agentPermissions();
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
          `authorization { auth_callout { issuer: ${q(callout.issuer)}, account: ${HUB_ACCOUNT}, auth_users: [ ${[...hubNkeys, callout.systemNkey].map(q).join(', ')} ] } }`,
        ]
      : []),
  ].join('\n');
  return { config, mapCertificates: !callout };
}
