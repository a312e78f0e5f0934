// The clusterset.local zone as the MCS DNS specification names it, answered from the imported
// services: `<svc>.<ns>.svc.clusterset.local` A/AAAA → the ServiceImport's clusterset IPs, and
// `_<port>._<proto>.<svc>.<ns>.svc.clusterset.local` SRV per named port. Authoritative: a name
// it does not know is NXDOMAIN and a known name without the asked type is NODATA, both with the
// zone's SOA so resolvers cache the denial briefly; names outside the zone are REFUSED. A Headless
// import is refused by the importer (it has no address the gateways can serve), so its name is
// NODATA for every type: the name exists as a ServiceImport, with nothing to hand out.
// Pure functions: the sockets are in server.ts.
import { isIPv4, isIPv6 } from 'node:net';
import type { Answer, Question, SoaAnswer } from 'dns-packet';

export const CLUSTERSET_ZONE = 'clusterset.local';
/** Seconds. As short as CoreDNS's kubernetes plugin: an import's IP changes rarely, its existence more often. */
export const RECORD_TTL = 5;

/** What the zone needs to know of one imported service (its ServiceImport's spec). */
export interface ImportedService {
  readonly type: 'ClusterSetIP' | 'Headless';
  readonly ips: readonly string[];
  readonly ports: readonly {
    readonly name?: string | undefined;
    readonly protocol?: string | undefined;
    readonly port: number;
  }[];
}

/** The imported services of this cluster, read at the moment of the query. */
export interface ZoneData {
  service(namespace: string, name: string): ImportedService | undefined;
  /** Whether any service is imported in `namespace`, or at all when undefined (empty non-terminals, RFC 8020). */
  hasServices(namespace?: string): boolean;
}

export const Rcode = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4, REFUSED: 5 } as const;
export type Rcode = (typeof Rcode)[keyof typeof Rcode];

export function rcodeName(rcode: Rcode): string {
  return Object.keys(Rcode).find((name) => Rcode[name as keyof typeof Rcode] === rcode) ?? String(rcode);
}

export interface Resolution {
  readonly rcode: Rcode;
  /** AA: set for every answer from inside the zone. */
  readonly authoritative: boolean;
  readonly answers: readonly Answer[];
  readonly authorities: readonly Answer[];
  readonly additionals: readonly Answer[];
}

/** The zone's SOA, served at its apex and with every denial; `serial` is only informational (no zone transfers). */
function soaRecord(serial: number): SoaAnswer {
  return {
    type: 'SOA',
    name: CLUSTERSET_ZONE,
    ttl: RECORD_TTL,
    class: 'IN',
    // The values of CoreDNS's kubernetes plugin; `minimum` bounds negative caching (RFC 2308).
    data: {
      mname: `ns.dns.${CLUSTERSET_ZONE}`,
      rname: `hostmaster.${CLUSTERSET_ZONE}`,
      serial,
      refresh: 7200,
      retry: 1800,
      expire: 86400,
      minimum: RECORD_TTL,
    },
  };
}

const refused: Resolution = {
  rcode: Rcode.REFUSED,
  authoritative: false,
  answers: [],
  authorities: [],
  additionals: [],
};
const notSynced: Resolution = {
  rcode: Rcode.SERVFAIL,
  authoritative: false,
  answers: [],
  authorities: [],
  additionals: [],
};

/** The labels of `name` below the zone apex (outermost last), or undefined when it is outside the zone. */
function labelsInZone(name: string): string[] | undefined {
  const lower = name.toLowerCase().replace(/\.$/, '');
  if (lower === CLUSTERSET_ZONE) return [];
  if (!lower.endsWith(`.${CLUSTERSET_ZONE}`)) return undefined;
  return lower.slice(0, -CLUSTERSET_ZONE.length - 1).split('.');
}

function protocolLabel(protocol: string | undefined): string {
  return `_${(protocol || 'TCP').toLowerCase()}`;
}

function addressRecords(owner: string, service: ImportedService, type: 'A' | 'AAAA' | 'ANY'): Answer[] {
  const v4 =
    type !== 'AAAA'
      ? service.ips
          .filter((ip) => isIPv4(ip))
          .map((ip): Answer => ({ type: 'A', name: owner, ttl: RECORD_TTL, class: 'IN', data: ip }))
      : [];
  const v6 =
    type !== 'A'
      ? service.ips
          .filter((ip) => isIPv6(ip))
          .map((ip): Answer => ({ type: 'AAAA', name: owner, ttl: RECORD_TTL, class: 'IN', data: ip }))
      : [];
  return [...v4, ...v6];
}

/**
 * The answer to one question. `zone` is undefined until the ServiceImport cache has synced
 * (SERVFAIL: the resolver tries again, and no denial gets cached). `serial` goes into the SOA.
 */
export function resolve(question: Question, zone: ZoneData | undefined, serial: number): Resolution {
  const labels = labelsInZone(question.name);
  if (labels === undefined || (question.class !== undefined && question.class !== 'IN' && question.class !== 'ANY'))
    return refused;
  if (!zone) return notSynced;
  const soa = soaRecord(serial);
  const found = (answers: Answer[], additionals: Answer[] = []): Resolution =>
    answers.length > 0
      ? { rcode: Rcode.NOERROR, authoritative: true, answers, authorities: [], additionals }
      : { rcode: Rcode.NOERROR, authoritative: true, answers: [], authorities: [soa], additionals: [] };
  const noData = (): Resolution => found([]);
  const nxDomain: Resolution = {
    rcode: Rcode.NXDOMAIN,
    authoritative: true,
    answers: [],
    authorities: [soa],
    additionals: [],
  };
  const type = question.type as string;

  // Apex and the empty non-terminals above the services.
  if (labels.length === 0)
    return type === 'SOA' || type === 'ANY' ? found([{ ...soa, name: question.name }]) : noData();
  if (labels.at(-1) !== 'svc') return nxDomain;
  if (labels.length === 1) return zone.hasServices() ? noData() : nxDomain;
  const namespace = labels.at(-2) as string;
  if (labels.length === 2) return zone.hasServices(namespace) ? noData() : nxDomain;

  const service = zone.service(namespace, labels.at(-3) as string);
  if (!service) return nxDomain;
  const target = `${labels.slice(-3).join('.')}.${CLUSTERSET_ZONE}`;
  // A refused Headless import publishes nothing: no addresses, no SRV names below it.
  const published = service.type === 'ClusterSetIP';
  if (labels.length === 3) {
    if (!published || (type !== 'A' && type !== 'AAAA' && type !== 'ANY')) return noData();
    return found(addressRecords(question.name, service, type));
  }

  // `_<proto>` is an empty non-terminal while a named port of that protocol exists below it.
  const protocolPorts = published
    ? service.ports.filter((p) => p.name && protocolLabel(p.protocol) === labels.at(-4))
    : [];
  if (labels.length === 4) return protocolPorts.length > 0 ? noData() : nxDomain;
  if (labels.length > 5) return nxDomain;
  const ports = protocolPorts.filter((p) => `_${(p.name ?? '').toLowerCase()}` === labels[0]);
  if (ports.length === 0) return nxDomain;
  if (type !== 'SRV' && type !== 'ANY') return noData();
  const srv = ports.map((p): Answer => ({
    type: 'SRV',
    name: question.name,
    ttl: RECORD_TTL,
    class: 'IN',
    data: { priority: 0, weight: 100, port: p.port, target },
  }));
  return found(srv, addressRecords(target, service, 'ANY'));
}
