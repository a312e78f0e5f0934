// A CLI command: its flags (node:util parseArgs), its help text and what it does.
import type { ParseArgsConfig } from 'node:util';
import type { OutputFormat } from './output.ts';

export type OptionSpecs = NonNullable<ParseArgsConfig['options']>;

export interface CommandContext {
  readonly values: Record<string, string | boolean | string[] | undefined>;
  readonly positionals: string[];
  readonly output: OutputFormat;
  readonly stdout: (text: string) => void;
}

export interface Command {
  /** Words that select the command, e.g. ["cluster", "list"]. */
  readonly path: readonly string[];
  readonly summary: string;
  readonly usage: string;
  readonly options: OptionSpecs;
  /** Resolves to the process exit code. */
  readonly run: (context: CommandContext) => Promise<number>;
}

export const kubeconfigOption = {
  kubeconfig: { type: 'string' },
  namespace: { type: 'string', default: 'isthmus-system' },
} as const satisfies OptionSpecs;

export function stringValue(context: CommandContext, name: string): string | undefined {
  const value = context.values[name];
  return typeof value === 'string' ? value : undefined;
}
