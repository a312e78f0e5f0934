import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import type { z } from 'zod';
import { invalidObjects, validObjects } from '../../e2e/crds.fixtures.ts';
import {
  type Condition,
  FAILOVER_DEFAULTS,
  ServiceExportReason,
  conflictReason,
  failoverPolicySchema,
  findCondition,
  isConditionTrue,
  memberClusterSchema,
  parseDurationMs,
  serviceExportSchema,
  serviceImportSchema,
  setCondition,
  toKubeTime,
} from './index.ts';

const T0 = '2025-01-01T00:00:00Z';
const NOW = new Date('2025-06-01T12:34:56.789Z');

const ready = (status: Condition['status'], extra: Partial<Condition> = {}): Condition => ({
  type: 'Ready',
  status,
  reason: status === 'True' ? 'Exported' : 'Pending',
  message: '',
  lastTransitionTime: T0,
  ...extra,
});

describe('conditions', () => {
  it('findCondition and isConditionTrue look up by type', () => {
    const list = [ready('True'), { ...ready('False'), type: 'Valid' }];
    expect(findCondition(list, 'Valid')?.status).toBe('False');
    expect(findCondition(list, 'Conflict')).toBeUndefined();
    expect(findCondition(undefined, 'Ready')).toBeUndefined();
    expect(isConditionTrue(list, 'Ready')).toBe(true);
    expect(isConditionTrue(list, 'Valid')).toBe(false);
    expect(isConditionTrue(list, 'Conflict')).toBe(false);
  });

  it('adds a new condition stamped with now', () => {
    const { conditions, changed } = setCondition(
      undefined,
      { type: 'Ready', status: 'True', reason: 'Exported', message: 'ok' },
      NOW,
    );
    expect(changed).toBe(true);
    expect(conditions).toEqual([
      { type: 'Ready', status: 'True', reason: 'Exported', message: 'ok', lastTransitionTime: '2025-06-01T12:34:56Z' },
    ]);
  });

  it('keeps lastTransitionTime when the status does not change, but takes reason, message, generation', () => {
    const before = [ready('False')];
    const { conditions, changed } = setCondition(
      before,
      { type: 'Ready', status: 'False', reason: 'Failed', message: 'no endpoints', observedGeneration: 4 },
      NOW,
    );
    expect(changed).toBe(true);
    expect(conditions[0]).toEqual({
      type: 'Ready',
      status: 'False',
      reason: 'Failed',
      message: 'no endpoints',
      observedGeneration: 4,
      lastTransitionTime: T0,
    });
    expect(before[0]?.reason).toBe('Pending'); // input untouched
  });

  it('ignores a supplied lastTransitionTime when the status does not change', () => {
    const { conditions } = setCondition(
      [ready('True')],
      { ...ready('True'), lastTransitionTime: '2030-01-01T00:00:00Z' },
      NOW,
    );
    expect(conditions[0]?.lastTransitionTime).toBe(T0);
  });

  it('moves lastTransitionTime to now (or the supplied time) when the status changes', () => {
    const other = { ...ready('True'), type: 'Valid' };
    const a = setCondition(
      [other, ready('False')],
      { type: 'Ready', status: 'True', reason: 'Exported', message: '' },
      NOW,
    );
    expect(a.changed).toBe(true);
    expect(a.conditions.map((c) => c.type)).toEqual(['Valid', 'Ready']); // order kept
    expect(a.conditions[1]?.lastTransitionTime).toBe('2025-06-01T12:34:56Z');
    const b = setCondition(
      [ready('False')],
      { type: 'Ready', status: 'True', reason: 'Exported', message: '', lastTransitionTime: '2025-05-05T05:05:05Z' },
      NOW,
    );
    expect(b.conditions[0]?.lastTransitionTime).toBe('2025-05-05T05:05:05Z');
  });

  it('reports no change for an identical update and drops a cleared observedGeneration', () => {
    const same = setCondition(
      [ready('True', { observedGeneration: 2 })],
      { ...ready('True', { observedGeneration: 2 }) },
      NOW,
    );
    expect(same.changed).toBe(false);
    const cleared = setCondition(
      [ready('True', { observedGeneration: 2 })],
      { type: 'Ready', status: 'True', reason: 'Exported', message: '' },
      NOW,
    );
    expect(cleared.changed).toBe(true);
    expect('observedGeneration' in (cleared.conditions[0] ?? {})).toBe(false);
  });

  it('formats metav1.Time with second precision', () => {
    expect(toKubeTime(new Date('2025-01-02T03:04:05.678Z'))).toBe('2025-01-02T03:04:05Z');
  });
});

