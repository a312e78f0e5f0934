// The two-hop gateway topology the gateway benchmark drives (DESIGN §6, §8), whoever implements it:
//
//   load client → hop 1 "outbound" (plain TCP) → mTLS 1.3, P-256, client cert verified → hop 2 "inbound" → backend
//
// A TopologyFactory starts both hops for one backend and one set of certificates and resolves
// once both listen; disposing the topology stops every process it started and removes its files.
// HAProxy's factory is ./haproxy.ts, Isthmus's is ./isthmus.ts.
import { execFileSync } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  RootAuthority,
  bundleToPem,
  createTrustBundle,
  formatSpiffeId,
  type ClusterAuthority,
  type TrustBundle,
  type X509Svid,
} from '../../common/pki/index.ts';
import { joinCluster } from '../../common/pki/test-support.ts';

export interface Endpoint {
  readonly host: string;
  readonly port: number;
}

export interface TwoHopTopology extends AsyncDisposable {
  /** Column name in the results: 'haproxy' | 'isthmus'. */
  readonly name: string;
  /** Where the load client connects: hop 1's plain TCP listener. */
  readonly entry: Endpoint;
  /**
   * One process per hop (two distinct pids), so CPU time (/proc/<pid>/stat, all threads) and RSS
   * (/proc/<pid>/status) are per gateway, as in production where each cluster runs its own.
   */
  readonly pids: { readonly outbound: number; readonly inbound: number };
}

/**
 * Starts hop 1 and hop 2 for `backend` with `certs`, and resolves once both accept connections
 * (waitForListening below). Must reject, with the hop's log, if a hop cannot start.
 */
export type TopologyFactory = (backend: Endpoint, certs: BenchCertificates) => Promise<TwoHopTopology>;

/** One gateway's identity, in memory and on disk. */
export interface BenchIdentity {
  readonly clusterId: string;
  /** spiffe://isthmus.local/cluster/<clusterId>/gateway/bench */
  readonly spiffeId: string;
  /** Leaf + issuing cluster intermediate (never the root) and the PKCS#8 leaf key, as PEM text. */
  readonly svid: X509Svid;
  /** PEM: leaf, then the cluster intermediate. */
  readonly chainFile: string;
  /** PEM: PKCS#8 leaf key (ECDSA P-256). */
  readonly keyFile: string;
  /** PEM: chain then key in one file, as HAProxy's `crt` wants it. */
  readonly combinedFile: string;
}

/**
 * Made once per run from the project's PKI: one root, one intermediate per side (the key generated
 * "in the cluster", the CSR signed by the root, as at Join), one gateway leaf per side.
 */
export interface BenchCertificates {
  readonly trustDomain: string;
  /** Trust bundle holding the root (what Isthmus's MtlsCredentials take). */
  readonly bundle: TrustBundle;
  /** Cluster ids that are members: both sides. */
  readonly members: readonly string[];
  /** PEM file with the root only: the one trust anchor of both hops. */
  readonly rootCaFile: string;
  /** Hop 1's identity (cluster bench-a): the mTLS client. */
  readonly outbound: BenchIdentity;
  /** Hop 2's identity (cluster bench-b): the mTLS server. */
  readonly inbound: BenchIdentity;
}

export const BENCH_TRUST_DOMAIN = 'isthmus.local';
export const OUTBOUND_CLUSTER = 'bench-a';
export const INBOUND_CLUSTER = 'bench-b';

/** The membership epoch of both bench clusters (the members list the gateways get says the same). */
export const BENCH_MEMBERSHIP_EPOCH = 1;

async function gatewayIdentity(dir: string, cluster: ClusterAuthority): Promise<BenchIdentity> {
  const spiffeId = formatSpiffeId({
    kind: 'gateway',
    trustDomain: cluster.trustDomain,
    clusterId: cluster.clusterId,
    name: 'bench',
  });
  const svid = await cluster.issueLeaf(spiffeId, { keyAlgorithm: 'P-256' });
  const file = (suffix: string): string => join(dir, `${cluster.clusterId}-${suffix}`);
  const identity: BenchIdentity = {
    clusterId: cluster.clusterId,
    spiffeId,
    svid,
    chainFile: file('chain.pem'),
    keyFile: file('key.pem'),
    combinedFile: file('combined.pem'),
  };
  const chain = svid.certificateChainPem.endsWith('\n') ? svid.certificateChainPem : `${svid.certificateChainPem}\n`;
  await writeFile(identity.chainFile, chain, { mode: 0o600 });
  await writeFile(identity.keyFile, svid.privateKeyPem, { mode: 0o600 });
  await writeFile(identity.combinedFile, chain + svid.privateKeyPem, { mode: 0o600 });
  return identity;
}

