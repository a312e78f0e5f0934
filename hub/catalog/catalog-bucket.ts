// Reading the isthmus_catalog bucket whole: a new leader recovers its state from it, and the
// leader re-reads it now and then to repair writes it did not make (a former leader's late put).
import type { KV } from '@nats-io/kv';
import { catalogEntrySchema, catalogKey, type CatalogEntry } from '../../common/catalog.ts';
import { describeError } from '../../common/errors.ts';
import type { Logger } from '../../common/logger.ts';

export interface StoredCatalog {
  /** The valid entries, parsed. */
  readonly entries: readonly CatalogEntry[];
  /** Every stored key's value: canonical JSON for a valid entry, the raw value otherwise. */
  readonly values: ReadonlyMap<string, string>;
}

/** The current value of every key (the bucket keeps one revision per key). */
async function readValues(kv: KV): Promise<Map<string, string>> {
  const values = new Map<string, string>();
  for await (const entry of await kv.history()) {
    if (entry.operation === 'PUT') values.set(entry.key, entry.string());
    else values.delete(entry.key);
  }
  return values;
}

/** Reads and validates the bucket; entries that do not parse are logged and later overwritten or deleted. */
export async function readCatalog(kv: KV, log: Logger): Promise<StoredCatalog> {
  const entries: CatalogEntry[] = [];
  const values = new Map<string, string>();
  for (const [key, raw] of await readValues(kv)) {
    values.set(key, raw);
    let parsed: ReturnType<typeof catalogEntrySchema.safeParse>;
    try {
      parsed = catalogEntrySchema.safeParse(JSON.parse(raw));
    } catch (err) {
      log.warn({ key, err: describeError(err) }, 'catalog entry is not JSON; it will be rewritten');
      continue;
    }
    if (!parsed.success || catalogKey(parsed.data.namespace, parsed.data.name) !== key) {
      log.warn({ key, issues: parsed.error?.issues }, 'catalog entry is invalid; it will be rewritten');
      continue;
    }
    entries.push(parsed.data);
    // Canonical: key order as the schema lists them, defaults filled in, as resolution writes it.
    values.set(key, JSON.stringify(parsed.data));
  }
  return { entries, values };
}
