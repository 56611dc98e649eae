// The DCDT harness serves what the discovery cases need, from real servers on 127.0.0.1: the CERT
// records (truncated over UDP, whole over TCP), the SRV records, the three slapd and the PKI HTTP
// server. Also checks that the copied fixtures agree with one another.
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import type { BufferAnswer, SrvAnswer, StringAnswer } from 'dns-packet';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  DCDT_FIXTURES_DIR,
  DCDT_HARNESS_HOOK_TIMEOUT_MS,
  DCDT_HTTP_PORT,
  DCDT_LDAP_PORTS,
  dnsQuery,
  dnsRcode,
  ldapSearch,
  loadDcdtManifest,
  parseZone,
  startDcdtHarness,
  type DcdtHarness,
  type DcdtLdapServer,
} from './dcdt-harness.js';
import { opensslOk } from './openssl.js';

const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');
const fixture = (rel: string): Buffer => readFileSync(path.join(DCDT_FIXTURES_DIR, rel));
const certDer = (name: string): Buffer => fixture(`certs/${name}.cer`);

const manifest = loadDcdtManifest();
const zone = parseZone(fixture('dns/dcdt.test.zone').toString('utf8'));
const credentials = manifest.testcases.flatMap((t) => t.credentials);

/** Owner name of a credential published in DNS (R-DIS-3: '@' becomes '.'). */
const ownerOf = (boundTo: string): string => boundTo.replace('@', '.');

/** The zone's CERT records by owner: [credential name from the comment, key tag]. */
const certRecords = new Map<string, { name: string; keyTag: number }[]>();
for (const r of zone.filter((r) => r.type === 'CERT')) {
  certRecords.set(r.owner, [...(certRecords.get(r.owner) ?? []), { name: r.comment, keyTag: Number(r.rdata[1]) }]);
}

/** GET with node:http (fetch() will not talk to port 10080). */
function httpGet(url: string): Promise<{ status: number; contentType: string | undefined; body: Buffer }> {
  return new Promise((resolve, reject) => {
    http
      .get(url, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, contentType: res.headers['content-type'], body: Buffer.concat(chunks) }));
        res.on('error', reject);
      })
      .on('error', reject);
  });
}

/** The `userCertificate;binary` values of LDIF output (ldapsearch -LLL, unwrapped). */
function ldifCertificates(ldif: string): Buffer[] {
  return [...ldif.matchAll(/^userCertificate;binary:: (\S+)$/gm)].map((m) => Buffer.from(m[1] ?? '', 'base64'));
}

describe('DCDT fixtures (test/fixtures/dcdt)', () => {
  it('points every address record of the zone at 127.0.0.1', () => {
    const a = zone.filter((r) => r.type === 'A' || r.type === 'AAAA');
    expect(a.length).toBeGreaterThan(10);
    for (const r of a) expect(`${r.owner} ${r.type} ${r.rdata.join(' ')}`).toBe(`${r.owner} A 127.0.0.1`);
    expect(a.map((r) => r.owner)).not.toContain('ldap-unavailable.dcdt.test');
  });

  it('publishes in DNS exactly the manifest credentials located in DNS, as PKIX/RSASHA256 CERT records of their DER', () => {
    const fromManifest = credentials
      .filter((c) => c.location === 'DNS')
      .map((c) => `${ownerOf(c.bound_to)} ${c.name}`)
      .sort();
    const fromZone = [...certRecords].flatMap(([owner, rs]) => rs.map((r) => `${owner} ${r.name}`)).sort();
    expect(fromZone).toEqual(fromManifest);
    for (const r of zone.filter((r) => r.type === 'CERT')) {
      expect(r.rdata.slice(0, 1).concat(r.rdata.slice(2, 3))).toEqual(['PKIX', '8']);
      expect(sha256(Buffer.from(r.rdata[3] ?? '', 'base64'))).toBe(sha256(certDer(r.comment)));
    }
  });

  it('serves every AIA and CRL URL of the certificates from the manifest\'s PKI paths', () => {
    const urls = new Set<string>();
    for (const file of readdirSync(path.join(DCDT_FIXTURES_DIR, 'certs')).filter((f) => f.endsWith('.cer'))) {
      const text = opensslOk(['x509', '-inform', 'DER', '-in', path.join(DCDT_FIXTURES_DIR, 'certs', file), '-noout', '-ext', 'crlDistributionPoints,authorityInfoAccess']).toString('utf8');
      for (const m of text.matchAll(/URI:(\S+)/g)) urls.add(m[1] ?? '');
    }
    expect([...urls].sort()).toEqual(manifest.http_pki.paths.map((p) => `${manifest.http_pki.base}${p}`).sort());
    expect(manifest.http_pki.base).toBe(`http://pki.dcdt.test:${DCDT_HTTP_PORT}`);
  });
});

