// Agents against the federation's NATS authorization (DESIGN §5), on a real nats-server: an agent
// identity cannot write any bucket key, neither by publishing nor through any JetStream request
// whose reply or delivery the server sends to a subject the agent names (nats-server delivers
// those regardless of publish permissions: nats-server issue 8274 and its reply-subject kin), and
// its reads still work.
import { Kvm, type KV } from '@nats-io/kv';
import { connect, nkeys, type NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CATALOG_BUCKET, MEMBERS_BUCKET } from '../common/catalog.ts';
import { federationNatsAccounts } from '../common/nats-authorization.ts';
import { AGENT_CERTIFICATE_SUBJECT } from '../common/pki/index.ts';
import { createLogger } from '../common/logger.ts';
import { runInBackground } from '../common/lifecycle.testkit.ts';
import { CatalogWatcher, type KvSource } from '../spoke-agent/imports/catalog-watcher.ts';
import { startTestbed, type Testbed } from '../local/testbed/index.ts';

let bed: Testbed;
let hub: NatsConnection;
let agent: NatsConnection;
let catalog: KV;
let members: KV;

beforeAll(async () => {
  bed = await startTestbed({
    names: [],
    natsAuthorization: (adminNkey) => federationNatsAccounts([nkeys.createUser().getPublicKey(), adminNkey]),
  });
  const nats = bed.nats!;
  hub = await nats.connect('hub');
  catalog = await new Kvm(hub).create(CATALOG_BUCKET, { history: 1 });
  members = await new Kvm(hub).create(MEMBERS_BUCKET, { history: 1 });
  await catalog.put('shop.cart', '{"genuine":true}');
  await members.put('cluster-a', '{"clusterId":"cluster-a"}');
  const files = await nats.ca.issue('agent', AGENT_CERTIFICATE_SUBJECT, { client: true });
  agent = await connect({
    servers: nats.url,
    name: 'agent',
    tls: { ca: nats.serverCaPem, cert: files.certPem, key: files.keyPem },
    maxReconnectAttempts: -1,
  });
});

afterAll(async () => {
  await agent?.close();
  await hub?.close();
  await bed?.[Symbol.asyncDispose]();
});

/** Every request an agent could try, each aiming its write at a catalog key of its own. */
function attempts(): Array<{ key: string; send: () => Promise<unknown> }> {
  const forged = (n: string): string => `$KV.${CATALOG_BUCKET}.shop.forged-${n}`;
  const request = (subject: string, body: unknown, reply: string) => async (): Promise<unknown> => {
    agent.publish(subject, typeof body === 'string' ? body : JSON.stringify(body), { reply });
    return agent.flush();
  };
  return [
    {
      key: 'shop.forged-publish',
      send: async () => {
        agent.publish(forged('publish'), '{}');
        return agent.flush();
      },
    },
    {
      key: 'shop.forged-deliver',
      send: request(
        '$JS.API.CONSUMER.CREATE.KV_isthmus_members',
        {
          stream_name: 'KV_isthmus_members',
          config: { deliver_subject: forged('deliver'), ack_policy: 'none', deliver_policy: 'all' },
        },
        forged('create-reply'),
      ),
    },
    { key: 'shop.forged-create-reply', send: () => Promise.resolve() }, // written, if at all, by the consumer create above
    {
      key: 'shop.forged-info-reply',
      send: request('$JS.API.STREAM.INFO.KV_isthmus_members', '', forged('info-reply')),
    },
    {
      key: 'shop.forged-direct-reply',
      send: request(
        '$JS.API.DIRECT.GET.KV_isthmus_members',
        { last_by_subj: '$KV.isthmus_members.cluster-a' },
        forged('direct-reply'),
      ),
    },
    {
      key: 'shop.forged-subject-direct-reply',
      send: request(
        '$JS.API.DIRECT.GET.KV_isthmus_members.$KV.isthmus_members.cluster-a',
        '',
        forged('subject-direct-reply'),
      ),
    },
    {
      key: 'shop.forged-msg-get-reply',
      send: request(
        '$JS.API.STREAM.MSG.GET.KV_isthmus_members',
        { last_by_subj: '$KV.isthmus_members.cluster-a' },
        forged('msg-get-reply'),
      ),
    },
    { key: 'shop.forged-js-put', send: request(forged('js-put'), '{}', '_INBOX.forged') },
  ];
}

describe('agents against the federation NATS authorization', () => {
  it('cannot write any bucket key by publish, by a consumer deliver subject or by any JetStream reply', async () => {
    const revision = (await catalog.status()).streamInfo.state.last_seq;
    for (const attempt of attempts()) await attempt.send().catch(() => undefined);
    // Also through the JetStream API as a client library would use it.
    await expect(new Kvm(agent).open(CATALOG_BUCKET).then((kv) => kv.put('shop.forged-kv', '{}'))).rejects.toThrow();
    // A barrier: a write of the hub, published after every attempt, is the next revision.
    await catalog.put('shop.barrier', '{}');
    const status = await catalog.status();
    expect(status.streamInfo.state.last_seq).toBe(revision + 1);
    for (const attempt of attempts()) expect(await catalog.get(attempt.key), attempt.key).toBeNull();
    // A push consumer's delivery is asynchronous, so no barrier proves it wrote nothing: no consumer may exist at all.
    expect((await members.status()).streamInfo.state.consumer_count).toBe(0);
    expect((await catalog.status()).streamInfo.state.consumer_count).toBe(0);
    expect((await catalog.get('shop.cart'))?.string()).toBe('{"genuine":true}');
  });

  it('still reads every bucket it needs: snapshot and live changes', async () => {
    const source: KvSource<unknown> = { bucket: CATALOG_BUCKET, parse: (_key, value) => value };
    const watcher = new CatalogWatcher<unknown>({ nc: agent, source, log: createLogger({ component: 'test' }) });
    await using _catalog = runInBackground(watcher);
    await watcher.synced();
    expect(watcher.get('shop.cart')).toEqual({ genuine: true });
    const changed = new Promise<void>((resolve) => watcher.onChange((key) => key === 'shop.live' && resolve()));
    await catalog.put('shop.live', '{"live":1}');
    await changed;
    expect(watcher.get('shop.live')).toEqual({ live: 1 });
    const memberWatcher = new CatalogWatcher<unknown>({
      nc: agent,
      source: { bucket: MEMBERS_BUCKET, parse: (_k, v) => v },
      log: createLogger({ component: 'test' }),
    });
    await using _members = runInBackground(memberWatcher);
    await memberWatcher.synced();
    expect(memberWatcher.keys()).toEqual(['cluster-a']);
  });
});
