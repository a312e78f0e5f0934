import { durationSchema } from '../../common/duration.ts';
import { IsthmusError } from '../../common/errors.ts';
import { readHubInfo } from '../../hub/hub-info.ts';
import { TokenStore, type TokenRecord } from '../../hub/tokens.ts';
import { kubeconfigOption, stringValue, type Command } from '../command.ts';
import { loadKubeConfig } from '../../common/kubeconfig.ts';
import { render, type Column } from '../output.ts';

const tokenColumns: Column<TokenRecord>[] = [
  { header: 'ID', value: (t) => t.id },
  { header: 'EXPIRES', value: (t) => t.expiresAt.toISOString() },
  { header: 'USES LEFT', value: (t) => `${t.usesLeft}/${t.maxUses}` },
  { header: 'REVOKED', value: (t) => String(t.revoked) },
  { header: 'DESCRIPTION', value: (t) => t.description },
];

export const tokenCreate: Command = {
  path: ['token', 'create'],
  summary: 'create a bootstrap token and print the join command for a member cluster',
  usage: 'isthmus token create [--ttl 24h] [--usages 1] [--description text] --kubeconfig <hub kubeconfig>',
  options: {
    ...kubeconfigOption,
    ttl: { type: 'string', default: '24h' },
    usages: { type: 'string', default: '1' },
    description: { type: 'string' },
  },
  run: async (ctx) => {
    const ttl = durationSchema.safeParse(stringValue(ctx, 'ttl'));
    if (!ttl.success) throw new IsthmusError('ISTHMUS_INPUT_INVALID', `--ttl: ${ttl.error.issues[0]?.message}`);
    const usages = Number(stringValue(ctx, 'usages'));
    const kc = loadKubeConfig(stringValue(ctx, 'kubeconfig'));
    const namespace = stringValue(ctx, 'namespace') ?? 'isthmus-system';
    const info = await readHubInfo(kc, namespace);
    const { token, record } = await new TokenStore(kc, namespace).create({
      ttlMs: ttl.data,
      maxUses: usages,
      description: stringValue(ctx, 'description'),
    });
    const joinCommand = `isthmus join --hub ${info.endpoints.join(',')} --token ${token} --ca-pin ${info.caPin} --kubeconfig <member kubeconfig>`;
    if (ctx.output === 'table') {
      ctx.stdout(
        `Token ${record.id} created; valid until ${record.expiresAt.toISOString()} for ${record.maxUses} join(s).\n\nJoin a cluster with:\n\n  ${joinCommand}\n`,
      );
    } else {
      ctx.stdout(
        render(
          ctx.output,
          {
            token,
            id: record.id,
            expiresAt: record.expiresAt,
            maxUses: record.maxUses,
            hubEndpoints: info.endpoints,
            caPin: info.caPin,
            joinCommand,
          },
          [],
          [],
        ),
      );
    }
    return 0;
  },
};

export const tokenList: Command = {
  path: ['token', 'list'],
  summary: 'list bootstrap tokens (never their secrets)',
  usage: 'isthmus token list --kubeconfig <hub kubeconfig>',
  options: { ...kubeconfigOption },
  run: async (ctx) => {
    const kc = loadKubeConfig(stringValue(ctx, 'kubeconfig'));
    const tokens = await new TokenStore(kc, stringValue(ctx, 'namespace') ?? 'isthmus-system').list();
    ctx.stdout(render(ctx.output, tokens, tokens, tokenColumns));
    return 0;
  },
};

export const tokenRevoke: Command = {
  path: ['token', 'revoke'],
  summary: 'revoke a bootstrap token so no further cluster can join with it',
  usage: 'isthmus token revoke <token id> --kubeconfig <hub kubeconfig>',
  options: { ...kubeconfigOption },
  run: async (ctx) => {
    const id = ctx.positionals[0];
    if (!id) throw new IsthmusError('ISTHMUS_INPUT_INVALID', 'name the token id to revoke');
    const kc = loadKubeConfig(stringValue(ctx, 'kubeconfig'));
    await new TokenStore(kc, stringValue(ctx, 'namespace') ?? 'isthmus-system').revoke(id);
    ctx.stdout(`token ${id} revoked\n`);
    return 0;
  },
};
