// Runs once per `vitest run`: builds or finds the pinned binaries (so test files don't race the
// script) and clears anything an earlier, killed run left behind.
import { reapAbandonedTestbeds, resolveBinaries } from '../local/testbed/index.ts';

export default async function setup(): Promise<void> {
  reapAbandonedTestbeds();
  const b = await resolveBinaries();
  process.env.ISTHMUS_BINARIES = [
    `kube-apiserver=${b.kubeApiserver}`,
    `etcd=${b.etcd}`,
    `nats-server=${b.natsServer}`,
    `coredns=${b.coredns}`,
    ...(b.helm ? [`helm=${b.helm}`] : []),
  ].join('\n');
}
