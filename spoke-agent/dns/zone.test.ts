import packet, { type Answer, type DecodedPacket, type Packet, type RecordType } from 'dns-packet';
import { describe, expect, it } from 'vitest';
import { respond } from './message.ts';
import { Rcode, resolve, type ImportedService, type ZoneData } from './zone.ts';

const SERIAL = 1_700_000_000;

function zoneWith(services: Record<string, ImportedService>): ZoneData {
  return {
    service: (namespace, name) => services[`${namespace}/${name}`],
    hasServices: (namespace) =>
      Object.keys(services).some((key) => namespace === undefined || key.startsWith(`${namespace}/`)),
  };
}

const zone = zoneWith({
  'shop/web': {
    type: 'ClusterSetIP',
    ips: ['10.96.0.9', 'fd00::9'],
    ports: [{ name: 'http', protocol: 'TCP', port: 80 }, { name: 'dns', protocol: 'UDP', port: 53 }, { port: 9000 }],
  },
  'shop/pending': { type: 'ClusterSetIP', ips: [], ports: [{ name: 'http', port: 80 }] },
  'shop/db': { type: 'Headless', ips: [], ports: [{ name: 'pg', protocol: 'TCP', port: 5432 }] },
});

const ask = (name: string, type: RecordType, data: ZoneData | undefined = zone) =>
  resolve({ name, type, class: 'IN' }, data, SERIAL);
const soaOf = (records: readonly Answer[]) => records.filter((r) => r.type === 'SOA').map((r) => r.name);

describe('the clusterset.local zone', () => {
  it('answers A and AAAA of a service with its clusterset IPs of that family, authoritatively, under the name as asked', () => {
    expect(ask('web.shop.svc.clusterset.local', 'A')).toMatchObject({
      rcode: Rcode.NOERROR,
      authoritative: true,
      answers: [{ type: 'A', name: 'web.shop.svc.clusterset.local', data: '10.96.0.9', ttl: 5 }],
      authorities: [],
    });
    expect(ask('Web.Shop.SVC.clusterset.local.', 'AAAA').answers).toEqual([
      { type: 'AAAA', name: 'Web.Shop.SVC.clusterset.local.', data: 'fd00::9', ttl: 5, class: 'IN' },
    ]);
  });

  it('answers SRV per named port with the service as target and its addresses as additionals', () => {
    const http = ask('_http._tcp.web.shop.svc.clusterset.local', 'SRV');
    expect(http).toMatchObject({
      rcode: Rcode.NOERROR,
      answers: [{ type: 'SRV', data: { port: 80, target: 'web.shop.svc.clusterset.local', priority: 0, weight: 100 } }],
    });
    expect(http.additionals.map((r) => [r.type, r.name])).toEqual([
      ['A', 'web.shop.svc.clusterset.local'],
      ['AAAA', 'web.shop.svc.clusterset.local'],
    ]);
    expect(ask('_dns._udp.web.shop.svc.clusterset.local', 'SRV').answers).toMatchObject([{ data: { port: 53 } }]);
  });

  it('denies with the SOA: NXDOMAIN for a name that does not exist, NODATA for a name without the type', () => {
    for (const name of [
      'nope.shop.svc.clusterset.local',
      'web.other.svc.clusterset.local',
      '_dns._tcp.web.shop.svc.clusterset.local',
      '_tcp9000._tcp.web.shop.svc.clusterset.local',
      'x._http._tcp.web.shop.svc.clusterset.local',
      'web.shop.pod.clusterset.local',
    ]) {
      const denial = ask(name, 'A');
      expect(denial, name).toMatchObject({ rcode: Rcode.NXDOMAIN, authoritative: true, answers: [] });
      expect(soaOf(denial.authorities), name).toEqual(['clusterset.local']);
    }
    // A known name, or an empty non-terminal above one (RFC 8020: not NXDOMAIN), without the type.
    for (const [name, type] of [
      ['web.shop.svc.clusterset.local', 'TXT'],
      ['web.shop.svc.clusterset.local', 'SRV'],
      ['pending.shop.svc.clusterset.local', 'A'],
      ['_http._tcp.web.shop.svc.clusterset.local', 'A'],
      ['_tcp.web.shop.svc.clusterset.local', 'SRV'],
      ['shop.svc.clusterset.local', 'A'],
      ['svc.clusterset.local', 'A'],
      ['clusterset.local', 'A'],
    ] as const) {
      const noData = ask(name, type);
      expect(noData, `${name} ${type}`).toMatchObject({ rcode: Rcode.NOERROR, authoritative: true, answers: [] });
      expect(soaOf(noData.authorities), `${name} ${type}`).toEqual(['clusterset.local']);
    }
    expect(ask('clusterset.local', 'SOA').answers).toMatchObject([
      { type: 'SOA', data: { serial: SERIAL, minimum: 5 } },
    ]);
    expect(ask('svc.clusterset.local', 'A', zoneWith({})).rcode).toBe(Rcode.NXDOMAIN);
  });

  it('publishes no address and no SRV for a (refused) Headless import: NODATA at its name, NXDOMAIN below', () => {
    for (const type of ['A', 'AAAA', 'ANY'])
      expect(ask('db.shop.svc.clusterset.local', type as RecordType), type).toMatchObject({
        rcode: Rcode.NOERROR,
        answers: [],
      });
    expect(ask('_pg._tcp.db.shop.svc.clusterset.local', 'SRV').rcode).toBe(Rcode.NXDOMAIN);
  });

  it('refuses names outside the zone, and fails names inside it until the cache has synced', () => {
    for (const name of ['example.com', 'web.shop.svc.cluster.local', 'notclusterset.local', 'local']) {
      expect(ask(name, 'A'), name).toMatchObject({
        rcode: Rcode.REFUSED,
        authoritative: false,
        answers: [],
        authorities: [],
      });
    }
    expect(resolve({ name: 'web.shop.svc.clusterset.local', type: 'A', class: 'CH' }, zone, SERIAL).rcode).toBe(
      Rcode.REFUSED,
    );
    expect(resolve({ name: 'web.shop.svc.clusterset.local', type: 'A' }, undefined, SERIAL)).toMatchObject({
      rcode: Rcode.SERVFAIL,
      authoritative: false,
      authorities: [],
    });
    expect(resolve({ name: 'example.com', type: 'A' }, undefined, SERIAL).rcode).toBe(Rcode.REFUSED);
  });
});

