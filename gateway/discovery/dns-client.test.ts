import { randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import { once } from 'node:events';
import http from 'node:http';
import net from 'node:net';
import * as dnsPacket from 'dns-packet';
import fc from 'fast-check';
import { afterEach, describe, expect, expectTypeOf, it } from 'vitest';
import { HispError } from '../core/errors.js';
import { CERT_TYPES, encodeCertRdata, type CertRecord } from './cert-record.js';
import {
  decodeReply,
  DnsClient,
  DnsNotFoundError,
  MAX_CNAME_HOPS,
  parseResolvConf,
  type DnsClientOptions,
  type DnsResult,
  type DnsServer,
  type MxRecord,
  type SrvRecord,
} from './dns-client.js';

// ---------------------------------------------------------------------------------------------
// An in-process authoritative server on 127.0.0.1, UDP and TCP on the same port.

interface Query {
  transport: 'udp' | 'tcp';
  id: number;
  name: string;
  type: string;
  flags: number;
  packet: dnsPacket.DecodedPacket;
  opt: dnsPacket.OptAnswer | undefined;
}

/** What to send back: packets (encoded here), raw bytes, or nothing. */
type Response = dnsPacket.Packet | Buffer;
type Responder = (q: Query) => Response[] | Response | undefined;

class FakeServer {
  readonly queries: Query[] = [];
  private tcpSockets = new Set<net.Socket>();

  private constructor(
    private readonly udp: dgram.Socket,
    private readonly tcp: net.Server,
    readonly port: number,
    public respond: Responder,
  ) {
    udp.on('message', (msg, rinfo) => {
      for (const out of this.handle(msg, 'udp')) udp.send(out, rinfo.port, rinfo.address);
    });
    tcp.on('connection', (socket) => {
      this.tcpSockets.add(socket);
      socket.on('close', () => this.tcpSockets.delete(socket));
      socket.on('error', () => undefined);
      let buf = Buffer.alloc(0);
      socket.on('data', (chunk) => {
        buf = Buffer.concat([buf, chunk]);
        while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
          const msg = buf.subarray(2, 2 + buf.readUInt16BE(0));
          buf = buf.subarray(2 + msg.length);
          for (const out of this.handle(msg, 'tcp')) {
            const len = Buffer.alloc(2);
            len.writeUInt16BE(out.length);
            socket.write(Buffer.concat([len, out]));
          }
        }
      });
    });
  }

  static async start(respond: Responder): Promise<FakeServer> {
    for (let attempt = 0; ; attempt++) {
      const udp = dgram.createSocket('udp4');
      udp.bind(0, '127.0.0.1');
      await once(udp, 'listening');
      const port = udp.address().port;
      const tcp = net.createServer();
      try {
        tcp.listen(port, '127.0.0.1');
        await once(tcp, 'listening');
        const server = new FakeServer(udp, tcp, port, respond);
        servers.push(server);
        return server;
      } catch (err) {
        udp.close();
        if (attempt > 10) throw err;
      }
    }
  }

  get server(): DnsServer {
    return { host: '127.0.0.1', port: this.port };
  }

  count(transport?: 'udp' | 'tcp'): number {
    return this.queries.filter((q) => transport === undefined || q.transport === transport).length;
  }

  async close(): Promise<void> {
    for (const s of this.tcpSockets) s.destroy();
    await new Promise<void>((resolve) => this.tcp.close(() => resolve()));
    await new Promise<void>((resolve) => this.udp.close(() => resolve()));
  }

  private handle(msg: Buffer, transport: 'udp' | 'tcp'): Buffer[] {
    let packet: dnsPacket.DecodedPacket;
    try {
      packet = dnsPacket.decode(msg);
    } catch {
      return [];
    }
    const question = packet.questions?.[0];
    if (question === undefined) return [];
    const opt = packet.additionals?.find((a): a is dnsPacket.OptAnswer => a.type === 'OPT');
    const q: Query = {
      transport,
      id: packet.id ?? 0,
      name: question.name,
      type: question.type,
      flags: msg.readUInt16BE(2),
      packet,
      opt,
    };
    this.queries.push(q);
    const out = this.respond(q);
    const list = out === undefined ? [] : Array.isArray(out) ? out : [out];
    return list.map((r) => (Buffer.isBuffer(r) ? r : dnsPacket.encode({ type: 'response', id: q.id, questions: [question], ...r })));
  }
}

