import { randomInt } from 'node:crypto';
import dgram from 'node:dgram';
import type { LookupAddress, LookupAllOptions, LookupOneOptions, LookupOptions } from 'node:dns';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import * as dnsPacket from 'dns-packet';
import { HispError } from '../core/errors.js';
import { CERT_RR_TYPE, decodeCertRdata, type CertRecord } from './cert-record.js';

/** The record types hisp asks for: CERT (discovery), SRV (`_ldap._tcp`), MX (relay), A/AAAA (hosts), CNAME. */
export type DnsQueryType = 'CERT' | 'SRV' | 'MX' | 'A' | 'AAAA' | 'CNAME';

/** An MX record (RFC 5321 §5.1). An exchange of "." is a null MX: the domain takes no mail (RFC 7505). */
export interface MxRecord {
  preference: number;
  exchange: string;
}

/** An SRV record (RFC 2782). A target of "." means the service is decidedly not available. */
export interface SrvRecord {
  priority: number;
  weight: number;
  port: number;
  target: string;
}

/** The record type `query` returns for each query type. */
export interface DnsRecordByType {
  CERT: CertRecord;
  SRV: SrvRecord;
  MX: MxRecord;
  A: string;
  AAAA: string;
  CNAME: string;
}

/** 'nxdomain' and 'nodata' are authoritative, permanent answers (requirements §5.9). */
export type DnsStatus = 'ok' | 'nxdomain' | 'nodata';

export interface DnsResult<T extends DnsQueryType = DnsQueryType> {
  /** The name queried, without a trailing dot. */
  name: string;
  /** The name the records belong to after following CNAMEs (= name when there were none). */
  canonicalName: string;
  status: DnsStatus;
  /** The records of the queried type at canonicalName; empty unless status is 'ok'. */
  records: Array<DnsRecordByType[T]>;
  /**
   * Seconds the answer may be kept: the smallest TTL of the records and CNAMEs used, or for a
   * negative answer the SOA's negative TTL (RFC 2308 §5; 0 when the reply had no SOA). A cached
   * answer reports the time it has left.
   */
  ttl: number;
  /** The AD bit of every reply used (RFC 4035 §3.2.3): data validated by a DNSSEC-aware resolver. */
  authenticated: boolean;
  /** How the reply carrying the records came: 'tcp' after a truncated UDP answer (RFC 1035 §4.2.2). */
  transport: 'udp' | 'tcp';
  /** The CNAME targets followed, in order (the last one is canonicalName). */
  cnames: string[];
}

export interface DnsServer {
  /** An IP address: a host name would itself need DNS to be found. */
  host: string;
  port: number;
}

export interface DnsClientOptions {
  /** Default: the nameservers of /etc/resolv.conf (port 53), else 127.0.0.1:53. */
  servers?: DnsServer[];
  /** Time-out of one try (one UDP exchange, or one TCP exchange after truncation). Default 3000. */
  timeoutMs?: number;
  /**
   * Rounds after the first: every server is tried 1 + retries times, in order, before giving up.
   * Default 2 (the Java RI: 3 s × 2 retries, requirements R-DIS-9).
   */
  retries?: number;
  /** Cache answers by TTL (positive) and SOA negative TTL (RFC 2308). Default true. */
  cache?: boolean;
  /** Clock of the cache in milliseconds (injectable for tests). Default Date.now. */
  now?: () => number;
  /** Sets the EDNS0 DO bit to ask for DNSSEC records (RFC 3225). Default false. */
  dnssec?: boolean;
  /** EDNS0 UDP payload size advertised (RFC 6891 §6.2.5); 0 sends no OPT record. Default 1232. */
  udpPayloadSize?: number;
  /** Upper bound of a cached answer's life, in seconds. Default 86400. */
  maxCacheTtl?: number;
  /** Where the default servers come from. Default /etc/resolv.conf. */
  resolvConfPath?: string;
}

type LookupOneCallback = (err: NodeJS.ErrnoException | null, address: string, family: number) => void;
type LookupAllCallback = (err: NodeJS.ErrnoException | null, addresses: LookupAddress[]) => void;
type LookupAnyCallback = (err: NodeJS.ErrnoException | null, address: string | LookupAddress[], family: number) => void;

/**
 * The call signatures of `dns.lookup`: usable as the `lookup` option of `net.connect`,
 * `tls.connect` and `http(s).request` (it is assignable to `net.LookupFunction`).
 */
export interface DnsLookupFunction {
  (hostname: string, callback: LookupOneCallback): void;
  (hostname: string, family: number, callback: LookupOneCallback): void;
  (hostname: string, options: LookupOneOptions, callback: LookupOneCallback): void;
  (hostname: string, options: LookupAllOptions, callback: LookupAllCallback): void;
  (hostname: string, options: LookupOptions, callback: LookupAnyCallback): void;
}

/** A host name that does not resolve, shaped as node's getaddrinfo ENOTFOUND error. */
export class DnsNotFoundError extends Error {
  readonly code = 'ENOTFOUND';
  readonly syscall = 'getaddrinfo';
  readonly hostname: string;

  constructor(hostname: string, cause?: unknown) {
    super(`getaddrinfo ENOTFOUND ${hostname}`, cause === undefined ? undefined : { cause });
    this.name = 'DnsNotFoundError';
    this.hostname = hostname;
  }
}

