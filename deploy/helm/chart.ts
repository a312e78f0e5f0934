// Runs the pinned helm (scripts/ensure-binaries.sh) on the chart in deploy/helm/isthmus: lint and
// template with given values, the rendered manifests parsed into objects, and applies them to a
// test bed cluster. Values go to helm on stdin (`--values -`), so nothing is written to disk.
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { KubernetesObject } from '@kubernetes/client-node';
import { parseAllDocuments, stringify as stringifyYaml } from 'yaml';
import { IsthmusError, describeError } from '../../common/errors.ts';
import { ensureNamespace } from '../../common/kube/index.ts';
import { resolveBinaries } from '../../local/testbed/binaries.ts';
import type { FederationComponent } from '../../local/federation/index.ts';
import { adminRequest, type AdminTarget } from '../../local/testbed/cluster.ts';

export const chartDir = fileURLToPath(new URL('./isthmus/', import.meta.url));
/** The namespace the tests install the chart into: the components' default namespace. */
export const RELEASE_NAMESPACE = 'isthmus-system';

export interface HelmResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** A rendered object: apiVersion, kind and metadata are always there. */
export type RenderedObject = KubernetesObject & {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; annotations?: Record<string, string> };
  [field: string]: unknown;
};

async function helmPath(): Promise<string> {
  const { helm } = await resolveBinaries();
  if (!helm)
    throw new IsthmusError('ISTHMUS_BINARY_MISSING', 'helm (scripts/ensure-binaries.sh printed no path for it)');
  return helm;
}

/** `helm <args>`, with `values` as YAML on stdin (`--values -`) when given; never throws on a non-zero exit. */
export async function runHelm(args: readonly string[], values?: Record<string, unknown>): Promise<HelmResult> {
  const helm = await helmPath();
  return new Promise((resolve, reject) => {
    const child = execFile(
      helm,
      values ? [...args, '--values', '-'] : args,
      { maxBuffer: 16 << 20, timeout: 120_000 },
      (err, stdout, stderr) => {
        if (err && typeof err.code !== 'number')
          reject(new IsthmusError('ISTHMUS_PROCESS_FAILED', `helm ${args[0]}: ${describeError(err)}`, { cause: err }));
        else resolve({ code: err ? Number(err.code) : 0, stdout, stderr });
      },
    );
    child.stdin?.end(values ? stringifyYaml(values) : undefined);
  });
}

/** `helm lint --strict` of the chart with these values. */
export function lintChart(values: Record<string, unknown>): Promise<HelmResult> {
  return runHelm(['lint', '--strict', chartDir], values);
}

/**
 * `helm template` as release `isthmus` in RELEASE_NAMESPACE (where the components' namespace
 * defaults put them): every rendered object, hooks included. Throws with helm's message on failure.
 */
export async function renderChart(values: Record<string, unknown>): Promise<RenderedObject[]> {
  const result = await runHelm(['template', 'isthmus', chartDir, '--namespace', RELEASE_NAMESPACE], values);
  if (result.code !== 0)
    throw new IsthmusError('ISTHMUS_PROCESS_FAILED', `helm template exited ${result.code}: ${result.stderr.trim()}`);
  return parseAllDocuments(result.stdout)
    .map((doc) => doc.toJS() as RenderedObject | null)
    .filter((o): o is RenderedObject => o !== null);
}

/** The collection path of an object's kind, from the apiserver's discovery. */
async function collectionPath(cluster: AdminTarget, object: RenderedObject): Promise<string> {
  const base = object.apiVersion.includes('/') ? `/apis/${object.apiVersion}` : `/api/${object.apiVersion}`;
  const list = (await adminRequest(cluster, 'GET', base)) as {
    resources: { name: string; kind: string; namespaced: boolean }[];
  };
  const resource = list.resources.find((r) => r.kind === object.kind && !r.name.includes('/'));
  if (!resource) throw new Error(`the apiserver serves no ${object.kind} in ${object.apiVersion}`);
  return resource.namespaced
    ? `${base}/namespaces/${object.metadata.namespace}/${resource.name}`
    : `${base}/${resource.name}`;
}

/**
 * Server-side applies rendered objects one by one, as `helm install` would create them; with
 * `dryRun`, the apiserver validates (strictly: unknown fields are errors) and stores nothing.
 * Returns what the apiserver answered for each.
 */
export async function applyRendered(
  cluster: AdminTarget,
  objects: readonly RenderedObject[],
  options: { dryRun?: boolean } = {},
): Promise<RenderedObject[]> {
  const stored: RenderedObject[] = [];
  const query = `fieldManager=helm&fieldValidation=Strict${options.dryRun ? '&dryRun=All' : ''}`;
  for (const object of objects) {
    const path = `${await collectionPath(cluster, object)}/${object.metadata.name}?${query}`;
    stored.push((await adminRequest(cluster, 'PATCH', path, object, 'application/apply-patch+yaml')) as RenderedObject);
  }
  return stored;
}

const RBAC_KINDS = new Set(['Namespace', 'ServiceAccount', 'Role', 'ClusterRole', 'RoleBinding', 'ClusterRoleBinding']);

/**
 * What the chart gives its components to run as: the release namespace (`helm install
 * --create-namespace`), then its namespaces, ServiceAccounts, Roles, ClusterRoles and bindings,
 * applied as `helm install` would (pods do not run in the test bed).
 */
export async function installChartRbac(cluster: AdminTarget, objects: readonly RenderedObject[]): Promise<void> {
  await ensureNamespace(cluster.kubeConfig(), RELEASE_NAMESPACE);
  await applyRendered(
    cluster,
    objects.filter((o) => RBAC_KINDS.has(o.kind)),
  );
}

/** The chart's service account for `component` (each has its own), in RELEASE_NAMESPACE. */
export const chartServiceAccount = (component: FederationComponent): string => `isthmus-${component}`;

/** The fewest values each role renders with (its RBAC does not depend on them). */
export const MINIMAL_VALUES = {
  hub: { role: 'hub', hub: { nats: { urls: ['tls://127.0.0.1:4222'], existingSecret: 'hub-nats' } } },
  member: { role: 'member', agent: { clusterId: 'cluster-a' } },
} as const satisfies Record<'hub' | 'member', Record<string, unknown>>;
