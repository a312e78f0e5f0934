// Reading the isthmus_catalog bucket whole: a new leader recovers its state from it, and the
// leader re-reads it now and then to repair writes it did not make (a former leader's late put).
// Every value comes with its revision, so the writes that follow are fenced on it.
import type { KV } from '@nats-io/kv';
import { catalogEntrySchema, catalogKey, parseCatalogTombstone, type CatalogEntry } from '../../common/catalog.ts';
import { describeError } from '../../common/errors.ts';
import type { Logger } from '../../common/logger.ts';

/** A key's value as the bucket holds it, with the revision a fenced write must name. */
export interface StoredValue {
  readonly value: string;
  readonly revision: number;
}

export interface StoredCatalog {
  /** The valid entries, parsed. */
  readonly entries: readonly CatalogEntry[];
  /** Every stored key's value: canonical JSON for a valid entry, the raw value otherwise (tombstones included). */
  readonly values: ReadonlyMap<string, StoredValue>;
}

/** The current value of every key (the bucket keeps one revision per key). */
async function readValues(kv: KV): Promise<Map<string, StoredValue>> {
  const values = new Map<string, StoredValue>();
  for await (const entry of await kv.history()) {
    if (entry.operation === 'PUT') values.set(entry.key, { value: entry.string(), revision: entry.revision });
    else values.delete(entry.key);
  }
  return values;
}

/** A stored value read the way the publisher compares it: canonical JSON for a valid entry, the raw value otherwise. */
export function canonicalValue(
  key: string,
  raw: string,
  log: Logger,
): { readonly value: string; readonly entry?: CatalogEntry } {
  let json: unknown;
  try {
    json = JSON.parse(raw);
  } catch (err) {
    log.warn({ key, err: describeError(err) }, 'catalog entry is not JSON; it will be rewritten');
    return { value: raw };
  }
  if (parseCatalogTombstone(key, json)) return { value: raw };
  const parsed = catalogEntrySchema.safeParse(json);
  if (!parsed.success || catalogKey(parsed.data.namespace, parsed.data.name) !== key) {
    log.warn({ key, issues: parsed.error?.issues }, 'catalog entry is invalid; it will be rewritten');
    return { value: raw };
  }
  // Canonical: key order as the schema lists them, defaults filled in, as resolution writes it.
  return { value: JSON.stringify(parsed.data), entry: parsed.data };
}

/** Reads and validates the bucket; entries that do not parse are logged and later overwritten or deleted. */
export async function readCatalog(kv: KV, log: Logger): Promise<StoredCatalog> {
  const entries: CatalogEntry[] = [];
  const values = new Map<string, StoredValue>();
  for (const [key, stored] of await readValues(kv)) {
    const { value, entry } = canonicalValue(key, stored.value, log);
    values.set(key, { value, revision: stored.revision });
    if (entry) entries.push(entry);
  }
  return { entries, values };
}