/** RR type and class codes (RFC 1035 §3.2.2, RFC 3596, RFC 2782, RFC 4398, RFC 6672, RFC 6891). */
const T_A = 1;
const T_NS = 2;
const T_CNAME = 5;
const T_SOA = 6;
const T_PTR = 12;
const T_AAAA = 28;
const T_MX = 15;
const T_SRV = 33;
const T_DNAME = 39;
const T_OPT = 41;
const CLASS_IN = 1;
const QTYPE: Readonly<Record<DnsQueryType, number>> = { A: T_A, AAAA: T_AAAA, CNAME: T_CNAME, SRV: T_SRV, MX: T_MX, CERT: CERT_RR_TYPE };
/** dns-packet's names of the types whose data hisp reads, to check it framed the message as we did. */
const TYPE_NAMES: ReadonlyMap<number, string> = new Map([
  [T_A, 'A'],
  [T_NS, 'NS'],
  [T_CNAME, 'CNAME'],
  [T_SOA, 'SOA'],
  [T_PTR, 'PTR'],
  [T_AAAA, 'AAAA'],
  [T_MX, 'MX'],
  [T_SRV, 'SRV'],
  [CERT_RR_TYPE, 'CERT'],
  [T_DNAME, 'DNAME'],
  [T_OPT, 'OPT'],
]);
const KNOWN_TYPE_NAMES: ReadonlySet<string> = new Set(TYPE_NAMES.values());

/** RCODEs (RFC 1035 §4.1.1, RFC 6891 §9 for BADVERS). */
const RCODE_NOERROR = 0;
const RCODE_FORMERR = 1;
const RCODE_SERVFAIL = 2;
const RCODE_NXDOMAIN = 3;
const RCODE_NOTIMP = 4;
const RCODE_REFUSED = 5;
const RCODE_BADVERS = 16;
const RCODE_NAMES: ReadonlyMap<number, string> = new Map([
  [RCODE_FORMERR, 'FORMERR'],
  [RCODE_SERVFAIL, 'SERVFAIL'],
  [RCODE_NOTIMP, 'NOTIMP'],
  [RCODE_REFUSED, 'REFUSED'],
  [RCODE_BADVERS, 'BADVERS'],
]);

/** RFC 1035 §4.2.1 limits plain UDP to 512 bytes; 1232 avoids IP fragmentation (DNS flag day 2020). */
const DEFAULT_UDP_PAYLOAD = 1232;
const DEFAULT_TIMEOUT_MS = 3000;
const DEFAULT_RETRIES = 2;
const DEFAULT_MAX_CACHE_TTL = 86_400;
/** CNAMEs followed for one query before giving up (loops are caught before). */
export const MAX_CNAME_HOPS = 8;
const MAX_CACHE_ENTRIES = 10_000;
const MAX_POINTER_JUMPS = 127;
/** RFC 2181 §8: a TTL with the top bit set is treated as zero. */
const MAX_TTL = 0x7fffffff;

/** One resource record of a reply, framed by us and decoded by dns-packet. */
export interface ReplyRecord {
  name: string;
  type: number;
  klass: number;
  ttl: number;
  /** The exact rdata bytes (a view into the message). */
  rdata: Buffer;
  /** dns-packet's decoding of the rdata (a Buffer for types it does not know, such as CERT). */
  data: unknown;
}

/** A DNS message that passed the strict checks of {@link decodeReply}. */
export interface DnsReply {
  id: number;
  qr: boolean;
  opcode: number;
  tc: boolean;
  ad: boolean;
  /** Including the EDNS0 extended bits (RFC 6891 §6.1.3). */
  rcode: number;
  questions: Array<{ name: string; type: number; klass: number }>;
  answers: ReplyRecord[];
  authorities: ReplyRecord[];
  additionals: ReplyRecord[];
}

interface FramedRecord {
  name: string;
  type: number;
  klass: number;
  ttl: number;
  rdOffset: number;
  rdLength: number;
}

interface Resolved<T extends DnsQueryType> {
  result: DnsResult<T>;
  /** Seconds to cache, or undefined when the answer must not be cached (negative without SOA). */
  cacheTtl: number | undefined;
}

interface Step<T extends DnsQueryType> extends Resolved<T> {
  /** The chain ended at a name without data and without its own answer: ask for that name. */
  follow: boolean;
  loop: boolean;
}

/**
 * A stub resolver for discovery (RFC 1035 over UDP, TCP on truncation) that every DNS query of a run
 * goes through, including the host names of LDAP, AIA, CRL and IPKIX connections via
 * {@link DnsClient.lookupFunction} (the `--dns HOST:PORT` contract).
 *
 * Failures: NXDOMAIN and NODATA are results (status), not errors; SERVFAIL, REFUSED and time-outs
 * after every try throw a transient HISP_DISCOVERY_TEMPORARY; replies that cannot be decoded, on
 * every try, throw HISP_DNS_MALFORMED.
 *
 * @example
 * const dns = new DnsClient({ servers: [DnsClient.parseServer('127.0.0.1:5353')] });
 * const res = await dns.query('d1.domain1.dcdt.test', 'CERT');
 * if (res.status === 'ok') for (const rec of res.records) console.log(rec.certType, rec.data.length);
 */
export class DnsClient {
  readonly servers: readonly DnsServer[];
  readonly timeoutMs: number;
  readonly retries: number;
  private readonly cacheEnabled: boolean;
  private readonly now: () => number;
  private readonly dnssec: boolean;
  private readonly udpPayloadSize: number;
  private readonly maxCacheTtl: number;
  private readonly cache = new Map<string, { result: DnsResult; expiresAt: number }>();
  private readonly inflight = new Map<string, Promise<Resolved<DnsQueryType>>>();

