// The network lab gives clusters real, distinct addresses reachable from each other and not from
// the root namespace; portals carry root-loopback services into a namespace; blackhole,
// partition and linkDown cut traffic silently and heal/linkUp restore it; and no namespace or
// portal process outlives the lab, even when its owner is SIGKILLed. Needs root, `ip` and `nft`:
// skipped with the reason otherwise. Every `it` builds its own lab.
import { execFile, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createServer as createHttpServer } from 'node:http';
import { connect, createServer, type AddressInfo, type Server } from 'node:net';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import {
  alive,
  NetworkLab,
  netnsAvailable,
  reapAbandonedNetns,
  waitFor,
  waitForProcess,
  type ConnectOutcome,
  type LabCluster,
  type ManagedProcess,
} from './index.ts';

const execFileAsync = promisify(execFile);
const availability = await netnsAvailable();
const clusters = ['cluster-a', 'cluster-b', 'cluster-c'];
/** Long enough for any real connect on a loaded machine, short enough to keep a dropped SYN waiting. */
const dropTimeoutMs = 1_000;

async function netnsNames(): Promise<string[]> {
  const { stdout } = await execFileAsync('ip', ['netns', 'list']);
  return stdout
    .split('\n')
    .map((line) => line.split(' ')[0] ?? '')
    .filter(Boolean);
}

/**
 * A TCP server inside `cluster` on host:port that greets with both ends' addresses and logs
 * `accepted <peer>` per connection, in accept order; resolves once it listens.
 */
async function startGreeter(cluster: LabCluster, host: string, port: number): Promise<ManagedProcess> {
  const script = `
    const [host, port] = process.argv.slice(1);
    require('node:net').createServer((s) => { console.log('accepted ' + s.remoteAddress); s.on('error', () => {}); s.end('hello from ' + s.localAddress + ' to ' + s.remoteAddress); })
      .listen(Number(port), host, () => console.log('listening'));`;
  const server = await cluster.startProcess({
    name: `greeter-${cluster.name}-${host}-${port}`,
    command: process.execPath,
    args: ['-e', script, host, String(port)],
  });
  await waitForProcess(
    server,
    `greeter on ${host}:${port} listening`,
    () => Promise.resolve(server.logTail().includes('listening')),
    30_000,
    50,
  );
  return server;
}

function acceptedPeers(greeter: ManagedProcess): string[] {
  return greeter
    .logTail(1_000)
    .split('\n')
    .filter((line) => line.startsWith('accepted '))
    .map((line) => line.slice('accepted '.length));
}

/** Connects from inside `cluster` and returns everything the server sent. */
async function fetchGreeting(cluster: LabCluster, host: string, port: number): Promise<string> {
  const script = `
    const [host, port] = process.argv.slice(1);
    const chunks = [];
    require('node:net').connect({ host, port: Number(port) }).on('data', (c) => chunks.push(c)).on('end', () => process.stdout.write(Buffer.concat(chunks)));`;
  return (await cluster.run(process.execPath, ['-e', script, host, String(port)], { timeoutMs: 30_000 })).stdout;
}

/** One connect attempt from the root namespace (the test process itself). */
function rootConnect(host: string, port: number, timeoutMs: number): Promise<ConnectOutcome> {
  return new Promise((resolve) => {
    const socket = connect({ host, port });
    const done = (outcome: ConnectOutcome): void => {
      clearTimeout(timer);
      socket.destroy();
      resolve(outcome);
    };
    const timer = setTimeout(() => done('timeout'), timeoutMs);
    socket.once('connect', () => done('connected'));
    socket.once('error', (err: NodeJS.ErrnoException) =>
      done(
        err.code === 'ECONNREFUSED'
          ? 'refused'
          : err.code === 'EHOSTUNREACH' || err.code === 'ENETUNREACH'
            ? 'unreachable'
            : `error:${err.code ?? err.message}`,
      ),
    );
  });
}

async function listenOnRootLoopback(server: Server): Promise<number> {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return (server.address() as AddressInfo).port;
}

async function waitConnected(cluster: LabCluster, host: string, port: number, what: string): Promise<void> {
  await waitFor(what, async () => (await cluster.tcpProbe(host, port, 5_000)) === 'connected', 30_000, 200);
}

