// The isthmus CLI run as a process against a kubeconfig, and the join flow built on it (a token
// from the hub, `isthmus join` in each member), for local federations of processes or containers.
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import type { KubeConfig } from '@kubernetes/client-node';
import { ensureNamespace } from '../../common/kube/index.ts';

const cliEntry = fileURLToPath(new URL('../../cli/isthmus.ts', import.meta.url));

export interface CliResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

export interface JoinToken {
  readonly token: string;
  readonly caPin: string;
  readonly hubEndpoints: string[];
}

/** Runs `isthmus <args> --kubeconfig <kubeconfigPath>`; a non-zero exit is a result, not an error. */
export function runCli(args: readonly string[], kubeconfigPath: string): Promise<CliResult> {
  return promisify(execFile)(process.execPath, [cliEntry, ...args, '--kubeconfig', kubeconfigPath], {
    timeout: 180_000,
  }).then(
    ({ stdout, stderr }) => ({ code: 0, stdout, stderr }),
    (err: { code?: number; stdout?: string; stderr?: string }) => ({
      code: typeof err.code === 'number' ? err.code : 1,
      stdout: err.stdout ?? '',
      stderr: err.stderr ?? '',
    }),
  );
}

/** Creates a token on the hub (its kubeconfig) and returns its join flags. */
export async function createToken(hubKubeconfig: string, flags: readonly string[] = []): Promise<JoinToken> {
  const result = await runCli(['token', 'create', ...flags, '-o', 'json'], hubKubeconfig);
  if (result.code !== 0) throw new Error(`token create failed: ${result.stderr}`);
  return JSON.parse(result.stdout) as JoinToken;
}

/** `isthmus join` in a member (its kubeconfig); waits for the outcome up to `wait`. */
export function joinMember(memberKubeconfig: string, token: JoinToken, wait = '60s'): Promise<CliResult> {
  return runCli(
    ['join', '--hub', token.hubEndpoints.join(','), '--token', token.token, '--ca-pin', token.caPin, '--wait', wait],
    memberKubeconfig,
  );
}

/** A member as the join flow needs it: its name, and its admin kubeconfig as a file and a client. */
export interface JoiningMember {
  readonly name: string;
  readonly kubeconfigPath: string;
  kubeConfig(): KubeConfig;
}

/**
 * Joins every member with one token (creating `namespace` in each first, when given); throws
 * naming a join that failed, with what `agentLog` says of that member's agent.
 */
export async function joinAllMembers(
  hubKubeconfig: string,
  members: readonly JoiningMember[],
  options: { namespace?: string; wait?: string; agentLog?: (member: string) => string } = {},
): Promise<void> {
  const token = await createToken(hubKubeconfig, ['--usages', String(members.length)]);
  for (const m of members) {
    if (options.namespace) await ensureNamespace(m.kubeConfig(), options.namespace);
    const result = await joinMember(m.kubeconfigPath, token, options.wait);
    if (result.code !== 0) {
      const log = options.agentLog?.(m.name);
      throw new Error(
        `join of ${m.name} exited ${result.code}: ${result.stderr}${log ? `\nits agent's last log lines:\n${log}` : ''}`,
      );
    }
  }
}
