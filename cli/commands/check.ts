// `isthmus check`, like `linkerd multicluster check`: named checks from the member cluster's
// side, each saying what is wrong and how to fix it.
import { X509Certificate } from 'node:crypto';
import { connect as natsConnect } from '@nats-io/transport-node';
import { describeError } from '../../common/errors.ts';
import { loadKubeConfig } from '../../common/kubeconfig.ts';
import { tlsHandshake } from '../../common/tls-handshake.ts';
import { parseBundlePem, rootPin } from '../../common/pki/index.ts';
import { readAgentStatus, type AgentStatus } from '../../spoke-agent/agent-status.ts';
import { AgentSecrets, type AgentCredentials } from '../../spoke-agent/credentials.ts';
import { discoverHubCa } from '../../spoke-agent/hub-discovery.ts';
import { kubeconfigOption, stringValue, type Command } from '../command.ts';
import { render, type Column } from '../output.ts';

export interface CheckResult {
  readonly name: string;
  readonly ok: boolean;
  readonly detail: string;
  /** How to fix it, when not ok. */
  readonly hint?: string;
}

/** What the first check reads once for all the others. */
interface CheckState {
  creds: AgentCredentials | undefined;
  status: AgentStatus | undefined;
}

type Check = (state: CheckState) => Omit<CheckResult, 'name'> | Promise<Omit<CheckResult, 'name'>>;

function tlsReachable(endpoint: string, creds: AgentCredentials): Promise<unknown> {
  // Chain and client certificate are checked; the hub's SPIFFE identity is the agent's business.
  return tlsHandshake(
    endpoint,
    {
      ca: creds.trustBundlePem,
      cert: creds.agentCertificate,
      key: creds.agentKey,
      checkServerIdentity: () => undefined,
    },
    3_000,
  );
}

const needsCredentials = {
  ok: false,
  detail: 'no agent credentials',
  hint: 'join first: `isthmus token create` on the hub, then `isthmus join`',
} as const;

