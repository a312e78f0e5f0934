import { describe, expect, it } from 'vitest';
import { catalogEntrySchema, type CatalogEntry } from '../../common/catalog.ts';
import { isIsthmusError } from '../../common/errors.ts';
import type { ExportedService } from '../../common/hub-api/index.ts';
import { CatalogState, type CatalogStateOptions } from './catalog-state.ts';

/** Conflict type of an export left out for size (catalog-state.ts ENTRY_TOO_LARGE). */
const ENTRY_TOO_LARGE = 'EntryTooLarge';
import { exported, locality } from './catalog.testkit.ts';
import type { ClusterLocality } from './resolution.ts';

function membersOf(ids: string[]): Map<string, ClusterLocality> {
  return new Map(ids.map((id) => [id, locality(id)]));
}

/** The hub "first saw" everything at the epoch here, so the reported timestamps decide (as before clamping). */
function stateWith(
  members: Map<string, ClusterLocality>,
  options: CatalogStateOptions = { now: () => new Date(0) },
): CatalogState {
  return new CatalogState((id) => members.get(id), options);
}

/** A hub clock the test moves by hand. */
function clockAt(iso: string): { now: () => Date; set(iso: string): void } {
  let current = new Date(iso);
  return { now: () => current, set: (next) => (current = new Date(next)) };
}

function entry(state: CatalogState, key: string): CatalogEntry | undefined {
  const json = state.entryJson(key);
  return json === undefined ? undefined : catalogEntrySchema.parse(JSON.parse(json));
}

const cart = (overrides: Partial<ExportedService> = {}): ExportedService => exported({ name: 'cart', ...overrides });
const shelf = (overrides: Partial<ExportedService> = {}): ExportedService => exported({ name: 'shelf', ...overrides });

