// From a query's bytes to the response's bytes, with dns-packet for the wire format: one
// question per query (FORMERR otherwise), QUERY only (NOTIMP otherwise), responses never answered
// (no loops), RD echoed, EDNS(0) answered with EDNS, and a UDP response that does not fit the
// requester's size is sent truncated (TC) so it retries over TCP (RFC 1035 §4.2.1, RFC 6891).
import packet, { type Answer, type DecodedPacket, type OptAnswer } from 'dns-packet';
import { Rcode, resolve, type Resolution, type ZoneData } from './zone.ts';

/** What we advertise and the most we send over UDP: the DNS Flag Day 2020 size that avoids IP fragmentation. */
export const EDNS_UDP_SIZE = 1232;
const CLASSIC_UDP_SIZE = 512;
const OPCODE_QUERY = 0;

export interface Response {
  readonly bytes: Buffer;
  readonly rcode: Rcode;
  /** The zone data failed to answer (answered SERVFAIL). */
  readonly error?: unknown;
}

export interface RespondOptions {
  readonly serial: number;
  /** The response goes over UDP: it must fit the requester's payload size. */
  readonly udp: boolean;
}

function header(request: Buffer): { id: number; flags: number } | undefined {
  return request.length >= 12 ? { id: request.readUInt16BE(0), flags: request.readUInt16BE(2) } : undefined;
}

function encode(
  id: number,
  requestFlags: number,
  rcode: Rcode,
  resolution: Omit<Resolution, 'rcode'>,
  questions: DecodedPacket['questions'],
  opt: OptAnswer | undefined,
  truncated = false,
): Buffer {
  const flags =
    (requestFlags & (0xf << 11)) | // the opcode, echoed
    (requestFlags & packet.RECURSION_DESIRED) |
    (resolution.authoritative ? packet.AUTHORITATIVE_ANSWER : 0) |
    (truncated ? packet.TRUNCATED_RESPONSE : 0) |
    rcode;
  const ednsAnswer: Answer[] = opt
    ? [
        {
          type: 'OPT',
          name: '.',
          udpPayloadSize: EDNS_UDP_SIZE,
          extendedRcode: 0,
          ednsVersion: 0,
          flags: 0,
          flag_do: false,
          options: [],
        },
      ]
    : [];
  return packet.encode({
    type: 'response',
    id,
    flags,
    questions: questions ?? [],
    answers: [...resolution.answers],
    authorities: [...resolution.authorities],
    additionals: [...resolution.additionals, ...ednsAnswer],
  });
}

const empty = { authoritative: false, answers: [], authorities: [], additionals: [] } as const;

/** The response to `request`, or undefined when none is due (a response, or too short to carry an id). */
export function respond(request: Buffer, zone: ZoneData | undefined, options: RespondOptions): Response | undefined {
  const head = header(request);
  if (!head || head.flags & 0x8000) return undefined;
  let query: DecodedPacket;
  try {
    query = packet.decode(request);
  } catch {
    return { bytes: encode(head.id, head.flags, Rcode.FORMERR, empty, [], undefined), rcode: Rcode.FORMERR };
  }
  const opt = query.additionals?.find((a): a is OptAnswer => a.type === 'OPT');
  const reply = (rcode: Rcode, resolution: Omit<Resolution, 'rcode'>, error?: unknown): Response => ({
    bytes: encode(head.id, head.flags, rcode, resolution, query.questions, opt),
    rcode,
    ...(error === undefined ? {} : { error }),
  });
  if (((head.flags >> 11) & 0xf) !== OPCODE_QUERY) return reply(Rcode.NOTIMP, empty);
  const [question, ...more] = query.questions ?? [];
  if (!question || more.length > 0) return reply(Rcode.FORMERR, empty);
  let resolution: Resolution;
  try {
    resolution = resolve(question, zone, options.serial);
  } catch (err) {
    return reply(Rcode.SERVFAIL, empty, err);
  }
  const response = reply(resolution.rcode, resolution);
  const limit = opt ? Math.max(CLASSIC_UDP_SIZE, Math.min(opt.udpPayloadSize, EDNS_UDP_SIZE)) : CLASSIC_UDP_SIZE;
  if (!options.udp || response.bytes.length <= limit) return response;
  return {
    bytes: encode(
      head.id,
      head.flags,
      resolution.rcode,
      { ...empty, authoritative: resolution.authoritative },
      query.questions,
      opt,
      true,
    ),
    rcode: resolution.rcode,
  };
}
