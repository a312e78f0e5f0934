// HAProxy in the gateway benchmark's two-hop topology: one haproxy process per hop (`nbthread 1`
// each, so CPU and memory are per gateway and "per gateway core" means one core), `mode tcp`,
// TLS 1.3 only between the hops with ECDSA P-256 certificates from the project's PKI, the client
// certificate required and verified against the root on hop 2, the server's chain verified on
// hop 1. HAProxy's own defaults otherwise (it keeps the last TLS session per server and resumes
// with it, as the Isthmus outbound gateway does). It checks the chain, not the SPIFFE IDs: HAProxy
// has no URI SAN matcher, so it does a little less work per handshake than Isthmus's verifier.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from '../../local/testbed/ports.ts';
import { benchHost } from './bench-netns.ts';
import { ProcessSupervisor, type ManagedProcess } from '../../local/testbed/processes.ts';
import {
  connectionsWithin,
  openFileLimit,
  waitForListening,
  type BenchCertificates,
  type Endpoint,
  type TopologyFactory,
  type TwoHopTopology,
} from './topology.ts';

export const HAPROXY = process.env.HAPROXY ?? '/usr/sbin/haproxy';
/** Enough for the idle test's 10,000 connections with room to spare... */
const WANTED_CONNECTIONS = 20_000;

/**
 * ...as far as the open-file limit the hop may raise itself to (the hard limit it inherits)
 * allows: each connection is two sockets on a hop, client side and server side.
 */
function hopLimits(): { nofile: number; maxconn: number } {
  const nofile = Math.min(openFileLimit().hard, 2 * WANTED_CONNECTIONS + 1_000);
  return { nofile, maxconn: connectionsWithin(nofile) };
}

/** `HAProxy version 2.6.12-1+deb12u4 …`, first line only; 'unknown' when it cannot be run. */
export function haproxyVersion(): string {
  const result = spawnSync(HAPROXY, ['-v'], { encoding: 'utf8' });
  return result.status === 0 ? (result.stdout.split('\n')[0]?.replace(/ - https?:\S+/, '') ?? 'unknown') : 'unknown';
}

const quote = (path: string): string => `"${path.replaceAll('"', '\\"')}"`;

function globalAndDefaults(): string {
  const { maxconn } = hopLimits();
  return `global
    nbthread 1
    maxconn ${maxconn}
    ssl-server-verify required

defaults
    mode tcp
    maxconn ${maxconn}
    timeout connect 5s
    timeout client 5m
    timeout server 5m
    timeout client-fin 5s
    timeout server-fin 5s
`;
}

/** Hop 1: plain TCP in, TLS 1.3 client with the outbound gateway's certificate out. */
export function outboundConfig(listen: Endpoint, inbound: Endpoint, certs: BenchCertificates): string {
  return `${globalAndDefaults()}
frontend outbound
    bind ${listen.host}:${listen.port}
    default_backend inbound_gateway

backend inbound_gateway
    server inbound ${inbound.host}:${inbound.port} ssl verify required ca-file ${quote(certs.rootCaFile)} crt ${quote(certs.outbound.combinedFile)} ssl-min-ver TLSv1.3
`;
}

/** Hop 2: TLS 1.3 in with a verified client certificate, plain TCP to the backend. */
export function inboundConfig(listen: Endpoint, backend: Endpoint, certs: BenchCertificates): string {
  return `${globalAndDefaults()}
frontend inbound
    bind ${listen.host}:${listen.port} ssl crt ${quote(certs.inbound.combinedFile)} ca-file ${quote(certs.rootCaFile)} verify required ssl-min-ver TLSv1.3
    default_backend workload

backend workload
    server backend ${backend.host}:${backend.port}
`;
}

export const haproxyTopology: TopologyFactory = async (backend, certs) => {
  const dir = mkdtempSync(join(tmpdir(), 'isthmus-bench-haproxy-'));
  // Its watchdog kills the haproxy processes and removes `dir` should this process die first.
  const supervisor = new ProcessSupervisor(dir);
  const dispose = async (): Promise<void> => {
    await supervisor.stopAll(2_000);
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    const host = benchHost();
    const entry: Endpoint = { host, port: await freePort(host) };
    const inboundListen: Endpoint = { host, port: await freePort(host) };
    const start = async (hop: 'outbound' | 'inbound', config: string): Promise<ManagedProcess> => {
      const file = join(dir, `${hop}.cfg`);
      writeFileSync(file, config);
      // `exec` keeps the pid haproxy's own; the shell only raises the open-file limit first.
      return supervisor.start({
        name: `haproxy-${hop}`,
        command: 'bash',
        args: ['-c', `ulimit -n ${hopLimits().nofile} && exec "$0" -db -f "$1"`, HAPROXY, file],
      });
    };
    const inbound = await start('inbound', inboundConfig(inboundListen, backend, certs));
    const outbound = await start('outbound', outboundConfig(entry, inboundListen, certs));
    const describe = (): string =>
      [inbound, outbound].map((p) => `${p.name} (${p.running ? 'running' : 'exited'}):\n${p.logTail(15)}`).join('\n');
    await waitForListening([inboundListen, entry], Promise.race([inbound.exited(), outbound.exited()]), describe);
    const topology: TwoHopTopology = {
      name: 'haproxy',
      entry,
      pids: { outbound: outbound.pid, inbound: inbound.pid },
      [Symbol.asyncDispose]: dispose,
    };
    return topology;
  } catch (err) {
    await dispose();
    throw err;
  }
};
