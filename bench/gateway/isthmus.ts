// ============================================================================================
// PLACEHOLDER — the east-west gateway's engineer replaces this file with the real factory.
// ============================================================================================
// Until then the gateway benchmark skips the Isthmus column with a one-line note and shows n/a.
//
// What the factory must do (contract in ./topology.ts, HAProxy's version in ./haproxy.ts):
// - start two gateway processes, one per hop (two distinct pids: CPU time and RSS are read per
//   hop from /proc), each limited to one core's worth of work where the runtime allows it;
// - hop 1 "outbound": plain TCP listener at `entry` (127.0.0.1) forwarding every connection over
//   mTLS to hop 2, presenting certs.outbound (cluster bench-a) and verifying hop 2's chain
//   against certs.bundle / certs.rootCaFile (TLS 1.3, ECDSA P-256);
// - hop 2 "inbound": TLS listener requiring and verifying the client certificate, presenting
//   certs.inbound (cluster bench-b), forwarding to `backend` (plain TCP);
// - dial onward as soon as a connection is accepted, before any byte arrives: the idle test's
//   connections send nothing and count as established only once the backend has accepted them;
// - hold 10,000 idle connections per hop at once (raise RLIMIT_NOFILE in the spawn, e.g. to
//   openFileLimit().hard; connectionsWithin() in ./topology.ts says how many fit), and pass bytes
//   both ways unchanged (half-close is not needed); SNI, routing and the SPIFFE checks are the
//   gateway's own business (HAProxy sends no SNI and checks only the chain);
// - resolve only once both hops accept connections (waitForListening in ./topology.ts), reject
//   with the hops' logs if either cannot start; [Symbol.asyncDispose] stops both processes and
//   removes every file the factory wrote; `name` is 'isthmus'.
import type { TopologyFactory } from './topology.ts';

export const isthmusTopology: TopologyFactory = () => {
  throw new Error('isthmus topology not built yet');
};
