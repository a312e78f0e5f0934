// Least privilege as a comparison (pure, no I/O): what the chart's Roles and ClusterRoles grant
// each service account, against what the apiserver's audit log shows it used. A permission is
// one (verb, API group, resource[/subresource], namespace or cluster-wide, name if the rule names
// any); a rule granting one that no request used is too broad, and a request no rule allows
// (served by a default role, e.g. system:discovery) or refused (403) means the chart is wrong.
import { z } from 'zod';
import type { RenderedObject } from './chart.ts';

/** One resource request of a service account, as the audit log recorded it. */
export interface AuditRequest {
  /** `system:serviceaccount:<namespace>:<name>` */
  readonly user: string;
  readonly verb: string;
  readonly apiGroup: string;
  /** `resource` or `resource/subresource`. */
  readonly resource: string;
  readonly namespace: string | undefined;
  /** The name authorization saw: from the URL, or a list/watch's `metadata.name=` field selector. */
  readonly name: string | undefined;
  readonly code: number;
  readonly uri: string;
}

const auditEventSchema = z.object({
  auditID: z.string(),
  stage: z.string(),
  verb: z.string(),
  requestURI: z.string(),
  user: z.object({ username: z.string() }),
  objectRef: z
    .object({
      resource: z.string().optional(),
      subresource: z.string().optional(),
      namespace: z.string().optional(),
      name: z.string().optional(),
      apiGroup: z.string().optional(),
    })
    .optional(),
  responseStatus: z.object({ code: z.number().optional() }).optional(),
});

/**
 * The resource requests of service accounts in an audit log (JSON lines, audit.k8s.io/v1), one
 * per request: a watch logs ResponseStarted and later ResponseComplete under one auditID.
 */
export function parseAuditLog(text: string): AuditRequest[] {
  const byId = new Map<string, AuditRequest>();
  for (const line of text.split('\n')) {
    if (!line.trim()) continue;
    const event = auditEventSchema.parse(JSON.parse(line));
    const ref = event.objectRef;
    if (!ref?.resource || !event.user.username.startsWith('system:serviceaccount:')) continue;
    if (event.stage === 'RequestReceived') continue;
    byId.set(event.auditID, {
      user: event.user.username,
      verb: event.verb,
      apiGroup: ref.apiGroup ?? '',
      resource: ref.subresource ? `${ref.resource}/${ref.subresource}` : ref.resource,
      namespace: ref.namespace,
      // A create names no object to authorization (the name is in the body), whatever the log says.
      name: event.verb === 'create' ? undefined : ref.name,
      code: event.responseStatus?.code ?? 0,
      uri: event.requestURI,
    });
  }
  return [...byId.values()];
}

/**
 * The verbs a request needed: its own, plus create when an update or apply made the object
 * (answered 201): the apiserver then authorizes create as well.
 */
export function verbsNeeded(request: AuditRequest): string[] {
  return (request.verb === 'patch' || request.verb === 'update') && request.code === 201
    ? [request.verb, 'create']
    : [request.verb];
}

const policyRuleSchema = z.object({
  apiGroups: z.array(z.string()).default([]),
  resources: z.array(z.string()).default([]),
  verbs: z.array(z.string()),
  resourceNames: z.array(z.string()).optional(),
});
type PolicyRule = z.infer<typeof policyRuleSchema>;

/** One rule as a subject holds it: in one namespace (a RoleBinding) or everywhere (a ClusterRoleBinding). */
export interface Grant {
  readonly role: string;
  readonly namespace: string | undefined;
  readonly rule: PolicyRule;
}

const bindingSchema = z.object({
  metadata: z.object({ name: z.string(), namespace: z.string().optional() }),
  roleRef: z.object({ kind: z.enum(['Role', 'ClusterRole']), name: z.string() }),
  subjects: z.array(z.object({ kind: z.string(), name: z.string(), namespace: z.string().optional() })).default([]),
});

