// The agent's clusterset.local responder (DESIGN §2), as Submariner's Lighthouse does it: the
// cluster's stock CoreDNS forwards the zone here, and the answers come straight from the
// ServiceImports the importer wrote, as its informer caches them (no API call per query). Until
// that cache has synced every name in the zone is SERVFAIL, never a denial a resolver would cache.
import type { KubernetesObject } from '@kubernetes/client-node';
import { Counter, type Registry } from 'prom-client';
import { serviceImportSpecSchema } from '../../common/api/mcs.ts';
import { IsthmusError } from '../../common/errors.ts';
import type { Logger } from '../../common/logger.ts';
import { startDnsServer, type DnsServer } from './server.ts';
import { rcodeName, type ImportedService, type ZoneData } from './zone.ts';

export type { DnsServer } from './server.ts';

/** The ServiceImports of this cluster as an informer caches them (the importer's). */
export interface ServiceImportCache {
  readonly hasSynced: boolean;
  get(namespace: string, name: string): KubernetesObject | undefined;
  list(namespace?: string): readonly KubernetesObject[];
}

/** The zone as a ServiceImport cache holds it. A ServiceImport whose spec does not parse fails its query (SERVFAIL). */
export function zoneOf(cache: ServiceImportCache): ZoneData {
  return {
    service: (namespace, name): ImportedService | undefined => {
      const object = cache.get(namespace, name);
      if (!object) return undefined;
      const spec = serviceImportSpecSchema.safeParse((object as { spec?: unknown }).spec);
      if (!spec.success)
        throw new IsthmusError('ISTHMUS_INPUT_INVALID', `ServiceImport ${namespace}/${name}: ${spec.error.message}`);
      return { type: spec.data.type, ips: spec.data.ips ?? [], ports: spec.data.ports };
    },
    hasServices: (namespace) => cache.list(namespace).length > 0,
  };
}

export interface ClustersetDnsOptions {
  readonly host: string;
  readonly port: number;
  /** The cache to answer from now; undefined before the importer runs. */
  readonly serviceImports: () => ServiceImportCache | undefined;
  readonly log: Logger;
  readonly registry?: Registry;
}

export async function startClustersetDns(options: ClustersetDnsOptions): Promise<DnsServer> {
  const responses = options.registry
    ? new Counter({
        name: 'isthmus_agent_dns_responses_total',
        help: 'Responses of the clusterset.local responder, by DNS response code and transport.',
        labelNames: ['rcode', 'transport'],
        registers: [options.registry],
      })
    : undefined;
  return startDnsServer({
    host: options.host,
    port: options.port,
    log: options.log,
    zone: () => {
      const cache = options.serviceImports();
      return cache?.hasSynced ? zoneOf(cache) : undefined;
    },
    ...(responses ? { onResponse: (rcode, transport) => responses.inc({ rcode: rcodeName(rcode), transport }) } : {}),
  });
}
