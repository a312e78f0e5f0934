// The Helm chart (deploy/helm/isthmus) with the pinned helm: lint --strict for both roles, the
// rendered configuration accepted by the components' own schemas, the pods' hardening, the join
// hook, refusals by values.schema.json, and every rendered object accepted by a real apiserver
// (server-side apply, dryRun=All, fieldValidation=Strict).
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { z } from 'zod';
import { loadConfig } from '../../common/config.ts';
import { hubConfigSchema } from '../../hub/config.ts';
import { agentConfigSchema } from '../../spoke-agent/config.ts';
import { bootstrapSchema } from '../../spoke-agent/credentials.ts';
import { gatewayConfigSchema } from '../../east-west-gateway/config.ts';
import { startTestbed, type LocalCluster, type Testbed } from '../../local/testbed/index.ts';
import {
  RELEASE_NAMESPACE,
  applyRendered,
  chartDir,
  lintChart,
  renderChart,
  runHelm,
  type RenderedObject,
} from './chart.ts';

const repoCrds = fileURLToPath(new URL('../../crds/', import.meta.url));
const namespace = RELEASE_NAMESPACE;

const hubValues = {
  role: 'hub',
  hub: {
    nats: {
      urls: ['tls://nats-0.nats.svc:4222', 'tls://nats-1.nats.svc:4222'],
      replicas: 3,
      existingSecret: 'hub-nats',
    },
    root: { existingSecret: 'isthmus-root' },
    advertiseEndpoints: ['hub.example.com:9443'],
  },
};
const memberValues = {
  role: 'member',
  agent: {
    clusterId: 'cluster-a',
    region: 'eu-west',
    zone: 'eu-west-1a',
    gatewayAddresses: [{ address: '203.0.113.10', port: 15443 }],
  },
  join: {
    hubEndpoints: ['hub.example.com:9443'],
    token: 'abcdef.0123456789abcdef',
    caPin: `sha256:${'ab'.repeat(32)}`,
  },
};
const roles = [
  ['hub', hubValues],
  ['member', memberValues],
] as const;

interface Container {
  name: string;
  args: string[];
  securityContext: Record<string, unknown>;
  volumeMounts: { name: string; mountPath: string; subPath?: string }[];
  readinessProbe: { httpGet: { path: string; port: string } };
  livenessProbe: { httpGet: { path: string; port: string } };
  ports: { name: string; containerPort: number }[];
}
interface PodSpec {
  serviceAccountName: string;
  automountServiceAccountToken: boolean;
  securityContext: Record<string, unknown>;
  containers: Container[];
  volumes: { name: string; configMap?: { name: string }; secret?: { secretName: string } }[];
}
type Deployment = RenderedObject & {
  spec: { template: { metadata: { annotations: Record<string, string> }; spec: PodSpec } };
};

function deployments(objects: RenderedObject[]): Deployment[] {
  return objects.filter((o): o is Deployment => o.kind === 'Deployment');
}

const schemas: Record<string, z.ZodType> = {
  hub: hubConfigSchema,
  agent: agentConfigSchema,
  gateway: gatewayConfigSchema,
};

/**
 * The configuration a container's process would load: its args after the subcommand, with the
 * mounted ConfigMap's file in place and `$(POD_IP)` expanded as the kubelet does.
 */