/** Every service account's grants, from rendered Roles, ClusterRoles and their bindings. */
export function grantsBySubject(objects: readonly RenderedObject[]): Map<string, Grant[]> {
  const roles = new Map<string, PolicyRule[]>();
  for (const o of objects) {
    if (o.apiVersion !== 'rbac.authorization.k8s.io/v1') continue;
    if (o.kind === 'Role' || o.kind === 'ClusterRole') {
      const key =
        o.kind === 'Role' ? `Role/${o.metadata.namespace}/${o.metadata.name}` : `ClusterRole/${o.metadata.name}`;
      roles.set(key, z.array(policyRuleSchema).parse(o.rules ?? []));
    }
  }
  const grants = new Map<string, Grant[]>();
  for (const o of objects) {
    if (o.apiVersion !== 'rbac.authorization.k8s.io/v1') continue;
    if (o.kind !== 'RoleBinding' && o.kind !== 'ClusterRoleBinding') continue;
    const binding = bindingSchema.parse(o);
    const bindingNamespace = o.kind === 'RoleBinding' ? binding.metadata.namespace : undefined;
    const roleKey =
      binding.roleRef.kind === 'Role'
        ? `Role/${bindingNamespace}/${binding.roleRef.name}`
        : `ClusterRole/${binding.roleRef.name}`;
    const rules = roles.get(roleKey);
    if (!rules)
      throw new Error(`${o.kind} ${binding.metadata.name} refers to ${roleKey}, which the chart does not render`);
    for (const subject of binding.subjects.filter((s) => s.kind === 'ServiceAccount')) {
      const user = `system:serviceaccount:${subject.namespace}:${subject.name}`;
      const list = grants.get(user) ?? [];
      list.push(...rules.map((rule) => ({ role: roleKey, namespace: bindingNamespace, rule })));
      grants.set(user, list);
    }
  }
  return grants;
}

const matches = (list: readonly string[], value: string): boolean => list.includes(value) || list.includes('*');

/** Whether one grant allows `verb` for this request, as the RBAC authorizer decides. */
function grantAllows(grant: Grant, request: AuditRequest, verb: string): boolean {
  const { rule } = grant;
  if (grant.namespace !== undefined && grant.namespace !== request.namespace) return false;
  if (!matches(rule.verbs, verb) || !matches(rule.apiGroups, request.apiGroup)) return false;
  if (!matches(rule.resources, request.resource)) return false;
  if (rule.resourceNames && rule.resourceNames.length > 0)
    return request.name !== undefined && rule.resourceNames.includes(request.name);
  return true;
}

/** One permission a grant hands out (a rule expanded per verb, resource and name). */
export interface Permission {
  readonly user: string;
  readonly role: string;
  readonly namespace: string | undefined;
  readonly verb: string;
  readonly apiGroup: string;
  readonly resource: string;
  readonly name: string | undefined;
}

export function describePermission(p: Permission): string {
  const where = p.namespace ? `in ${p.namespace}` : 'cluster-wide';
  const group = p.apiGroup ? `${p.apiGroup}/` : '';
  return `${p.user} (${p.role}): ${p.verb} ${group}${p.resource}${p.name ? ` ${p.name}` : ''} ${where}`;
}

export function describeRequest(r: AuditRequest): string {
  return `${r.user}: ${r.verb} ${r.uri} -> ${r.code}`;
}

function expand(user: string, grant: Grant): Permission[] {
  const names =
    grant.rule.resourceNames && grant.rule.resourceNames.length > 0 ? grant.rule.resourceNames : [undefined];
  return grant.rule.verbs.flatMap((verb) =>
    grant.rule.apiGroups.flatMap((apiGroup) =>
      grant.rule.resources.flatMap((resource) =>
        names.map((name) => ({ user, role: grant.role, namespace: grant.namespace, verb, apiGroup, resource, name })),
      ),
    ),
  );
}

function permissionUsed(p: Permission, requests: readonly AuditRequest[]): boolean {
  return requests.some(
    (r) =>
      r.user === p.user &&
      r.code !== 403 &&
      verbsNeeded(r).includes(p.verb) &&
      r.apiGroup === p.apiGroup &&
      r.resource === p.resource &&
      (p.namespace === undefined || p.namespace === r.namespace) &&
      (p.name === undefined || p.name === r.name),
  );
}

export interface UsageReport {
  /** Requests the apiserver refused (403). */
  readonly refused: AuditRequest[];
  /** Requests that succeeded though no chart rule allows them (a default role did). */
  readonly notGranted: AuditRequest[];
  /** Permissions the chart grants that no request used. */
  readonly unused: Permission[];
}

/**
 * Compares the grants of `users` with their requests. `exempt` lists permissions a scenario
 * cannot exercise, each a `describePermission` string (the caller says why).
 */
export function compareUsage(
  objects: readonly RenderedObject[],
  requests: readonly AuditRequest[],
  users: readonly string[],
  exempt: ReadonlySet<string> = new Set(),
): UsageReport {
  const grants = grantsBySubject(objects);
  const ours = requests.filter((r) => users.includes(r.user));
  const refused = ours.filter((r) => r.code === 403);
  const notGranted = ours.filter(
    (r) =>
      r.code !== 403 &&
      !verbsNeeded(r).every((verb) => (grants.get(r.user) ?? []).some((g) => grantAllows(g, r, verb))),
  );
  const unused = users
    .flatMap((user) => (grants.get(user) ?? []).flatMap((g) => expand(user, g)))
    .filter((p) => !permissionUsed(p, ours) && !exempt.has(describePermission(p)));
  return { refused, notGranted, unused };
}
