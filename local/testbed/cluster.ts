// One simulated member cluster: its own etcd and kube-apiserver (no kubelet, no controllers),
// with an admin kubeconfig that authenticates by client certificate, and on request an audit log
// (every request, metadata level) and kubeconfigs of service accounts (TokenRequest API).
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { request as httpsRequest } from 'node:https';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ApiextensionsV1Api, type KubeConfig, type V1CustomResourceDefinition } from '@kubernetes/client-node';
import { kubeConfigFromYaml } from '../../common/kubeconfig.ts';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import { IsthmusError } from '../../common/errors.ts';
import type { Binaries } from './binaries.ts';
import { TestCa, writeServiceAccountKeys, type PemFiles } from './certs.ts';
import { freePort } from './ports.ts';
import { httpOk } from './probe.ts';
import type { ManagedProcess, ProcessSupervisor } from './processes.ts';
import { waitFor, waitForProcess } from './wait.ts';

const crdDir = fileURLToPath(new URL('../../crds/', import.meta.url));

export interface LocalClusterOptions {
  readonly name: string;
  readonly installCrds: boolean;
  readonly startTimeoutMs: number;
  /** Write an audit log (JSON lines, audit.k8s.io/v1, Metadata level, every request) to auditLogPath. */
  readonly audit?: boolean;
}

/** Every request at Metadata level (who, verb, resource, name, response code), once it is answered or streaming. */
const AUDIT_POLICY = stringifyYaml({
  apiVersion: 'audit.k8s.io/v1',
  kind: 'Policy',
  omitStages: ['RequestReceived'],
  rules: [{ level: 'Metadata' }],
});

function auditArgs(dir: string): string[] {
  return [
    `--audit-policy-file=${join(dir, 'audit-policy.yaml')}`,
    `--audit-log-path=${join(dir, 'audit.log')}`,
    '--audit-log-format=json',
    // Blocking: an event is written before its response is sent, so a reader after the fact misses none.
    '--audit-log-mode=blocking',
    '--audit-log-maxage=1',
    '--audit-log-maxbackup=1',
    '--audit-log-maxsize=512',
  ];
}

/** The names a simulated apiserver's serving certificate carries besides its IP addresses. */
export const APISERVER_DNS_NAMES = ['localhost', 'kubernetes', 'kubernetes.default.svc'] as const;

/** An apiserver and the admin client credentials for it (TLS client certificate). */
export interface AdminTarget {
  readonly name: string;
  readonly server: string;
  readonly tls: { readonly ca: string; readonly cert: string; readonly key: string };
  kubeConfig(): KubeConfig;
}

/**
 * Creates every CRD in crds/ and waits until each is Established. The YAML goes to the API
 * server as it is: client-node's typed serializer would drop `default`, `enum` and
 * `x-kubernetes-*` keys inside `properties`.
 */
export async function installCrds(target: AdminTarget, timeoutMs: number): Promise<void> {
  const files = (await readdir(crdDir)).filter((f) => f.endsWith('.yaml')).sort();
  const crds = await Promise.all(
    files.map(async (f) => parseYaml(await readFile(join(crdDir, f), 'utf8')) as V1CustomResourceDefinition),
  );
  await Promise.all(
    crds.map((body) => adminRequest(target, 'POST', '/apis/apiextensions.k8s.io/v1/customresourcedefinitions', body)),
  );
  const api = target.kubeConfig().makeApiClient(ApiextensionsV1Api);
  await waitFor(
    `${target.name}: CRDs Established`,
    async () => {
      const states = await Promise.all(
        crds.map((c) => api.readCustomResourceDefinition({ name: c.metadata?.name ?? '' })),
      );
      return states.every((s) => s.status?.conditions?.some((c) => c.type === 'Established' && c.status === 'True'));
    },
    timeoutMs,
    100,
  );
}