  constructor(options: DnsClientOptions = {}) {
    const servers = options.servers ?? defaultServers(options.resolvConfPath ?? '/etc/resolv.conf');
    if (servers.length === 0) throw new HispError('HISP_USAGE', 'DnsClient needs at least one DNS server');
    this.servers = servers.map((s) => checkServer(s));
    this.timeoutMs = checkNumber('timeoutMs', options.timeoutMs ?? DEFAULT_TIMEOUT_MS, 1, 600_000);
    this.retries = checkNumber('retries', options.retries ?? DEFAULT_RETRIES, 0, 100);
    this.cacheEnabled = options.cache ?? true;
    this.now = options.now ?? Date.now;
    this.dnssec = options.dnssec ?? false;
    const payload = options.udpPayloadSize ?? DEFAULT_UDP_PAYLOAD;
    this.udpPayloadSize = payload === 0 ? 0 : checkNumber('udpPayloadSize', payload, 512, 65_535);
    this.maxCacheTtl = checkNumber('maxCacheTtl', options.maxCacheTtl ?? DEFAULT_MAX_CACHE_TTL, 0, MAX_TTL);
  }

  /**
   * Parses a `--dns` value: `HOST:PORT`, `HOST` (port 53) or `[IPv6]:PORT`; a bare IPv6 address
   * takes port 53. HOST must be an IP address (or `localhost`, read as 127.0.0.1).
   */
  static parseServer(spec: string): DnsServer {
    const text = spec.trim();
    let host: string;
    let portText: string | undefined;
    const bracketed = /^\[([^\]]+)\](?::([^:]*))?$/.exec(text);
    if (bracketed) {
      host = bracketed[1] ?? '';
      portText = bracketed[2];
    } else if (net.isIPv6(text)) {
      host = text;
    } else {
      const colon = text.lastIndexOf(':');
      host = colon < 0 ? text : text.slice(0, colon);
      portText = colon < 0 ? undefined : text.slice(colon + 1);
    }
    if (host.toLowerCase() === 'localhost') host = '127.0.0.1';
    if (portText !== undefined && !/^\d{1,5}$/.test(portText)) {
      throw new HispError('HISP_USAGE', `DNS server "${spec}": the port must be a number`);
    }
    return checkServer({ host, port: portText === undefined ? 53 : Number(portText) });
  }

  /** Forgets every cached answer. */
  clearCache(): void {
    this.cache.clear();
  }

  /**
   * Asks for the records of one type at a name, following CNAMEs (at most {@link MAX_CNAME_HOPS}).
   * Throws HISP_USAGE for a name that cannot be a DNS name, HISP_DISCOVERY_TEMPORARY (transient)
   * when no server answered usefully, HISP_DNS_MALFORMED when the replies could not be decoded or
   * the CNAMEs loop.
   */
  async query<T extends DnsQueryType>(name: string, type: T): Promise<DnsResult<T>> {
    if (!Object.hasOwn(QTYPE, type)) throw new HispError('HISP_USAGE', `unsupported DNS query type ${String(type)}`);
    const qname = normalizeQueryName(name);
    if (!this.cacheEnabled) return copyResult({ ...(await this.resolve(qname, type, 0, new Set())).result, name: qname });
    // Concurrent identical queries share one exchange (only at the top: a shared re-query of a
    // CNAME target could wait on a query that itself waits on it).
    const key = cacheKey(qname, type);
    let pending = this.inflight.get(key) as Promise<Resolved<T>> | undefined;
    if (pending === undefined) {
      pending = this.resolve(qname, type, 0, new Set());
      this.inflight.set(key, pending);
      const clear = (): void => {
        this.inflight.delete(key);
      };
      pending.then(clear, clear);
    }
    const resolved = await pending;
    return copyResult({ ...resolved.result, name: qname });
  }

  /**
   * The addresses of a host: its A records, then its AAAA records. An IP literal returns itself and
   * `localhost` (and names under it) the loopback addresses (RFC 6761 §6.3), without a query.
   * Throws {@link DnsNotFoundError} (code ENOTFOUND) when the name has no address, or the
   * HispError of a failed query when neither type could be resolved.
   */
  async lookupHost(host: string): Promise<string[]> {
    const bare = host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
    if (net.isIP(bare) !== 0) return [bare];
    const lower = lowerAscii(bare).replace(/\.$/, '');
    if (lower === 'localhost' || lower.endsWith('.localhost')) return ['127.0.0.1', '::1'];
    try {
      normalizeQueryName(bare);
    } catch (cause) {
      throw new DnsNotFoundError(host, cause);
    }
    const settled = await Promise.allSettled([this.query(bare, 'A'), this.query(bare, 'AAAA')]);
    const addresses: string[] = [];
    let failure: Error | undefined;
    for (const outcome of settled) {
      if (outcome.status === 'fulfilled') addresses.push(...outcome.value.records);
      else failure ??= outcome.reason instanceof Error ? outcome.reason : asHispError(outcome.reason);
    }
    if (addresses.length > 0) return addresses;
    if (failure !== undefined) throw failure;
    throw new DnsNotFoundError(host);
  }

  /**
   * A `dns.lookup` look-alike resolving through this client, for the `lookup` option of
   * `net.connect`, `tls.connect` and `http(s).request`, so that no connection of hisp falls back
   * to the system resolver.
   *
   * @example
   * const socket = net.connect({ host: 'ldap.example.org', port: 389, lookup: dns.lookupFunction() });
   */
  lookupFunction(): DnsLookupFunction {
    const lookup = (hostname: string, optionsOrCallback: unknown, maybeCallback?: unknown): void => {
      const callback = (typeof optionsOrCallback === 'function' ? optionsOrCallback : maybeCallback) as
        | ((err: NodeJS.ErrnoException | null, address?: string | LookupAddress[], family?: number) => void)
        | undefined;
      if (typeof callback !== 'function') throw new TypeError('lookup: the callback must be a function');
      const options: LookupOptions =
        typeof optionsOrCallback === 'number'
          ? { family: optionsOrCallback }
          : typeof optionsOrCallback === 'object' && optionsOrCallback !== null
            ? optionsOrCallback
            : {};
      const family = options.family === 'IPv4' ? 4 : options.family === 'IPv6' ? 6 : Number(options.family ?? 0);
      const all = (options as { all?: boolean }).all === true;
      // The callback runs outside the promise chain, as node's own: what it throws is not swallowed.
      const reply = (err: NodeJS.ErrnoException | null, address?: string | LookupAddress[], fam?: number): void => {
        process.nextTick(() => (err ? callback(err) : callback(null, address, fam)));
      };
      this.lookupHost(String(hostname)).then(
        (addresses) => {
          const list = addresses
            .map((address) => ({ address, family: net.isIP(address) }))
            .filter((a) => family === 0 || a.family === family);
          const first = list[0];
          if (first === undefined) reply(new DnsNotFoundError(String(hostname)));
          else if (all) reply(null, list);
          else reply(null, first.address, first.family);
        },
        (err: unknown) => reply(err instanceof Error ? err : new Error(String(err))),
      );
    };
    return lookup;
  }

  private async resolve<T extends DnsQueryType>(
    name: string,
    type: T,
    hops: number,
    seen: ReadonlySet<string>,
  ): Promise<Resolved<T>> {
    const key = cacheKey(name, type);
    const hit = this.cacheGet<T>(key);
    if (hit) return hit;
    const step = await this.exchange(name, type, seen);
    const chain = [name, ...step.result.cnames].join(' → ');
    if (step.loop) throw new HispError('HISP_DNS_MALFORMED', `CNAME loop: ${chain}`, { details: { name, type } });
    if (hops + step.result.cnames.length > MAX_CNAME_HOPS) {
      throw new HispError('HISP_DNS_MALFORMED', `more than ${MAX_CNAME_HOPS} CNAMEs: ${chain}`, { details: { name, type } });
    }
    let resolved: Resolved<T> = step;
    if (step.follow) {
      const nextSeen = new Set([...seen, lowerAscii(name), ...step.result.cnames.map(lowerAscii)]);
      const sub = await this.resolve(step.result.canonicalName, type, hops + step.result.cnames.length, nextSeen);
      const ttl = Math.min(step.result.ttl, sub.result.ttl);
      resolved = {
        result: {
          ...sub.result,
          name,
          ttl,
          authenticated: step.result.authenticated && sub.result.authenticated,
          cnames: [...step.result.cnames, ...sub.result.cnames],
        },
        cacheTtl: sub.cacheTtl === undefined ? undefined : Math.min(ttl, sub.cacheTtl),
      };
    }
    this.cacheSet(key, resolved);
    return resolved;
  }

  /** One question to the servers: every server in turn, 1 + retries rounds. */
  private async exchange<T extends DnsQueryType>(name: string, type: T, seen: ReadonlySet<string>): Promise<Step<T>> {
    const failures: Array<{ server: string; error: HispError }> = [];
    for (let round = 0; round <= this.retries; round++) {
      for (const server of this.servers) {
        try {
          const { reply, transport } = await this.ask(server, name, QTYPE[type]);
          return interpret(reply, name, type, transport, seen, this.maxCacheTtl);
        } catch (err) {
          failures.push({ server: formatServer(server), error: asHispError(err) });
        }
      }
    }
    const reasons = [...new Set(failures.map((f) => `${f.server}: ${f.error.message}`))].join('; ');
    const details = { name, type, tries: failures.length };
    const text = `DNS ${type} query for ${name} failed after ${failures.length} tries (${reasons})`;
    const last = failures[failures.length - 1]?.error;
    if (failures.every((f) => f.error.code === 'HISP_DNS_MALFORMED')) {
      throw new HispError('HISP_DNS_MALFORMED', text, { transient: true, cause: last, details });
    }
    throw new HispError('HISP_DISCOVERY_TEMPORARY', text, { transient: true, cause: last, details });
  }

  /** One try at one server: UDP, then TCP if truncated; without EDNS if the server refuses it. */
  private async ask(server: DnsServer, name: string, qtype: number): Promise<{ reply: DnsReply; transport: 'udp' | 'tcp' }> {
    let edns = this.udpPayloadSize > 0;
    for (;;) {
      const id = randomInt(0, 0x10000);
      const query = this.encodeQuery(id, name, qtype, edns);
      let reply = await udpExchange(server, query, this.timeoutMs, (msg) => {
        if (msg.length < 2 || msg.readUInt16BE(0) !== id) return undefined; // not ours: keep waiting
        const decoded = decodeReply(msg);
        return decoded.qr && matchesQuestion(decoded, name, qtype) ? decoded : undefined;
      });
      let transport: 'udp' | 'tcp' = 'udp';
      if (reply.tc) {
        reply = decodeReply(await tcpExchange(server, query, this.timeoutMs));
        if (reply.id !== id || !reply.qr || !matchesQuestion(reply, name, qtype)) {
          throw new HispError('HISP_DNS_MALFORMED', 'the TCP reply does not answer the question asked');
        }
        transport = 'tcp';
      }
      // RFC 6891 §7: a server that does not know EDNS answers FORMERR (or NOTIMP, BADVERS); ask again without it.
      if (edns && [RCODE_FORMERR, RCODE_NOTIMP, RCODE_BADVERS].includes(reply.rcode)) {
        edns = false;
        continue;
      }
      if (reply.opcode !== 0) throw new HispError('HISP_DNS_MALFORMED', `reply with opcode ${reply.opcode}`);
      if (reply.rcode !== RCODE_NOERROR && reply.rcode !== RCODE_NXDOMAIN) {
        const rcode = RCODE_NAMES.get(reply.rcode) ?? `RCODE ${reply.rcode}`;
        throw new HispError('HISP_DISCOVERY_TEMPORARY', rcode, { transient: true });
      }
      return { reply, transport };
    }
  }

  private encodeQuery(id: number, name: string, qtype: number, edns: boolean): Buffer {
    const type = TYPE_NAMES.get(qtype) as dnsPacket.RecordType;
    return dnsPacket.encode({
      type: 'query',
      id,
      flags: dnsPacket.RECURSION_DESIRED,
      questions: [{ type, name, class: 'IN' }],
      additionals: edns
        ? [
            {
              type: 'OPT',
              name: '.',
              udpPayloadSize: this.udpPayloadSize,
              extendedRcode: 0,
              ednsVersion: 0,
              flags: this.dnssec ? dnsPacket.DNSSEC_OK : 0,
              flag_do: this.dnssec,
              options: [],
            },
          ]
        : [],
    });
  }

  private cacheGet<T extends DnsQueryType>(key: string): Resolved<T> | undefined {
    if (!this.cacheEnabled) return undefined;
    const entry = this.cache.get(key);
    if (entry === undefined) return undefined;
    const left = entry.expiresAt - this.now();
    if (left <= 0) {
      this.cache.delete(key);
      return undefined;
    }
    const ttl = Math.ceil(left / 1000);
    return { result: { ...(entry.result as DnsResult<T>), ttl }, cacheTtl: ttl };
  }

  private cacheSet(key: string, resolved: Resolved<DnsQueryType>): void {
    const ttl = resolved.cacheTtl;
    if (!this.cacheEnabled || ttl === undefined || ttl <= 0) return;
    if (this.cache.size >= MAX_CACHE_ENTRIES) {
      const oldest = this.cache.keys().next();
      if (oldest.done !== true) this.cache.delete(oldest.value);
    }
    this.cache.delete(key);
    this.cache.set(key, { result: resolved.result, expiresAt: this.now() + ttl * 1000 });
  }
}

