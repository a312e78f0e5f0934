// The README's main command (npm run demo): live, locality-aware failover on embedded defaults.
// A hub cluster running the hub, NATS, and three member clusters in two regions (cluster-a
// eu-west-1a, cluster-b eu-west-1b, cluster-c us-east-1a), each in its own network namespace
// with an agent and an east-west gateway; every member joins through a bootstrap token and
// exports shop/cart with two live backends. A client in cluster-a opens ~20 new connections a
// second through the clusterset endpoint while a scripted scenario kills and restarts backends
// and blackholes a gateway; the terminal shows, refreshed every second, which cluster served
// the last second's connections, the failures so far, and the plan cluster-a's gateway
// publishes (level, share, why). Runs until Ctrl-C (or --set exitAfterSeconds=N), then removes
// every process and namespace.
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { DiscoveryV1Api } from '@kubernetes/client-node';
import { z } from 'zod';
import { readListenerTable } from '../cli/commands/routes.ts';
import { DEFAULT_GATEWAY_NAME, type OutboundListenerRecord } from '../common/gateway-contract.ts';
import { ensureNamespace } from '../common/kube/index.ts';
import { runComponent } from '../common/main.ts';
import { derivedServiceName } from '../spoke-agent/imports/naming.ts';
import {
  Federation,
  exportService,
  netnsAvailable,
  waitFor,
  waitForProcess,
  type Fault,
  type LocalCluster,
  type ManagedProcess,
} from '../local/index.ts';

const repo = fileURLToPath(new URL('../', import.meta.url));
const NS = 'shop';
const SERVICE = 'cart';
const PORT = 8080;
const CONNECTIONS_PER_SECOND = 20;
/** A client connection fails after this long; generous against the gateway's 5 s connect timeout (a hung connect moves on). */
const CLIENT_TIMEOUT_MS = 15_000;
const BACKENDS_PER_CLUSTER = 2;
const GATEWAY_NAMESPACE = 'isthmus-system';

const demoConfig = z
  .object({
    members: z
      .number()
      .int()
      .refine((n) => n === 3, {
        message:
          'the failover scenario needs exactly 3 members (cluster-a and cluster-b in eu-west, cluster-c in us-east)',
      })
      .default(3),
    hubReplicas: z.number().int().min(1).max(2).default(1),
    /** Tear down after this many seconds of the live view (0 = run until Ctrl-C). */
    exitAfterSeconds: z.number().int().min(0).default(0),
    /** How long each scene of the scenario lasts. */
    sceneSeconds: z.number().int().min(4).max(120).default(9),
  })
  .strict();

interface Backend {
  readonly id: string;
  readonly cluster: string;
  readonly address: string;
  process: ManagedProcess | undefined;
}

/** One line of the client's output (local/workloads/netns-tool.ts loop): what ended in that second. */
interface ClientSecond {
  readonly at: number;
  readonly served: Record<string, number>;
  readonly failed: number;
  /** When each failed connection began (a connection that hangs fails seconds after its cause). */
  readonly failedStarts?: number[];
  readonly errors: string[];
  readonly open: number;
  readonly maxMs: number;
}

interface Scene {
  /** Short, for the table of scenes. */
  readonly label: string;
  readonly title: string;
  readonly expect: string;
  readonly act: () => Promise<void>;
}

interface SceneRecord {
  readonly number: number;
  readonly label: string;
  readonly title: string;
  readonly expect: string;
  readonly startedAt: number;
  readonly served: Map<string, number>;
  /** Failed connections that began during this scene, and those of them that began in its first second. */
  failed: number;
  failedFirstSecond: number;
  seconds: number;
}

interface ClusterInfo {
  readonly name: string;
  readonly locality: string;
}