/** An admin request with a JSON body (or `contentType`), bypassing client-node's typed (de)serialisation. */
export function adminRequest(
  target: AdminTarget,
  method: string,
  path: string,
  body?: unknown,
  contentType = 'application/json',
): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      `${target.server}${path}`,
      { method, ...target.tls, headers: { 'content-type': contentType } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          const parsed = text ? (JSON.parse(text) as { message?: string }) : undefined;
          if ((res.statusCode ?? 500) < 300) resolve(parsed);
          else
            reject(
              new IsthmusError(
                'ISTHMUS_KUBE_REQUEST_FAILED',
                `${method} ${path}: ${res.statusCode} ${parsed?.message ?? text}`,
              ),
            );
        });
      },
    );
    req.once('error', reject);
    req.end(body === undefined ? undefined : JSON.stringify(body));
  });
}

/** A token for a service account (which must exist) from the TokenRequest API, valid for a day. */
export async function serviceAccountToken(target: AdminTarget, namespace: string, name: string): Promise<string> {
  const answer = (await adminRequest(target, 'POST', `/api/v1/namespaces/${namespace}/serviceaccounts/${name}/token`, {
    apiVersion: 'authentication.k8s.io/v1',
    kind: 'TokenRequest',
    spec: { expirationSeconds: 86_400 },
  })) as { status: { token: string } };
  return answer.status.token;
}

export class LocalCluster implements AdminTarget {
  readonly name: string;
  readonly server: string;
  readonly kubeconfigPath: string;
  readonly kubeconfigYaml: string;
  readonly etcd: ManagedProcess;
  readonly apiserver: ManagedProcess;
  /** The apiserver's audit log (JSON lines), when started with `audit`. */
  readonly auditLogPath: string | undefined;
  readonly #tls: { ca: string; cert: string; key: string };

  private constructor(init: {
    name: string;
    server: string;
    kubeconfigPath: string;
    kubeconfigYaml: string;
    etcd: ManagedProcess;
    apiserver: ManagedProcess;
    auditLogPath: string | undefined;
    tls: { ca: string; cert: string; key: string };
  }) {
    this.name = init.name;
    this.server = init.server;
    this.kubeconfigPath = init.kubeconfigPath;
    this.kubeconfigYaml = init.kubeconfigYaml;
    this.etcd = init.etcd;
    this.apiserver = init.apiserver;
    this.auditLogPath = init.auditLogPath;
    this.#tls = init.tls;
  }

  /** A fresh client configuration with admin rights on this cluster. */
  kubeConfig(): KubeConfig {
    return kubeConfigFromYaml(this.kubeconfigYaml);
  }

  /** The admin's client credentials and the apiserver's CA. */
  get tls(): AdminTarget['tls'] {
    return this.#tls;
  }

  /** The CA that signed the apiserver's serving certificate (what a pod finds in its ca.crt). */
  get caPem(): string {
    return this.#tls.ca;
  }

  /** A token for a service account (which must exist) from the TokenRequest API, valid for a day. */
  serviceAccountToken(namespace: string, name: string): Promise<string> {
    return serviceAccountToken(this, namespace, name);
  }

