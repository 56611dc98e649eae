// discoverRecipient and CertificateDiscovery on a scripted DNS (no servers): IPKIX records, LDAP
// targets that all refuse (transient), R-MULT-1 with reasons kept, and the Blue Button+ policy switch.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Certificate } from '../core/certificate.js';
import { DirectAddress } from '../core/direct-address.js';
import type { CertRecord } from '../discovery/cert-record.js';
import { CertificateDiscovery } from '../discovery/certificate-discovery.js';
import type { SrvRecord } from '../discovery/srv-order.js';
import { resolvePolicy } from '../policy/cert-policy.js';
import { createHttpFetcher, FETCH_DEFAULTS } from '../trust/http-fetch.js';
import type { FetchBudget } from '../trust/fetch-budget.js';
import { TrustValidator } from '../trust/trust-validator.js';
import { credentialPaths } from '../../test/helpers/pki.js';
import { ipkixRecord, pkixRecord, scriptedDns as dnsFromTables } from '../../test/helpers/scripted-dns.js';
import { discoverRecipient } from './discover-recipient.js';

const cert = (name: Parameters<typeof credentialPaths>[0]) => Certificate.fromDer(readFileSync(credentialPaths(name).certDer));
const root = cert('root-ca');
const patient = DirectAddress.parse('patient@recipient.test');

const scriptedDns = (cert: Record<string, CertRecord[]>, srv: Record<string, SrvRecord[]> = {}, authenticated = false) => dnsFromTables(cert, srv, { authenticated });
const pkix = pkixRecord;
const ipkix = ipkixRecord;

