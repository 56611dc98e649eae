// POST /v1/recipients/validate in process, on a scripted DNS: each verdict with its certificates
// and steps, the sender's scope, and the bounds. Responses are checked against /openapi.json.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { apiServerPerTest, TEST_DOMAIN, type ApiTestContext } from '../../../test/helpers/api-context.js';
import type { ApiClient } from '../../../test/helpers/api-client.js';
import { credentialPaths } from '../../../test/helpers/pki.js';
import { pkixRecord, scriptedDns } from '../../../test/helpers/scripted-dns.js';
import { Certificate } from '../../core/certificate.js';
import { VALIDATE_LIMITS } from './recipients-routes.js';

const cert = (name: Parameters<typeof credentialPaths>[0]) => Certificate.fromDer(readFileSync(credentialPaths(name).certDer));

/** patient@recipient.test: address-bound, from the anchored root; sender@sender.test: from a root nobody anchors. */
const dns = scriptedDns(
  {
    'patient.recipient.test': [pkixRecord(cert('recipient-rsa'))],
    'sender.sender.test': [pkixRecord(cert('sender-untrusted')), { certType: 1, keyTag: 0, algorithm: 0, data: Buffer.from('not DER') }],
  },
  {},
  { failing: ['flaky.test'] },
);

interface Recipient {
  address: string;
  verdict: string;
  code?: string;
  reason?: string;
  local: boolean;
  level?: string;
  certificates: { fingerprint?: string; source: string; binding: string; subject?: string; accepted: boolean; basis?: string; code?: string }[];
  steps: { step: string; name: string; result: string }[];
}

const server = apiServerPerTest();

async function start(): Promise<{ client: ApiClient; t: ApiTestContext; token: string }> {
  const { client, t } = await server.start({ dns });
  return { client, t, token: (await t.key()).token };
}

describe('POST /v1/recipients/validate', () => {
  it('gives each recipient its verdict, why, the certificates found and the steps, in the order asked', async () => {
    const { client, token } = await start();
    const addresses = ['patient@recipient.test', 'sender@sender.test', 'nobody@nowhere.test', 'someone@flaky.test', `patient@${TEST_DOMAIN}`, `stranger@${TEST_DOMAIN}`];
    const r = await client.request('POST', '/v1/recipients/validate', { key: token, json: { addresses } });
    expect(r.status).toBe(200);
    const body = r.body as { from: string; domain: string; recipients: Recipient[] };
    expect(body).toMatchObject({ from: TEST_DOMAIN, domain: TEST_DOMAIN });
    expect(body.recipients.map((x) => [x.address, x.verdict, x.code])).toEqual([
      ['patient@recipient.test', 'trusted', undefined],
      ['sender@sender.test', 'untrusted', 'HISP_DISCOVERY_NO_VALID_CERT'],
      ['nobody@nowhere.test', 'no-certificate', 'HISP_DISCOVERY_NO_CERT'],
      ['someone@flaky.test', 'try-later', 'HISP_DISCOVERY_TEMPORARY'],
      [`patient@${TEST_DOMAIN}`, 'trusted', undefined],
      [`stranger@${TEST_DOMAIN}`, 'no-certificate', 'HISP_SMTP_UNKNOWN_RECIPIENT'],
    ]);
    const [trusted, untrusted, none, later, local] = body.recipients as [Recipient, Recipient, Recipient, Recipient, Recipient];
    expect(trusted).toMatchObject({
      local: false,
      level: 'dns-address',
      certificates: [{ fingerprint: cert('recipient-rsa').sha256, source: 'dns', binding: 'address', subject: cert('recipient-rsa').subject, accepted: true, basis: 'anchor' }],
      steps: [{ step: 'dns-cert', name: 'patient.recipient.test', result: 'found' }],
    });
    expect(untrusted.certificates).toMatchObject([
      { fingerprint: cert('sender-untrusted').sha256, source: 'dns', binding: 'address', accepted: false, code: 'HISP_TRUST_NO_ANCHOR' },
      { source: 'dns', binding: 'address', accepted: false },
    ]);
    expect(untrusted.certificates[1]!.fingerprint).toBeUndefined();
    expect(untrusted.reason).toContain('2 certificate(s) published for sender@sender.test, none valid and trusted');
    // Nothing published: every level asked, in the order of the Applicability Statement (R-DIS-4).
    expect(none.steps.map((s) => [s.step, s.name, s.result])).toEqual([
      ['dns-cert', 'nobody.nowhere.test', 'nxdomain'],
      ['dns-cert', 'nowhere.test', 'nxdomain'],
      ['srv', '_ldap._tcp.nowhere.test', 'nxdomain'],
    ]);
    expect(later.reason).toContain('SERVFAIL');
    expect(local).toMatchObject({ local: true, steps: [], certificates: [{ source: 'local', basis: 'local', accepted: true }] });
  });

  it("validates under the sending domain's policy, as the key's first send-as scope by default", async () => {
    const { client, t } = await server.start({ dns, domain: { policy: { minRsaBits: 3072 } } });
    const key = await t.key({ actions: ['validate'], sendAs: [`ehr@${TEST_DOMAIN}`] });
    const r = await client.request('POST', '/v1/recipients/validate', { key: key.token, json: { addresses: ['patient@recipient.test'] } });
    // recipient-rsa has a 2048-bit key: this domain wants 3072.
    expect(r.body).toMatchObject({
      from: `ehr@${TEST_DOMAIN}`,
      domain: TEST_DOMAIN,
      recipients: [{ verdict: 'untrusted', certificates: [{ accepted: false, code: 'HISP_TRUST_WEAK_KEY' }] }],
    });
  });

  it('checks an address given twice once, and answers each', async () => {
    const { client, token } = await start();
    const r = await client.request('POST', '/v1/recipients/validate', { key: token, json: { addresses: ['patient@recipient.test', 'PATIENT@Recipient.Test'] } });
    expect((r.body as { recipients: Recipient[] }).recipients.map((x) => [x.address, x.verdict])).toEqual([
      ['patient@recipient.test', 'trusted'],
      ['PATIENT@Recipient.Test', 'trusted'],
    ]);
  });

  it('refuses a sender outside the gateway’s domains, more than 50 addresses, none, and what is not an address', async () => {
    const { client, t } = await start();
    const foreign = await t.key({ actions: ['validate'], sendAs: ['@elsewhere.test'] });
    expect(await client.request('POST', '/v1/recipients/validate', { key: foreign.token, json: { addresses: ['a@b.test'] } })).toMatchObject({
      status: 400,
      body: { detail: 'from: elsewhere.test is not a domain of this gateway' },
    });
    const { token } = await t.key();
    const many = Array.from({ length: VALIDATE_LIMITS.maxAddresses + 1 }, (_, i) => `p${i}@x.test`);
    expect((await client.request('POST', '/v1/recipients/validate', { key: token, json: { addresses: many } })).status).toBe(400);
    expect((await client.request('POST', '/v1/recipients/validate', { key: token, json: { addresses: [] } })).status).toBe(400);
    for (const bad of ['no-at-sign', 'a@', '@b.test', 'a b@c.test', 'a@b..test', `a@${'x'.repeat(64)}.test`, 'a@b.test\n']) {
      const r = await client.request('POST', '/v1/recipients/validate', { key: token, json: { addresses: [bad] } });
      expect(r, JSON.stringify(bad)).toMatchObject({ status: 400, body: { code: 'HISP_API_INVALID_REQUEST', errors: [{ path: '/addresses/0' }] } });
    }
  });
});
