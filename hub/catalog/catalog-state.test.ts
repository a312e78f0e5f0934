import { describe, expect, it } from 'vitest';
import { catalogEntrySchema, type CatalogEntry } from '../../common/catalog.ts';
import { isIsthmusError } from '../../common/errors.ts';
import type { ExportedService } from '../../common/hub-api/index.ts';
import { CatalogState } from './catalog-state.ts';
import { exported, locality } from './catalog.testkit.ts';
import type { ClusterLocality } from './resolution.ts';

function membersOf(ids: string[]): Map<string, ClusterLocality> {
  return new Map(ids.map((id) => [id, locality(id)]));
}

function stateWith(members: Map<string, ClusterLocality>): CatalogState {
  return new CatalogState((id) => members.get(id));
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
    expect(state.apply('b', { generation: 1, services: [cart({ exportCreatedAt: '2025-02-01T00:00:00Z' })] }).dirty).toEqual(['shop.cart']);
    expect(entry(state, 'shop.cart')?.clusters.map((c) => c.clusterId)).toEqual(['a', 'b']);

    const update = state.apply('a', { generation: 2, services: [cart({ endpoints: [{ zone: 'z1', ready: 5 }] }), shelf()] });
    expect(update).toEqual({ applied: true, appliedGeneration: 2, dirty: ['shop.cart'] });
    expect(entry(state, 'shop.cart')?.clusters[0]?.endpoints).toEqual([{ zone: 'z1', ready: 5 }]);
    // The same set in another order, endpoints in another order: nothing changes.
    const reordered = state.apply('a', { generation: 3, services: [shelf(), cart({ endpoints: [{ zone: 'z1', ready: 5 }] })] });
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

  it('ignores a stale generation, but takes generation 1 as a restarted agent', () => {
    const state = stateWith(membersOf(['a']));
    state.apply('a', { generation: 5, services: [cart()] });
    expect(state.apply('a', { generation: 4, services: [] })).toEqual({ applied: false, appliedGeneration: 5, dirty: [] });
    expect(state.apply('a', { generation: 5, services: [] }).applied).toBe(false);
    expect(state.entryJson('shop.cart')).toBeDefined();
    // The agent restarted and counts from 1 again; its export set is now empty.
    expect(state.apply('a', { generation: 1, services: [] })).toEqual({ applied: true, appliedGeneration: 1, dirty: ['shop.cart'] });
    expect(state.apply('a', { generation: 2, services: [cart()] }).dirty).toEqual(['shop.cart']);
  });

  it('refuses a report from a non-member and one that lists a service twice', () => {
    const state = stateWith(membersOf(['a']));
    expect(() => state.apply('stranger', { generation: 1, services: [cart()] })).toThrow(expect.objectContaining({ code: 'ISTHMUS_CLUSTER_NOT_MEMBER' }) as Error);
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

  it('answers a cluster with the conflicts that involve it', () => {
    const state = stateWith(membersOf(['a', 'b', 'c']));
    state.apply('a', { generation: 1, services: [cart({ exportCreatedAt: '2025-01-01T00:00:00Z' })] });
    state.apply('b', { generation: 1, services: [cart({ exportCreatedAt: '2025-01-02T00:00:00Z', type: 'Headless' }), shelf()] });
    state.apply('c', { generation: 1, services: [cart({ exportCreatedAt: '2025-01-03T00:00:00Z' })] });
    const typeConflict = { namespace: 'shop', name: 'cart', type: 'TypeConflict', message: 'type: a (oldest export) has ClusterSetIP, which applies; b has Headless' };
    expect(state.conflictsOf('a')).toEqual([typeConflict]);
    expect(state.conflictsOf('b')).toEqual([typeConflict]);
    expect(state.conflictsOf('c')).toEqual([]);
  });

  it('restores from published entries to the very same entries, and the same reports then change nothing', () => {
    const members = membersOf(['a', 'b', 'c']);
    const reports: [string, ExportedService[]][] = [
      ['a', [cart({ endpoints: [{ zone: 'z2', ready: 1 }, { zone: 'z1', ready: 4 }] }), shelf({ allowedClusters: ['c', 'b'] })]],
      ['b', [cart({ exportCreatedAt: '2025-03-01T00:00:00Z', type: 'Headless', sessionAffinity: 'ClientIP', sessionAffinityTimeoutSeconds: 30 })]],
      ['c', [shelf({ ports: [{ name: 'http', protocol: 'TCP', port: 8080, appProtocol: '' }] })]],
    ];
    const original = stateWith(members);
    for (const [id, services] of reports) original.apply(id, { generation: 7, services });
    const keys = ['shop.cart', 'shop.shelf'];
    const published = keys.map((key) => catalogEntrySchema.parse(JSON.parse(original.entryJson(key) ?? 'null')));

    const restored = stateWith(members);
    expect(restored.restore(published).sort()).toEqual(keys);
    for (const key of keys) expect(restored.entryJson(key)).toBe(original.entryJson(key));
    for (const [id, services] of reports) expect(restored.apply(id, { generation: 1, services }).dirty).toEqual([]);
  });

  it('leaves out clusters that stopped being members while no hub was leading', () => {
    const members = membersOf(['a', 'b']);
    const original = stateWith(members);
    original.apply('a', { generation: 1, services: [cart()] });
    original.apply('b', { generation: 1, services: [cart(), shelf()] });
    const published = ['shop.cart', 'shop.shelf'].map((key) => catalogEntrySchema.parse(JSON.parse(original.entryJson(key) ?? 'null')));

    members.delete('b');
    const restored = stateWith(members);
    expect(restored.restore(published).sort()).toEqual(['shop.cart', 'shop.shelf']);
    expect(entry(restored, 'shop.cart')?.clusters.map((c) => c.clusterId)).toEqual(['a']);
    expect(restored.entryJson('shop.shelf')).toBeUndefined();
  });
});