/** Writes the run's certificates into `dir` (the caller owns and removes it). */
export async function createBenchCertificates(dir: string): Promise<BenchCertificates> {
  const root = await RootAuthority.generate({ trustDomain: BENCH_TRUST_DOMAIN, algorithm: 'P-256' });
  const [outboundCluster, inboundCluster] = await Promise.all([
    joinCluster(root, OUTBOUND_CLUSTER, BENCH_MEMBERSHIP_EPOCH),
    joinCluster(root, INBOUND_CLUSTER, BENCH_MEMBERSHIP_EPOCH),
  ]);
  const bundle = createTrustBundle({ trustDomain: BENCH_TRUST_DOMAIN, sequence: 1, roots: [root.certificatePem] });
  const rootCaFile = join(dir, 'root-ca.pem');
  await writeFile(rootCaFile, bundleToPem(bundle));
  return {
    trustDomain: BENCH_TRUST_DOMAIN,
    bundle,
    members: [OUTBOUND_CLUSTER, INBOUND_CLUSTER],
    rootCaFile,
    outbound: await gatewayIdentity(dir, outboundCluster),
    inbound: await gatewayIdentity(dir, inboundCluster),
  };
}

/** True when a TCP connection to `endpoint` is accepted (the probe closes it at once). */
export async function accepts(endpoint: Endpoint): Promise<boolean> {
  const socket = connect(endpoint);
  try {
    await once(socket, 'connect');
    return true;
  } catch {
    return false;
  } finally {
    socket.destroy();
  }
}

/**
 * Resolves once every endpoint accepts TCP connections; rejects at once with `describeExit()` if
 * `exited` settles first, and after `timeoutMs` otherwise.
 */
export async function waitForListening(
  endpoints: readonly Endpoint[],
  exited: Promise<unknown>,
  describeExit: () => string,
  timeoutMs = 10_000,
): Promise<void> {
  let gone = false;
  void exited.then(
    () => (gone = true),
    () => (gone = true),
  );
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    if (gone) throw new Error(describeExit());
    const ready = await Promise.all(endpoints.map(accepts));
    if (ready.every(Boolean)) return;
    if (performance.now() > deadline)
      throw new Error(
        `not listening after ${timeoutMs} ms on ${endpoints.map((e) => `${e.host}:${e.port}`).join(', ')}\n${describeExit()}`,
      );
    await sleep(50);
  }
}

/** This process's RLIMIT_NOFILE; children inherit it. */
export function openFileLimit(): { soft: number; hard: number } {
  const line = /^Max open files\s+(\S+)\s+(\S+)/m.exec(readFileSync('/proc/self/limits', 'utf8'));
  const value = (text: string | undefined): number => (text === 'unlimited' ? Number.MAX_SAFE_INTEGER : Number(text));
  return { soft: value(line?.[1]), hard: value(line?.[2]) };
}

/**
 * Raises this process's RLIMIT_NOFILE towards `wanted` with prlimit(1): the soft limit up to the
 * hard one always, beyond it only with CAP_SYS_RESOURCE (root outside a container). Returns the
 * limits it ended with and, when short of `wanted`, why.
 */
export function raiseOpenFileLimit(wanted: number): { soft: number; hard: number; shortfall?: string } {
  const before = openFileLimit();
  if (before.soft >= wanted) return before;
  let why = '';
  const attempt = (soft: number, hard: number): boolean => {
    try {
      execFileSync('prlimit', ['--pid', String(process.pid), `--nofile=${soft}:${hard}`], {
        stdio: ['ignore', 'ignore', 'pipe'],
      });
      return true;
    } catch (err) {
      why = (err as { stderr?: Buffer }).stderr?.toString().trim() || String(err);
      return false;
    }
  };
  if (!attempt(wanted, Math.max(wanted, before.hard)) && before.soft < before.hard) attempt(before.hard, before.hard);
  const after = openFileLimit();
  return after.soft >= wanted
    ? after
    : { ...after, shortfall: `RLIMIT_NOFILE stays at ${after.soft} (hard ${after.hard}): ${why || 'cannot raise it'}` };
}

/** Headroom for listeners, epoll, logs, pipes and probes in a process that holds proxied connections. */
const FD_HEADROOM = 200;

/**
 * Connections one process can hold end to end under an open-file limit of `limit`: each costs
 * two sockets in a proxy hop (client side and server side), and two in the bench process (the
 * load client's socket and the backend's).
 */
export function connectionsWithin(limit: number): number {
  return Math.max(0, Math.floor((limit - FD_HEADROOM) / 2));
}

/** The open-file limit under which connectionsWithin gives `connections`. */
export function openFilesFor(connections: number): number {
  return 2 * connections + FD_HEADROOM;
}