describe('responses on the wire', () => {
  const query = (p: Packet): Buffer =>
    packet.encode({ type: 'query', id: 4242, flags: packet.RECURSION_DESIRED, ...p });
  const decoded = (bytes: Buffer | undefined): DecodedPacket & { rcode: string } =>
    packet.decode(bytes as Buffer) as DecodedPacket & { rcode: string };

  it('echoes id, question and RD; sets AA and the response code', () => {
    const reply = decoded(
      respond(query({ questions: [{ name: 'nope.shop.svc.clusterset.local', type: 'A' }] }), zone, {
        serial: SERIAL,
        udp: true,
      })?.bytes,
    );
    expect(reply).toMatchObject({
      id: 4242,
      type: 'response',
      flag_aa: true,
      flag_rd: true,
      flag_ra: false,
      rcode: 'NXDOMAIN',
      questions: [{ name: 'nope.shop.svc.clusterset.local', type: 'A' }],
    });
    expect(reply.authorities?.map((r) => r.type)).toEqual(['SOA']);
  });

  it('answers EDNS with EDNS, refuses other opcodes and several questions, and never answers a response', () => {
    const edns = decoded(
      respond(
        query({
          questions: [{ name: 'web.shop.svc.clusterset.local', type: 'A' }],
          additionals: [
            {
              type: 'OPT',
              name: '.',
              udpPayloadSize: 4096,
              extendedRcode: 0,
              ednsVersion: 0,
              flags: 0,
              flag_do: false,
              options: [],
            },
          ],
        }),
        zone,
        { serial: SERIAL, udp: true },
      )?.bytes,
    );
    expect(edns.answers).toMatchObject([{ type: 'A', data: '10.96.0.9' }]);
    expect(edns.additionals).toMatchObject([{ type: 'OPT', udpPayloadSize: 1232 }]);
    const notify = query({ questions: [{ name: 'clusterset.local', type: 'SOA' }] });
    notify.writeUInt16BE(notify.readUInt16BE(2) | (4 << 11), 2); // opcode NOTIFY
    expect(decoded(respond(notify, zone, { serial: SERIAL, udp: true })?.bytes).rcode).toBe('NOTIMP');
    const two = query({
      questions: [
        { name: 'web.shop.svc.clusterset.local', type: 'A' },
        { name: 'web.shop.svc.clusterset.local', type: 'AAAA' },
      ],
    });
    expect(decoded(respond(two, zone, { serial: SERIAL, udp: true })?.bytes).rcode).toBe('FORMERR');
    expect(
      respond(
        packet.encode({ type: 'response', id: 1, questions: [{ name: 'web.shop.svc.clusterset.local', type: 'A' }] }),
        zone,
        { serial: SERIAL, udp: true },
      ),
    ).toBeUndefined();
    // A header that announces a question and carries none.
    expect(
      decoded(respond(Buffer.from('010200000001000000000000', 'hex'), zone, { serial: SERIAL, udp: true })?.bytes),
    ).toMatchObject({ id: 0x0102, rcode: 'FORMERR' });
  });

  it('truncates over UDP what does not fit, and sends it whole over TCP', () => {
    const many = zoneWith({
      'shop/big': {
        type: 'ClusterSetIP',
        ips: ['10.96.0.10'],
        ports: Array.from({ length: 40 }, (_, i) => ({ name: 'same', protocol: 'TCP', port: 1000 + i })),
      },
    });
    const srv = query({ questions: [{ name: '_same._tcp.big.shop.svc.clusterset.local', type: 'SRV' }] });
    const udp = decoded(respond(srv, many, { serial: SERIAL, udp: true })?.bytes);
    expect(udp).toMatchObject({ flag_tc: true, rcode: 'NOERROR', answers: [] });
    const tcp = decoded(respond(srv, many, { serial: SERIAL, udp: false })?.bytes);
    expect(tcp.flag_tc).toBe(false);
    expect(tcp.answers).toHaveLength(40);
  });

  it('answers SERVFAIL, and says why, when the zone data cannot be read', () => {
    const broken: ZoneData = {
      service: () => {
        throw new Error('spec does not parse');
      },
      hasServices: () => true,
    };
    const response = respond(query({ questions: [{ name: 'web.shop.svc.clusterset.local', type: 'A' }] }), broken, {
      serial: SERIAL,
      udp: true,
    });
    expect(response).toMatchObject({ rcode: Rcode.SERVFAIL, error: new Error('spec does not parse') });
  });
});