describe('CatalogState', () => {
  it('applies full export sets and marks only the services whose inputs changed', () => {
    const state = stateWith(membersOf(['a', 'b']));
    expect(state.apply('a', { generation: 1, services: [cart(), shelf()] }).dirty).toEqual(['shop.cart', 'shop.shelf']);
    expect(
      state.apply('b', { generation: 1, services: [cart({ exportCreatedAt: '2025-02-01T00:00:00Z' })] }).dirty,
    ).toEqual(['shop.cart']);
    expect(entry(state, 'shop.cart')?.clusters.map((c) => c.clusterId)).toEqual(['a', 'b']);

    const update = state.apply('a', {
      generation: 2,
      services: [cart({ endpoints: [{ zone: 'z1', ready: 5, total: 5 }] }), shelf()],
    });
    expect(update).toEqual({ applied: true, appliedGeneration: 2, dirty: ['shop.cart'] });
    expect(entry(state, 'shop.cart')?.clusters[0]?.endpoints).toEqual([{ zone: 'z1', ready: 5, total: 5 }]);
    // The same set in another order, endpoints in another order: nothing changes.
    const reordered = state.apply('a', {
      generation: 3,
      services: [shelf(), cart({ endpoints: [{ zone: 'z1', ready: 5, total: 5 }] })],
    });
    expect(reordered.dirty).toEqual([]);
  });

  it('updates an entry when one exporter withdraws, and drops it when the last one does', () => {
    const state = stateWith(membersOf(['a', 'b']));
    state.apply('a', { generation: 1, services: [cart()] });
    state.apply('b', { generation: 1, services: [cart()] });
    expect(state.apply('a', { generation: 2, services: [] }).dirty).toEqual(['shop.cart']);
    expect(entry(state, 'shop.cart')?.clusters.map((c) => c.clusterId)).toEqual(['b']);
    expect(state.apply('b', { generation: 2, services: [] }).dirty).toEqual(['shop.cart']);
    expect(state.entryJson('shop.cart')).toBeUndefined();
  });

  it('ignores a stale generation and says which one it holds', () => {
    const state = stateWith(membersOf(['a']));
    state.apply('a', { generation: 5, services: [cart()] });
    expect(state.apply('a', { generation: 4, services: [] })).toEqual({
      applied: false,
      appliedGeneration: 5,
      dirty: [],
    });
    expect(state.apply('a', { generation: 5, services: [] }).applied).toBe(false);
    expect(state.apply('a', { generation: 1, services: [] }).applied).toBe(false);
    expect(state.entryJson('shop.cart')).toBeDefined();
    expect(state.apply('a', { generation: 6, services: [] })).toEqual({
      applied: true,
      appliedGeneration: 6,
      dirty: ['shop.cart'],
    });
  });

  it('refuses a report from a non-member and one that lists a service twice', () => {
    const state = stateWith(membersOf(['a']));
    expect(() => state.apply('stranger', { generation: 1, services: [cart()] })).toThrow(
      expect.objectContaining({ code: 'ISTHMUS_CLUSTER_NOT_MEMBER' }) as Error,
    );
    let refusal: unknown;
    try {
      state.apply('a', { generation: 1, services: [cart(), cart()] });
    } catch (err) {
      refusal = err;
    }
    expect(isIsthmusError(refusal, 'ISTHMUS_INPUT_INVALID')).toBe(true);
  });

  it('drops the exports of a cluster that left and re-resolves a cluster that moved', () => {
    const members = membersOf(['a', 'b']);
    const state = stateWith(members);
    state.apply('a', { generation: 1, services: [cart(), shelf()] });
    state.apply('b', { generation: 1, services: [cart()] });
    expect(state.syncMembers()).toEqual([]);

    members.set('b', locality('b', { zone: 'elsewhere' }));
    expect(state.syncMembers()).toEqual(['shop.cart']);
    expect(entry(state, 'shop.cart')?.clusters[1]?.zone).toBe('elsewhere');

    members.delete('a');
    expect(state.syncMembers().sort()).toEqual(['shop.cart', 'shop.shelf']);
    expect(entry(state, 'shop.cart')?.clusters.map((c) => c.clusterId)).toEqual(['b']);
    expect(state.entryJson('shop.shelf')).toBeUndefined();
    expect(state.exportsOf('a')).toEqual([]);
  });

  it('answers every exporter of a conflicted service with its conflicts, those that agree with the oldest included', () => {
    const state = stateWith(membersOf(['a', 'b', 'c']));
    state.apply('a', { generation: 1, services: [cart({ exportCreatedAt: '2025-01-01T00:00:00Z' })] });
    state.apply('b', {
      generation: 1,
      services: [cart({ exportCreatedAt: '2025-01-02T00:00:00Z', type: 'Headless' }), shelf()],
    });
    state.apply('c', { generation: 1, services: [cart({ exportCreatedAt: '2025-01-03T00:00:00Z' })] });
    const typeConflict = {
      namespace: 'shop',
      name: 'cart',
      type: 'TypeConflict',
      message: 'type: a (oldest export) has ClusterSetIP, which applies; b has Headless',
    };
    expect(state.conflictsOf('a')).toEqual([typeConflict]);
    expect(state.conflictsOf('b')).toEqual([typeConflict]);
    // Upstream raises Conflict on all constituent exports, not only on the dissenting one.
    expect(state.conflictsOf('c')).toEqual([typeConflict]);
  });

  it('gives each member an export is scoped to its own view, and leaves scoped exports out of the shared view', () => {
    const state = stateWith(membersOf(['a', 'b', 'c']));
    state.apply('a', { generation: 1, services: [cart(), shelf({ allowedClusters: ['b', 'gone'] })] });
    state.apply('b', {
      generation: 1,
      services: [cart({ exportCreatedAt: '2025-02-01T00:00:00Z', allowedClusters: ['c'] })],
    });
    const clustersOf = (json: string | undefined): string[] | undefined =>
      json === undefined ? undefined : catalogEntrySchema.parse(JSON.parse(json)).clusters.map((c) => c.clusterId);
    // cart: a's export is everyone's, b's only c's.
    expect(clustersOf(state.entryJson('shop.cart'))).toEqual(['a']);
    expect(state.scopedReaders('shop.cart')).toEqual(['c']);
    expect(clustersOf(state.scopedEntryJson('shop.cart', 'c'))).toEqual(['a', 'b']);
    expect(state.scopedEntryJson('shop.cart', 'b')).toBe(state.entryJson('shop.cart')); // b is named by no export of cart: the shared view
    // shelf: only b may import it; a cluster that is no member gets nothing.
    expect(state.entryJson('shop.shelf')).toBeUndefined();
    expect(state.scopedReaders('shop.shelf')).toEqual(['b']);
    expect(clustersOf(state.scopedEntryJson('shop.shelf', 'b'))).toEqual(['a']);
    expect(state.scopedEntryJson('shop.shelf', 'c')).toBeUndefined();
    expect(state.scopedEntryJson('shop.shelf', 'gone')).toBeUndefined();
    // Unscoped again: the shared view has it, and b's view is the shared one.
    state.apply('a', { generation: 2, services: [cart(), shelf()] });
    expect(state.scopedReaders('shop.shelf')).toEqual([]);
    expect(clustersOf(state.entryJson('shop.shelf'))).toEqual(['a']);
    expect(state.scopedEntryJson('shop.shelf', 'b')).toBe(state.entryJson('shop.shelf'));
  });

  it("restores from published entries (shared and members' own views) to the very same entries, and the same reports then change nothing", () => {
    const members = membersOf(['a', 'b', 'c']);
    const reports: [string, ExportedService[]][] = [
      [
        'a',
        [
          cart({
            endpoints: [
              { zone: 'z2', ready: 1, total: 1 },
              { zone: 'z1', ready: 4, total: 4 },
            ],
          }),
          shelf({ allowedClusters: ['c', 'b'] }),
        ],
      ],
      [
        'b',
        [
          cart({
            exportCreatedAt: '2025-03-01T00:00:00Z',
            type: 'Headless',
            sessionAffinity: 'ClientIP',
            sessionAffinityTimeoutSeconds: 30,
          }),
        ],
      ],
      ['c', [shelf({ ports: [{ name: 'http', protocol: 'TCP', port: 8080, appProtocol: '' }] })]],
    ];
    const original = stateWith(members);
    for (const [id, services] of reports) original.apply(id, { generation: 7, services });
    const keys = ['shop.cart', 'shop.shelf'];
    const views = (state: CatalogState, key: string): (string | undefined)[] => [
      state.entryJson(key),
      state.scopedEntryJson(key, 'b'),
      state.scopedEntryJson(key, 'c'),
    ];
    const published = keys.flatMap((key) =>
      views(original, key).flatMap((json) => (json ? [catalogEntrySchema.parse(JSON.parse(json))] : [])),
    );

    const restored = stateWith(members);
    expect(restored.restore(published).sort()).toEqual(keys);
    for (const key of keys) expect(views(restored, key)).toEqual(views(original, key));
    for (const [id, services] of reports) expect(restored.apply(id, { generation: 1, services }).dirty).toEqual([]);
  });

  it('leaves out clusters that stopped being members while no hub was leading', () => {
    const members = membersOf(['a', 'b']);
    const original = stateWith(members);
    original.apply('a', { generation: 1, services: [cart()] });
    original.apply('b', { generation: 1, services: [cart(), shelf()] });
    const published = ['shop.cart', 'shop.shelf'].map((key) =>
      catalogEntrySchema.parse(JSON.parse(original.entryJson(key) ?? 'null')),
    );

    members.delete('b');
    const restored = stateWith(members);
    expect(restored.restore(published).sort()).toEqual(['shop.cart', 'shop.shelf']);
    expect(entry(restored, 'shop.cart')?.clusters.map((c) => c.clusterId)).toEqual(['a']);
    expect(restored.entryJson('shop.shelf')).toBeUndefined();
  });

  it('clamps a reported exportCreatedAt to when the hub first saw the export, so an invented 1970 cannot win', () => {
    const clock = clockAt('2026-03-01T10:00:00.000Z');
    const state = stateWith(membersOf(['honest', 'poisoner']), { now: clock.now });
    state.apply('honest', { generation: 1, services: [cart({ exportCreatedAt: '2026-03-01T09:00:00Z' })] });
    clock.set('2026-03-01T10:05:00.000Z');
    state.apply('poisoner', {
      generation: 1,
      services: [cart({ exportCreatedAt: '1970-01-01T00:00:00Z', type: 'Headless' })],
    });
    const resolved = entry(state, 'shop.cart');
    expect(resolved?.clusters.map((c) => c.clusterId)).toEqual(['honest', 'poisoner']);
    expect(resolved?.type).toBe('ClusterSetIP');
    expect(resolved?.clusters[1]?.exportCreatedAt).toBe('2026-03-01T10:05:00.000Z');
    // Reporting 1970 again later changes nothing: the first sighting stays the floor.
    clock.set('2026-03-02T00:00:00.000Z');
    expect(
      state.apply('poisoner', {
        generation: 2,
        services: [cart({ exportCreatedAt: '1970-01-01T00:00:00Z', type: 'Headless' })],
      }).dirty,
    ).toEqual([]);
    // The honest export was reported earlier than the hub first saw it: it too starts at the first sighting.
    expect(resolved?.clusters[0]?.exportCreatedAt).toBe('2026-03-01T10:00:00.000Z');
  });

  it('keeps the clamped time across a new leader: restored entries are the floor', () => {
    const members = membersOf(['a']);
    const original = stateWith(members, { now: clockAt('2026-03-01T10:00:00.000Z').now });
    original.apply('a', { generation: 1, services: [cart({ exportCreatedAt: '1970-01-01T00:00:00Z' })] });
    const published = [catalogEntrySchema.parse(JSON.parse(original.entryJson('shop.cart') ?? 'null'))];
    const successor = stateWith(members, { now: clockAt('2026-04-01T00:00:00.000Z').now });
    successor.restore(published);
    expect(
      successor.apply('a', { generation: 1, services: [cart({ exportCreatedAt: '1970-01-01T00:00:00Z' })] }).dirty,
    ).toEqual([]);
    expect(entry(successor, 'shop.cart')?.clusters[0]?.exportCreatedAt).toBe('2026-03-01T10:00:00.000Z');
  });

  it('refuses a report over the per-cluster export quota as a whole, with its own code', () => {
    const state = stateWith(membersOf(['a']), {
      now: () => new Date(0),
      limits: { exportsPerCluster: 2, entryMaxBytes: 512 * 1024 },
    });
    state.apply('a', { generation: 1, services: [cart()] });
    const over = [cart(), shelf(), exported({ name: 'till' })];
    let refusal: unknown;
    try {
      state.apply('a', { generation: 2, services: over });
    } catch (err) {
      refusal = err;
    }
    expect(isIsthmusError(refusal, 'ISTHMUS_EXPORT_QUOTA_EXCEEDED')).toBe(true);
    expect((refusal as Error).message).toMatch(/at most 2/);
    expect(state.exportsOf('a')).toEqual(['shop.cart']);
  });

  it('leaves out an export whose entry would outgrow the size limit, applies the rest and says why', () => {
    const limits = { exportsPerCluster: 100, entryMaxBytes: 8 * 1024 };
    const state = stateWith(membersOf(['a', 'b']), { now: () => new Date(0), limits });
    state.apply('a', { generation: 1, services: [cart()] });
    const manyPorts = Array.from({ length: 100 }, (_, i) => ({
      name: `port-with-a-long-name-${i}`,
      protocol: 'TCP' as const,
      port: 1000 + i,
      appProtocol: 'example.com/some-application-protocol',
    }));
    const result = state.apply('b', { generation: 1, services: [cart({ ports: manyPorts }), shelf()] });
    expect(result.applied).toBe(true);
    expect(state.exportsOf('b')).toEqual(['shop.shelf']);
    expect(entry(state, 'shop.cart')?.clusters.map((c) => c.clusterId)).toEqual(['a']);
    expect(Buffer.byteLength(state.entryJson('shop.cart') ?? '')).toBeLessThanOrEqual(limits.entryMaxBytes);
    expect(state.conflictsOf('b')).toEqual([
      expect.objectContaining({
        namespace: 'shop',
        name: 'cart',
        type: ENTRY_TOO_LARGE,
        message: expect.stringMatching(/over the hub's limit of 8192.*\[ISTHMUS_CATALOG_ENTRY_TOO_LARGE\]/) as string,
      }),
    ]);
    // A smaller export later is taken, and the refusal goes away.
    state.apply('b', { generation: 2, services: [cart(), shelf()] });
    expect(state.conflictsOf('b')).toEqual([]);
    expect(entry(state, 'shop.cart')?.clusters.map((c) => c.clusterId)).toEqual(['a', 'b']);
  });
});