describe('DCDT harness (Knot DNS, 3 × slapd, PKI HTTP on 127.0.0.1)', () => {
  let h: DcdtHarness;

  beforeAll(async () => {
    h = await startDcdtHarness();
    console.log(`DCDT harness: DNS 127.0.0.1:${h.dns.port}, started in ${h.startupMs} ms`);
  }, DCDT_HARNESS_HOOK_TIMEOUT_MS);

  afterAll(async () => {
    await h?.stop();
  });

  it('exposes the fixed LDAP and HTTP ports and a free DNS port', () => {
    expect(h.ldapPorts).toEqual({ ldap1: 10389, ldap2: 11389, ldap3: 12389 });
    expect(h.http.port).toBe(10080);
    expect(h.http.baseUrl).toBe('http://127.0.0.1:10080');
    expect(h.dns.host).toBe('127.0.0.1');
    expect(h.dns.port).toBeGreaterThan(0);
    expect(h.fixtures).toBe(DCDT_FIXTURES_DIR);
    expect(h.manifest.testcases.map((t) => t.id)).toEqual(Array.from({ length: 18 }, (_, i) => `D${i + 1}`));
  });

  const owners = ['d1.domain1.dcdt.test', 'domain1.dcdt.test', 'd9.domain1.dcdt.test', 'd14.domain1.dcdt.test', 'd17.domain9.dcdt.test', 'd18.domain10.dcdt.test', 'domain10.dcdt.test'];

  it.each(owners)('CERT %s: truncated over UDP (512 bytes), whole over TCP, DER equal to the .cer', async (owner) => {
    const expected = certRecords.get(owner) ?? [];
    expect(expected.length).toBeGreaterThan(0);

    const udp = await dnsQuery(h.dns, owner, 'CERT', { transport: 'udp' });
    expect(udp.packet.flag_tc).toBe(true);
    expect(udp.packet.flag_aa).toBe(true);
    expect(udp.raw.length).toBeLessThanOrEqual(512);

    const tcp = await dnsQuery(h.dns, owner, 'CERT', { transport: 'tcp' });
    expect(tcp.packet.flag_tc).toBe(false);
    expect(tcp.packet.flag_aa).toBe(true);
    expect(dnsRcode(tcp.packet)).toBe(0);
    const answers = (tcp.packet.answers ?? []) as BufferAnswer[];
    expect(answers.map((a) => a.type)).toEqual(expected.map(() => 'CERT'));
    // RFC 4398 §2: type (2) key tag (2) algorithm (1), then for PKIX (1) the DER certificate.
    const got = answers
      .map((a) => ({ type: a.data.readUInt16BE(0), keyTag: a.data.readUInt16BE(2), alg: a.data.readUInt8(4), der: sha256(a.data.subarray(5)), ttl: a.ttl }))
      .sort((x, y) => x.keyTag - y.keyTag);
    const want = expected
      .map((e) => ({ type: 1, keyTag: e.keyTag, alg: 8, der: sha256(certDer(e.name)), ttl: 300 }))
      .sort((x, y) => x.keyTag - y.keyTag);
    expect(got).toEqual(want);
  });

  it('CERT over UDP with EDNS: a 1 KB certificate fits, D14 (1256-byte DER) still needs TCP', async () => {
    const d1 = await dnsQuery(h.dns, 'd1.domain1.dcdt.test', 'CERT', { transport: 'udp', ednsUdpSize: 4096 });
    expect(d1.packet.flag_tc).toBe(false);
    expect(d1.packet.answers?.length).toBe(1);
    const d14 = await dnsQuery(h.dns, 'd14.domain1.dcdt.test', 'CERT', { transport: 'udp', ednsUdpSize: 4096 });
    expect(d14.packet.flag_tc).toBe(true);
  });

  it('SRV _ldap._tcp.domain2.dcdt.test: LDAP1 at priority 0, then LDAP2, as in the manifest', async () => {
    const r = await dnsQuery(h.dns, '_ldap._tcp.domain2.dcdt.test', 'SRV', { transport: 'udp' });
    expect(r.packet.flag_aa).toBe(true);
    const srv = ((r.packet.answers ?? []) as SrvAnswer[]).map((a) => a.data).sort((x, y) => (x.priority ?? 0) - (y.priority ?? 0));
    const { LDAP1, LDAP2 } = manifest.ldap_servers;
    expect(srv).toEqual([
      { priority: 0, weight: 0, port: LDAP1.port, target: LDAP1.host },
      { priority: 1, weight: 0, port: LDAP2.port, target: LDAP2.host },
    ]);
  });

  it('SRV records of the other domains, their targets and the names that do not exist', async () => {
    const srv = async (domain: string): Promise<string[]> => {
      const r = await dnsQuery(h.dns, `_ldap._tcp.${domain}`, 'SRV', { transport: 'tcp' });
      return ((r.packet.answers ?? []) as SrvAnswer[]).map((a) => `${a.data.priority} ${a.data.weight} ${a.data.port} ${a.data.target}`).sort();
    };
    expect(await srv('domain3.dcdt.test')).toEqual(['0 0 10389 ldap-unavailable.dcdt.test', '1 0 11389 ldap.dcdt.test']);
    expect(await srv('domain5.dcdt.test')).toEqual(['0 0 10389 ldap.dcdt.test', '0 100 12389 ldap.dcdt.test']);
    expect(await srv('domain7.dcdt.test')).toEqual(['0 0 10389 ldap-unavailable.dcdt.test']);
    expect(await srv('domain6.dcdt.test')).toEqual([]);

    for (const name of ['ldap.dcdt.test', 'pki.dcdt.test', 'domain6.dcdt.test']) {
      const a = await dnsQuery(h.dns, name, 'A', { transport: 'udp' });
      expect(((a.packet.answers ?? []) as StringAnswer[]).map((x) => x.data)).toEqual(['127.0.0.1']);
    }
    const missing = await dnsQuery(h.dns, 'ldap-unavailable.dcdt.test', 'A', { transport: 'udp' });
    expect(dnsRcode(missing.packet)).toBe(3); // NXDOMAIN
    const none = await dnsQuery(h.dns, 'd11.domain6.dcdt.test', 'CERT', { transport: 'udp' });
    expect(none.packet.answers).toEqual([]);
  });

  it.each(Object.entries(DCDT_LDAP_PORTS))('%s (port %i): anonymous rootDSE has namingContexts ou=dcdt', async (_name, port) => {
    const r = await ldapSearch(port, ['-b', '', '-s', 'base', 'namingContexts']);
    expect(r.code).toBe(0);
    expect(r.ldif).toMatch(/^namingContexts: ou=dcdt$/m);
  });

  it('LDAP1: subtree search mail=d3@domain2.dcdt.test returns userCertificate;binary = D3_valC.cer', async () => {
    h.clearLogs();
    const r = await ldapSearch(h.ldapPorts.ldap1, ['-b', 'ou=dcdt', '-s', 'sub', 'mail=d3@domain2.dcdt.test']);
    expect(r.code).toBe(0);
    expect(r.ldif).toMatch(/^dn: cn=D3_valC,ou=dcdt$/m);
    expect(ldifCertificates(r.ldif).map(sha256)).toEqual([sha256(certDer('D3_valC'))]);
    expect(h.ldapSearches('ldap1')).toEqual([{ conn: expect.any(Number) as number, base: 'ou=dcdt', scope: 2, filter: '(mail=d3@domain2.dcdt.test)' }]);
    expect(h.ldapConnections('ldap1')).toBe(1);
    expect(h.ldapSearches('ldap2')).toEqual([]);
  });

  it.each(['ldap1', 'ldap2', 'ldap3'] as DcdtLdapServer[])('%s holds exactly the manifest credentials located there', async (server) => {
    const location = server.toUpperCase();
    const want = credentials.filter((c) => c.location === location).map((c) => `${c.bound_to} ${sha256(certDer(c.name))}`).sort();
    // The Java RI's filter for the NIST tooling (R-DIS-8).
    const r = await ldapSearch(h.ldapPorts[server], ['-b', 'ou=dcdt', '(&(mail=*)(|(userCertificate;binary=*)(userCertificate=*)))', 'mail', 'userCertificate;binary']);
    expect(r.code).toBe(0);
    const got = r.ldif
      .trim()
      .split(/\n\n+/)
      .map((entry) => `${/^mail: (.*)$/m.exec(entry)?.[1] ?? ''} ${ldifCertificates(entry).map(sha256).join(',')}`)
      .sort();
    expect(got).toEqual(want);
  });

  it('HTTP: serves the CA certificates and CRLs at the certificates\' paths, logs the requests, 404 otherwise', async () => {
    h.clearLogs();
    for (const p of manifest.http_pki.paths) {
      const res = await httpGet(`${h.http.baseUrl}${p}`);
      expect(res.status).toBe(200);
      const [dir, type] = p.endsWith('.crl') ? ['crl', 'application/pkix-crl'] : ['certs', 'application/pkix-cert'];
      expect(sha256(res.body)).toBe(sha256(fixture(`${dir}${p}`)));
      expect(res.contentType).toBe(type);
    }
    const crl = await httpGet(`${h.http.baseUrl}/dcdt.test_ca_root.crl`);
    expect(crl.body.equals(fixture('crl/dcdt.test_ca_root.crl'))).toBe(true);
    expect((await httpGet(`${h.http.baseUrl}/nothing.crl`)).status).toBe(404);
    expect(h.http.requests).toEqual([...manifest.http_pki.paths, '/dcdt.test_ca_root.crl', '/nothing.crl']);
  });

  it('HTTP: fetch() refuses port 10080 (a WHATWG "bad port"), so AIA/CRL retrieval must use node:http', async () => {
    const err: unknown = await fetch(`${h.http.baseUrl}/dcdt.test_ca_root.crl`).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(TypeError);
    expect(String((err as TypeError).cause)).toMatch(/bad port/);
  });
});