const schemaByKind: Record<string, z.ZodType> = {
  MemberCluster: memberClusterSchema,
  FailoverPolicy: failoverPolicySchema,
  ServiceExport: serviceExportSchema,
  ServiceImport: serviceImportSchema,
};

function schemaFor(object: unknown): z.ZodType {
  const kind = (object as { kind?: unknown }).kind;
  const schema = typeof kind === 'string' ? schemaByKind[kind] : undefined;
  if (schema === undefined) throw new Error(`no schema for kind ${String(kind)}`);
  return schema;
}

describe('zod schemas and fixtures', () => {
  it('covers every kind with valid fixtures', () => {
    expect(new Set(validObjects.map((o) => o.kind))).toEqual(new Set(Object.keys(schemaByKind)));
    for (const o of validObjects) {
      if (o.kind === 'MemberCluster') expect(o.metadata.namespace).toBeUndefined();
      else expect(o.metadata.namespace).toBe('default');
    }
  });

  it.each(validObjects.map((o) => [`${o.kind} ${o.metadata.name}`, o] as const))(
    'accepts valid %s',
    (_name, object) => {
      const result = schemaFor(object).safeParse(object);
      expect(result.error?.issues ?? []).toEqual([]);
    },
  );

  it('fills in FailoverPolicy defaults as the CRD does', () => {
    const minimal = validObjects.find((o) => o.kind === 'FailoverPolicy' && o.metadata.name === 'checkout');
    const parsed = failoverPolicySchema.parse(minimal);
    expect(parsed.spec).toEqual({
      service: 'checkout',
      outlierDetection: { consecutiveFailures: 5, interval: '10s', baseEjectionTime: '30s', maxEjectionPercent: 50 },
      minHealthyPercent: 70,
      failback: { enabled: true, delay: '5s' },
    });
    const mc = memberClusterSchema.parse(validObjects.find((o) => o.kind === 'MemberCluster'));
    expect(mc.spec.accepted).toBe(false);
  });

  it('has at least 8 invalid fixtures across all kinds', () => {
    expect(invalidObjects.length).toBeGreaterThanOrEqual(8);
    expect(new Set(invalidObjects.map((f) => (f.object as { kind: string }).kind))).toEqual(
      new Set(Object.keys(schemaByKind)),
    );
  });

  it.each(invalidObjects.map((f) => [f.name, f] as const))('rejects %s', (_name, fixture) => {
    expect(schemaFor(fixture.object).safeParse(fixture.object).success).toBe(false);
  });

  it('parses FailoverPolicy status.clusters and refuses a cluster listed twice or generation 0', () => {
    const base = validObjects.find((o) => o.kind === 'FailoverPolicy');
    const clusters = [
      { cluster: 'east-1', appliedGeneration: 3 },
      { cluster: 'west-2', appliedGeneration: 2 },
    ];
    expect(failoverPolicySchema.safeParse({ ...base, status: { observedGeneration: 3, clusters } }).success).toBe(true);
    expect(failoverPolicySchema.safeParse({ ...base, status: { clusters: [...clusters, clusters[0]] } }).success).toBe(
      false,
    );
    expect(
      failoverPolicySchema.safeParse({ ...base, status: { clusters: [{ cluster: 'east-1', appliedGeneration: 0 }] } })
        .success,
    ).toBe(false);
  });

  it('parses status with conditions and rejects duplicate condition types', () => {
    const base = validObjects.find((o) => o.kind === 'MemberCluster');
    const status = {
      conditions: [ready('True', { type: 'Available', reason: 'HeartbeatReceived' })],
      exportCount: 3,
      trustBundleSequence: 7,
      certificateExpiry: '2025-07-01T00:00:00Z',
      lastHeartbeatTime: '2025-06-01T12:00:00.5+02:00',
      agentVersion: '0.1.0',
    };
    expect(memberClusterSchema.safeParse({ ...base, status }).success).toBe(true);
    const dup = { ...status, conditions: [...status.conditions, ...status.conditions] };
    expect(memberClusterSchema.safeParse({ ...base, status: dup }).success).toBe(false);
    const badReason = { ...status, conditions: [{ ...status.conditions[0], reason: 'not ok' }] };
    expect(memberClusterSchema.safeParse({ ...base, status: badReason }).success).toBe(false);
  });
});