  /** Writes a kubeconfig that authenticates as a service account (serviceAccountToken); returns its path. */
  async serviceAccountKubeconfig(namespace: string, name: string): Promise<string> {
    const path = join(dirname(this.kubeconfigPath), `kubeconfig-${namespace}-${name}`);
    const user = { name: `${namespace}-${name}`, user: { token: await this.serviceAccountToken(namespace, name) } };
    await writeFile(path, renderKubeconfig(this.name, this.server, this.#tls.ca, user), { mode: 0o600 });
    return path;
  }

  static async start(
    supervisor: ProcessSupervisor,
    binaries: Binaries,
    options: LocalClusterOptions,
  ): Promise<LocalCluster> {
    const dir = join(supervisor.dir, options.name);
    await mkdir(dir, { recursive: true });
    const etcd = await startEtcd(supervisor, binaries, dir, options);
    const ca = await TestCa.create(dir, `${options.name}-apiserver`);
    const [serving, admin, sa] = await Promise.all([
      ca.issue('apiserver', 'CN=kube-apiserver', {
        dns: [...APISERVER_DNS_NAMES],
        ip: ['127.0.0.1'],
        server: true,
      }),
      ca.issue('admin', 'CN=isthmus-admin,O=system:masters', { client: true }),
      writeServiceAccountKeys(dir),
    ]);
    if (options.audit) await writeFile(join(dir, 'audit-policy.yaml'), AUDIT_POLICY);
    const { process: apiserver, port } = await startApiserver(supervisor, binaries, dir, options, {
      etcd: etcd.url,
      ca,
      serving,
      sa,
    });
    const server = `https://127.0.0.1:${port}`;
    const kubeconfigYaml = renderKubeconfig(
      options.name,
      server,
      ca.caPem,
      certificateUser(`${options.name}-admin`, admin),
    );
    const kubeconfigPath = join(dir, 'kubeconfig');
    await writeFile(kubeconfigPath, kubeconfigYaml, { mode: 0o600 });
    const tls = { ca: ca.caPem, cert: admin.certPem, key: admin.keyPem };
    await waitForProcess(
      apiserver,
      `${options.name}: kube-apiserver /readyz`,
      () => httpOk(`${server}/readyz`, tls),
      options.startTimeoutMs,
      200,
    );
    const cluster = new LocalCluster({
      name: options.name,
      server,
      kubeconfigPath,
      kubeconfigYaml,
      etcd: etcd.process,
      apiserver,
      auditLogPath: options.audit ? join(dir, 'audit.log') : undefined,
      tls,
    });
    if (options.installCrds) await cluster.installCrds(options.startTimeoutMs);
    return cluster;
  }

  /** Creates every CRD in crds/ and waits until each is Established. */
  installCrds(timeoutMs: number): Promise<void> {
    return installCrds(this, timeoutMs);
  }

  /** An admin request with a JSON body, bypassing client-node's typed (de)serialisation. */
  rawRequest(method: string, path: string, body?: unknown): Promise<unknown> {
    return adminRequest(this, method, path, body);
  }

  memory(): { rss: number; peak: number } {
    const [a, b] = [this.etcd.memory(), this.apiserver.memory()];
    return { rss: a.rss + b.rss, peak: a.peak + b.peak };
  }
}

/** A single-member etcd for a simulated cluster, serving plain HTTP at `url`. */
export function etcdArgs(o: { name: string; dataDir: string; url: string; peer: string }): string[] {
  return [
    `--name=${o.name}`,
    `--data-dir=${o.dataDir}`,
    `--listen-client-urls=${o.url}`,
    `--advertise-client-urls=${o.url}`,
    `--listen-peer-urls=${o.peer}`,
    `--initial-advertise-peer-urls=${o.peer}`,
    `--initial-cluster=${o.name}=${o.peer}`,
    // Test data is disposable: skipping fsync makes a cold start and every write much faster.
    '--unsafe-no-fsync',
    '--quota-backend-bytes=1073741824',
    '--log-level=warn',
  ];
}

/** A simulated cluster's kube-apiserver: RBAC, client certificates and service-account tokens, no controllers. */
export function apiserverArgs(o: {
  etcd: string;
  /** Where it binds and what it advertises (kube-apiserver needs an advertise address on loopback). */
  address: string;
  port: number;
  certDir: string;
  serving: { certFile: string; keyFile: string };
  clientCaFile: string;
  sa: { publicFile: string; privateFile: string };
}): string[] {
  return [
    `--etcd-servers=${o.etcd}`,
    `--bind-address=${o.address}`,
    `--advertise-address=${o.address}`,
    `--secure-port=${o.port}`,
    `--cert-dir=${o.certDir}`,
    `--tls-cert-file=${o.serving.certFile}`,
    `--tls-private-key-file=${o.serving.keyFile}`,
    `--client-ca-file=${o.clientCaFile}`,
    `--service-account-key-file=${o.sa.publicFile}`,
    `--service-account-signing-key-file=${o.sa.privateFile}`,
    '--service-account-issuer=https://kubernetes.default.svc',
    // Only used to allocate ClusterIPs for Service objects; nothing routes to this range.
    '--service-cluster-ip-range=10.96.0.0/16',
    '--authorization-mode=RBAC',
    '--endpoint-reconciler-type=none',
    '--enable-priority-and-fairness=false',
    '--profiling=false',
    '--v=0',
  ];
}

async function startEtcd(
  supervisor: ProcessSupervisor,
  binaries: Binaries,
  dir: string,
  options: LocalClusterOptions,
): Promise<{ process: ManagedProcess; url: string }> {
  for (let attempt = 1; ; attempt++) {
    const [clientPort, peerPort] = [await freePort(), await freePort()];
    const url = `http://127.0.0.1:${clientPort}`;
    const peer = `http://127.0.0.1:${peerPort}`;
    const process = await supervisor.start({
      name: `${options.name}-etcd`,
      command: binaries.etcd,
      args: etcdArgs({ name: options.name, dataDir: join(dir, `etcd-${attempt}`), url, peer }),
    });
    try {
      await waitForProcess(
        process,
        `${options.name}: etcd /health`,
        () => httpOk(`${url}/health`),
        options.startTimeoutMs,
        50,
      );
      return { process, url };
    } catch (err) {
      await process.stop();
      if (attempt >= 3) throw err;
    }
  }
}

async function startApiserver(
  supervisor: ProcessSupervisor,
  binaries: Binaries,
  dir: string,
  options: LocalClusterOptions,
  inputs: { etcd: string; ca: TestCa; serving: PemFiles; sa: { publicFile: string; privateFile: string } },
): Promise<{ process: ManagedProcess; port: number }> {
  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    const process = await supervisor.start({
      name: `${options.name}-kube-apiserver`,
      command: binaries.kubeApiserver,
      args: [
        ...apiserverArgs({
          etcd: inputs.etcd,
          address: '127.0.0.1',
          port,
          certDir: join(dir, 'apiserver-certs'),
          serving: inputs.serving,
          clientCaFile: inputs.ca.caFile,
          sa: inputs.sa,
        }),
        ...(options.audit ? auditArgs(dir) : []),
      ],
    });
    // A lost port race shows up as an early exit with "address already in use": try another port.
    const lostRace = await Promise.race([
      process.exited().then(() => /address already in use/.test(process.logTail())),
      new Promise<false>((resolve) => setTimeout(() => resolve(false), 1_500)),
    ]);
    if (!lostRace) return { process, port };
    if (attempt >= 3)
      throw new IsthmusError('ISTHMUS_PROCESS_FAILED', `kube-apiserver could not bind a port:\n${process.logTail()}`);
  }
}

/** A kubeconfig user entry: a client certificate, or a token. */
export interface KubeconfigUser {
  readonly name: string;
  readonly user: Record<string, string>;
}

/** The user entry of a client certificate. */
export function certificateUser(name: string, pem: PemFiles): KubeconfigUser {
  const b64 = (s: string): string => Buffer.from(s).toString('base64');
  return { name, user: { 'client-certificate-data': b64(pem.certPem), 'client-key-data': b64(pem.keyPem) } };
}

/** A kubeconfig for a simulated cluster, as `user`. */
export function renderKubeconfig(name: string, server: string, caPem: string, user: KubeconfigUser): string {
  return stringifyYaml({
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name, cluster: { server, 'certificate-authority-data': Buffer.from(caPem).toString('base64') } }],
    users: [user],
    contexts: [{ name, context: { cluster: name, user: user.name } }],
    'current-context': name,
  });
}
