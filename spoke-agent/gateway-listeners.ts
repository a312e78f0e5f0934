// The east-west gateway's outbound listeners as it publishes them in its ConfigMap: the importer
// asks here where a port of an imported service is served (the `outboundListener` hook) and is
// told to reconcile again whenever the gateway's table changes. A missing or unreadable table
// means "no listener yet", never an error.
import type { KubeConfig, V1ConfigMap } from '@kubernetes/client-node';
import {
  gatewayListenersConfigMapName,
  listenerKey,
  listenersDocumentSchema,
  type OutboundListenerRecord,
} from '../common/gateway-contract.ts';
import { Informer, kinds } from '../common/kube/index.ts';
import type { Logger } from '../common/logger.ts';
import type { OutboundListener } from './imports/index.ts';

export interface GatewayListeners {
  readonly lookup: OutboundListener;
  start(): void;
  stop(): Promise<void>;
  /** Called after the table changed. */
  onChange(listener: () => void): void;
}

export function gatewayListeners(options: {
  kc: KubeConfig;
  namespace: string;
  gatewayName: string;
  log: Logger;
}): GatewayListeners {
  const name = gatewayListenersConfigMapName(options.gatewayName);
  const log = options.log.child({ part: 'gateway-listeners' });
  const informer = new Informer<V1ConfigMap>({
    kubeConfig: options.kc,
    resource: kinds.configMaps,
    namespace: options.namespace,
    fieldSelector: `metadata.name=${name}`,
    logger: log,
  });
  let table = new Map<string, OutboundListenerRecord>();
  let raw: string | undefined;
  const listeners = new Set<() => void>();

  const refresh = (): void => {
    const json = informer.get(options.namespace, name)?.data?.['listeners.json'];
    if (json === raw) return;
    raw = json;
    const parsed = json === undefined ? undefined : listenersDocumentSchema.safeParse(safeJson(json));
    if (parsed && !parsed.success)
      log.warn({ problem: parsed.error.message }, 'gateway listener table unreadable; treated as empty');
    table = new Map(
      (parsed?.success ? parsed.data.listeners : []).map((l) => [
        listenerKey(l.namespace, l.name, l.protocol, l.port),
        l,
      ]),
    );
    for (const listener of listeners) listener();
  };
  informer.addEventHandler(refresh);

  return {
    lookup: (namespace, service, port) => {
      const record = table.get(listenerKey(namespace, service, port.protocol, port.port));
      return (
        record && { address: record.address, port: record.listenPort, healthy: record.healthy, reason: record.reason }
      );
    },
    start: () => informer.start(),
    stop: () => informer.stop(),
    onChange: (listener) => listeners.add(listener),
  };
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}