let server: Server;
let base = '';
/** Requests the IPKIX server has seen. */
let requests = 0;
beforeAll(async () => {
  server = createServer((req, res) => {
    requests++;
    if (req.url === '/patient.cer') res.end(cert('recipient-rsa').der);
    else res.writeHead(404).end();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(() => new Promise<void>((r) => server.close(() => r())));

const fetch = async (url: URL) => {
  const res = await globalThis.fetch(url);
  if (!res.ok) throw new Error(`HTTP ${res.status}`);
  return Buffer.from(await res.arrayBuffer());
};

describe('IPKIX fetches: the address policy and the recipient’s fetch budget (issue 14 item 4)', () => {
  /** hisp's own fetcher, as the gateway wires it into discovery. */
  const hispFetch = (allowAddresses: string[]) => {
    const fetcher = createHttpFetcher({ allowAddresses });
    return (url: URL, budget?: FetchBudget) => fetcher(url, { purpose: 'aia', ...FETCH_DEFAULTS.aia, ...(budget ? { budget } : {}) });
  };

  it('an IPKIX URL on a loopback address is refused without a request: a permanent rejection, not a retry', async () => {
    const before = requests;
    const discovery = new CertificateDiscovery({ dns: scriptedDns({ 'patient.recipient.test': [ipkix(`${base}/patient.cer`)] }), fetch: hispFetch([]) });
    const r = await discoverRecipient(patient, { discovery, validator: new TrustValidator(), anchors: [root] });
    expect(requests).toBe(before);
    expect(r.status).toBe('none');
    expect(r.rejected).toMatchObject([{ code: 'HISP_TRUST_AIA_FAILED', transient: false, reason: expect.stringMatching(/127\.0\.0\.1, which is not an allowed address/) as unknown }]);
    expect(r.steps.at(-1)).toMatchObject({ step: 'ipkix', result: 'refused' });
    // Allowed, the same record is fetched and selected.
    const allowed = new CertificateDiscovery({ dns: scriptedDns({ 'patient.recipient.test': [ipkix(`${base}/patient.cer`)] }), fetch: hispFetch(['127.0.0.1/32']) });
    expect((await discoverRecipient(patient, { discovery: allowed, validator: new TrustValidator(), anchors: [root] })).status).toBe('selected');
  });

  it('one budget per recipient: five IPKIX records cause two requests under maxFetches 2, and the outcome is transient', async () => {
    const before = requests;
    const records = [1, 2, 3, 4, 5].map((i) => ipkix(`${base}/missing-${i}.cer`));
    const discovery = new CertificateDiscovery({ dns: scriptedDns({ 'patient.recipient.test': records }), fetch: hispFetch(['127.0.0.1/32']) });
    const r = await discoverRecipient(patient, { discovery, validator: new TrustValidator({ fetchBudget: { maxFetches: 2 } }), anchors: [root] });
    expect(requests - before).toBe(2);
    expect(r.status).toBe('transient');
    expect(r.rejected.filter((x) => /fetch budget of this message \(2 requests\) is spent/.test(x.reason))).toHaveLength(3);
  });
});

describe('discoverRecipient', () => {
  it('fetches an IPKIX (type 4) certificate from its URL and selects it', async () => {
    const discovery = new CertificateDiscovery({ dns: scriptedDns({ 'patient.recipient.test': [ipkix(`${base}/patient.cer`)] }), fetch });
    const r = await discoverRecipient(patient, { discovery, validator: new TrustValidator(), anchors: [root] });
    expect(r.status).toBe('selected');
    expect(r.selected.map((s) => s.certificate.sha256)).toEqual([cert('recipient-rsa').sha256]);
    expect(r.steps.map((s) => s.step)).toEqual(['dns-cert', 'ipkix']);
  });

  it('keeps a malformed IPKIX record as a rejected one with its reason, not a failed run', async () => {
    const discovery = new CertificateDiscovery({ dns: scriptedDns({ 'patient.recipient.test': [ipkix('not a url \u0001'), pkix(cert('recipient-rsa'))] }), fetch });
    const r = await discoverRecipient(patient, { discovery, validator: new TrustValidator(), anchors: [root] });
    expect(r.status).toBe('selected');
    expect(r.rejected).toHaveLength(1);
    expect(r.rejected[0]!.code).toBe('HISP_DISCOVERY_NO_CERT');
  });

  it('uses every valid certificate of the level and gives each rejected one its code (R-MULT-1)', async () => {
    const discovery = new CertificateDiscovery({
      dns: scriptedDns({ 'patient.recipient.test': [pkix(cert('recipient-rsa')), pkix(cert('sender-expired')), pkix(cert('recipient2-rsa'))] }),
    });
    const r = await discoverRecipient(patient, { discovery, validator: new TrustValidator(), anchors: [root] });
    expect(r.selected.map((s) => s.certificate.sha256)).toEqual([cert('recipient-rsa').sha256]);
    expect(r.rejected.map((x) => x.code).sort()).toEqual(['HISP_TRUST_BINDING_MISMATCH', 'HISP_TRUST_BINDING_MISMATCH']);
  });

  it('does not fall back to the domain when the address-bound certificates are all invalid (R-DIS-5)', async () => {
    const discovery = new CertificateDiscovery({
      dns: scriptedDns({ 'patient.recipient.test': [pkix(cert('sender-expired'))], 'recipient.test': [pkix(cert('recipient-domain'))] }),
    });
    const r = await discoverRecipient(patient, { discovery, validator: new TrustValidator(), anchors: [root] });
    expect(r.status).toBe('none');
    expect(r.code).toBe('HISP_DISCOVERY_NO_VALID_CERT');
    expect(r.level).toBe('dns-address');
  });

  it('is transient when every LDAP target refuses the connection (requirements §5.9)', async () => {
    const closed = createServer();
    await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
    const port = (closed.address() as AddressInfo).port;
    await new Promise<void>((r) => closed.close(() => r()));
    const discovery = new CertificateDiscovery({
      dns: scriptedDns({}, { '_ldap._tcp.recipient.test': [{ priority: 0, weight: 0, port, target: 'ldap.recipient.test' }] }),
      ldap: { connectTimeoutMs: 500, timeoutMs: 500 },
    });
    const r = await discoverRecipient(patient, { discovery, validator: new TrustValidator(), anchors: [root] });
    expect(r.status).toBe('transient');
    expect(r.steps.at(-1)).toMatchObject({ step: 'ldap', result: 'refused' });
  });

  describe('the Blue Button+ patient-directed switch (requirements §5.5)', () => {
    const untrusted = () => new CertificateDiscovery({ dns: scriptedDns({ 'patient.recipient.test': [pkix(cert('recipient-rsa'))] }) });

    it('is off by default: no anchor, no certificate', async () => {
      const r = await discoverRecipient(patient, { discovery: untrusted(), validator: new TrustValidator(), anchors: [], patientDirected: true });
      expect(r.status).toBe('none');
      expect(r.rejected[0]!.code).toBe('HISP_TRUST_NO_ANCHOR');
    });

    it('on, it admits a well-formed, unexpired certificate without an anchor for a patient-directed send', async () => {
      const policy = resolvePolicy({ blueButtonPlus: { enabled: true } });
      const r = await discoverRecipient(patient, { discovery: untrusted(), validator: new TrustValidator(), anchors: [], policy, patientDirected: true });
      expect(r.status).toBe('selected');
      expect(r.selected[0]!.basis).toBe('blue-button-plus');
    });

    it('with DNSSEC required, refuses an answer that was not validated', async () => {
      const policy = resolvePolicy({ blueButtonPlus: { enabled: true, requireDnssec: true } });
      const r = await discoverRecipient(patient, { discovery: untrusted(), validator: new TrustValidator(), anchors: [], policy, patientDirected: true });
      expect(r.status).toBe('none');
      expect(r.rejected[0]!.code).toBe('HISP_TRUST_POLICY');
    });
  });
});