/**
 * Decodes and checks a DNS message. dns-packet is lenient (it slices past RDLENGTH and reads names
 * past the rdata), so the message is first framed here with strict bounds: names (pointers only
 * backwards, at most 255 bytes), every RR inside the message, and the data of the types hisp reads
 * exactly filling their RDLENGTH. dns-packet's decoding must then agree record by record.
 * Throws HISP_DNS_MALFORMED.
 */
export function decodeReply(buf: Buffer): DnsReply {
  if (!Buffer.isBuffer(buf)) throw malformed('a DNS message must be a Buffer');
  if (buf.length < 12) throw malformed(`a DNS message of ${buf.length} bytes is shorter than its header`);
  const counts = [buf.readUInt16BE(4), buf.readUInt16BE(6), buf.readUInt16BE(8), buf.readUInt16BE(10)] as const;
  let offset = 12;
  const questions: DnsReply['questions'] = [];
  for (let i = 0; i < counts[0]; i++) {
    const qname = readName(buf, offset);
    offset = qname.end;
    if (offset + 4 > buf.length) throw malformed('question runs past the end of the message');
    questions.push({ name: qname.name, type: buf.readUInt16BE(offset), klass: buf.readUInt16BE(offset + 2) });
    offset += 4;
  }
  const framed: FramedRecord[][] = [];
  for (const count of counts.slice(1)) {
    const section: FramedRecord[] = [];
    for (let i = 0; i < count; i++) {
      const owner = readName(buf, offset);
      offset = owner.end;
      if (offset + 10 > buf.length) throw malformed('resource record runs past the end of the message');
      const rr: FramedRecord = {
        name: owner.name,
        type: buf.readUInt16BE(offset),
        klass: buf.readUInt16BE(offset + 2),
        ttl: buf.readUInt32BE(offset + 4),
        rdOffset: offset + 10,
        rdLength: buf.readUInt16BE(offset + 8),
      };
      if (rr.rdOffset + rr.rdLength > buf.length) throw malformed('RDATA runs past the end of the message');
      checkRdata(buf, rr);
      section.push(rr);
      offset = rr.rdOffset + rr.rdLength;
    }
    framed.push(section);
  }
  const [answersRr = [], authoritiesRr = [], additionalsRr = []] = framed;
  if (additionalsRr.filter((rr) => rr.type === T_OPT).length > 1) throw malformed('more than one OPT record (RFC 6891 §6.1.1)');

  let packet: dnsPacket.DecodedPacket;
  try {
    packet = dnsPacket.decode(buf);
  } catch (cause) {
    throw malformed(`undecodable DNS message: ${cause instanceof Error ? cause.message : String(cause)}`, cause);
  }
  if (dnsPacket.decode.bytes !== offset) throw malformed('DNS message framing is ambiguous');
  const join = (ours: FramedRecord[], theirs: dnsPacket.Answer[] | undefined): ReplyRecord[] =>
    ours.map((rr, i) => {
      const other = theirs?.[i];
      const otherType = other?.type as string | undefined;
      const expected = TYPE_NAMES.get(rr.type);
      if (
        other === undefined ||
        lowerAscii(other.name) !== lowerAscii(rr.name) ||
        (expected !== undefined ? otherType !== expected : KNOWN_TYPE_NAMES.has(otherType ?? '')) ||
        (rr.type !== T_OPT && (other as { ttl?: number }).ttl !== rr.ttl)
      ) {
        throw malformed('DNS message framing is ambiguous');
      }
      return {
        name: rr.name,
        type: rr.type,
        klass: rr.klass,
        ttl: rr.ttl,
        rdata: buf.subarray(rr.rdOffset, rr.rdOffset + rr.rdLength),
        data: rr.type === T_OPT ? other : (other as { data?: unknown }).data,
      };
    });
  const answers = join(answersRr, packet.answers);
  const authorities = join(authoritiesRr, packet.authorities);
  const additionals = join(additionalsRr, packet.additionals);

  const flags = buf.readUInt16BE(2);
  let rcode = flags & 0xf;
  const opt = additionals.find((rr) => rr.type === T_OPT);
  if (opt) rcode |= (opt.ttl >>> 24) << 4; // extended RCODE: the OPT TTL's top byte (RFC 6891 §6.1.3)
  return {
    id: buf.readUInt16BE(0),
    qr: (flags & 0x8000) !== 0,
    opcode: (flags >> 11) & 0xf,
    tc: (flags & 0x0200) !== 0,
    ad: (flags & 0x0020) !== 0,
    rcode,
    questions,
    answers,
    authorities,
    additionals,
  };
}

