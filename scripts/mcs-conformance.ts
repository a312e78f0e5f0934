// Runs the upstream MCS conformance suite (kubernetes-sigs/mcs-api, conformance/, ginkgo) against a
// local federation: real apiservers, NATS, the hub, an agent and an east-west gateway per member
// (two members, each in its own network namespace, so imported EndpointSlices name a gateway
// listener). There is no kubelet or controller-manager here, so a stand-in marks every Pod Running
// and creates each namespace's `default` ServiceAccount. The connectivity and DNS specs are
// skipped (they need real pods). The suite is not part of the repository: build it beside it and
// point MCS_CONFORMANCE_TEST at the binary:
//   (cd <mcs-api checkout>/conformance && go test -c -vet=off -o /tmp/mcs-conformance.test .)
//   MCS_CONFORMANCE_TEST=/tmp/mcs-conformance.test node scripts/mcs-conformance.ts [extra ginkgo flags]
// The suite runs in a temporary directory (it writes report.html and report.yaml there, printed at
// the end); the process exits with the suite's exit code. Everything started is removed.
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { CoreV1Api, type KubeConfig } from '@kubernetes/client-node';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import { isAlreadyExists, isNotFound } from '../common/kube/index.ts';
import { Federation, type LocalCluster } from '../local/index.ts';

const SKIPPED = '!DNS && !Connectivity';
const STAND_IN_PERIOD_MS = 250;

const binary = process.env['MCS_CONFORMANCE_TEST'];
if (!binary) {
  process.stderr.write(
    'MCS_CONFORMANCE_TEST must name the compiled conformance suite (go test -c in mcs-api/conformance)\n',
  );
  process.exit(2);
}

/** One kubeconfig with every member's context (named after the cluster), as the suite's --contexts wants. */
function mergedKubeconfig(members: readonly LocalCluster[]): string {
  const parts = members.map(
    (m) => parseYaml(m.kubeconfigYaml) as { clusters: unknown[]; contexts: unknown[]; users: unknown[] },
  );
  return stringifyYaml({
    apiVersion: 'v1',
    kind: 'Config',
    clusters: parts.flatMap((p) => p.clusters),
    contexts: parts.flatMap((p) => p.contexts),
    users: parts.flatMap((p) => p.users),
    'current-context': members[0]?.name,
  });
}

/** What a kubelet and the ServiceAccount controller would do, as far as the suite needs: Pods Running, `default` ServiceAccounts. */
async function standIn(kc: KubeConfig, signal: AbortSignal): Promise<void> {
  const core = kc.makeApiClient(CoreV1Api);
  let podIp = 1;
  while (!signal.aborted) {
    try {
      for (const ns of (await core.listNamespace()).items) {
        const namespace = ns.metadata?.name ?? '';
        if (ns.status?.phase === 'Terminating') continue;
        // One namespace refusing (e.g. being deleted) must not hold up the others.
        await core.readNamespacedServiceAccount({ name: 'default', namespace }).catch(async (err: unknown) => {
          if (!isNotFound(err)) return;
          await core
            .createNamespacedServiceAccount({ namespace, body: { metadata: { name: 'default' } } })
            .catch((e: unknown) => {
              if (!isAlreadyExists(e))
                process.stderr.write(`stand-in: service account in ${namespace}: ${String(e)}\n`);
            });
        });
      }
      for (const pod of (await core.listPodForAllNamespaces()).items) {
        if (pod.status?.phase === 'Running' || pod.metadata?.deletionTimestamp) continue;
        const ip = `10.244.0.${(podIp++ % 250) + 2}`;
        const now = new Date();
        pod.status = {
          ...pod.status,
          phase: 'Running',
          podIP: ip,
          podIPs: [{ ip }],
          startTime: now,
          conditions: [{ type: 'Ready', status: 'True', lastTransitionTime: now }],
        };
        await core
          .replaceNamespacedPodStatus({
            name: pod.metadata?.name ?? '',
            namespace: pod.metadata?.namespace ?? '',
            body: pod,
          })
          .catch((e: unknown) => {
            if (!isNotFound(e)) process.stderr.write(`stand-in: pod status: ${String(e)}\n`);
          });
      }
    } catch (err) {
      if (!signal.aborted) process.stderr.write(`stand-in: ${String(err)}\n`);
    }
    await delay(STAND_IN_PERIOD_MS, undefined, { signal }).catch(() => undefined);
  }
}

function runSuite(args: readonly string[], cwd: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(binary as string, args, { cwd, stdio: 'inherit' });
    child.on('error', reject);
    child.on('exit', (code, signal) => resolve(code ?? (signal ? 1 : 0)));
  });
}

async function main(): Promise<number> {
  await using fed = await Federation.start({ members: 2, gateways: true });
  const token = await fed.createToken(['--usages', String(fed.members.length)]);
  for (const member of fed.members) {
    const joined = await fed.join(member.name, token);
    if (joined.code !== 0) throw new Error(`${member.name} did not join: ${joined.stderr}`);
  }
  await Promise.all(fed.members.map((m) => fed.gatewayReady(m.name)));
  const stop = new AbortController();
  const standIns = fed.members.map((m) => standIn(m.kubeConfig(), stop.signal));
  try {
    const dir = mkdtempSync(join(tmpdir(), 'mcs-conformance-'));
    const kubeconfig = join(dir, 'kubeconfig');
    writeFileSync(kubeconfig, mergedKubeconfig(fed.members), { mode: 0o600 });
    const args = [
      `-kubeconfig=${kubeconfig}`,
      `-contexts=${fed.members.map((m) => m.name).join(',')}`,
      `-ginkgo.label-filter=${SKIPPED}`,
      '-ginkgo.v',
      '-test.timeout=60m',
      '-project=isthmus',
      ...process.argv.slice(2),
    ];
    process.stdout.write(`running ${binary} ${args.join(' ')} (in ${dir})\n`);
    const code = await runSuite(args, dir);
    process.stdout.write(`suite exited ${code}; reports in ${dir}\n`);
    return code;
  } finally {
    stop.abort();
    await Promise.all(standIns);
  }
}

process.exitCode = await main();
