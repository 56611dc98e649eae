// The Blue Button+ routes under hostile bodies: random JSON near the schemas (stray fields, wrong
// types, names with control characters, bad base64, odd times) and random bytes as JSON. Every
// answer is a 2xx or a 4xx problem matching /openapi.json (the ApiClient checks), never a 500,
// never a hang; a refused authorization stores nothing, a refused record sends nothing.
import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { apiServerPerFile, TEST_DOMAIN } from '../../../test/helpers/api-context.js';
import type { ApiResponse } from '../../../test/helpers/api-client.js';
import { credentialPaths } from '../../../test/helpers/pki.js';
import { pkixRecord, scriptedDns } from '../../../test/helpers/scripted-dns.js';
import { Certificate } from '../../core/certificate.js';

const PHR = 'patient@recipient.test';
const server = apiServerPerFile({
  api: { rateLimit: { perKeyPerMinute: 1_000_000 } },
  dns: scriptedDns({ 'patient.recipient.test': [pkixRecord(Certificate.fromDer(readFileSync(credentialPaths('recipient-rsa').certDer)))] }),
});

const count = (table: string) => server.t.db.sqlite.prepare(`SELECT count(*) FROM ${table}`).pluck().get() as number;

/** One request, answered within 10 s by a 2xx or a 4xx problem, as /openapi.json says. */
async function post(path: string, body: string | Buffer): Promise<ApiResponse> {
  let timer: NodeJS.Timeout | undefined;
  const hang = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error('no answer within 10 s')), 10_000)));
  try {
    const r = await Promise.race([server.client.request('POST', path, { key: server.token, body, contentType: 'application/json' }), hang]);
    expect((r.status >= 200 && r.status < 300) || (r.status >= 400 && r.status < 500), `${r.status} ${r.text.slice(0, 300)}`).toBe(true);
    if (r.status >= 400) expect((r.body as { status: number }).status).toBe(r.status);
    return r;
  } finally {
    clearTimeout(timer);
  }
}

const mostly = <T>(valid: fc.Arbitrary<T>) => fc.oneof({ arbitrary: valid, weight: 10 }, { arbitrary: fc.anything({ maxDepth: 2 }), weight: 1 });
const name = fc.oneof(fc.constantFrom('Jane Doe', 'Example Hospital', 'Zoë O’Brien'), fc.string({ maxLength: 30 }), fc.constant('Jane\r\nRecurring: Yes'));
const instant = fc.oneof(fc.constantFrom('2026-12-07T10:00:00Z', '2099-01-01T00:00:00Z', '2000-01-01T00:00:00Z'), fc.string({ maxLength: 30 }));

const authorizationBody = fc.record(
  {
    patient: mostly(fc.record({ name: mostly(name), birthDate: mostly(fc.constantFrom('1970-01-02', '1970-13-45', '')) }, { requiredKeys: ['name'] })),
    from: mostly(fc.constantFrom(`records@${TEST_DOMAIN}`, 'records@elsewhere.test', 'not an address')),
    dataHolder: mostly(fc.record({ name: mostly(name) })),
    destinations: mostly(
      fc.array(
        fc.record(
          { address: mostly(fc.constantFrom(PHR, `patient@${TEST_DOMAIN}`, 'nobody@nowhere.test', 'x@')), package: mostly(fc.constantFrom('mime', 'xdm', 'both', 'zip')), requestTxt: mostly(fc.boolean()) },
          { requiredKeys: ['address'] },
        ),
        { maxLength: 4 },
      ),
    ),
    frequency: mostly(fc.constantFrom('once', 'on-update', 'daily')),
    interval: mostly(fc.integer({ min: -5, max: 600_000 })),
    grantedBy: mostly(fc.record({ kind: mostly(fc.constantFrom('patient', 'representative', 'staff', 'robot')), name: mostly(name) }, { requiredKeys: ['kind'] })),
    method: mostly(fc.constantFrom('portal', 'in-person', 'written', 'email')),
    consent: mostly(fc.record({ version: mostly(fc.constantFrom('v1', '')), sha256: mostly(fc.constantFrom('ab'.repeat(32), 'zz')) })),
    expiresAt: instant,
    stray: fc.anything({ maxDepth: 1 }),
  },
  { requiredKeys: ['patient', 'from', 'dataHolder', 'destinations', 'frequency', 'grantedBy', 'method', 'consent'] },
);

const recordBody = fc.record(
  {
    document: mostly(
      fc.record({
        filename: mostly(fc.constantFrom('result.pdf', '../etc/passwd', '')),
        contentType: mostly(fc.constantFrom('application/pdf', 'text/plain', 'nonsense')),
        kind: mostly(fc.constantFrom('pdf', 'other', 'ccda', 'xdm')),
        content: mostly(fc.oneof(fc.uint8Array({ maxLength: 200 }).map((b) => Buffer.from(b).toString('base64')), fc.string({ maxLength: 40 }))),
      }),
    ),
    trigger: mostly(fc.constantFrom('discharge', 'new-result', 'claim', 'birthday')),
    madeAt: instant,
    subject: mostly(name),
    stray: fc.anything({ maxDepth: 1 }),
  },
  { requiredKeys: ['document', 'trigger', 'madeAt'] },
);

describe('Blue Button+ bodies under hostile input', () => {
  it('authorizations: 201 or a 4xx problem; only a 201 stores one', async () => {
    await fc.assert(
      fc.asyncProperty(authorizationBody, async (body) => {
        const before = count('transmit_authorizations');
        const r = await post('/v1/patients/MRN-P/authorizations', JSON.stringify(body));
        expect(count('transmit_authorizations')).toBe(before + (r.status === 201 ? 1 : 0));
      }),
      { numRuns: 60 },
    );
  });

  it('records: 202 or a 4xx problem; a refused push sends nothing', async () => {
    const ok = await post('/v1/patients/MRN-R/authorizations', JSON.stringify({ patient: { name: 'Jane' }, from: `records@${TEST_DOMAIN}`, dataHolder: { name: 'H' }, destinations: [{ address: PHR }], frequency: 'on-update', grantedBy: { kind: 'patient' }, method: 'portal', consent: { version: '1', sha256: 'ab'.repeat(32) } }));
    expect(ok.status).toBe(201);
    await fc.assert(
      fc.asyncProperty(recordBody, async (body) => {
        const before = count('messages');
        const r = await post('/v1/patients/MRN-R/records', JSON.stringify(body));
        if (r.status !== 202) expect(count('messages')).toBe(before);
      }),
      { numRuns: 60 },
    );
  });

  it('random bytes as JSON: a 400', async () => {
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ maxLength: 300 }), async (bytes) => {
        const r = await post('/v1/patients/MRN-R/records', Buffer.from(bytes));
        expect(r.status).toBeGreaterThanOrEqual(400);
      }),
      { numRuns: 40 },
    );
  });
});
