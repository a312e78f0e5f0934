#!/usr/bin/env node
// The isthmus CLI: one entry point, subcommands, --help everywhere, -o json|yaml|table.
import { parseArgs } from 'node:util';
import { describeError, isIsthmusError } from '../common/errors.ts';
import { isHubCallError } from '../common/hub-api/status.ts';
import type { Command, CommandContext } from './command.ts';
import { commands } from './commands/index.ts';
import { outputFormatSchema } from './output.ts';

const globalOptions = {
  output: { type: 'string', short: 'o', default: 'table' },
  help: { type: 'boolean', short: 'h', default: false },
} as const;

function overview(): string {
  const width = Math.max(...commands.map((c) => c.path.join(' ').length));
  return [
    'isthmus: multicluster federation for Kubernetes',
    '',
    'Usage: isthmus <command> [flags]',
    '',
    'Commands:',
    ...commands.map((c) => `  ${c.path.join(' ').padEnd(width)}   ${c.summary}`),
    '',
    'Global flags: -o, --output table|json|yaml   -h, --help',
    'Run `isthmus <command> --help` for the flags of a command.',
    '',
  ].join('\n');
}

function help(command: Command): string {
  const flags = Object.entries(command.options).map(([name, spec]) => {
    const def = 'default' in spec && spec.default !== undefined ? ` (default ${JSON.stringify(spec.default)})` : '';
    return `  --${name}${spec.type === 'string' ? ' <value>' : ''}${def}`;
  });
  return [
    `isthmus ${command.path.join(' ')}: ${command.summary}`,
    '',
    `Usage: ${command.usage}`,
    '',
    'Flags:',
    ...flags,
    '  -o, --output table|json|yaml',
    '  -h, --help',
    '',
  ].join('\n');
}

function findCommand(words: string[]): { command: Command; rest: string[] } | undefined {
  const matches = commands
    .filter((c) => c.path.every((w, i) => words[i] === w))
    .sort((a, b) => b.path.length - a.path.length);
  const command = matches[0];
  return command ? { command, rest: words.slice(command.path.length) } : undefined;
}

export async function main(argv: string[]): Promise<number> {
  // Command words come first: `isthmus cluster accept b --kubeconfig hub.yaml`.
  const firstFlag = argv.findIndex((a) => a.startsWith('-'));
  const words = firstFlag < 0 ? argv : argv.slice(0, firstFlag);
  const found = findCommand(words);
  if (!found) {
    const asked = argv.includes('--help') || argv.includes('-h') || argv.length === 0;
    process[asked ? 'stdout' : 'stderr'].write((asked ? '' : `unknown command "${words.join(' ')}"\n\n`) + overview());
    return asked ? 0 : 2;
  }
  const { command } = found;
  let parsed;
  try {
    parsed = parseArgs({
      args: argv.slice(command.path.length),
      options: { ...globalOptions, ...command.options },
      allowPositionals: true,
      strict: true,
    });
  } catch (err) {
    process.stderr.write(`isthmus ${command.path.join(' ')}: ${describeError(err)}\n\n${help(command)}`);
    return 2;
  }
  if (parsed.values.help) {
    process.stdout.write(help(command));
    return 0;
  }
  const output = outputFormatSchema.safeParse(parsed.values.output);
  if (!output.success) {
    process.stderr.write(`isthmus: --output must be table, json or yaml\n`);
    return 2;
  }
  const context: CommandContext = {
    values: parsed.values,
    positionals: parsed.positionals,
    output: output.data,
    stdout: (text) => process.stdout.write(text),
  };
  try {
    return await command.run(context);
  } catch (err) {
    const message = describeError(err);
    const code = (isIsthmusError(err) || isHubCallError(err)) && !message.includes('[ISTHMUS_') ? ` [${err.code}]` : '';
    process.stderr.write(`isthmus ${command.path.join(' ')}: ${message}${code}\n`);
    return isIsthmusError(err, 'ISTHMUS_CONFIG_INVALID') || isIsthmusError(err, 'ISTHMUS_INPUT_INVALID') ? 2 : 1;
  }
}

process.exitCode = await main(process.argv.slice(2));