/**
 * Reads a possibly compressed name (RFC 1035 §4.1.4) with dns-packet's rules: pointers go backwards.
 * A name has at most 127 labels, so more jumps than that is a crafted chain meant to burn CPU.
 */
function readName(buf: Buffer, start: number): { name: string; end: number } {
  const labels: string[] = [];
  let offset = start;
  let limit = start;
  let end = -1;
  let wire = 1;
  let jumps = 0;
  for (;;) {
    if (offset >= buf.length) throw malformed('name runs past the end of the message');
    const len = buf.readUInt8(offset);
    if (len === 0) {
      if (end < 0) end = offset + 1;
      break;
    }
    if ((len & 0xc0) === 0) {
      if (offset + 1 + len > buf.length) throw malformed('label runs past the end of the message');
      wire += len + 1;
      if (wire > 255) throw malformed('name longer than 255 bytes');
      labels.push(buf.toString('utf8', offset + 1, offset + 1 + len));
      offset += 1 + len;
    } else if ((len & 0xc0) === 0xc0) {
      if (offset + 2 > buf.length) throw malformed('compression pointer runs past the end of the message');
      const target = buf.readUInt16BE(offset) & 0x3fff;
      if (target >= limit) throw malformed('compression pointer does not point backwards');
      if (++jumps > MAX_POINTER_JUMPS) throw malformed('too many compression pointers in one name');
      if (end < 0) end = offset + 2;
      offset = target;
      limit = target;
    } else {
      throw malformed(`unknown label type 0x${len.toString(16)}`);
    }
  }
  return { name: labels.length === 0 ? '.' : labels.join('.'), end };
}

