// Where the hub publishes the catalog (DESIGN §5): the shared bucket holds every service's shared
// view under its catalog key; a member that some export scopes a service to has its own bucket,
// holding its own view under the same key. An item names one key of one of these buckets: the
// catalog key itself for the shared bucket, "<member>/<key>" for a member's bucket ("/" is in no
// DNS label, so neither part can be mistaken for the other).
import { CATALOG_BUCKET, scopedCatalogBucket } from '../../common/catalog.ts';

export interface CatalogItem {
  /** The member whose bucket holds the key; undefined for the shared bucket. */
  readonly reader: string | undefined;
  readonly key: string;
}

export function scopedItem(reader: string, key: string): string {
  return `${reader}/${key}`;
}

export function parseItem(item: string): CatalogItem {
  const slash = item.indexOf('/');
  return slash < 0 ? { reader: undefined, key: item } : { reader: item.slice(0, slash), key: item.slice(slash + 1) };
}

export function bucketOf(reader: string | undefined): string {
  return reader === undefined ? CATALOG_BUCKET : scopedCatalogBucket(reader);
}