describe('helpers', () => {
  it('parses durations', () => {
    expect(parseDurationMs('10s')).toBe(10_000);
    expect(parseDurationMs('1m30s')).toBe(90_000);
    expect(parseDurationMs('1.5h')).toBe(5_400_000);
    expect(parseDurationMs('250ms')).toBe(250);
    expect(() => parseDurationMs('10')).toThrow(RangeError);
  });

  it('joins conflict reasons with commas', () => {
    expect(conflictReason([])).toBe('NoConflicts');
    expect(
      conflictReason([
        ServiceExportReason.PortConflict,
        ServiceExportReason.TypeConflict,
        ServiceExportReason.PortConflict,
      ]),
    ).toBe('PortConflict,TypeConflict');
  });
});

interface CrdVersion {
  name: string;
  served: boolean;
  storage: boolean;
  schema: { openAPIV3Schema: Record<string, unknown> };
  additionalPrinterColumns?: unknown[];
}
interface Crd {
  apiVersion: string;
  kind: string;
  metadata: { name: string };
  spec: { group: string; names: { plural: string }; versions: CrdVersion[] };
}

const crdDir = join(import.meta.dirname, '../../crds');
const crds = new Map<string, Crd>(
  readdirSync(crdDir)
    .filter((f) => f.endsWith('.yaml'))
    .map((f) => {
      const docs = parseAllDocuments(readFileSync(join(crdDir, f), 'utf8'));
      if (docs.length !== 1 || docs[0] === undefined || docs[0].errors.length > 0)
        throw new Error(`${f}: expected one clean YAML document`);
      return [f, docs[0].toJS() as Crd];
    }),
);

describe('CRD files', () => {
  it('are named <group>_<plural>.yaml with one storage version', () => {
    expect([...crds.keys()].sort()).toEqual([
      'about.k8s.io_clusterproperties.yaml',
      'isthmus.dev_failoverpolicies.yaml',
      'isthmus.dev_memberclusters.yaml',
      'multicluster.x-k8s.io_serviceexports.yaml',
      'multicluster.x-k8s.io_serviceimports.yaml',
    ]);
    for (const [file, crd] of crds) {
      expect(crd.kind).toBe('CustomResourceDefinition');
      expect(file).toBe(`${crd.spec.group}_${crd.spec.names.plural}.yaml`);
      expect(crd.metadata.name).toBe(`${crd.spec.names.plural}.${crd.spec.group}`);
      expect(crd.spec.versions.filter((v) => v.storage).map((v) => v.name)).toEqual(['v1alpha1']);
    }
  });

  it('serve MCS v1beta1 with exactly the v1alpha1 schema (no conversion needed)', () => {
    for (const file of ['multicluster.x-k8s.io_serviceexports.yaml', 'multicluster.x-k8s.io_serviceimports.yaml']) {
      const [alpha, beta] = crds.get(file)?.spec.versions ?? [];
      expect(beta?.name).toBe('v1beta1');
      expect(beta?.schema).toEqual(alpha?.schema);
      expect(beta?.additionalPrinterColumns).toEqual(alpha?.additionalPrinterColumns);
    }
  });

  it('default FailoverPolicy fields to FAILOVER_DEFAULTS', () => {
    const root = crds.get('isthmus.dev_failoverpolicies.yaml')?.spec.versions[0]?.schema.openAPIV3Schema;
    const spec = child(root, 'spec');
    const od = child(spec, 'outlierDetection');
    const fb = child(spec, 'failback');
    const def = (o: unknown, k: string): unknown => (child(o, k) as { default?: unknown }).default;
    expect({
      consecutiveFailures: def(od, 'consecutiveFailures'),
      interval: def(od, 'interval'),
      baseEjectionTime: def(od, 'baseEjectionTime'),
      maxEjectionPercent: def(od, 'maxEjectionPercent'),
      minHealthyPercent: def(spec, 'minHealthyPercent'),
      failbackEnabled: def(fb, 'enabled'),
      failbackDelay: def(fb, 'delay'),
    }).toEqual(FAILOVER_DEFAULTS);
  });
});

function child(schema: unknown, key: string): unknown {
  const found = (schema as { properties?: Record<string, unknown> } | undefined)?.properties?.[key];
  if (found === undefined) throw new Error(`schema has no property ${key}`);
  return found;
}