describe.skipIf(!availability.ok)(`network lab${availability.ok ? '' : ` (skipped: ${availability.reason})`}`, () => {
  it('gives each cluster its own routable address that other clusters reach and the root namespace does not', async () => {
    await using lab = await NetworkLab.create({ clusters });
    const [a, b] = [lab.cluster('cluster-a'), lab.cluster('cluster-b')];
    expect(a.gatewayAddress).toBe('10.250.1.1');
    expect(lab.cluster('cluster-c').gatewayAddress).toBe('10.250.3.1');
    const backend = await a.allocateAddress();
    expect(backend).toBe('10.250.1.10');
    expect(await a.allocateAddress()).toBe('10.250.1.11');
    expect((await a.run('ip', ['-4', '-o', 'addr', 'show', 'dev', 'eth0'])).stdout).toContain('10.250.1.11/16');
    expect((await a.run('ip', ['-o', 'link', 'show', 'lo'])).stdout).toContain('UP');

    const greeter = await startGreeter(a, backend, 8080);

    // The root namespace has no lab address or route, and its connect does not reach the lab.
    // (Whether that connect fails depends on the host: a machine whose egress proxy accepts every
    // TCP connect "connects" to the proxy. The greeter's accept log is what decides.)
    expect((await execFileAsync('ip', ['-4', 'addr'])).stdout).not.toContain('10.250.');
    expect((await execFileAsync('ip', ['-4', 'route'])).stdout).not.toContain('10.250.');
    const fromRoot = await rootConnect(backend, 8080, dropTimeoutMs);
    expect(await fetchGreeting(b, backend, 8080)).toBe(`hello from ${backend} to ${b.gatewayAddress}`);
    // Accepts are logged in order, so a root connection that had reached the greeter shows up before b's.
    expect(acceptedPeers(greeter), `root connect ended ${fromRoot}`).toEqual([b.gatewayAddress]);
  });

  it('a portal makes a root-namespace 127.0.0.1 service reachable on the same port inside a namespace, with backpressure and half-close', async () => {
    await using lab = await NetworkLab.create({ clusters });
    const c = lab.cluster('cluster-c');
    await using http = createHttpServer((_req, res) => res.end('served from the root namespace'));
    const httpPort = await listenOnRootLoopback(http);
    // Counts what arrives until the client half-closes, then answers on the still-open half.
    await using counter = createServer({ allowHalfOpen: true }, (socket) => {
      let bytes = 0;
      socket.on('data', (chunk: Buffer) => (bytes += chunk.length));
      socket.on('end', () => socket.end(`received ${bytes}`));
      socket.on('error', () => undefined);
    });
    const counterPort = await listenOnRootLoopback(counter);

    const portal = await c.portal(httpPort);
    expect(portal.port).toBe(httpPort);
    expect((await c.portal(httpPort)).pids).toEqual(portal.pids);
    const fetched = await c.run(
      process.execPath,
      ['-e', `fetch('http://127.0.0.1:${httpPort}/').then((r) => r.text()).then((t) => process.stdout.write(t))`],
      { timeoutMs: 30_000 },
    );
    expect(fetched.stdout).toBe('served from the root namespace');

    await c.portal(counterPort);
    const upload = `
      const socket = require('node:net').connect({ port: ${counterPort}, host: '127.0.0.1', allowHalfOpen: true });
      const chunk = Buffer.alloc(64 * 1024, 7);
      let sent = 0;
      const pump = () => { while (sent < 128) { sent++; if (!socket.write(chunk)) return socket.once('drain', pump); } socket.end(); };
      let answer = '';
      socket.on('connect', pump).on('data', (d) => (answer += d)).on('end', () => process.stdout.write(answer));`;
    expect((await c.run(process.execPath, ['-e', upload], { timeoutMs: 60_000 })).stdout).toBe(
      `received ${128 * 64 * 1024}`,
    );
  });

  it('blackhole makes connects to the gateway address hang rather than be refused, and heal restores them', async () => {
    await using lab = await NetworkLab.create({ clusters });
    const [a, b] = [lab.cluster('cluster-a'), lab.cluster('cluster-b')];
    await startGreeter(a, a.gatewayAddress, 15443);
    expect(await b.tcpProbe(a.gatewayAddress, 15443, 10_000)).toBe('connected');

    const onePort = await lab.blackhole('cluster-a', { port: 15443 });
    expect(onePort.clusters).toEqual(['cluster-a']);
    expect(await b.tcpProbe(a.gatewayAddress, 15443, dropTimeoutMs)).toBe('timeout');
    expect(await b.tcpProbe(a.gatewayAddress, 15444, 10_000)).toBe('refused'); // other ports are untouched
    await onePort.heal();
    await waitConnected(b, a.gatewayAddress, 15443, 'gateway reachable after heal');

    await lab.blackhole('cluster-a');
    expect(await b.tcpProbe(a.gatewayAddress, 15444, dropTimeoutMs)).toBe('timeout');
    await lab.heal('cluster-a');
    expect(await b.tcpProbe(a.gatewayAddress, 15444, 10_000)).toBe('refused');
    await waitConnected(b, a.gatewayAddress, 15443, 'gateway reachable after lab.heal');
    expect((await a.run('nft', ['list', 'chain', 'inet', 'isthmus', 'input'])).stdout).not.toContain('drop');
  });

  it('partition silently drops traffic between two clusters both ways, leaves the third alone, and heals', async () => {
    await using lab = await NetworkLab.create({ clusters });
    const [a, b, c] = [lab.cluster('cluster-a'), lab.cluster('cluster-b'), lab.cluster('cluster-c')];
    const [backendA, backendB] = [await a.allocateAddress(), await b.allocateAddress()];
    await Promise.all([startGreeter(a, backendA, 9000), startGreeter(b, backendB, 9000)]);

    const fault = await lab.partition('cluster-a', 'cluster-b');
    expect(fault.clusters).toEqual(['cluster-a', 'cluster-b']);
    expect(await b.tcpProbe(backendA, 9000, dropTimeoutMs)).toBe('timeout');
    expect(await a.tcpProbe(backendB, 9000, dropTimeoutMs)).toBe('timeout');
    expect(await c.tcpProbe(backendA, 9000, 10_000)).toBe('connected');
    expect(await c.tcpProbe(backendB, 9000, 10_000)).toBe('connected');

    await lab.heal('cluster-b');
    await waitConnected(b, backendA, 9000, 'a reachable from b after heal');
    await waitConnected(a, backendB, 9000, 'b reachable from a after heal');
  });

  it('linkDown cuts a cluster off the bridge and linkUp reconnects it', async () => {
    await using lab = await NetworkLab.create({ clusters });
    const [a, b] = [lab.cluster('cluster-a'), lab.cluster('cluster-b')];
    const [backendA, backendB] = [await a.allocateAddress(), await b.allocateAddress()];
    await Promise.all([startGreeter(a, backendA, 9000), startGreeter(b, backendB, 9000)]);
    expect(await b.tcpProbe(backendA, 9000, 10_000)).toBe('connected');

    await lab.linkDown('cluster-a');
    expect(['timeout', 'unreachable']).toContain(await b.tcpProbe(backendA, 9000, dropTimeoutMs));
    expect(['timeout', 'unreachable']).toContain(await a.tcpProbe(backendB, 9000, dropTimeoutMs));
    // Like a pulled cable: the cluster keeps its address.
    expect((await a.run('ip', ['-4', '-o', 'addr', 'show', 'dev', 'eth0'])).stdout).toContain(`${backendA}/16`);

    await lab.linkUp('cluster-a');
    await waitConnected(b, backendA, 9000, 'a reachable after linkUp');
    await waitConnected(a, backendB, 9000, 'b reachable from a after linkUp');
  });

  it('dispose deletes every namespace and stops the portals, and can be repeated', async () => {
    let lab: NetworkLab;
    let names: string[];
    let pids: number[];
    await using http = createHttpServer((_req, res) => res.end('ok'));
    const port = await listenOnRootLoopback(http);
    {
      await using inner = await NetworkLab.create({ clusters });
      lab = inner;
      names = inner.namespaces();
      expect(names).toHaveLength(4);
      await inner.cluster('cluster-b').portal(port);
      pids = inner.pids();
      expect(pids).toHaveLength(2);
      const present = await netnsNames();
      expect(names.filter((n) => present.includes(n))).toEqual(names);
    }
    const present = await netnsNames();
    expect(names.filter((n) => present.includes(n))).toEqual([]);
    expect(pids.filter(alive)).toEqual([]);
    expect(existsSync(lab.dir)).toBe(false);
    await lab[Symbol.asyncDispose]();
  });

  it('the watchdog deletes the namespaces and portal processes of an owner killed with SIGKILL', async () => {
    const netnsModule = new URL('./netns.ts', import.meta.url).href;
    const ownerScript = `
      import { NetworkLab } from ${JSON.stringify(netnsModule)};
      const lab = await NetworkLab.create({ clusters: ['cluster-a', 'cluster-b'] });
      const portal = await lab.cluster('cluster-a').portal(1);
      console.log(JSON.stringify({ namespaces: lab.namespaces(), pids: portal.pids, dir: lab.dir }));
      setInterval(() => undefined, 60_000);`;
    const owner = spawn(process.execPath, ['--input-type=module', '-e', ownerScript], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    try {
      const [line] = (await once(createInterface({ input: owner.stdout }), 'line')) as [string];
      const made = JSON.parse(line) as { namespaces: string[]; pids: number[]; dir: string };
      expect(made.namespaces).toHaveLength(3);
      expect(made.namespaces.every((n) => n.startsWith(`isth-${owner.pid}-`))).toBe(true);
      expect(made.pids.filter(alive)).toHaveLength(2);

      owner.kill('SIGKILL');
      await waitFor(
        'watchdog cleaned up after the killed owner',
        async () => {
          const present = await netnsNames();
          return (
            made.namespaces.every((n) => !present.includes(n)) &&
            made.pids.every((p) => !alive(p)) &&
            !existsSync(made.dir)
          );
        },
        30_000,
        200,
      );
    } finally {
      if (owner.exitCode === null && owner.signalCode === null) owner.kill('SIGKILL');
    }
  });

  it('the reaper deletes lab namespaces whose owner pid is dead and keeps live ones', async () => {
    const gone = spawn('true');
    await once(gone, 'exit');
    const abandoned = `isth-${gone.pid}-0-br`;
    await using live = await NetworkLab.create({ clusters: ['cluster-a'] });
    await execFileAsync('ip', ['netns', 'add', abandoned]);
    try {
      expect(reapAbandonedNetns()).toBeGreaterThanOrEqual(1);
      const present = await netnsNames();
      expect(present).not.toContain(abandoned);
      expect(live.namespaces().filter((n) => present.includes(n))).toEqual(live.namespaces());
    } finally {
      await execFileAsync('ip', ['netns', 'del', abandoned]).catch(() => undefined);
    }
  });
});