/** The data of the types hisp reads must fill RDLENGTH exactly. */
function checkRdata(buf: Buffer, rr: FramedRecord): void {
  const { rdOffset: start, rdLength: length } = rr;
  const end = start + length;
  const fail = (what: string): HispError => malformed(`${TYPE_NAMES.get(rr.type) ?? rr.type} record of ${rr.name}: ${what}`);
  switch (rr.type) {
    case T_A:
      if (length !== 4) throw fail(`RDLENGTH ${length}, not 4`);
      break;
    case T_AAAA:
      if (length !== 16) throw fail(`RDLENGTH ${length}, not 16`);
      break;
    case T_NS:
    case T_CNAME:
    case T_PTR:
    case T_DNAME:
      if (length === 0 || readName(buf, start).end !== end) throw fail('the name does not fill the RDATA');
      break;
    case T_SOA: {
      if (length < 22) throw fail(`RDLENGTH ${length} too short`);
      const mname = readName(buf, start);
      if (mname.end > end) throw fail('MNAME runs past the RDATA');
      const rname = readName(buf, mname.end);
      if (rname.end + 20 !== end) throw fail('the names and counters do not fill the RDATA');
      break;
    }
    case T_SRV:
      if (length < 7 || readName(buf, start + 6).end !== end) throw fail('the target does not fill the RDATA');
      break;
    case T_MX:
      if (length < 3 || readName(buf, start + 2).end !== end) throw fail('the exchange does not fill the RDATA');
      break;
    case T_OPT: {
      if (rr.name !== '.') throw fail('OPT owner is not the root');
      let p = start;
      while (p < end) {
        if (p + 4 > end) throw fail('truncated EDNS option');
        p += 4 + buf.readUInt16BE(p + 2);
      }
      if (p !== end) throw fail('EDNS option runs past the RDATA');
      break;
    }
    default:
      break;
  }
}

function matchesQuestion(reply: DnsReply, name: string, qtype: number): boolean {
  // Servers may drop the question from error replies; those cannot be misattributed answers.
  if (reply.questions.length === 0) return reply.rcode !== RCODE_NOERROR && reply.rcode !== RCODE_NXDOMAIN;
  const q = reply.questions[0];
  return (
    reply.questions.length === 1 && q !== undefined && q.type === qtype && q.klass === CLASS_IN && sameName(q.name, name)
  );
}

