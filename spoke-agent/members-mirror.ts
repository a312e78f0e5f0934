// Mirrors the hub's membership (NATS KV isthmus_members) into a ConfigMap of this cluster, for
// the east-west gateway, which reads only its own cluster (DESIGN §1) and refuses peers of
// removed clusters. Nothing is written before the bucket's first full snapshot, so an outage or a
// slow start never publishes an empty membership; the ConfigMap is rewritten only when it changes.
import type { KubeConfig } from '@kubernetes/client-node';
import type { NatsConnection } from '@nats-io/transport-node';
import { MEMBERS_BUCKET, memberRecordSchema, type MemberRecord } from '../common/catalog.ts';
import { MEMBERS_CONFIGMAP, type MembersDocument } from '../common/gateway-contract.ts';
import { WorkQueue, putConfigMap } from '../common/kube/index.ts';
import type { Runnable } from '../common/lifecycle.ts';
import type { Logger } from '../common/logger.ts';
import { GATEWAY_COMPONENT_LABEL } from './gateway-provisioner.ts';
import { CatalogWatcher, type KvSource } from './imports/catalog-watcher.ts';

const membersSource: KvSource<MemberRecord> = {
  bucket: MEMBERS_BUCKET,
  parse: (key, value) => {
    const record = memberRecordSchema.parse(value);
    if (record.clusterId !== key) throw new Error(`record names cluster ${record.clusterId}`);
    return record;
  },
};

export interface MembersMirror extends Runnable {
  /** Whether the hub says this member's endpoints are stale (unavailable past the bound). */
  isStale(clusterId: string): boolean;
  /** Called after any change of the membership, once it is synced. */
  onChange(listener: () => void): void;
}

export function membersMirror(options: {
  kc: KubeConfig;
  nc: NatsConnection;
  namespace: string;
  log: Logger;
}): MembersMirror {
  const log = options.log.child({ part: 'members-mirror' });
  const watcher = new CatalogWatcher<MemberRecord>({ nc: options.nc, log, source: membersSource });
  const queue = new WorkQueue<string>({ name: 'members-mirror', logger: log, maxDelayMs: 30_000 });
  let written = '';
  const listeners = new Set<() => void>();

  async function write(): Promise<void> {
    const document: MembersDocument = {
      members: watcher
        .keys()
        .sort()
        .map((key) => watcher.get(key) as MemberRecord),
    };
    const json = JSON.stringify(document);
    if (json === written) return;
    await putConfigMap(options.kc, {
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { name: MEMBERS_CONFIGMAP, namespace: options.namespace, labels: { ...GATEWAY_COMPONENT_LABEL } },
      data: { 'members.json': json },
    });
    written = json;
    log.info({ members: document.members.map((m) => m.clusterId) }, 'membership mirrored for the gateway');
  }

  return {
    isStale: (clusterId) => watcher.get(clusterId)?.endpointsStale ?? false,
    onChange: (listener) => listeners.add(listener),
    async run(signal) {
      watcher.onChange(() => {
        if (!watcher.hasSynced) return;
        queue.add('members');
        for (const listener of listeners) listener();
      });
      const watching = watcher.run(signal);
      void watcher.synced().then(
        () => {
          if (signal.aborted) return;
          queue.add('members');
          void queue.run(1, write);
        },
        () => undefined,
      );
      await watching;
      await queue.shutDown();
    },
  };
}