/** The terminal view: redrawn in place on a TTY, one plain line per second otherwise. */
class LiveView {
  readonly #clusters: readonly ClusterInfo[];
  readonly #client: string;
  readonly #target: { address: string; port: number };
  readonly #clusterOf: Map<string, string>;
  readonly #tty: boolean;
  readonly #startedAt = Date.now();
  readonly #scenes: SceneRecord[] = [];
  #last: ClientSecond | undefined;
  #failedTotal = 0;
  #connectionsTotal = 0;
  #plan: OutboundListenerRecord | undefined;
  #planError = '';
  #drawnLines = 0;
  #notes: string[] = [];

  constructor(options: {
    clusters: readonly ClusterInfo[];
    client: string;
    target: { address: string; port: number };
    backends: readonly Backend[];
    tty: boolean;
  }) {
    this.#clusters = options.clusters;
    this.#client = options.client;
    this.#target = options.target;
    this.#clusterOf = new Map(options.backends.map((x) => [x.id, x.cluster]));
    this.#tty = options.tty;
    if (this.#tty) {
      process.stdout.write('\x1b[?25l');
      process.once('exit', () => process.stdout.write('\x1b[?25h'));
    }
  }

  startScene(scene: Scene): void {
    const record: SceneRecord = {
      number: this.#scenes.length + 1,
      label: scene.label,
      title: scene.title,
      expect: scene.expect,
      startedAt: Date.now(),
      served: new Map(),
      failed: 0,
      failedFirstSecond: 0,
      seconds: 0,
    };
    this.#scenes.push(record);
    if (this.#tty) this.#draw();
    // No tally here: a connection that hangs fails up to CLIENT_TIMEOUT_MS later, and counts
    // against the scene it began in; the table at the end has the final numbers.
    else process.stdout.write(`\n== scene ${record.number}: ${record.title} — expect ${record.expect}\n`);
  }

  second(line: ClientSecond): void {
    const scene = this.#scenes.at(-1);
    // Seconds the client counted before the scenario began are not part of it.
    if (!scene || line.at < (this.#scenes[0]?.startedAt ?? 0)) return;
    this.#last = line;
    const served = this.#byCluster(line);
    const ok = [...served.values()].reduce((sum, n) => sum + n, 0);
    this.#failedTotal += line.failed;
    this.#connectionsTotal += ok + line.failed;
    for (const [cluster, n] of served) scene.served.set(cluster, (scene.served.get(cluster) ?? 0) + n);
    const starts = line.failedStarts ?? [];
    for (const began of starts) {
      const during = this.#scenes.findLast((x) => x.startedAt <= began) ?? scene;
      during.failed++;
      if (began - during.startedAt < 1_000) during.failedFirstSecond++;
    }
    scene.failed += line.failed - starts.length;
    scene.seconds++;
    if (this.#tty) this.#draw();
    else process.stdout.write(`${this.#plainLine(line, served, ok)}\n`);
  }

  plan(listener: OutboundListenerRecord | undefined, error = ''): void {
    if (listener) this.#plan = listener;
    this.#planError = error;
  }

  note(text: string): void {
    this.#notes.push(text);
    if (!this.#tty) process.stdout.write(`${text}\n`);
  }

  /** The final word: what each scene measured. */
  finish(): void {
    // On a TTY the last frame stays as drawn (log lines may have followed it).
    if (this.#tty) process.stdout.write('\x1b[?25h');
    const played = this.#scenes.filter((x) => x.seconds > 0);
    process.stdout.write(
      [
        '',
        'Connections per scene: served, by cluster; FAILED, those begun in the scene that failed; LATER, of those, the ones begun after its first second:',
        ...this.#sceneTable(played),
        '',
      ].join('\n') + '\n',
    );
  }

  #byCluster(line: ClientSecond): Map<string, number> {
    const served = new Map<string, number>(this.#clusters.map((c) => [c.name, 0]));
    for (const [id, n] of Object.entries(line.served)) {
      const cluster = this.#clusterOf.get(id) ?? id;
      served.set(cluster, (served.get(cluster) ?? 0) + n);
    }
    return served;
  }

  #route(cluster: string): { text: string; why: string } {
    const route = this.#plan?.routes.find((r) => r.cluster === cluster);
    if (!route) return { text: `${'-'.padEnd(5)} ${'-'.padStart(6)} ${'-'.padEnd(7)}`, why: '' };
    const why = route.reason || (route.share > 0 ? 'serving' : 'not needed: a better level takes it all');
    return {
      text: `${`L${route.level < 0 ? '-' : route.level}`.padEnd(5)} ${pct(route.share).padStart(6)} ${`${route.healthy}/${route.total}`.padEnd(7)}`,
      why,
    };
  }

  #elapsed(since: number): string {
    const s = Math.max(0, Math.floor((Date.now() - since) / 1000));
    return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`;
  }

  #draw(): void {
    const width = Math.max(40, (process.stdout.columns || 120) - 1);
    const scene = this.#scenes.at(-1);
    const line = this.#last;
    const served = line ? this.#byCluster(line) : new Map<string, number>();
    const ok = [...served.values()].reduce((sum, n) => sum + n, 0);
    const rows: { text: string; style?: string }[] = [];
    rows.push({
      text: `[${this.#elapsed(this.#startedAt)}] Isthmus live failover — client in ${this.#client} → ${NS}/${SERVICE} via ${this.#target.address}:${this.#target.port}, ${CONNECTIONS_PER_SECOND} new connections/s`,
    });
    rows.push({ text: '' });
    rows.push({
      text: scene ? `Scene ${scene.number} (${this.#elapsed(scene.startedAt)}): ${scene.title}` : 'Starting…',
      style: '\x1b[1m',
    });
    rows.push({ text: scene ? `  expect: ${scene.expect}` : '' });
    rows.push({ text: '' });
    const planColumn = 10 + 1 + 11 + 1 + 23;
    rows.push({ text: `${' '.repeat(planColumn)}${this.#client}'s gateway plan (isthmus routes)` });
    rows.push({
      text: `${'CLUSTER'.padEnd(10)} ${'LOCALITY'.padEnd(11)} ${'LAST SECOND'.padEnd(23)}${'LEVEL'.padEnd(5)} ${'SHARE'.padStart(6)} ${'HEALTHY'.padEnd(7)} WHY`,
    });
    for (const cluster of this.#clusters) {
      const n = served.get(cluster.name) ?? 0;
      const share = ok > 0 ? n / ok : 0;
      const route = this.#route(cluster.name);
      const style = n > 0 ? { style: '\x1b[32m' } : {};
      const row = `${cluster.name.padEnd(10)} ${cluster.locality.padEnd(11)} ${bar(share)} ${pct(share).padStart(5)} ${String(n).padStart(3)}   ${route.text}`;
      // On a narrow terminal the reason goes on a line of its own.
      if (row.length + 1 + route.why.length <= width) rows.push({ text: `${row} ${route.why}`, ...style });
      else rows.push({ text: row, ...style }, { text: `${' '.repeat(12)}${route.why}` });
    }
    rows.push({ text: '' });
    const failedNow = line?.failed ?? 0;
    rows.push({
      text: `last second: ${ok} served, ${failedNow} failed${line ? `, slowest ${line.maxMs} ms, ${line.open} in flight` : ''}    failed so far: ${this.#failedTotal} of ${this.#connectionsTotal}`,
      ...(failedNow > 0 ? { style: '\x1b[31m' } : {}),
    });
    if (line?.errors[0]) rows.push({ text: `  e.g. ${line.errors[0]}`, style: '\x1b[31m' });
    if (this.#planError) rows.push({ text: `(cannot read the gateway's plan: ${this.#planError})` });
    rows.push({ text: '' });
    rows.push({ text: 'Scenes so far:' });
    for (const text of this.#sceneTable(this.#scenes.slice(-7))) rows.push({ text });
    for (const note of this.#notes.slice(-2)) rows.push({ text: note, style: '\x1b[31m' });
    rows.push({ text: '' });
    rows.push({ text: 'Ctrl-C tears everything down.' });
    const frame = rows.map((r) => {
      const text = r.text.length > width ? `${r.text.slice(0, width - 1)}…` : r.text;
      return r.style ? `${r.style}${text}\x1b[0m` : text;
    });
    const up = this.#drawnLines > 0 ? `\x1b[${this.#drawnLines}F` : '';
    process.stdout.write(`${up}${frame.map((f) => `${f}\x1b[K`).join('\n')}\n\x1b[J`);
    this.#drawnLines = frame.length;
  }

  #plainLine(line: ClientSecond, served: Map<string, number>, ok: number): string {
    const scene = this.#scenes.at(-1);
    const shares = this.#clusters
      .map((cl) => `${cl.name} ${pct(ok > 0 ? (served.get(cl.name) ?? 0) / ok : 0).padStart(4)}`)
      .join(' ');
    const plan = this.#clusters.map((cl) => {
      const route = this.#route(cl.name);
      return `${cl.name} ${route.text.replace(/\s+/g, ' ').trim()} (${route.why})`;
    });
    return `+${this.#elapsed(this.#startedAt)} scene ${scene?.number ?? 0} | last 1 s: ${shares} | ${ok} served, ${line.failed} failed, slowest ${line.maxMs} ms | failed so far ${this.#failedTotal} | plan: ${plan.join('; ')}${line.errors[0] ? ` | e.g. ${line.errors[0]}` : ''}`;
  }

  #sceneTable(scenes: readonly SceneRecord[]): string[] {
    const header = `  ${'#'.padStart(3)}  ${'SCENE'.padEnd(25)} ${this.#clusters.map((cl) => cl.name.padStart(10)).join('')} ${'FAILED'.padStart(7)} ${'LATER'.padStart(6)}`;
    return [
      header,
      ...scenes.map(
        (s) =>
          `  ${String(s.number).padStart(3)}  ${s.label.padEnd(25)} ${this.#clusters.map((cl) => String(s.served.get(cl.name) ?? 0).padStart(10)).join('')} ${String(s.failed).padStart(7)} ${String(s.failed - s.failedFirstSecond).padStart(6)}`,
      ),
    ];
  }
}

function pct(share: number): string {
  return `${Math.round(share * 100)} %`;
}

function bar(share: number, width = 10): string {
  const filled = Math.round(share * width);
  return '█'.repeat(filled) + '·'.repeat(width - filled);
}

await runComponent({
  name: 'demo',
  configSchema: demoConfig,
  stopTimeoutMs: 60_000,
  start: async (config, log) => {
    const available = await netnsAvailable();
    if (!available.ok)
      throw new Error(
        `the demo runs each cluster in a network namespace and needs root (or CAP_NET_ADMIN with ip and nft): ${available.reason ?? ''}`,
      );
    const fed = await Federation.start({
      members: config.members,
      hubReplicas: config.hubReplicas,
      heartbeatInterval: '2s',
      gateways: true,
    });
    const lab = fed.lab as NonNullable<Federation['lab']>;
    const backends: Backend[] = [];
    let client: ManagedProcess | undefined;
    let clusters: ClusterInfo[];
    let target: { address: string; port: number };
    const [a, b, c] = fed.members as [LocalCluster, LocalCluster, LocalCluster];
    try {
      const token = await fed.createToken(['--usages', String(config.members), '--ttl', '10m']);
      for (const member of fed.members) {
        const joined = await fed.join(member.name, token);
        if (joined.code !== 0) throw new Error(`${member.name} did not join: ${joined.stderr}`);
        log.info({ cluster: member.name }, 'joined');
      }
      clusters = await Promise.all(
        fed.members.map(async (m) => {
          const spec = (await fed.memberCluster(m.name)).spec;
          const region = spec?.region ?? '?';
          const zone = spec?.zone ?? '?';
          return {
            name: m.name,
            locality: `${region}/${zone.startsWith(`${region}-`) ? zone.slice(region.length + 1) : zone}`,
          };
        }),
      );
      // shop/cart, exported from every member with two live backends each (cart-a1, cart-a2, …).
      for (const member of fed.members) {
        await ensureNamespace(member.kubeConfig(), NS);
        const zone = (await fed.memberCluster(member.name)).spec?.zone ?? 'zone';
        const endpoints: { ip: string; zone: string }[] = [];
        for (let i = 1; i <= BACKENDS_PER_CLUSTER; i++) {
          const id = `${SERVICE}-${member.name.slice(-1)}${i}`;
          const started = await fed.startBackend(member.name, id, PORT);
          backends.push({ id, cluster: member.name, address: started.address, process: started.process });
          endpoints.push({ ip: started.address, zone });
        }
        await exportService(member.kubeConfig(), {
          namespace: NS,
          name: SERVICE,
          ports: [{ name: 'tcp', port: PORT }],
          endpoints,
        });
      }
      await fed.gatewayReady(a.name);
      target = await clustersetEndpoint(a);
      await waitFor(
        `${a.name}'s gateway plans shop/cart over all three clusters`,
        async () => {
          const routes = (await listener(a))?.routes ?? [];
          return (
            routes.length === fed.members.length &&
            routes.every((r) => r.healthy === BACKENDS_PER_CLUSTER) &&
            routes.find((r) => r.cluster === a.name)?.share === 1
          );
        },
        90_000,
        250,
      );
      client = await lab.cluster(a.name).startProcess({
        name: 'demo-client',
        command: process.execPath,
        args: [
          join(repo, 'local/workloads/netns-tool.ts'),
          'loop',
          target.address,
          String(target.port),
          String(CONNECTIONS_PER_SECOND),
          String(CLIENT_TIMEOUT_MS),
        ],
      });
      const started = client;
      await waitForProcess(
        started,
        'the demo client reports',
        () => Promise.resolve(started.logTail(5).includes('"at"')),
        15_000,
        100,
      );
      const list = await fed.cli(['cluster', 'list'], 'hub');
      const cli = 'npx isthmus';
      process.stdout.write(
        [
          '',
          `Isthmus live failover: hub + NATS + ${fed.members.length} member clusters in 2 regions, each with an agent and an east-west gateway in its own network namespace`,
          '',
          `  hub         ${fed.hubEndpoints.join(', ')}   (gRPC, mTLS)   kubeconfig ${fed.hubCluster.kubeconfigPath}`,
          ...fed.members.map((m) => {
            const info = clusters.find((i) => i.name === m.name);
            return `  ${m.name.padEnd(11)} ${(info?.locality ?? '').padEnd(11)} api ${m.server}   gateway ${lab.cluster(m.name).gatewayAddress}   kubeconfig ${m.kubeconfigPath}`;
          }),
          `  nats        ${fed.bed.nats?.url ?? ''}`,
          '',
          list.stdout.trimEnd(),
          '',
          `${NS}/${SERVICE} is exported from all three clusters, two backends each (${backends.map((x) => x.id).join(', ')}).`,
          `A client in ${a.name} opens ${CONNECTIONS_PER_SECOND} new connections a second to the clusterset endpoint ${target.address}:${target.port} (${a.name}'s gateway).`,
          '',
          'Try, in another terminal:',
          `  ${cli} routes ${NS}/${SERVICE} --kubeconfig ${a.kubeconfigPath}`,
          `  ${cli} cluster list --kubeconfig ${fed.hubCluster.kubeconfigPath}`,
          `  kubectl --kubeconfig ${a.kubeconfigPath} get serviceimports,endpointslices -n ${NS}`,
          '',
          config.exitAfterSeconds > 0
            ? `Tearing down in ${config.exitAfterSeconds} s.`
            : 'Press Ctrl-C to tear everything down.',
          '',
        ].join('\n'),
      );
    } catch (err) {
      await fed[Symbol.asyncDispose]();
      throw err;
    }

    async function clustersetEndpoint(cluster: LocalCluster): Promise<{ address: string; port: number }> {
      const discovery = cluster.kubeConfig().makeApiClient(DiscoveryV1Api);
      let found: { address: string; port: number } | undefined;
      await waitFor(
        `${NS}/${SERVICE} clusterset endpoint in ${cluster.name}`,
        async () => {
          const slices = await discovery.listNamespacedEndpointSlice({
            namespace: NS,
            labelSelector: `kubernetes.io/service-name=${derivedServiceName(NS, SERVICE)}`,
          });
          const slice = slices.items.find((s) => s.endpoints?.some((e) => e.conditions?.ready));
          const address = slice?.endpoints?.[0]?.addresses[0];
          const port = slice?.ports?.[0]?.port;
          found = address && port ? { address, port } : undefined;
          return found !== undefined;
        },
        60_000,
        200,
      );
      return found as { address: string; port: number };
    }

    async function listener(cluster: LocalCluster): Promise<OutboundListenerRecord | undefined> {
      return (await readListenerTable(cluster.kubeConfig(), GATEWAY_NAMESPACE, DEFAULT_GATEWAY_NAME)).find(
        (l) => l.namespace === NS && l.name === SERVICE && l.port === PORT,
      );
    }

    // The scenario: each scene acts, then holds for sceneSeconds; after the last it starts over at the second.
    const backendScript = join(repo, 'local/workloads/backend.ts');
    async function killBackends(cluster: string): Promise<void> {
      await Promise.all(
        backends
          .filter((x) => x.cluster === cluster)
          .map(async (x) => {
            await x.process?.stop(1_000);
            x.process = undefined;
          }),
      );
    }
    /** Starts a cluster's backends again on their own addresses (their EndpointSlice never changed). */
    async function restartBackends(cluster: string): Promise<void> {
      const lc = lab.cluster(cluster);
      await Promise.all(
        backends
          .filter((x) => x.cluster === cluster && !x.process?.running)
          .map(async (x) => {
            const started = await lc.startProcess({
              name: `backend-${x.id}`,
              command: process.execPath,
              args: [backendScript, x.address, String(PORT), x.id],
            });
            x.process = started;
            await waitForProcess(
              started,
              `backend ${x.id} listening`,
              async () => (await lc.tcpProbe(x.address, PORT, 2_000)) === 'connected',
              30_000,
              100,
            );
          }),
      );
    }
    let blackholed: Fault | undefined;
    // Ordered so that every scene starts from a state the previous one settled: the blackhole
    // takes traffic off a serving cluster, and a cluster whose backends were dead is needed
    // again only after a full scene of rest (a remote cluster ejected by outlier detection
    // comes back when its ejection runs out, which doubles while it stays dead).
    const scenes: Scene[] = [
      {
        label: 'all healthy',
        title: 'all backends up, no faults',
        expect: `${a.name} serves: own cluster first`,
        act: () => Promise.resolve(),
      },
      {
        label: `${a.name} backends killed`,
        title: `killed ${a.name}'s backends (their EndpointSlice still says ready)`,
        expect: `${b.name} serves (same region, other zone), zero failed connections`,
        act: () => killBackends(a.name),
      },
      {
        label: `${b.name} blackholed`,
        title: `blackholed ${b.name}'s gateway (nftables DROP: connects hang)`,
        expect: `${c.name} serves (other region): ${b.name} fails its gateway probe, new connections move within 1 s`,
        act: async () => {
          blackholed = await lab.blackhole(b.name);
        },
      },
      {
        label: `${b.name} healed`,
        title: `healed ${b.name}'s gateway`,
        expect: `${b.name} serves again once its probes pass and it has stayed healthy 2 s (failback)`,
        act: async () => {
          await blackholed?.heal();
          blackholed = undefined;
        },
      },
      {
        label: `${b.name} backends killed`,
        title: `killed ${b.name}'s backends too`,
        expect: `${c.name} serves (other region), zero failed connections`,
        act: () => killBackends(b.name),
      },
      {
        label: `${a.name}+${b.name.slice(-1)} backends back`,
        title: `restarted ${a.name}'s and ${b.name}'s backends`,
        expect: `${a.name} serves again after 2 s healthy (failback)`,
        act: async () => {
          await Promise.all([restartBackends(a.name), restartBackends(b.name)]);
        },
      },
    ];

    const view = new LiveView({ clusters, client: a.name, target, backends, tty: process.stdout.isTTY === true });
    view.plan(await listener(a));
    // The live view owns the terminal from here: an info log line would tear a redrawn frame.
    if (process.stdout.isTTY) log.level = 'warn';
    const aborted = new AbortController();
    const scenario = (async () => {
      for (let i = 0; !aborted.signal.aborted; i = i + 1 < scenes.length ? i + 1 : 1) {
        const scene = scenes[i] as Scene;
        // The scene starts with its act: what happens while backends start belongs to it.
        const startedAt = Date.now();
        view.startScene(scene);
        try {
          await scene.act();
        } catch (err) {
          if (aborted.signal.aborted) return;
          throw err;
        }
        await delay(Math.max(0, startedAt + config.sceneSeconds * 1000 - Date.now()), undefined, {
          signal: aborted.signal,
        }).catch(() => undefined);
      }
    })().catch((err: unknown) => {
      view.note(`the scenario stopped: ${err instanceof Error ? err.message : String(err)}`);
      log.error({ err }, 'scenario failed');
    });

    // The client's per-second lines (its log file), and the gateway's plan, feed the view.
    const clientLog = await open(client.logFile, 'r');
    let clientOffset = 0;
    let pending = '';
    const readClient = async (): Promise<void> => {
      const buffer = Buffer.alloc(64 * 1024);
      for (;;) {
        const { bytesRead } = await clientLog.read(buffer, 0, buffer.length, clientOffset);
        if (bytesRead === 0) break;
        clientOffset += bytesRead;
        pending += buffer.subarray(0, bytesRead).toString('utf8');
      }
      const lines = pending.split('\n');
      pending = lines.pop() ?? '';
      for (const line of lines) {
        if (!line.startsWith('{')) continue;
        try {
          view.second(JSON.parse(line) as ClientSecond);
        } catch {
          // not one of the client's lines
        }
      }
    };
    let reading = false;
    const clientPoll = setInterval(() => {
      if (reading) return;
      reading = true;
      void readClient().finally(() => (reading = false));
    }, 200);
    let planning = false;
    const planPoll = setInterval(() => {
      if (planning) return;
      planning = true;
      void listener(a)
        .then(
          (l) => view.plan(l),
          (err: unknown) => view.plan(undefined, err instanceof Error ? err.message : String(err)),
        )
        .finally(() => (planning = false));
    }, 500);

    let timer: NodeJS.Timeout | undefined;
    if (config.exitAfterSeconds > 0)
      timer = setTimeout(() => process.kill(process.pid, 'SIGTERM'), config.exitAfterSeconds * 1000);
    return {
      stop: async () => {
        clearTimeout(timer);
        aborted.abort();
        await scenario;
        clearInterval(clientPoll);
        clearInterval(planPoll);
        await readClient().catch(() => undefined);
        await clientLog.close();
        view.finish();
        process.stdout.write('Removing the federation (processes and network namespaces)…\n');
        await client.stop(1_000);
        await fed[Symbol.asyncDispose]();
        log.info('federation removed');
      },
    };
  },
});