/** Reads the answer to (name, type) out of a reply, following the CNAMEs it carries. */
function interpret<T extends DnsQueryType>(
  reply: DnsReply,
  name: string,
  type: T,
  transport: 'udp' | 'tcp',
  seen: ReadonlySet<string>,
  maxTtl: number,
): Step<T> {
  const qtype = QTYPE[type];
  const answers = reply.answers.filter((rr) => rr.klass === CLASS_IN);
  const visited = new Set([...seen, lowerAscii(name)]);
  const cnames: string[] = [];
  let current = name;
  let ttl = MAX_TTL;
  let loop = false;
  let data: ReplyRecord[];
  for (;;) {
    const here = answers.filter((rr) => sameName(rr.name, current));
    data = here.filter((rr) => rr.type === qtype);
    if (data.length > 0 || qtype === T_CNAME) break;
    const cname = here.find((rr) => rr.type === T_CNAME);
    if (cname === undefined) break;
    const target = cnameTarget(cname);
    cnames.push(target);
    ttl = Math.min(ttl, normalTtl(cname.ttl));
    if (visited.has(lowerAscii(target))) {
      loop = true;
      break;
    }
    visited.add(lowerAscii(target));
    current = target;
    if (cnames.length > MAX_CNAME_HOPS) break;
  }
  const nxdomain = reply.rcode === RCODE_NXDOMAIN;
  const records = nxdomain ? [] : data.map((rr) => decodeRecord(rr, type));
  const status: DnsStatus = nxdomain ? 'nxdomain' : records.length > 0 ? 'ok' : 'nodata';
  const follow = status === 'nodata' && cnames.length > 0 && !loop && cnames.length <= MAX_CNAME_HOPS;
  let cacheTtl: number | undefined;
  if (status === 'ok') {
    for (const rr of data) ttl = Math.min(ttl, normalTtl(rr.ttl));
    cacheTtl = ttl;
  } else if (!follow) {
    // RFC 2308 §5: a negative answer lives min(SOA TTL, SOA MINIMUM); without an SOA it is not cached.
    const soa = reply.authorities.find((rr) => rr.type === T_SOA && rr.klass === CLASS_IN);
    const minimum = (soa?.data as { minimum?: unknown } | undefined)?.minimum;
    if (soa !== undefined && typeof minimum === 'number') {
      ttl = Math.min(ttl, normalTtl(soa.ttl), normalTtl(minimum));
      cacheTtl = ttl;
    } else {
      ttl = 0;
    }
  }
  ttl = Math.min(ttl, maxTtl);
  return {
    result: {
      name,
      canonicalName: current,
      status,
      records: records as Array<DnsRecordByType[T]>,
      ttl,
      authenticated: reply.ad,
      transport,
      cnames,
    },
    cacheTtl: cacheTtl === undefined ? undefined : Math.min(cacheTtl, maxTtl),
    follow,
    loop,
  };
}

function decodeRecord(rr: ReplyRecord, type: DnsQueryType): DnsRecordByType[DnsQueryType] {
  switch (type) {
    case 'CERT':
      return decodeCertRdata(rr.rdata);
    case 'A':
    case 'AAAA': {
      const address = rr.data;
      const family = type === 'A' ? 4 : 6;
      if (typeof address !== 'string' || net.isIP(address) !== family) throw malformed(`${type} record of ${rr.name} is not an address`);
      return address;
    }
    case 'CNAME':
      return cnameTarget(rr);
    case 'SRV': {
      const srv = rr.data as Partial<Record<keyof SrvRecord, unknown>> | undefined;
      const { priority, weight, port, target } = srv ?? {};
      if (typeof priority !== 'number' || typeof weight !== 'number' || typeof port !== 'number' || typeof target !== 'string') {
        throw malformed(`SRV record of ${rr.name} is not decodable`);
      }
      return { priority, weight, port, target };
    }
    case 'MX': {
      const mx = rr.data as Partial<Record<keyof MxRecord, unknown>> | undefined;
      const { preference, exchange } = mx ?? {};
      if (typeof preference !== 'number' || typeof exchange !== 'string') throw malformed(`MX record of ${rr.name} is not decodable`);
      return { preference, exchange: exchange === '' ? '.' : exchange };
    }
  }
}

function cnameTarget(rr: ReplyRecord): string {
  if (typeof rr.data !== 'string' || rr.data === '.' || rr.data === '') throw malformed(`CNAME record of ${rr.name} has no target`);
  return rr.data;
}

async function udpExchange(
  server: DnsServer,
  query: Buffer,
  timeoutMs: number,
  accept: (msg: Buffer) => DnsReply | undefined,
): Promise<DnsReply> {
  return new Promise<DnsReply>((resolve, reject) => {
    const socket = dgram.createSocket(net.isIPv6(server.host) ? 'udp6' : 'udp4');
    let done = false;
    const finish = (err: Error | undefined, reply?: DnsReply): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.removeAllListeners('message');
      try {
        socket.close();
      } catch {
        // already closed
      }
      if (err !== undefined) reject(err);
      else if (reply !== undefined) resolve(reply);
    };
    const timer = setTimeout(() => finish(temporary(`no reply within ${timeoutMs} ms`)), timeoutMs);
    socket.on('error', (err) => finish(temporary(`UDP: ${err.message}`, err)));
    socket.on('message', (msg: Buffer) => {
      try {
        const reply = accept(msg);
        if (reply !== undefined) finish(undefined, reply);
      } catch (err) {
        finish(asHispError(err));
      }
    });
    // A fresh socket per try: a random source port (RFC 5452 §9.2); connect() drops datagrams from
    // any other address and reports ICMP port unreachable as ECONNREFUSED.
    socket.bind(0, () => {
      if (done) return;
      try {
        // node passes a failed connect to this callback instead of emitting 'error'.
        socket.connect(server.port, server.host, (err?: Error) => {
          if (done) return;
          if (err) {
            finish(temporary(`UDP connect: ${err.message}`, err));
            return;
          }
          try {
            socket.send(query, (sendErr) => {
              if (sendErr) finish(temporary(`UDP send: ${sendErr.message}`, sendErr));
            });
          } catch (sendErr) {
            finish(temporary(`UDP send: ${sendErr instanceof Error ? sendErr.message : String(sendErr)}`, sendErr));
          }
        });
      } catch (err) {
        finish(temporary(`UDP: ${err instanceof Error ? err.message : String(err)}`, err));
      }
    });
  });
}