const servers: FakeServer[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

// Flags of the header's second 16-bit word (RFC 1035 §4.1.1); dns-packet takes the RCODE in them.
const NXDOMAIN = 3;
const SERVFAIL = 2;
const FORMERR = 1;
const REFUSED = 5;

function cert(name: string, record: CertRecord, ttl = 300): dnsPacket.Answer {
  return { type: 'CERT', name, ttl, data: encodeCertRdata(record) };
}
function cname(name: string, target: string, ttl = 300): dnsPacket.Answer {
  return { type: 'CNAME', name, ttl, data: target };
}
function soa(zone: string, ttl: number, minimum: number): dnsPacket.Answer {
  return {
    type: 'SOA',
    name: zone,
    ttl,
    data: { mname: `ns.${zone}`, rname: `hostmaster.${zone}`, serial: 1, refresh: 3600, retry: 600, expire: 86400, minimum },
  };
}

const PKIX = (bytes: number | Buffer, keyTag = 0): CertRecord => ({
  certType: CERT_TYPES.PKIX,
  keyTag,
  algorithm: 0,
  data: Buffer.isBuffer(bytes) ? bytes : randomBytes(bytes),
});

/** A client of one or more fake servers, with small time-outs and a clock the test moves. */
function clientFor(server: FakeServer | FakeServer[], options: DnsClientOptions = {}): { dns: DnsClient; clock: { now: number } } {
  const clock = { now: 1_000_000 };
  const list = Array.isArray(server) ? server : [server];
  const dns = new DnsClient({ servers: list.map((s) => s.server), timeoutMs: 100, now: () => clock.now, ...options });
  return { dns, clock };
}

async function rejection(promise: Promise<unknown>): Promise<HispError> {
  try {
    await promise;
  } catch (err) {
    expect(err).toBeInstanceOf(HispError);
    return err as HispError;
  }
  throw new Error('expected a HispError, the promise resolved');
}

// ---------------------------------------------------------------------------------------------

describe('DnsClient.query', () => {
  it('answers CERT over UDP with EDNS0 (1232 bytes, DO unset), RD set and random ids', async () => {
    const record = PKIX(400, 15655);
    const server = await FakeServer.start((q) => ({ flags: dnsPacket.AUTHORITATIVE_ANSWER, answers: [cert(q.name, record, 2000)] }));
    const { dns } = clientFor(server, { cache: false });
    const res = await dns.query('d1.domain1.dcdt.test.', 'CERT');
    expect(res).toEqual({
      name: 'd1.domain1.dcdt.test',
      canonicalName: 'd1.domain1.dcdt.test',
      status: 'ok',
      records: [record],
      ttl: 2000,
      authenticated: false,
      transport: 'udp',
      cnames: [],
    });
    expectTypeOf(res.records).toEqualTypeOf<CertRecord[]>();
    const q = server.queries[0];
    expect(q).toMatchObject({ transport: 'udp', name: 'd1.domain1.dcdt.test', type: 'CERT' });
    expect(q?.flags ?? 0).toBe(dnsPacket.RECURSION_DESIRED);
    expect(q?.opt).toMatchObject({ udpPayloadSize: 1232, flag_do: false, ednsVersion: 0 });
    for (let i = 0; i < 7; i++) await dns.query('d1.domain1.dcdt.test', 'CERT');
    expect(new Set(server.queries.map((x) => x.id)).size).toBeGreaterThan(1);
  });

  it('sets the DO bit only when asked, and sends no OPT with udpPayloadSize 0', async () => {
    const server = await FakeServer.start((q) => ({ answers: [cert(q.name, PKIX(10))] }));
    await clientFor(server, { dnssec: true }).dns.query('a.test', 'CERT');
    expect(server.queries[0]?.opt).toMatchObject({ flag_do: true, udpPayloadSize: 1232 });
    await clientFor(server, { udpPayloadSize: 0 }).dns.query('a.test', 'CERT');
    expect(server.queries[1]?.opt).toBeUndefined();
  });

  it('repeats over TCP when the UDP answer is truncated (R-DIS-6, a 4 KB CERT)', async () => {
    const big = PKIX(4000);
    const server = await FakeServer.start((q) =>
      q.transport === 'udp'
        ? { flags: dnsPacket.TRUNCATED_RESPONSE | dnsPacket.AUTHORITATIVE_ANSWER, answers: [] }
        : { flags: dnsPacket.AUTHORITATIVE_ANSWER, answers: [cert(q.name, big)] },
    );
    const { dns } = clientFor(server);
    const res = await dns.query('d14.domain1.dcdt.test', 'CERT');
    expect(res.transport).toBe('tcp');
    expect(res.status).toBe('ok');
    expect(res.records[0]?.data.equals(big.data)).toBe(true);
    expect(server.count('udp')).toBe(1);
    expect(server.count('tcp')).toBe(1);
  });

  it('reports NXDOMAIN and caches it for the SOA negative TTL (RFC 2308 §5)', async () => {
    const server = await FakeServer.start(() => ({ flags: NXDOMAIN, authorities: [soa('domain1.test', 3600, 60)] }));
    const { dns, clock } = clientFor(server);
    const res = await dns.query('nobody.domain1.test', 'CERT');
    expect(res).toMatchObject({ status: 'nxdomain', records: [], ttl: 60, cnames: [] });
    clock.now += 59_000;
    expect((await dns.query('nobody.domain1.test', 'CERT')).status).toBe('nxdomain');
    expect(server.count()).toBe(1);
    clock.now += 1_000;
    await dns.query('nobody.domain1.test', 'CERT');
    expect(server.count()).toBe(2);
  });

  it('reports NODATA and caches it for min(SOA TTL, MINIMUM)', async () => {
    const server = await FakeServer.start(() => ({ authorities: [soa('domain1.test', 30, 600)] }));
    const { dns, clock } = clientFor(server);
    expect(await dns.query('domain1.test', 'CERT')).toMatchObject({ status: 'nodata', records: [], ttl: 30 });
    clock.now += 29_000;
    await dns.query('domain1.test', 'CERT');
    expect(server.count()).toBe(1);
    clock.now += 1_000;
    await dns.query('domain1.test', 'CERT');
    expect(server.count()).toBe(2);
  });

  it('does not cache a negative answer without an SOA', async () => {
    const server = await FakeServer.start(() => ({ flags: NXDOMAIN }));
    const { dns } = clientFor(server);
    expect((await dns.query('x.test', 'CERT')).ttl).toBe(0);
    await dns.query('x.test', 'CERT');
    expect(server.count()).toBe(2);
  });

  it('caches positive answers by their smallest TTL, keyed by lowercased name and type', async () => {
    const server = await FakeServer.start((q) => ({
      answers: q.type === 'CERT' ? [cert(q.name, PKIX(20), 300), cert(q.name, PKIX(20), 120)] : [],
    }));
    const { dns, clock } = clientFor(server);
    expect((await dns.query('D1.Domain1.Test', 'CERT')).ttl).toBe(120);
    clock.now += 100_000;
    const cached = await dns.query('d1.domain1.test', 'CERT');
    expect(cached).toMatchObject({ name: 'd1.domain1.test', ttl: 20, status: 'ok' });
    expect(cached.records).toHaveLength(2);
    expect(server.count()).toBe(1);
    await dns.query('d1.domain1.test', 'SRV'); // another type: another key
    expect(server.count()).toBe(2);
    clock.now += 20_000;
    await dns.query('d1.domain1.test', 'CERT');
    expect(server.count()).toBe(3);
    dns.clearCache();
    await dns.query('d1.domain1.test', 'CERT');
    expect(server.count()).toBe(4);
  });

  it('hands out copies: a caller changing a result does not change the cache', async () => {
    const server = await FakeServer.start((q) => ({ answers: [cert(q.name, PKIX(Buffer.from('abc')))] }));
    const { dns } = clientFor(server);
    const first = await dns.query('a.test', 'CERT');
    first.records[0]?.data.fill(0);
    first.records.length = 0;
    const second = await dns.query('a.test', 'CERT');
    expect(second.records[0]?.data.toString()).toBe('abc');
  });

  it('does not cache with cache: false, and shares one exchange between concurrent identical queries', async () => {
    const server = await FakeServer.start((q) => ({ answers: [cert(q.name, PKIX(10))] }));
    const uncached = clientFor(server, { cache: false }).dns;
    await uncached.query('a.test', 'CERT');
    await uncached.query('a.test', 'CERT');
    expect(server.count()).toBe(2);
    const cached = clientFor(server).dns;
    const results = await Promise.all([cached.query('b.test', 'CERT'), cached.query('B.test', 'CERT')]);
    expect(results.map((r) => r.name)).toEqual(['b.test', 'B.test']);
    expect(server.count()).toBe(3);
  });

  it('decodes SRV, MX, A, AAAA and CNAME records', async () => {
    const server = await FakeServer.start((q) => {
      switch (q.type) {
        case 'SRV':
          return {
            answers: [
              { type: 'SRV', name: q.name, ttl: 60, data: { priority: 10, weight: 5, port: 10389, target: 'ldap1.domain4.test' } },
              { type: 'SRV', name: q.name, ttl: 60, data: { priority: 20, weight: 0, port: 389, target: '.' } },
            ],
          };
        case 'A':
          return { answers: [{ type: 'A', name: q.name, ttl: 60, data: '192.0.2.7' }] };
        case 'AAAA':
          return { answers: [{ type: 'AAAA', name: q.name, ttl: 60, data: '2001:db8::7' }] };
        case 'MX':
          return {
            answers: [
              { type: 'MX', name: q.name, ttl: 60, data: { preference: 20, exchange: 'mx2.h.test' } },
              { type: 'MX', name: q.name, ttl: 60, data: { preference: 10, exchange: 'mx1.h.test' } },
            ],
          };
        case 'CNAME':
          return { answers: [cname(q.name, 'target.test')] };
        default:
          return {};
      }
    });
    const { dns } = clientFor(server);
    const srv = await dns.query('_ldap._tcp.domain4.test', 'SRV');
    expectTypeOf(srv.records).toEqualTypeOf<SrvRecord[]>();
    expect(srv.records).toEqual([
      { priority: 10, weight: 5, port: 10389, target: 'ldap1.domain4.test' },
      { priority: 20, weight: 0, port: 389, target: '.' },
    ]);
    const mx = await dns.query('h.test', 'MX');
    expectTypeOf(mx.records).toEqualTypeOf<MxRecord[]>();
    expect(mx.records).toEqual([
      { preference: 20, exchange: 'mx2.h.test' },
      { preference: 10, exchange: 'mx1.h.test' },
    ]);
    expect((await dns.query('h.test', 'A')).records).toEqual(['192.0.2.7']);
    expect((await dns.query('h.test', 'AAAA')).records).toEqual(['2001:db8::7']);
    const cn = await dns.query('alias.test', 'CNAME');
    expectTypeOf(cn.records).toEqualTypeOf<string[]>();
    expect(cn).toMatchObject({ records: ['target.test'], canonicalName: 'alias.test', cnames: [] });
  });

  it('sets authenticated from the AD bit', async () => {
    const server = await FakeServer.start((q) => ({ flags: dnsPacket.AUTHENTIC_DATA, answers: [cert(q.name, PKIX(10))] }));
    expect((await clientFor(server).dns.query('a.test', 'CERT')).authenticated).toBe(true);
  });

  it('refuses names that cannot be DNS names and unsupported types with HISP_USAGE', async () => {
    const { dns } = clientFor(await FakeServer.start(() => undefined));
    for (const name of ['', '.', 'a..b', `${'x'.repeat(64)}.test`, `${'abcdefghi.'.repeat(26)}test`]) {
      expect((await rejection(dns.query(name, 'CERT'))).code).toBe('HISP_USAGE');
    }
    expect((await rejection(dns.query('a.test', 'TXT' as 'A'))).code).toBe('HISP_USAGE');
  });
});

describe('DnsClient failures', () => {
  it('throws a transient HISP_DISCOVERY_TEMPORARY after 1 + retries tries on SERVFAIL', async () => {
    const server = await FakeServer.start(() => ({ flags: SERVFAIL }));
    const err = await rejection(clientFor(server).dns.query('a.test', 'CERT'));
    expect(err).toMatchObject({ code: 'HISP_DISCOVERY_TEMPORARY', transient: true });
    expect(err.message).toContain('SERVFAIL');
    expect(server.count()).toBe(3);
  });

  it('treats REFUSED (even without a question section) as a server failure and tries the next server', async () => {
    const refusing = await FakeServer.start(() => ({ flags: REFUSED, questions: [] }));
    const good = await FakeServer.start((q) => ({ answers: [cert(q.name, PKIX(10))] }));
    const res = await clientFor([refusing, good]).dns.query('a.test', 'CERT');
    expect(res.status).toBe('ok');
    expect([refusing.count(), good.count()]).toEqual([1, 1]);
  });

  it('times out: tries every server 1 + retries times, then HISP_DISCOVERY_TEMPORARY', async () => {
    const a = await FakeServer.start(() => undefined);
    const b = await FakeServer.start(() => undefined);
    const started = Date.now();
    const err = await rejection(clientFor([a, b], { retries: 2 }).dns.query('a.test', 'CERT'));
    expect(err).toMatchObject({ code: 'HISP_DISCOVERY_TEMPORARY', transient: true });
    expect(err.details).toMatchObject({ tries: 6 });
    expect([a.count(), b.count()]).toEqual([3, 3]);
    expect(Date.now() - started).toBeGreaterThanOrEqual(550);
  });

  it('honours retries: 0 (one try) and defaults to 2 retries', async () => {
    const server = await FakeServer.start(() => undefined);
    await rejection(clientFor(server, { retries: 0 }).dns.query('a.test', 'CERT'));
    expect(server.count()).toBe(1);
    expect(new DnsClient({ servers: [server.server] }).retries).toBe(2);
    expect(new DnsClient({ servers: [server.server] }).timeoutMs).toBe(3000);
  });

  it('recovers on the next try when the first one times out', async () => {
    const server = await FakeServer.start((q) => (server.count() === 1 ? undefined : { answers: [cert(q.name, PKIX(10))] }));
    expect((await clientFor(server).dns.query('a.test', 'CERT')).status).toBe('ok');
    expect(server.count()).toBe(2);
  });

  it('fails over when a server port is closed (ICMP unreachable)', async () => {
    const closed = await FakeServer.start(() => undefined);
    const closedServer = closed.server;
    await closed.close();
    servers.splice(servers.indexOf(closed), 1);
    const good = await FakeServer.start((q) => ({ answers: [cert(q.name, PKIX(10))] }));
    const dns = new DnsClient({ servers: [closedServer, good.server], timeoutMs: 2000 });
    const started = Date.now();
    expect((await dns.query('a.test', 'CERT')).status).toBe('ok');
    expect(Date.now() - started).toBeLessThan(1500);
  });

  it('ignores a reply with a wrong id and takes the right one', async () => {
    const server = await FakeServer.start((q) => [
      { id: (q.id + 1) & 0xffff, answers: [cert(q.name, PKIX(Buffer.from('forged')))] },
      { answers: [cert(q.name, PKIX(Buffer.from('genuine')))] },
    ]);
    const res = await clientFor(server).dns.query('a.test', 'CERT');
    expect(res.records.map((r) => r.data.toString())).toEqual(['genuine']);
    expect(server.count()).toBe(1);
  });

  it('ignores a reply to another question, and a query echoed back', async () => {
    const server = await FakeServer.start((q) => [
      { questions: [{ type: 'CERT', name: 'other.test' }], answers: [cert('other.test', PKIX(Buffer.from('forged')))] },
      { questions: [{ type: 'A', name: q.name }], answers: [cert(q.name, PKIX(Buffer.from('forged')))] },
      dnsPacket.encode({ ...q.packet, type: 'query' }),
      { answers: [cert(q.name, PKIX(Buffer.from('genuine')))] },
    ]);
    const res = await clientFor(server).dns.query('a.test', 'CERT');
    expect(res.records.map((r) => r.data.toString())).toEqual(['genuine']);
  });

  it('treats a malformed reply as a failed try and retries; malformed on every try → HISP_DNS_MALFORMED', async () => {
    const garbage = (id: number): Buffer => Buffer.concat([Buffer.from([id >> 8, id & 0xff]), Buffer.from('\x81\x80\x00\x01\x00\x01\x00\x00\x00\x00\x01', 'latin1')]);
    const flaky = await FakeServer.start((q) => (flaky.count() === 1 ? garbage(q.id) : { answers: [cert(q.name, PKIX(10))] }));
    expect((await clientFor(flaky).dns.query('a.test', 'CERT')).status).toBe('ok');
    expect(flaky.count()).toBe(2);

    const broken = await FakeServer.start((q) => garbage(q.id));
    const err = await rejection(clientFor(broken).dns.query('a.test', 'CERT'));
    expect(err.code).toBe('HISP_DNS_MALFORMED');
    expect(broken.count()).toBe(3);
  });

  it('refuses a CERT record whose rdata is shorter than its fixed part as malformed', async () => {
    const server = await FakeServer.start((q) => ({ answers: [{ type: 'CERT', name: q.name, ttl: 60, data: Buffer.from([0, 1, 0]) }] }));
    const err = await rejection(clientFor(server, { retries: 0 }).dns.query('a.test', 'CERT'));
    expect(err.code).toBe('HISP_DNS_MALFORMED');
  });

  it('asks again without EDNS when the server answers FORMERR to the OPT record (RFC 6891 §7)', async () => {
    const server = await FakeServer.start((q) => (q.opt ? { flags: FORMERR } : { answers: [cert(q.name, PKIX(10))] }));
    expect((await clientFor(server).dns.query('a.test', 'CERT')).status).toBe('ok');
    expect(server.queries.map((q) => q.opt !== undefined)).toEqual([true, false]);
  });

  it('fails the try when the TCP exchange after truncation gets no answer', async () => {
    const server = await FakeServer.start((q) => (q.transport === 'udp' ? { flags: dnsPacket.TRUNCATED_RESPONSE } : undefined));
    const err = await rejection(clientFor(server, { retries: 1 }).dns.query('a.test', 'CERT'));
    expect(err.code).toBe('HISP_DISCOVERY_TEMPORARY');
    expect([server.count('udp'), server.count('tcp')]).toEqual([2, 2]);
  });
});

describe('DnsClient CNAME chains', () => {
  it('follows a chain inside one reply', async () => {
    const server = await FakeServer.start((q) => ({
      answers: [cname('c.test', 'd.test', 50), cert('d.test', PKIX(10), 500), cname(q.name, 'c.test', 200)],
    }));
    const res = await clientFor(server).dns.query('a.test', 'CERT');
    expect(res).toMatchObject({ name: 'a.test', canonicalName: 'd.test', cnames: ['c.test', 'd.test'], status: 'ok', ttl: 50 });
    expect(server.count()).toBe(1);
  });

  it('asks for the canonical name when the reply stops at a CNAME, and combines the answers', async () => {
    const server = await FakeServer.start((q) =>
      q.name === 'a.test'
        ? { flags: dnsPacket.AUTHENTIC_DATA, answers: [cname('a.test', 'b.other.test', 100)] }
        : { answers: [cert(q.name, PKIX(10), 900)] },
    );
    const { dns } = clientFor(server);
    const res = await dns.query('a.test', 'CERT');
    expect(res).toMatchObject({ canonicalName: 'b.other.test', cnames: ['b.other.test'], status: 'ok', ttl: 100, authenticated: false });
    expect(server.queries.map((q) => q.name)).toEqual(['a.test', 'b.other.test']);
    await dns.query('a.test', 'CERT');
    await dns.query('b.other.test', 'CERT');
    expect(server.count()).toBe(2);
  });

  it('reports the status of the end of the chain', async () => {
    const server = await FakeServer.start((q) =>
      q.name === 'a.test' ? { answers: [cname('a.test', 'gone.test')] } : { flags: NXDOMAIN, authorities: [soa('test', 60, 60)] },
    );
    expect(await clientFor(server).dns.query('a.test', 'CERT')).toMatchObject({ status: 'nxdomain', canonicalName: 'gone.test', cnames: ['gone.test'] });
  });

  it('detects a loop inside one reply and across replies', async () => {
    const inOne = await FakeServer.start(() => ({ answers: [cname('a.test', 'b.test'), cname('b.test', 'a.test')] }));
    expect((await rejection(clientFor(inOne).dns.query('a.test', 'CERT'))).message).toContain('loop');

    const across = await FakeServer.start((q) => ({ answers: [cname(q.name, q.name === 'a.test' ? 'b.test' : 'a.test')] }));
    const err = await rejection(clientFor(across).dns.query('a.test', 'CERT'));
    expect(err.code).toBe('HISP_DNS_MALFORMED');
    expect(err.message).toContain('loop');
    expect(across.count()).toBe(2);
  });

  it(`follows at most ${MAX_CNAME_HOPS} CNAMEs`, async () => {
    const chain = (hops: number) => async () => {
      const server = await FakeServer.start((q) => {
        const n = Number(/^h(\d+)\./.exec(q.name)?.[1]);
        return { answers: [n < hops ? cname(q.name, `h${n + 1}.test`) : cert(q.name, PKIX(10))] };
      });
      return clientFor(server).dns.query('h0.test', 'CERT');
    };
    expect((await chain(MAX_CNAME_HOPS)()).cnames).toHaveLength(MAX_CNAME_HOPS);
    const err = await rejection(chain(MAX_CNAME_HOPS + 1)());
    expect(err.code).toBe('HISP_DNS_MALFORMED');
  });
});

describe('DnsClient.lookupHost and lookupFunction', () => {
  const hosts = (q: Query): dnsPacket.Packet => {
    if (q.name === 'ldap.test' && q.type === 'A') return { answers: [{ type: 'A', name: q.name, ttl: 60, data: '127.0.0.1' }] };
    if (q.name === 'ldap.test' && q.type === 'AAAA') return { answers: [{ type: 'AAAA', name: q.name, ttl: 60, data: '::1' }] };
    if (q.name === 'v4only.test' && q.type === 'A') return { answers: [{ type: 'A', name: q.name, ttl: 60, data: '127.0.0.1' }] };
    if (q.name === 'v4only.test') return { authorities: [soa('test', 60, 60)] };
    return { flags: NXDOMAIN, authorities: [soa('test', 60, 60)] };
  };

  it('returns A then AAAA addresses; an IP literal or localhost without a query', async () => {
    const server = await FakeServer.start(hosts);
    const { dns } = clientFor(server);
    expect(await dns.lookupHost('ldap.test')).toEqual(['127.0.0.1', '::1']);
    expect(await dns.lookupHost('v4only.test')).toEqual(['127.0.0.1']);
    const before = server.count();
    expect(await dns.lookupHost('192.0.2.1')).toEqual(['192.0.2.1']);
    expect(await dns.lookupHost('[2001:db8::1]')).toEqual(['2001:db8::1']);
    expect(await dns.lookupHost('localhost')).toEqual(['127.0.0.1', '::1']);
    expect(server.count()).toBe(before);
  });

  it('throws an ENOTFOUND error for names without addresses', async () => {
    const { dns } = clientFor(await FakeServer.start(hosts));
    for (const host of ['nowhere.test', 'a..b']) {
      const err: unknown = await dns.lookupHost(host).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(DnsNotFoundError);
      expect(err).toMatchObject({ code: 'ENOTFOUND', hostname: host, syscall: 'getaddrinfo' });
    }
  });

  it('passes on the transient error when the server fails', async () => {
    const { dns } = clientFor(await FakeServer.start(() => ({ flags: SERVFAIL })), { retries: 0 });
    expect(await rejection(dns.lookupHost('ldap.test'))).toMatchObject({ code: 'HISP_DISCOVERY_TEMPORARY', transient: true });
  });

  it('behaves as dns.lookup: one address, all, family filter, errors', async () => {
    const { dns } = clientFor(await FakeServer.start(hosts));
    const lookup = dns.lookupFunction();
    expectTypeOf(lookup).toExtend<net.LookupFunction>();
    const one = await new Promise<[string, number]>((resolve, reject) =>
      lookup('ldap.test', (err, address, family) => (err ? reject(err) : resolve([address, family]))),
    );
    expect(one).toEqual(['127.0.0.1', 4]);
    const v6 = await new Promise<[string, number]>((resolve, reject) =>
      lookup('ldap.test', 6, (err, address, family) => (err ? reject(err) : resolve([address, family]))),
    );
    expect(v6).toEqual(['::1', 6]);
    const all = await new Promise((resolve, reject) =>
      lookup('ldap.test', { all: true }, (err, addresses) => (err ? reject(err) : resolve(addresses))),
    );
    expect(all).toEqual([
      { address: '127.0.0.1', family: 4 },
      { address: '::1', family: 6 },
    ]);
    const none = await new Promise((resolve) => lookup('v4only.test', { family: 6 }, (err) => resolve(err)));
    expect(none).toMatchObject({ code: 'ENOTFOUND' });
    const missing = await new Promise((resolve) => lookup('nowhere.test', {}, (err) => resolve(err)));
    expect(missing).toMatchObject({ code: 'ENOTFOUND', hostname: 'nowhere.test' });
    expect(() => (lookup as (h: string, o: object) => void)('ldap.test', {})).toThrow(TypeError);
  });

  it('resolves the host names of net.connect and http.request through the client', async () => {
    const { dns } = clientFor(await FakeServer.start(hosts));
    const web = http.createServer((_req, res) => res.end('hello'));
    web.listen(0, '127.0.0.1');
    await once(web, 'listening');
    const { port } = web.address() as net.AddressInfo;
    try {
      const socket = net.connect({ host: 'v4only.test', port, lookup: dns.lookupFunction() });
      await once(socket, 'connect');
      expect(socket.remoteAddress).toBe('127.0.0.1');
      socket.destroy();

      const body = await new Promise<string>((resolve, reject) => {
        const req = http.request({ host: 'v4only.test', port, path: '/', lookup: dns.lookupFunction() }, (res) => {
          let text = '';
          res.on('data', (c: Buffer) => (text += c.toString()));
          res.on('end', () => resolve(text));
        });
        req.on('error', reject);
        req.end();
      });
      expect(body).toBe('hello');

      const failed = net.connect({ host: 'nowhere.test', port, lookup: dns.lookupFunction() });
      const [err] = (await once(failed, 'error')) as [NodeJS.ErrnoException];
      expect(err.code).toBe('ENOTFOUND');
    } finally {
      web.close();
    }
  });
});

describe('DnsClient configuration', () => {
  it('parses --dns values', () => {
    expect(DnsClient.parseServer('127.0.0.1:5353')).toEqual({ host: '127.0.0.1', port: 5353 });
    expect(DnsClient.parseServer('10.0.0.2')).toEqual({ host: '10.0.0.2', port: 53 });
    expect(DnsClient.parseServer('[::1]:5300')).toEqual({ host: '::1', port: 5300 });
    expect(DnsClient.parseServer('[::1]')).toEqual({ host: '::1', port: 53 });
    expect(DnsClient.parseServer('2001:db8::53')).toEqual({ host: '2001:db8::53', port: 53 });
    expect(DnsClient.parseServer('localhost:53')).toEqual({ host: '127.0.0.1', port: 53 });
    for (const bad of ['', 'dns.example.test:53', '127.0.0.1:0', '127.0.0.1:65536', '127.0.0.1:x', '[::1]:', '[nope]:53', ':53']) {
      expect(() => DnsClient.parseServer(bad), bad).toThrow(expect.objectContaining({ code: 'HISP_USAGE' }) as Error);
    }
  });

  it('reads the nameservers of resolv.conf, else uses 127.0.0.1', () => {
    expect(parseResolvConf('# local\nsearch example.test\nnameserver 10.0.0.1\n  nameserver ::1\nnameserver bogus\n;nameserver 1.1.1.1\n')).toEqual([
      { host: '10.0.0.1', port: 53 },
      { host: '::1', port: 53 },
    ]);
    expect(new DnsClient({ resolvConfPath: '/nonexistent/resolv.conf' }).servers).toEqual([{ host: '127.0.0.1', port: 53 }]);
  });

  it('refuses bad options with HISP_USAGE', () => {
    const bad: DnsClientOptions[] = [
      { servers: [] },
      { servers: [{ host: 'dns.test', port: 53 }] },
      { servers: [{ host: '127.0.0.1', port: 0 }] },
      { servers: [{ host: '127.0.0.1', port: 53 }], timeoutMs: 0 },
      { servers: [{ host: '127.0.0.1', port: 53 }], retries: -1 },
      { servers: [{ host: '127.0.0.1', port: 53 }], udpPayloadSize: 100 },
    ];
    for (const options of bad) expect(() => new DnsClient(options)).toThrow(expect.objectContaining({ code: 'HISP_USAGE' }) as Error);
  });
});

// ---------------------------------------------------------------------------------------------
// Hostile replies

/** Valid replies of several shapes, including name compression (dns-packet itself never compresses). */
function sampleReplies(): Buffer[] {
  const q = { type: 'CERT' as const, name: 'd1.domain1.test' };
  const opt: dnsPacket.OptAnswer = { type: 'OPT', name: '.', udpPayloadSize: 1232, extendedRcode: 0, ednsVersion: 0, flags: 0, flag_do: false, options: [] };
  const packets: dnsPacket.Packet[] = [
    { type: 'response', id: 0x1234, questions: [q], answers: [cert(q.name, PKIX(60, 7))], additionals: [opt] },
    { type: 'response', id: 0x1234, flags: NXDOMAIN, questions: [q], authorities: [soa('domain1.test', 60, 30)] },
    { type: 'response', id: 0x1234, questions: [q], answers: [cname(q.name, 'x.test'), cert('x.test', PKIX(30))] },
    {
      type: 'response',
      id: 0x1234,
      questions: [{ type: 'SRV', name: '_ldap._tcp.domain1.test' }],
      answers: [{ type: 'SRV', name: '_ldap._tcp.domain1.test', ttl: 5, data: { priority: 1, weight: 2, port: 389, target: 'ldap.test' } }],
    },
    { type: 'response', id: 0x1234, questions: [{ type: 'A', name: 'h.test' }], answers: [{ type: 'A', name: 'h.test', ttl: 5, data: '192.0.2.1' }] },
  ];
  const compressed = Buffer.concat([
    Buffer.from([0x12, 0x34, 0x81, 0x80, 0, 1, 0, 2, 0, 0, 0, 0]),
    Buffer.from('\x02d1\x07domain1\x04test\x00', 'latin1'), // question name at offset 12
    Buffer.from([0, 37, 0, 1]), // type CERT, class IN
    Buffer.from([0xc0, 0x0c, 0, 5, 0, 1, 0, 0, 0, 60, 0, 4]), // answer at 33: CNAME at the question name
    Buffer.from('\x01x\xc0\x0f', 'latin1'), // rdata at 45: x + pointer to "domain1.test" (offset 15)
    Buffer.from([0xc0, 0x2d, 0, 37, 0, 1, 0, 0, 0, 60, 0, 7, 0, 1, 0, 0, 0, 0x30, 0x00]), // CERT at x.domain1.test
  ]);
  return [...packets.map((p) => dnsPacket.encode(p)), compressed];
}

const mutation = (sample: Buffer): fc.Arbitrary<Buffer> =>
  fc.oneof(
    fc.array(fc.tuple(fc.nat(sample.length - 1), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 6 }).map((edits) => {
      const copy = Buffer.from(sample);
      for (const [at, value] of edits) copy[at] = value;
      return copy;
    }),
    fc.nat(sample.length).map((n) => sample.subarray(0, n)),
    fc.tuple(fc.nat(sample.length), fc.uint8Array({ minLength: 1, maxLength: 8 })).map(([at, bytes]) =>
      Buffer.concat([sample.subarray(0, at), bytes, sample.subarray(at)]),
    ),
    fc.tuple(fc.nat(sample.length - 1), fc.integer({ min: 0, max: 7 })).map(([at, bit]) => {
      const copy = Buffer.from(sample);
      copy[at] = (copy[at] ?? 0) ^ (1 << bit);
      return copy;
    }),
  );

function expectWellFormedReply(buf: Buffer): void {
  let reply: ReturnType<typeof decodeReply>;
  try {
    reply = decodeReply(buf);
  } catch (err) {
    expect(err).toBeInstanceOf(HispError);
    expect((err as HispError).code).toBe('HISP_DNS_MALFORMED');
    return;
  }
  for (const rr of [...reply.answers, ...reply.authorities, ...reply.additionals]) {
    expect(typeof rr.name).toBe('string');
    expect(rr.rdata.byteOffset + rr.rdata.length).toBeLessThanOrEqual(buf.byteOffset + buf.length);
    if (rr.type === 1) expect(net.isIPv4(rr.data as string)).toBe(true);
    if (rr.type === 5) expect(typeof rr.data).toBe('string');
  }
}

function expectWellFormedResult(res: DnsResult): void {
  expect(['ok', 'nxdomain', 'nodata']).toContain(res.status);
  expect(Number.isInteger(res.ttl) && res.ttl >= 0).toBe(true);
  expect(typeof res.canonicalName).toBe('string');
  expect(res.cnames.every((c) => typeof c === 'string')).toBe(true);
  if (res.status !== 'ok') expect(res.records).toEqual([]);
  for (const r of res.records) {
    if (typeof r === 'string') continue;
    if ('certType' in r) {
      expect(Buffer.isBuffer(r.data)).toBe(true);
      expect(r.certType).toBeLessThanOrEqual(0xffff);
    } else if ('exchange' in r) {
      expect(typeof r.exchange).toBe('string');
    } else {
      expect(typeof r.target).toBe('string');
    }
  }
}

describe('hostile replies', () => {
  const samples = sampleReplies();

  it('the samples themselves decode', () => {
    for (const s of samples) expect(decodeReply(s).id).toBe(0x1234);
    const compressed = decodeReply(samples[samples.length - 1] ?? Buffer.alloc(0));
    expect(compressed.answers.map((a) => [a.name, a.type])).toEqual([
      ['d1.domain1.test', 5],
      ['x.domain1.test', 37],
    ]);
    expect(compressed.answers[0]?.data).toBe('x.domain1.test');
    expect(compressed.answers[1]?.rdata).toEqual(Buffer.from([0, 1, 0, 0, 0, 0x30, 0x00]));
  });

  it('refuses truncated rdata, names past their rdata, forward pointers and trailing ambiguity', () => {
    const [certReply] = samples;
    if (certReply === undefined) throw new Error('no sample');
    const code = (buf: Buffer): string | undefined => {
      try {
        decodeReply(buf);
        return undefined;
      } catch (err) {
        return (err as HispError).code;
      }
    };
    const shorter = Buffer.from(certReply);
    shorter.writeUInt16BE(shorter.readUInt16BE(6) + 1, 6); // one answer more than there are
    expect(code(shorter)).toBe('HISP_DNS_MALFORMED');
    expect(code(certReply.subarray(0, certReply.length - 20))).toBe('HISP_DNS_MALFORMED');
    const forward = Buffer.from([0, 1, 0x81, 0x80, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 0x20, 0, 37, 0, 1]);
    expect(code(forward)).toBe('HISP_DNS_MALFORMED');
    const selfLoop = Buffer.from([0, 1, 0x81, 0x80, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 0x0c, 0, 37, 0, 1]);
    expect(code(selfLoop)).toBe('HISP_DNS_MALFORMED');
    // Question k names question k-1 by a pointer: the last one needs 199 jumps (a CPU-burning chain).
    const chain = [Buffer.from([0, 1, 0x81, 0x80, 0, 200, 0, 0, 0, 0, 0, 0]), Buffer.from([0, 0, 37, 0, 1])];
    for (let k = 1, at = 12; k < 200; k++, at += k === 2 ? 5 : 6) chain.push(Buffer.from([0xc0 | (at >> 8), at & 0xff, 0, 37, 0, 1]));
    expect(code(Buffer.concat(chain))).toBe('HISP_DNS_MALFORMED');
    const fine = Buffer.concat(chain.slice(0, 100));
    fine.writeUInt16BE(99, 4);
    expect(decodeReply(fine).questions).toHaveLength(99);
    const badA = dnsPacket.encode({ type: 'response', id: 1, answers: [{ type: 'A', name: 'h.test', ttl: 1, data: '192.0.2.1' }] });
    badA.writeUInt16BE(5, badA.length - 6); // RDLENGTH 5 for an A record
    expect(code(Buffer.concat([badA, Buffer.alloc(1)]))).toBe('HISP_DNS_MALFORMED');
  });

  it('random bytes: a well-formed reply or HISP_DNS_MALFORMED, never a crash', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 700, size: 'max' }).map((a) => Buffer.from(a)), expectWellFormedReply), { numRuns: 3000 });
  });

  it('random bytes behind a valid header', () => {
    const header = fc.tuple(fc.integer({ min: 0, max: 4 }), fc.integer({ min: 0, max: 4 }), fc.integer({ min: 0, max: 4 }), fc.integer({ min: 0, max: 4 }));
    fc.assert(
      fc.property(header, fc.uint8Array({ maxLength: 300, size: 'max' }), ([qd, an, ns, ar], body) => {
        const head = Buffer.from([0, 1, 0x81, 0x80, 0, qd, 0, an, 0, ns, 0, ar]);
        expectWellFormedReply(Buffer.concat([head, body]));
      }),
      { numRuns: 3000 },
    );
  });

  it('mutations of valid replies: a well-formed reply or HISP_DNS_MALFORMED', () => {
    const arb = fc.constantFrom(...samples).chain(mutation);
    fc.assert(fc.property(arb, expectWellFormedReply), { numRuns: 5000 });
  });

  it('mutated replies from a server: the client returns a well-formed result or a HispError, never hangs', async () => {
    const answer = sampleReplies()[0] ?? Buffer.alloc(0);
    let next: Buffer = answer;
    let matchId = true;
    const server = await FakeServer.start((q) => {
      const out = Buffer.from(next);
      // Mostly the id of the query, so that the client reads the reply instead of dropping it.
      if (out.length >= 2 && matchId) out.writeUInt16BE(q.id, 0);
      return out;
    });
    const dns = new DnsClient({ servers: [server.server], timeoutMs: 50, retries: 0, cache: false });
    const mostly = fc.integer({ min: 0, max: 9 }).map((n) => n > 0);
    await fc.assert(
      fc.asyncProperty(mutation(answer), mostly, async (mutated, keepId) => {
        next = mutated;
        matchId = keepId;
        try {
          expectWellFormedResult(await dns.query('d1.domain1.test', 'CERT'));
        } catch (err) {
          expect(err).toBeInstanceOf(HispError);
          expect(['HISP_DNS_MALFORMED', 'HISP_DISCOVERY_TEMPORARY']).toContain((err as HispError).code);
        }
      }),
      { numRuns: 120 },
    );
  });
});
