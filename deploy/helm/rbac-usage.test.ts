// The granted-vs-used comparison on hand-made audit events and RBAC objects.
import { describe, expect, it } from 'vitest';
import type { RenderedObject } from './chart.ts';
import { compareUsage, describePermission, parseAuditLog, verbsNeeded, type AuditRequest } from './rbac-usage.ts';

const user = 'system:serviceaccount:isthmus-system:isthmus-agent';

function event(fields: {
  id: string;
  verb: string;
  resource: string;
  subresource?: string;
  namespace?: string;
  name?: string;
  apiGroup?: string;
  code?: number;
  stage?: string;
  username?: string;
}): string {
  return JSON.stringify({
    kind: 'Event',
    apiVersion: 'audit.k8s.io/v1',
    level: 'Metadata',
    auditID: fields.id,
    stage: fields.stage ?? 'ResponseComplete',
    requestURI: `/x/${fields.resource}`,
    verb: fields.verb,
    user: { username: fields.username ?? user, groups: ['system:serviceaccounts'] },
    objectRef: {
      resource: fields.resource,
      subresource: fields.subresource,
      namespace: fields.namespace,
      name: fields.name,
      apiGroup: fields.apiGroup,
      apiVersion: 'v1',
    },
    responseStatus: { metadata: {}, code: fields.code ?? 200 },
  });
}

function rbac(rules: unknown[], clusterRules: unknown[] = []): RenderedObject[] {
  const subjects = [{ kind: 'ServiceAccount', name: 'isthmus-agent', namespace: 'isthmus-system' }];
  const meta = { name: 'isthmus-agent', namespace: 'isthmus-system' };
  const group = 'rbac.authorization.k8s.io/v1';
  return [
    { apiVersion: group, kind: 'Role', metadata: meta, rules },
    { apiVersion: group, kind: 'RoleBinding', metadata: meta, roleRef: { kind: 'Role', name: meta.name }, subjects },
    { apiVersion: group, kind: 'ClusterRole', metadata: { name: meta.name }, rules: clusterRules },
    {
      apiVersion: group,
      kind: 'ClusterRoleBinding',
      metadata: { name: meta.name },
      roleRef: { kind: 'ClusterRole', name: meta.name },
      subjects,
    },
  ];
}

describe('parseAuditLog', () => {
  it('keeps one request per auditID, only service accounts and resource requests', () => {
    const log = [
      event({ id: 'w', verb: 'watch', resource: 'configmaps', namespace: 'ns', stage: 'ResponseStarted' }),
      event({ id: 'w', verb: 'watch', resource: 'configmaps', namespace: 'ns' }),
      event({ id: 'r', verb: 'get', resource: 'secrets', namespace: 'ns', name: 's', stage: 'RequestReceived' }),
      event({ id: 'admin', verb: 'get', resource: 'secrets', username: 'isthmus-admin' }),
      JSON.stringify({
        auditID: 'api',
        stage: 'ResponseComplete',
        verb: 'get',
        requestURI: '/api',
        user: { username: user },
      }),
    ].join('\n');
    const requests = parseAuditLog(log);
    expect(requests).toEqual([expect.objectContaining({ verb: 'watch', resource: 'configmaps', namespace: 'ns' })]);
  });

  it('joins subresources and drops the name of a create', () => {
    const log = [
      event({ id: 'a', verb: 'patch', resource: 'serviceexports', subresource: 'status', name: 'x', namespace: 'n' }),
      event({ id: 'b', verb: 'create', resource: 'configmaps', name: 'made', namespace: 'n', code: 201 }),
    ].join('\n');
    const [patch, create] = parseAuditLog(log);
    expect(patch?.resource).toBe('serviceexports/status');
    expect(create?.name).toBeUndefined();
  });
});