/** One exchange over TCP with the 2-byte length prefix of RFC 1035 §4.2.2. */
async function tcpExchange(server: DnsServer, query: Buffer, timeoutMs: number): Promise<Buffer> {
  return new Promise<Buffer>((resolve, reject) => {
    const socket = net.connect({ host: server.host, port: server.port });
    const chunks: Buffer[] = [];
    let received = 0;
    let done = false;
    const finish = (err: Error | undefined, msg?: Buffer): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      if (err !== undefined) reject(err);
      else if (msg !== undefined) resolve(msg);
    };
    const timer = setTimeout(() => finish(temporary(`no TCP reply within ${timeoutMs} ms`)), timeoutMs);
    socket.on('connect', () => {
      const frame = Buffer.alloc(2 + query.length);
      frame.writeUInt16BE(query.length, 0);
      query.copy(frame, 2);
      socket.write(frame);
    });
    socket.on('data', (chunk: Buffer) => {
      chunks.push(chunk);
      received += chunk.length;
      if (received < 2) return;
      const buf = Buffer.concat(chunks);
      chunks.length = 0;
      chunks.push(buf);
      const length = buf.readUInt16BE(0);
      if (length === 0) finish(malformed('empty TCP DNS message'));
      else if (buf.length >= 2 + length) finish(undefined, Buffer.from(buf.subarray(2, 2 + length)));
    });
    socket.on('error', (err) => finish(temporary(`TCP: ${err.message}`, err)));
    socket.on('close', () => finish(temporary('TCP connection closed before a full reply')));
  });
}

/** Parses the `nameserver` lines of resolv.conf(5). */
export function parseResolvConf(text: string): DnsServer[] {
  const servers: DnsServer[] = [];
  for (const line of text.split(/\r?\n/)) {
    const match = /^\s*nameserver\s+(\S+)/.exec(line);
    const host = match?.[1];
    if (host !== undefined && net.isIP(host) !== 0) servers.push({ host, port: 53 });
  }
  return servers;
}

function defaultServers(path: string): DnsServer[] {
  let servers: DnsServer[] = [];
  try {
    servers = parseResolvConf(readFileSync(path, 'utf8'));
  } catch {
    // no resolv.conf: fall back below
  }
  return servers.length > 0 ? servers : [{ host: '127.0.0.1', port: 53 }];
}

function checkServer(server: DnsServer): DnsServer {
  const { host, port } = server;
  if (typeof host !== 'string' || net.isIP(host) === 0) {
    throw new HispError('HISP_USAGE', `DNS server ${String(host)}: the host must be an IP address`);
  }
  if (!Number.isInteger(port) || port < 1 || port > 65_535) {
    throw new HispError('HISP_USAGE', `DNS server ${host}: port ${String(port)} is not in 1–65535`);
  }
  return { host, port };
}

function checkNumber(what: string, value: number, min: number, max: number): number {
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new HispError('HISP_USAGE', `DnsClient ${what} must be an integer in ${min}–${max}, not ${String(value)}`);
  }
  return value;
}

/** Checks a query name (RFC 1035 §2.3.4: labels of 1–63 bytes, 255 bytes in all) and drops the final dot. */
function normalizeQueryName(name: string): string {
  if (typeof name !== 'string') throw new HispError('HISP_USAGE', 'a DNS name must be a string');
  const bare = name.endsWith('.') ? name.slice(0, -1) : name;
  const labels = bare.split('.');
  let wire = 1;
  for (const label of labels) {
    const bytes = Buffer.byteLength(label, 'utf8');
    if (bytes === 0 || bytes > 63) {
      throw new HispError('HISP_USAGE', `"${name}" is not a DNS name: labels must have 1 to 63 bytes`);
    }
    wire += bytes + 1;
  }
  if (wire > 255) throw new HispError('HISP_USAGE', `"${name}" is not a DNS name: longer than 255 bytes`);
  return bare;
}

function copyResult<T extends DnsQueryType>(result: DnsResult<T>): DnsResult<T> {
  return {
    ...result,
    records: (result.records as Array<DnsRecordByType[DnsQueryType]>).map((r) =>
      typeof r === 'string' ? r : 'data' in r ? { ...r, data: Buffer.from(r.data) } : { ...r },
    ) as Array<DnsRecordByType[T]>,
    cnames: [...result.cnames],
  };
}

function cacheKey(name: string, type: DnsQueryType): string {
  return `${lowerAscii(name)}\u0000${type}`;
}

/** DNS names compare case-insensitively in ASCII only (RFC 4343). */
function lowerAscii(text: string): string {
  return text.replace(/[A-Z]+/g, (s) => s.toLowerCase());
}

function sameName(a: string, b: string): boolean {
  return lowerAscii(a).replace(/\.$/, '') === lowerAscii(b).replace(/\.$/, '');
}

function normalTtl(ttl: number): number {
  return ttl > MAX_TTL ? 0 : ttl;
}

function formatServer(server: DnsServer): string {
  return net.isIPv6(server.host) ? `[${server.host}]:${server.port}` : `${server.host}:${server.port}`;
}

function malformed(message: string, cause?: unknown): HispError {
  return new HispError('HISP_DNS_MALFORMED', message, cause === undefined ? {} : { cause });
}

function temporary(message: string, cause?: unknown): HispError {
  return new HispError('HISP_DISCOVERY_TEMPORARY', message, { transient: true, ...(cause === undefined ? {} : { cause }) });
}

function asHispError(err: unknown): HispError {
  if (err instanceof HispError) return err;
  return temporary(err instanceof Error ? err.message : String(err), err);
}
