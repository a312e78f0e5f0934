import { setTimeout as sleep } from 'node:timers/promises';
import { IsthmusError } from '../../common/errors.ts';
import { loadKubeConfig } from '../../common/kubeconfig.ts';
import { ensureNamespace } from '../../common/kube/index.ts';
import { parseInput } from '../../common/config.ts';
import { durationSchema } from '../../common/duration.ts';
import { AgentSecrets, bootstrapSchema } from '../../spoke-agent/credentials.ts';
import { kubeconfigOption, stringValue, type Command } from '../command.ts';

export const join: Command = {
  path: ['join'],
  summary: 'ask the agent in a member cluster to join the hub, and wait for the outcome',
  usage:
    'isthmus join --hub <host:port>[,<host:port>] --token <token> --ca-pin sha256:<hex> --kubeconfig <member kubeconfig> [--wait 2m]',
  options: {
    ...kubeconfigOption,
    hub: { type: 'string' },
    token: { type: 'string' },
    'ca-pin': { type: 'string' },
    wait: { type: 'string', default: '2m' },
  },
  run: async (ctx) => {
    const bootstrap = parseInput(
      bootstrapSchema,
      {
        hubEndpoints: (stringValue(ctx, 'hub') ?? '').split(',').filter(Boolean),
        token: stringValue(ctx, 'token'),
        caPin: stringValue(ctx, 'ca-pin'),
      },
      'join flags (--hub, --token, --ca-pin)',
    );
    const wait = durationSchema.safeParse(stringValue(ctx, 'wait'));
    if (!wait.success) throw new IsthmusError('ISTHMUS_INPUT_INVALID', `--wait: ${wait.error.issues[0]?.message}`);
    const kc = loadKubeConfig(stringValue(ctx, 'kubeconfig'));
    const namespace = stringValue(ctx, 'namespace') ?? 'isthmus-system';
    await ensureNamespace(kc, namespace);
    const secrets = new AgentSecrets(kc, namespace);
    await secrets.saveBootstrap(bootstrap);
    ctx.stdout(`Join request written to ${namespace}/isthmus-join; waiting for the agent...\n`);
    const deadline = Date.now() + wait.data;
    let lastMessage = '';
    while (Date.now() < deadline) {
      const outcome = await secrets.joinOutcome();
      // The agent deletes the join request (with its token) once joined.
      const joined =
        outcome === undefined && !(await secrets.hasBootstrap()) ? await secrets.loadCredentials() : undefined;
      if (joined) {
        ctx.stdout(`cluster ${joined.clusterId} joined the federation (trust domain ${joined.trustDomain})\n`);
        return 0;
      }
      if (outcome?.status === 'Joined') {
        ctx.stdout(`${outcome.message}\n`);
        return 0;
      }
      if (outcome?.status === 'Failed') throw new IsthmusError('ISTHMUS_JOIN_REFUSED', outcome.message);
      if (outcome && outcome.message !== lastMessage) {
        lastMessage = outcome.message;
        ctx.stdout(`  still joining: ${outcome.message}\n`);
      }
      await sleep(250);
    }
    throw new IsthmusError(
      'ISTHMUS_TIMEOUT',
      `no answer from the agent in ${namespace} within ${stringValue(ctx, 'wait')}: is the agent running in this cluster? (${lastMessage || 'no progress reported'})`,
    );
  },
};
