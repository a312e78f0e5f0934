// `-o json|yaml|table` for every CLI command that lists things.
import { stringify as stringifyYaml } from 'yaml';
import { z } from 'zod';

export const outputFormatSchema = z.enum(['table', 'json', 'yaml']);
export type OutputFormat = z.infer<typeof outputFormatSchema>;

export interface Column<T> {
  readonly header: string;
  readonly value: (row: T) => string;
}

export function renderTable<T>(rows: readonly T[], columns: readonly Column<T>[]): string {
  const cells = [columns.map((c) => c.header), ...rows.map((row) => columns.map((c) => c.value(row)))];
  const widths = columns.map((_, i) => Math.max(...cells.map((line) => (line[i] ?? '').length)));
  return (
    cells
      .map((line) => line.map((cell, i) => (i === line.length - 1 ? cell : cell.padEnd(widths[i] ?? 0))).join('   '))
      .join('\n') + '\n'
  );
}

/** Renders `data` (json/yaml) or `rows` through `columns` (table). */
export function render<T>(
  format: OutputFormat,
  data: unknown,
  rows: readonly T[],
  columns: readonly Column<T>[],
): string {
  if (format === 'json') return JSON.stringify(data, null, 2) + '\n';
  if (format === 'yaml') return stringifyYaml(data);
  return renderTable(rows, columns);
}

/** "3m", "2h", "5d": kubectl-style age. */
export function age(since: string | undefined, now = Date.now()): string {
  if (!since) return '<unknown>';
  const seconds = Math.max(0, Math.round((now - new Date(since).getTime()) / 1000));
  if (seconds < 120) return `${seconds}s`;
  if (seconds < 7200) return `${Math.round(seconds / 60)}m`;
  if (seconds < 172_800) return `${Math.round(seconds / 3600)}h`;
  return `${Math.round(seconds / 86_400)}d`;
}