export function memberChecks(kcPath: string | undefined, namespace: string): [string, Check][] {
  const kc = loadKubeConfig(kcPath);
  return [
    [
      'agent credentials',
      async (state) => {
        [state.creds, state.status] = await Promise.all([
          new AgentSecrets(kc, namespace).loadCredentials(),
          readAgentStatus(kc, namespace),
        ]);
        return state.creds
          ? { ok: true, detail: `cluster ${state.creds.clusterId}, trust domain ${state.creds.trustDomain}` }
          : {
              ok: false,
              detail: `no Secret ${namespace}/isthmus-agent-credentials`,
              hint: 'is the agent running, and did `isthmus join` succeed?',
            };
      },
    ],
    [
      'hub reachable',
      async ({ creds }) => {
        if (!creds) return needsCredentials;
        const results = await Promise.allSettled(creds.hubEndpoints.map((e) => tlsReachable(e, creds)));
        const up = creds.hubEndpoints.filter((_, i) => results[i]?.status === 'fulfilled');
        const down = creds.hubEndpoints.filter((_, i) => results[i]?.status === 'rejected');
        return up.length > 0
          ? { ok: true, detail: `${up.join(', ')} answer mTLS${down.length ? `; ${down.join(', ')} do not` : ''}` }
          : {
              ok: false,
              detail: `no hub endpoint answers (${down.join(', ')})`,
              hint: 'check the hub pods and the network path to the endpoints',
            };
      },
    ],
    [
      'CA pin',
      async ({ creds }) => {
        if (!creds) return needsCredentials;
        const bundle = parseBundlePem(creds.trustBundlePem, creds.trustDomain, creds.trustBundleSequence);
        const pins = new Set(bundle.roots.map((r) => rootPin(r)));
        for (const endpoint of creds.hubEndpoints) {
          for (const pin of pins) {
            const found = await discoverHubCa(endpoint, pin).then(
              () => true,
              () => false,
            );
            if (found) return { ok: true, detail: `the hub presents a CA in the trust bundle (${pin.slice(0, 23)}…)` };
          }
        }
        return {
          ok: false,
          detail: "the hub presents a CA that is not in this cluster's trust bundle",
          hint: 'the hub root changed outside a rotation; re-join the cluster',
        };
      },
    ],
    [
      'membership',
      ({ creds, status }) => {
        if (!creds) return needsCredentials;
        if (!status) return { ok: false, detail: 'the agent has not reported yet', hint: 'is the agent running?' };
        if (status.phase === 'Removed')
          return {
            ok: false,
            detail: `the hub refuses this cluster: ${status.lastError}`,
            hint: 'the cluster was removed; create a token and join again under a new or freed cluster id',
          };
        return status.phase === 'Member'
          ? { ok: true, detail: `member ${status.clusterId}` }
          : { ok: false, detail: `agent phase ${status.phase}: ${status.lastError}`, hint: 'see the agent log' };
      },
    ],
    [
      'certificate expiry',
      ({ creds }) => {
        if (!creds) return needsCredentials;
        const problems: string[] = [];
        const details: string[] = [];
        for (const [name, pem] of [
          ['agent certificate', creds.agentCertificate],
          ['intermediate', creds.intermediateCertificate],
        ] as const) {
          const cert = new X509Certificate(pem);
          const [from, to] = [Date.parse(cert.validFrom), Date.parse(cert.validTo)];
          const left = to - Date.now();
          details.push(`${name} until ${new Date(to).toISOString()}`);
          if (left <= 0) problems.push(`${name} expired`);
          else if (left < (to - from) * 0.1)
            problems.push(`${name} has under 10% of its lifetime left (renewal is failing?)`);
        }
        return problems.length === 0
          ? { ok: true, detail: details.join('; ') }
          : {
              ok: false,
              detail: problems.join('; '),
              hint: 'the agent renews at half-life: check its log and hub reachability',
            };
      },
    ],
    [
      'heartbeat freshness',
      ({ creds, status }) => {
        if (!creds) return needsCredentials;
        const last = status?.lastHeartbeatTime ? Date.parse(status.lastHeartbeatTime) : 0;
        const limitMs = 3 * (status?.heartbeatIntervalSeconds ?? 10) * 1000;
        const ageMs = Date.now() - last;
        if (last === 0)
          return { ok: false, detail: 'no heartbeat has succeeded', hint: 'is the agent running? see its log' };
        return ageMs <= limitMs
          ? { ok: true, detail: `last heartbeat ${Math.round(ageMs / 1000)} s ago` }
          : {
              ok: false,
              detail: `last heartbeat ${Math.round(ageMs / 1000)} s ago (limit ${limitMs / 1000} s)${status?.lastError ? `: ${status.lastError}` : ''}`,
              hint: 'the hub may be down or unreachable, or the agent stopped',
            };
      },
    ],
    [
      'NATS reachable',
      async ({ creds }) => {
        if (!creds) return needsCredentials;
        if (creds.natsUrls.length === 0)
          return { ok: false, detail: 'the hub gave no NATS URL', hint: 'set nats.urls in the hub configuration' };
        try {
          const nc = await natsConnect({
            servers: creds.natsUrls,
            tls: { ca: creds.trustBundlePem, cert: creds.agentCertificate, key: creds.agentKey },
            reconnect: false,
            timeout: 3_000,
          });
          const server = nc.getServer();
          await nc.close();
          return { ok: true, detail: `connected to ${server} with the agent certificate` };
        } catch (err) {
          return {
            ok: false,
            detail: `${creds.natsUrls.join(', ')}: ${describeError(err)}`,
            hint: 'NATS must trust the federation root and be reachable from this cluster',
          };
        }
      },
    ],
  ];
}

const columns: Column<CheckResult>[] = [
  { header: 'CHECK', value: (r) => `${r.ok ? '√' : '×'} ${r.name}` },
  { header: 'DETAIL', value: (r) => (r.ok ? r.detail : `${r.detail}${r.hint ? `\n      fix: ${r.hint}` : ''}`) },
];

export const check: Command = {
  path: ['check'],
  summary: "walk named checks of a member cluster's federation health and say how to fix what fails",
  usage: 'isthmus check --kubeconfig <member kubeconfig>',
  options: { ...kubeconfigOption },
  run: async (ctx) => {
    const state: CheckState = { creds: undefined, status: undefined };
    const results: CheckResult[] = [];
    for (const [name, run] of memberChecks(
      stringValue(ctx, 'kubeconfig'),
      stringValue(ctx, 'namespace') ?? 'isthmus-system',
    )) {
      // A check that throws (synchronously or not) becomes a failed check.
      const result = await Promise.resolve()
        .then(() => run(state))
        .catch((err: unknown) => ({ ok: false, detail: describeError(err), hint: 'see the error' }));
      results.push({ name, ...result });
    }
    if (ctx.output === 'table') {
      for (const r of results)
        ctx.stdout(`${r.ok ? '√' : '×'} ${r.name}: ${r.detail}\n${r.ok || !r.hint ? '' : `    fix: ${r.hint}\n`}`);
      const failed = results.filter((r) => !r.ok).length;
      ctx.stdout(failed === 0 ? '\nStatus check results are √\n' : `\n${failed} check(s) failed\n`);
    } else {
      ctx.stdout(render(ctx.output, results, results, columns));
    }
    return results.every((r) => r.ok) ? 0 : 1;
  },
};
