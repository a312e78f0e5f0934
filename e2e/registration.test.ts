// Cluster registration end to end: a hub with two replicas on its own cluster, three member
// clusters with an agent each, everything a real process; the isthmus CLI drives it. Joining runs
// on a federation nobody has joined yet; membership on one whose members all joined. Within each,
// no test depends on another's order (each uses its own clusters, or restores what it stops).
import { CoordinationV1Api, CustomObjectsApi } from '@kubernetes/client-node';
import { Kvm } from '@nats-io/kv';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { findCondition } from '../common/api/conditions.ts';
import type { MemberCluster } from '../common/api/isthmus.ts';
import { join as joinHub } from '../spoke-agent/join.ts';
import { Federation, type CliResult } from '../local/federation/index.ts';
import { waitFor } from '../local/testbed/index.ts';

const HEARTBEAT_MS = 1_000;
const MISSED = 3;

function available(member: MemberCluster): string | undefined {
  return findCondition(member.status?.conditions, 'Available')?.status;
}

const federationOptions = {
  members: 3,
  hubReplicas: 2,
  heartbeatInterval: `${HEARTBEAT_MS / 1000}s`,
  missedBeforeUnknown: MISSED,
} as const;

describe('cluster registration: joining', () => {
  let fed: Federation;

  beforeAll(async () => {
    // cluster-a joins with a single-use token and cluster-d is refused in one test; b and c join in the other.
    fed = await Federation.start({ ...federationOptions, members: 4, autoAccept: false });
  });
  afterAll(async () => {
    await fed?.[Symbol.asyncDispose]();
  });

  /** The hub does not auto-accept here: join, wait until the cluster is pending, accept it. */
  async function joinAccepted(
    cluster: string,
    with_: Awaited<ReturnType<Federation['createToken']>>,
  ): Promise<CliResult> {
    const joining = fed.join(cluster, with_);
    // The hub creates the MemberCluster, then sets its conditions: wait for both.
    await waitFor(
      `${cluster} pending acceptance`,
      async () => {
        const member = await fed.memberCluster(cluster).catch(() => undefined);
        return (
          member?.spec.accepted === false &&
          findCondition(member.status?.conditions, 'Accepted')?.reason === 'PendingAcceptance'
        );
      },
      30_000,
      100,
    );
    expect(findCondition((await fed.memberCluster(cluster)).status?.conditions, 'Joined')).toMatchObject({
      status: 'False',
      reason: 'PendingAcceptance',
    });
    const accepted = await fed.cli(['cluster', 'accept', cluster], 'hub');
    expect(accepted.stdout).toContain(`cluster ${cluster} accepted`);
    return joining;
  }

  it('refuses an expired token, a wrong CA pin and a reused single-use token, each with a clear message', async () => {
    const expired = await fed.createToken(['--ttl', '1s']);
    await new Promise((r) => setTimeout(r, 1_200));
    const expiredJoin = await fed.join('cluster-d', expired);
    expect(expiredJoin.code).toBe(1);
    expect(expiredJoin.stderr).toMatch(
      /bootstrap token has expired: token \w+ expired at .*; create a new one \[ISTHMUS_TOKEN_EXPIRED\]/,
    );

    const good = await fed.createToken();
    const wrongPin = await fed.join('cluster-d', { ...good, caPin: `sha256:${'0'.repeat(64)}` });
    expect(wrongPin.code).toBe(1);
    expect(wrongPin.stderr).toMatch(/hub CA does not match the pin: .* expected sha256:0{64}; check the --ca-pin/);

    const single = await fed.createToken(['--usages', '1']);
    expect((await joinAccepted('cluster-a', single)).code).toBe(0);
    const reused = await fed.join('cluster-d', single);
    expect(reused.code).toBe(1);
    expect(reused.stderr).toMatch(
      /bootstrap token has no uses left: token \w+ was already used 1 time\(s\); create a new one \[ISTHMUS_TOKEN_EXHAUSTED\]/,
    );

    const unknown = await fed.join('cluster-d', { ...good, token: 'abcdef.0123456789abcdef' });
    expect(unknown.stderr).toMatch(/\[ISTHMUS_TOKEN_UNKNOWN\]/);

    const revoked = await fed.createToken();
    expect((await fed.cli(['token', 'revoke', revoked.token.split('.')[0] as string], 'hub')).code).toBe(0);
    expect((await fed.join('cluster-d', revoked)).stderr).toMatch(
      /bootstrap token was revoked: token \w+ \[ISTHMUS_TOKEN_REVOKED\]/,
    );
  });

  it('joins clusters with a token once accepted and lists them Available', async () => {
    const token = await fed.createToken(['--usages', '5']);
    for (const cluster of ['cluster-b', 'cluster-c']) {
      const joined = await joinAccepted(cluster, token);
      expect(joined.code, joined.stderr).toBe(0);
      expect(joined.stdout).toContain(`cluster ${cluster} joined the federation`);
    }
    await waitFor(
      'all members Available',
      async () => {
        const list = await fed.cli(['cluster', 'list', '-o', 'json'], 'hub');
        const members = JSON.parse(list.stdout) as MemberCluster[];
        const joined = members.filter((m) => ['cluster-b', 'cluster-c'].includes(m.metadata.name));
        return joined.length === 2 && joined.every((m) => available(m) === 'True');
      },
      10_000,
    );
    const table = await fed.cli(['cluster', 'list'], 'hub');
    console.info(`isthmus cluster list:\n${table.stdout}`);
    expect(table.stdout).toMatch(/cluster-b\s+eu-west\s+eu-west-1b\s+true\s+True\s+True/);
    const check = await fed.cli(['check'], 'cluster-b');
    console.info(`isthmus check (healthy):\n${check.stdout}`);
    expect(check.code).toBe(0);
    // The About API tells in-cluster tools who they are.
    const properties = fed.bed.cluster('cluster-b').kubeConfig().makeApiClient(CustomObjectsApi);
    const property = (name: string): Promise<{ spec: { value: string } }> =>
      properties.getClusterCustomObject({
        group: 'about.k8s.io',
        version: 'v1alpha1',
        plural: 'clusterproperties',
        name,
      }) as Promise<{ spec: { value: string } }>;
    expect((await property('cluster.clusterset.k8s.io')).spec.value).toBe('cluster-b');
    expect((await property('clusterset.k8s.io')).spec.value).toBe('isthmus');
  });
});

