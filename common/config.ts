import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import type { z } from 'zod';
import { IsthmusError, describeError } from './errors.ts';

/** Turns zod issues into one line per field, e.g. `trustDomain: must be a lower-case DNS name`. */
export function formatIssues(error: z.ZodError): string {
  return error.issues
    .map((issue) => `${issue.path.length > 0 ? issue.path.join('.') : '(root)'}: ${issue.message}`)
    .join('; ');
}

/** Parses `input` with `schema` or throws ISTHMUS_INPUT_INVALID naming each bad field. */
export function parseInput<S extends z.ZodType>(schema: S, input: unknown, what: string): z.output<S> {
  const result = schema.safeParse(input);
  if (!result.success) throw new IsthmusError('ISTHMUS_INPUT_INVALID', `${what}: ${formatIssues(result.error)}`);
  return result.data;
}

/**
 * Loads a component's configuration: an optional YAML/JSON file (`--config <path>`), then
 * `--set key.path=value` overrides, validated by `schema` (which carries the embedded defaults).
 */
export function loadConfig<S extends z.ZodType>(schema: S, argv: readonly string[]): z.output<S> {
  let raw: Record<string, unknown> = {};
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const value = argv[i + 1];
    if (arg === '--config' && value !== undefined) {
      try {
        raw = (parseYaml(readFileSync(value, 'utf8')) as Record<string, unknown> | null) ?? {};
      } catch (err) {
        throw new IsthmusError('ISTHMUS_CONFIG_INVALID', `cannot read ${value}: ${describeError(err)}`);
      }
      i++;
    } else if (arg === '--set' && value !== undefined) {
      const eq = value.indexOf('=');
      if (eq <= 0) throw new IsthmusError('ISTHMUS_CONFIG_INVALID', `--set expects key=value, got "${value}"`);
      setPath(raw, value.slice(0, eq).split('.'), parseScalar(value.slice(eq + 1)));
      i++;
    } else {
      throw new IsthmusError(
        'ISTHMUS_CONFIG_INVALID',
        `unknown argument "${arg}" (use --config <file> or --set key=value)`,
      );
    }
  }
  const result = schema.safeParse(raw);
  if (!result.success) throw new IsthmusError('ISTHMUS_CONFIG_INVALID', formatIssues(result.error));
  return result.data;
}

function parseScalar(text: string): unknown {
  try {
    return parseYaml(text) as unknown;
  } catch {
    return text;
  }
}

function setPath(target: Record<string, unknown>, path: string[], value: unknown): void {
  let node = target;
  for (const key of path.slice(0, -1)) {
    const next = node[key];
    if (typeof next !== 'object' || next === null) node[key] = {};
    node = node[key] as Record<string, unknown>;
  }
  node[path[path.length - 1] as string] = value;
}