async function loadContainerConfig(objects: RenderedObject[], pod: PodSpec, container: Container): Promise<unknown> {
  const [component, ...args] = container.args;
  const schema = schemas[component ?? ''];
  if (!schema) throw new Error(`container ${container.name} runs unknown subcommand ${component}`);
  const configPath = args[args.indexOf('--config') + 1];
  const mount = container.volumeMounts.find((m) => m.mountPath === configPath);
  const volume = pod.volumes.find((v) => v.name === mount?.name);
  const configMap = objects.find((o) => o.kind === 'ConfigMap' && o.metadata.name === volume?.configMap?.name) as
    (RenderedObject & { data: Record<string, string> }) | undefined;
  const text = configMap?.data[mount?.subPath ?? ''];
  if (text === undefined) throw new Error(`${container.name}: no ConfigMap mounted at ${configPath}`);
  const dir = await mkdtemp(join(tmpdir(), 'isthmus-chart-'));
  try {
    const file = join(dir, 'config.yaml');
    await writeFile(file, text);
    const argv = args.map((a) => (a === configPath ? file : a.replace('$(POD_IP)', '10.244.1.7')));
    return loadConfig(schema, argv);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

describe('Helm chart deploy/helm/isthmus', () => {
  it.each(roles)('passes helm lint --strict as %s', async (_role, values) => {
    const result = await lintChart(values);
    expect(result.stderr + result.stdout).toContain('1 chart(s) linted, 0 chart(s) failed');
    expect(result.code).toBe(0);
  });

  it('ships the repository CRDs unchanged in crds/', async () => {
    const files = (await readdir(repoCrds)).filter((f) => f.endsWith('.yaml')).sort();
    expect((await readdir(join(chartDir, 'crds'))).sort()).toEqual(files);
    for (const f of files)
      expect(await readFile(join(chartDir, 'crds', f), 'utf8'), f).toBe(await readFile(join(repoCrds, f), 'utf8'));
  });

  it('renders a configuration every component accepts, with the values in it and every file it names mounted', async () => {
    const loaded = new Map<string, Record<string, unknown>>();
    for (const [, values] of roles) {
      const objects = await renderChart(values);
      for (const d of deployments(objects)) {
        const pod = d.spec.template.spec;
        for (const container of pod.containers) {
          const config = (await loadContainerConfig(objects, pod, container)) as Record<string, unknown>;
          loaded.set(container.args[0] ?? '', config);
          // Every *File setting (NATS credentials, the root) points into a mounted volume.
          const files = JSON.stringify(config).match(/"[A-Za-z]*File":"[^"]+"/g) ?? [];
          for (const setting of files) {
            const path = setting.split('":"')[1]?.slice(0, -1) ?? '';
            expect(
              container.volumeMounts.some((m) => path.startsWith(`${m.mountPath}/`)),
              `${setting} mounted`,
            ).toBe(true);
          }
        }
      }
    }
    expect([...loaded.keys()].sort()).toEqual(['agent', 'gateway', 'hub']);
    expect(loaded.get('hub')).toMatchObject({
      namespace,
      kubeconfig: '',
      advertiseEndpoints: ['hub.example.com:9443'],
      nats: { urls: hubValues.hub.nats.urls, replicas: 3, nkeySeedFile: '/etc/isthmus/nats/nkey.seed' },
      certificates: { rootCertFile: '/etc/isthmus/root/tls.crt', rootKeyFile: '/etc/isthmus/root/tls.key' },
    });
    expect(loaded.get('agent')).toMatchObject({
      clusterId: 'cluster-a',
      region: 'eu-west',
      zone: 'eu-west-1a',
      kubeconfig: '',
      gatewayName: 'east-west',
      dns: { host: '0.0.0.0', port: 10053 },
    });
    expect(loaded.get('gateway')).toMatchObject({
      clusterId: 'cluster-a',
      name: 'east-west',
      outbound: { address: '10.244.1.7' },
      inbound: { port: 15443 },
    });
  });

  it('runs every pod as its own service account, uid 65532, read-only, without capabilities, probed and scraped', async () => {
    const all = [...(await renderChart(hubValues)), ...(await renderChart(memberValues))];
    const found = deployments(all);
    expect(found.map((d) => d.metadata.name).sort()).toEqual(['isthmus-agent', 'isthmus-gateway', 'isthmus-hub']);
    for (const d of found) {
      const { metadata, spec: pod } = d.spec.template;
      expect(pod.serviceAccountName).toBe(d.metadata.name);
      expect(all.some((o) => o.kind === 'ServiceAccount' && o.metadata.name === pod.serviceAccountName)).toBe(true);
      expect(pod.automountServiceAccountToken).toBe(true);
      expect(pod.securityContext).toMatchObject({
        runAsNonRoot: true,
        runAsUser: 65532,
        seccompProfile: { type: 'RuntimeDefault' },
      });
      for (const c of pod.containers) {
        expect(c.securityContext).toEqual({
          allowPrivilegeEscalation: false,
          readOnlyRootFilesystem: true,
          capabilities: { drop: ['ALL'] },
        });
        expect(c.readinessProbe.httpGet).toEqual({ path: '/readyz', port: 'status' });
        expect(c.livenessProbe.httpGet).toEqual({ path: '/healthz', port: 'status' });
        const status = c.ports.find((p) => p.name === 'status');
        expect(metadata.annotations).toMatchObject({
          'prometheus.io/scrape': 'true',
          'prometheus.io/port': String(status?.containerPort),
        });
      }
    }
    const gatewayService = all.find((o) => o.kind === 'Service' && o.metadata.name === 'isthmus-gateway') as
      (RenderedObject & { spec: { ports: { port: number }[] } }) | undefined;
    expect(gatewayService?.spec.ports.map((p) => p.port)).toEqual([15443]);
    expect(all.filter((o) => o.kind === 'PodDisruptionBudget').map((o) => o.metadata.name)).toContain(
      'isthmus-gateway',
    );
  });

  it('writes the join request as a pre-install hook in the format the agent reads', async () => {
    const objects = await renderChart(memberValues);
    const secret = objects.find((o) => o.kind === 'Secret' && o.metadata.name === 'isthmus-join') as
      (RenderedObject & { stringData: Record<string, string> }) | undefined;
    expect(secret?.metadata.annotations?.['helm.sh/hook']).toBe('pre-install');
    const data = secret?.stringData ?? {};
    expect(
      bootstrapSchema.parse({
        hubEndpoints: (data['hub-endpoints'] ?? '').split(','),
        token: data.token,
        caPin: data['ca-pin'],
      }),
    ).toEqual(memberValues.join);
    const { join: _omitted, ...withoutJoin } = memberValues;
    expect((await renderChart(withoutJoin)).some((o) => o.metadata.name === 'isthmus-join')).toBe(false);
  });

  describe('on a real apiserver', () => {
    let bed: Testbed;
    let cluster: LocalCluster;
    beforeAll(async () => {
      bed = await startTestbed({ clusters: 1, nats: false });
      cluster = bed.clusters[0] as LocalCluster;
      await cluster.rawRequest('POST', '/api/v1/namespaces', {
        apiVersion: 'v1',
        kind: 'Namespace',
        metadata: { name: namespace },
      });
    });
    afterAll(async () => {
      await bed?.[Symbol.asyncDispose]();
    });

    it.each(roles)(
      'accepts every object rendered for %s (server-side apply, dry run, strict fields)',
      async (_role, values) => {
        const objects = await renderChart(values);
        // A namespace the chart creates must exist for a dry run of what goes into it.
        await applyRendered(
          cluster,
          objects.filter((o) => o.kind === 'Namespace'),
        );
        const stored = await applyRendered(cluster, objects, { dryRun: true });
        const accepted = stored.map((o) => `${o.kind}/${o.metadata.name}`);
        expect(accepted).toEqual(objects.map((o) => `${o.kind}/${o.metadata.name}`));
        expect(accepted).toContain('Deployment/' + (values.role === 'hub' ? 'isthmus-hub' : 'isthmus-agent'));
      },
    );

    it('refuses, in the same dry run, an object with a field the API does not know', async () => {
      const [deployment] = deployments(await renderChart(hubValues));
      const container = deployment?.spec.template.spec.containers[0] as Container & { readOnlyRoot?: boolean };
      container.readOnlyRoot = true;
      await expect(applyRendered(cluster, [deployment as Deployment], { dryRun: true })).rejects.toThrow(
        /containers\[name="hub"\]\.readOnlyRoot: field not declared in schema/,
      );
    });

    it.each([
      [
        'a role that does not exist',
        { ...memberValues, role: 'spoke' },
        "at '/role': value must be one of 'hub', 'member'",
      ],
      [
        'an even number of NATS replicas',
        { role: 'hub', hub: { ...hubValues.hub, nats: { ...hubValues.hub.nats, replicas: 2 } } },
        "at '/hub/nats/replicas': value must be one of 1, 3, 5",
      ],
      [
        'a CA pin that is not sha256',
        { ...memberValues, join: { ...memberValues.join, caPin: 'sha1:0123' } },
        "at '/join/caPin'",
      ],
      [
        'a misspelt setting',
        { ...memberValues, gateway: { replica: 3 } },
        "at '/gateway': additional properties 'replica' not allowed",
      ],
      ['a member without a cluster id', { role: 'member' }, "at '/agent/clusterId': minLength: got 0, want 1"],
      ['a hub without NATS', { role: 'hub' }, "at '/hub/nats/urls': minItems: got 0, want 1"],
    ])('helm install refuses %s, naming the value', async (_what, values, message) => {
      const result = await runHelm(
        ['install', 'isthmus', chartDir, '--namespace', namespace, '--kubeconfig', cluster.kubeconfigPath],
        values,
      );
      expect(result.code).not.toBe(0);
      expect(result.stderr).toContain("values don't meet the specifications of the schema");
      expect(result.stderr).toContain(message);
      // Nothing was installed.
      const list = await runHelm(['list', '--namespace', namespace, '--kubeconfig', cluster.kubeconfigPath, '-q']);
      expect(list.stdout.trim()).toBe('');
    });
  });
});