describe('verbsNeeded', () => {
  const request = (verb: string, code: number): AuditRequest => ({
    user,
    verb,
    apiGroup: '',
    resource: 'r',
    namespace: undefined,
    name: 'n',
    code,
    uri: '',
  });
  it('counts an apply or update that created the object (201) as a create too', () => {
    expect(verbsNeeded(request('patch', 201))).toEqual(['patch', 'create']);
    expect(verbsNeeded(request('update', 201))).toEqual(['update', 'create']);
    expect(verbsNeeded(request('patch', 200))).toEqual(['patch']);
  });
});

describe('compareUsage', () => {
  it('passes when every permission was used and every request allowed', () => {
    const objects = rbac(
      [{ apiGroups: [''], resources: ['secrets'], resourceNames: ['creds'], verbs: ['get'] }],
      [{ apiGroups: ['about.k8s.io'], resources: ['clusterproperties'], verbs: ['create', 'patch'] }],
    );
    const requests = parseAuditLog(
      [
        event({ id: '1', verb: 'get', resource: 'secrets', namespace: 'isthmus-system', name: 'creds' }),
        event({
          id: '2',
          verb: 'patch',
          resource: 'clusterproperties',
          apiGroup: 'about.k8s.io',
          name: 'id',
          code: 201,
        }),
      ].join('\n'),
    );
    expect(compareUsage(objects, requests, [user])).toEqual({ refused: [], notGranted: [], unused: [] });
  });

  it('reports a granted name, verb or namespace-scoped permission never used', () => {
    const objects = rbac([
      { apiGroups: [''], resources: ['secrets'], resourceNames: ['a', 'b'], verbs: ['get', 'delete'] },
    ]);
    const requests = parseAuditLog(
      event({ id: '1', verb: 'get', resource: 'secrets', namespace: 'isthmus-system', name: 'a' }),
    );
    const report = compareUsage(objects, requests, [user]);
    expect(report.unused.map(describePermission)).toEqual([
      `${user} (Role/isthmus-system/isthmus-agent): get secrets b in isthmus-system`,
      `${user} (Role/isthmus-system/isthmus-agent): delete secrets a in isthmus-system`,
      `${user} (Role/isthmus-system/isthmus-agent): delete secrets b in isthmus-system`,
    ]);
    const exempt = new Set(report.unused.map(describePermission));
    expect(compareUsage(objects, requests, [user], exempt).unused).toEqual([]);
  });

  it('reports refusals, and requests outside the rules: another namespace, another name, a create not granted', () => {
    const objects = rbac(
      [{ apiGroups: [''], resources: ['secrets'], resourceNames: ['a'], verbs: ['get', 'patch'] }],
      [{ apiGroups: [''], resources: ['namespaces'], verbs: ['list'] }],
    );
    const requests = parseAuditLog(
      [
        event({ id: '1', verb: 'get', resource: 'secrets', namespace: 'isthmus-system', name: 'a' }),
        event({ id: '2', verb: 'get', resource: 'secrets', namespace: 'other', name: 'a' }),
        event({ id: '3', verb: 'get', resource: 'secrets', namespace: 'isthmus-system', name: 'b' }),
        event({ id: '4', verb: 'patch', resource: 'secrets', namespace: 'isthmus-system', name: 'a', code: 201 }),
        event({ id: '5', verb: 'list', resource: 'namespaces', code: 403 }),
      ].join('\n'),
    );
    const report = compareUsage(objects, requests, [user]);
    expect(report.refused.map((r) => r.resource)).toEqual(['namespaces']);
    expect(report.notGranted.map((r) => `${r.verb} ${r.namespace}/${r.name}`)).toEqual([
      'get other/a',
      'get isthmus-system/b',
      'patch isthmus-system/a',
    ]);
    // A refused request uses nothing.
    expect(report.unused.map((p) => `${p.verb} ${p.resource}`)).toEqual(['list namespaces']);
  });

  it('ignores other users', () => {
    const objects = rbac([{ apiGroups: [''], resources: ['secrets'], verbs: ['list'] }]);
    const other = 'system:serviceaccount:isthmus-system:someone';
    const requests = parseAuditLog(event({ id: '1', verb: 'list', resource: 'pods', username: other, code: 403 }));
    expect(compareUsage(objects, requests, [user]).refused).toEqual([]);
  });
});