describe('cluster registration: membership', () => {
  let fed: Federation;

  beforeAll(async () => {
    fed = await Federation.start(federationOptions);
    await fed.joinAll();
  });
  afterAll(async () => {
    await fed?.[Symbol.asyncDispose]();
  });

  it('a cluster id that is taken is refused', async () => {
    // cluster-a is a member; a second cluster claiming its id runs the agent's own join code.
    const t = await fed.createToken();
    await expect(
      joinHub(
        { hubEndpoints: t.hubEndpoints, token: t.token, caPin: t.caPin },
        {
          clusterId: 'cluster-a',
          region: '',
          zone: '',
          network: '',
          gatewayAddresses: [],
          labels: {},
          agentVersion: 'test',
        },
      ),
    ).rejects.toThrow(/cluster id "cluster-a" belongs to a member/);
  });

  it('turns Available Unknown when an agent dies and back to True when it returns, without a new join', async () => {
    await fed.stopAgent('cluster-b', 'SIGKILL');
    const killedAt = Date.now();
    await waitFor(
      'cluster-b Available=Unknown',
      async () => available(await fed.memberCluster('cluster-b')) === 'Unknown',
      15_000,
      100,
    );
    const unknownAfter = Date.now() - killedAt;
    console.info(`Available=Unknown ${unknownAfter} ms after the agent died (window ${MISSED} × ${HEARTBEAT_MS} ms)`);
    expect(unknownAfter).toBeLessThan(MISSED * HEARTBEAT_MS + 2_500);
    const reason = findCondition((await fed.memberCluster('cluster-b')).status?.conditions, 'Available');
    expect(reason).toMatchObject({ reason: 'HeartbeatMissed' });

    const check = await fed.cli(['check'], 'cluster-b');
    console.info(`isthmus check (agent down):\n${check.stdout}`);
    expect(check.code).toBe(1);
    expect(check.stdout).toMatch(/× heartbeat freshness/);

    const agent = await fed.startAgent('cluster-b');
    await waitFor(
      'cluster-b Available=True',
      async () => available(await fed.memberCluster('cluster-b')) === 'True',
      15_000,
      100,
    );
    // The log file is shared by both runs of the agent: look at the restarted one only.
    const restarted = agent.logTail(400).split('"msg":"started"').at(-1) ?? '';
    expect(restarted).toMatch(/resuming membership from stored credentials/);
    expect(restarted).not.toMatch(/joined the federation/);
  });

  it("ends a removed cluster's membership: its calls are refused and it leaves the published list", async () => {
    const nc = await fed.bed.nats!.connect('registration-test');
    try {
      const kv = await new Kvm(nc).open('isthmus_members');
      await waitFor('cluster-c published', async () => (await kv.get('cluster-c'))?.operation === 'PUT', 10_000);
      const removed = await fed.cli(['cluster', 'remove', 'cluster-c'], 'hub');
      expect(removed.stdout).toContain('cluster cluster-c removed');
      await waitFor(
        'cluster-c unpublished',
        async () => {
          const entry = await kv.get('cluster-c');
          return entry === null || entry.operation !== 'PUT';
        },
        10_000,
      );
      expect((await kv.get('cluster-a'))?.json()).toMatchObject({ clusterId: 'cluster-a', region: 'eu-west' });
    } finally {
      await nc.close();
    }
    await waitFor(
      'cluster-c agent refused',
      () => Promise.resolve(/no longer a member/.test(fed.agent('cluster-c')?.logTail(50) ?? '')),
      10_000,
    );
    // The refusal reason reaches the hubs' metrics.
    const refusals = await Promise.all(
      fed.hubs.map(async (hub) => {
        // A hub the standby test killed answers nothing: it refused nothing either.
        const text = await fetch(`http://127.0.0.1:${hub.statusPort}/metrics`).then(
          (response) => response.text(),
          () => '',
        );
        return Number(
          /isthmus_peer_verification_failures_total\{[^}]*reason="NOT_A_MEMBER"[^}]*\} (\d+)/.exec(text)?.[1] ?? 0,
        );
      }),
    );
    expect(refusals.reduce((x, y) => x + y, 0)).toBeGreaterThan(0);
    const check = await fed.cli(['check'], 'cluster-c');
    console.info(`isthmus check (removed cluster):\n${check.stdout}`);
    expect(check.stdout).toMatch(/× membership: the hub refuses this cluster: cluster is not a member/);
  });

  it('the standby hub serves within 15 s of the leader dying', async () => {
    const leases = fed.hubCluster.kubeConfig().makeApiClient(CoordinationV1Api);
    const holder = (await leases.readNamespacedLease({ name: 'isthmus-hub', namespace: 'isthmus-system' })).spec
      ?.holderIdentity;
    expect(['hub-0', 'hub-1']).toContain(holder);
    const before = (await fed.memberCluster('cluster-a')).status?.lastHeartbeatTime ?? '';
    await fed.stopHub(holder as string, 'SIGKILL');
    const killedAt = Date.now();
    await waitFor(
      'a heartbeat served by the standby',
      async () => {
        const last = (await fed.memberCluster('cluster-a')).status?.lastHeartbeatTime ?? '';
        return last > before && Date.parse(last) > killedAt;
      },
      20_000,
      200,
    );
    const tookMs = Date.now() - killedAt;
    console.info(`standby served ${tookMs} ms after the leader was killed`);
    expect(tookMs).toBeLessThan(15_000);
    const newHolder = (await leases.readNamespacedLease({ name: 'isthmus-hub', namespace: 'isthmus-system' })).spec
      ?.holderIdentity;
    expect(newHolder).not.toBe(holder);
  });
});
