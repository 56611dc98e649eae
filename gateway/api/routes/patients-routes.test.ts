// The Blue Button+ routes in process, on a scripted DNS: authorizations given (each destination
// checked), listed, revoked; records pushed and de-duplicated; the history; every bad request its
// status and code. Responses are checked against /openapi.json by the client.
import { readFileSync } from 'node:fs';
import { simpleParser } from 'mailparser';
import { describe, expect, it } from 'vitest';
import { apiServerPerTest, TEST_DOMAIN, type ApiTestContext } from '../../../test/helpers/api-context.js';
import type { ApiClient } from '../../../test/helpers/api-client.js';
import { cdaDocument, section } from '../../../test/helpers/ccda-documents.js';
import { credentialPaths } from '../../../test/helpers/pki.js';
import { pkixRecord, scriptedDns } from '../../../test/helpers/scripted-dns.js';
import { Certificate } from '../../core/certificate.js';

const cert = (name: Parameters<typeof credentialPaths>[0]) => Certificate.fromDer(readFileSync(credentialPaths(name).certDer));
/** patient@recipient.test: trusted (anchored root); sender@sender.test: untrusted; flaky.test: discovery fails for now. */
const dns = scriptedDns(
  { 'patient.recipient.test': [pkixRecord(cert('recipient-rsa'))], 'sender.sender.test': [pkixRecord(cert('sender-untrusted'))] },
  {},
  { failing: ['flaky.test'] },
);
const server = apiServerPerTest();
const PHR = 'patient@recipient.test';
const FROM = `records@${TEST_DOMAIN}`;

async function start(): Promise<{ client: ApiClient; t: ApiTestContext; token: string }> {
  const { client, t } = await server.start({ dns });
  return { client, t, token: (await t.key()).token };
}

const authorization = (extra: Record<string, unknown> = {}) => ({
  patient: { name: 'Jane Doe', birthDate: '1970-01-02' },
  from: FROM,
  dataHolder: { name: 'Example Hospital' },
  destinations: [{ address: PHR, requestTxt: true }],
  frequency: 'on-update',
  grantedBy: { kind: 'patient' },
  method: 'portal',
  consent: { version: '2026-01', sha256: 'ab'.repeat(32) },
  ...extra,
});
const document = (text = 'lab result 1') => ({ filename: 'result.pdf', contentType: 'application/pdf', kind: 'pdf', content: Buffer.from(`%PDF-1.4 ${text}`).toString('base64') });
const push = (extra: Record<string, unknown> = {}) => ({ document: document(), trigger: 'new-result', madeAt: '2026-12-07T10:00:00Z', ...extra });

interface AuthorizationJson {
  id: string;
  status: string;
  revokedAt: string | null;
  revokedBy: string | null;
  destinations: { address: string; package: string; humanReadable: boolean; requestTxt: boolean }[];
}
interface Pushed {
  recordId: string;
  sha256: string;
  transmissions: { id: string; authorizationId: string; destination: string; status: string; reason?: string; queueId?: string; messageId?: string }[];
}

describe('/v1/patients/{patientRef}/authorizations', () => {
  it('201 for trusted destinations; listed, read, revoked once with its time and key; the list keeps it', async () => {
    const { client, token } = await start();
    const r = await client.request('POST', '/v1/patients/MRN-1/authorizations', { key: token, json: authorization({ interval: 30 }) });
    expect(r.status).toBe(201);
    const a = r.body as AuthorizationJson;
    expect(a).toMatchObject({ status: 'active', frequency: 'on-update', interval: 30, revokedAt: null, patientRef: 'MRN-1', assigningAuthority: null });
    expect(a.id).toMatch(/^auth_/);
    expect(a.destinations).toEqual([{ address: PHR, package: 'mime', humanReadable: true, requestTxt: true }]);
    expect((await client.request('GET', `/v1/patients/MRN-1/authorizations/${a.id}`, { key: token })).body).toEqual(a);

    const revoked = await client.request('DELETE', `/v1/patients/MRN-1/authorizations/${a.id}`, { key: token });
    expect(revoked.status).toBe(200);
    expect(revoked.body).toMatchObject({ status: 'revoked', revokedBy: expect.stringMatching(/.+/) as unknown });
    const again = await client.request('DELETE', `/v1/patients/MRN-1/authorizations/${a.id}`, { key: token });
    expect((again.body as AuthorizationJson).revokedAt).toBe((revoked.body as AuthorizationJson).revokedAt);
    const list = (await client.request('GET', '/v1/patients/MRN-1/authorizations', { key: token })).body as { authorizations: AuthorizationJson[] };
    expect(list.authorizations.map((x) => [x.id, x.status])).toEqual([[a.id, 'revoked']]);
  });

  it('422 naming each destination not trusted and why; 503 with Retry-After when discovery must be tried later; nothing stored', async () => {
    const { client, token } = await start();
    const refused = await client.request('POST', '/v1/patients/MRN-1/authorizations', {
      key: token,
      json: authorization({ destinations: [{ address: PHR }, { address: 'sender@sender.test' }, { address: 'nobody@nowhere.test' }] }),
    });
    expect(refused.status).toBe(422);
    expect(refused.body).toMatchObject({
      code: 'HISP_TRANSMIT_DESTINATION_REFUSED',
      destinations: [
        { address: 'sender@sender.test', verdict: 'untrusted', code: 'HISP_DISCOVERY_NO_VALID_CERT' },
        { address: 'nobody@nowhere.test', verdict: 'no-certificate', code: 'HISP_DISCOVERY_NO_CERT' },
      ],
    });
    const later = await client.request('POST', '/v1/patients/MRN-1/authorizations', { key: token, json: authorization({ destinations: [{ address: 'someone@flaky.test' }] }) });
    expect(later.status).toBe(503);
    expect(later.headers['retry-after']).toBe('60');
    expect(later.body).toMatchObject({ code: 'HISP_TRANSMIT_DESTINATION_REFUSED', retryAfter: 60, destinations: [{ verdict: 'try-later' }] });
    expect((await client.request('GET', '/v1/patients/MRN-1/authorizations', { key: token })).status).toBe(404);
  });

  it('scopes: from outside the key’s send-as is 403; another key does not see the patient (404); reads need status', async () => {
    const { client, t, token } = await start();
    expect((await client.request('POST', '/v1/patients/MRN-1/authorizations', { key: token, json: authorization({ from: 'records@elsewhere.test' }) })).body).toMatchObject({
      status: 403,
      code: 'HISP_API_FORBIDDEN',
    });
    const a = (await client.request('POST', '/v1/patients/MRN-1/authorizations', { key: token, json: authorization() })).body as AuthorizationJson;
    const stranger = (await t.key({ sendAs: ['@other.test'] })).token;
    for (const [method, path] of [
      ['GET', '/v1/patients/MRN-1/authorizations'],
      ['GET', `/v1/patients/MRN-1/authorizations/${a.id}`],
      ['DELETE', `/v1/patients/MRN-1/authorizations/${a.id}`],
      ['GET', '/v1/patients/MRN-1/transmissions'],
    ] as const) {
      expect((await client.request(method, path, { key: stranger })).status).toBe(404);
    }
    expect((await client.request('POST', '/v1/patients/MRN-1/records', { key: stranger, json: push() })).body).toMatchObject({ status: 404, code: 'HISP_TRANSMIT_UNKNOWN_PATIENT' });
    const sendOnly = (await t.key({ actions: ['send'] })).token;
    expect((await client.request('GET', '/v1/patients/MRN-1/authorizations', { key: sendOnly })).status).toBe(403);
    const statusOnly = (await t.key({ actions: ['status'] })).token;
    expect((await client.request('DELETE', `/v1/patients/MRN-1/authorizations/${a.id}`, { key: statusOnly })).status).toBe(403);
    expect((await client.request('GET', '/v1/patients/MRN-1/authorizations/auth_nope', { key: token })).body).toMatchObject({ status: 404, code: 'HISP_TRANSMIT_UNKNOWN_AUTHORIZATION' });
  });

  it('malformed bodies are 400: unknown fields, a bad frequency, no destination, a name with a line break, a bad consent hash, a past expiry', async () => {
    const { client, token } = await start();
    const bad = [
      authorization({ extra: 1 }),
      authorization({ frequency: 'daily' }),
      authorization({ destinations: [] }),
      authorization({ destinations: [{ address: PHR }, { address: PHR.toUpperCase() }] }),
      authorization({ patient: { name: 'Jane\r\nRecurring: Yes' } }),
      authorization({ consent: { version: '1', sha256: 'xyz' } }),
      authorization({ interval: 0 }),
      authorization({ expiresAt: '2000-01-01T00:00:00Z' }),
      authorization({ destinations: [{ address: 'not an address' }] }),
    ];
    for (const json of bad) {
      const r = await client.request('POST', '/v1/patients/MRN-1/authorizations', { key: token, json });
      expect([r.status, (r.body as { code: string }).code], JSON.stringify(json).slice(0, 200)).toEqual([400, 'HISP_API_INVALID_REQUEST']);
    }
    expect((await client.request('POST', '/v1/patients/MR%7CN/authorizations', { key: token, json: authorization() })).status).toBe(400);
  });
});

describe('/v1/patients/{patientRef}/records and /transmissions', () => {
  it('202: one message per destination with the sentence and request.txt; the same document again skipped; the history shows both', async () => {
    const { client, t, token } = await start();
    const a = (await client.request('POST', '/v1/patients/MRN-1/authorizations', { key: token, json: authorization({ assigningAuthority: '1.2.3' }) })).body as AuthorizationJson;
    // The assigning authority scopes the patient: without it, another (unknown) patient.
    expect((await client.request('POST', '/v1/patients/MRN-1/records', { key: token, json: push() })).status).toBe(404);

    const r = await client.request('POST', '/v1/patients/MRN-1/records', { key: token, json: push({ assigningAuthority: '1.2.3' }) });
    expect(r.status).toBe(202);
    const first = r.body as Pushed;
    expect(first.transmissions).toMatchObject([{ authorizationId: a.id, destination: PHR, status: 'queued' }]);
    const mail = await simpleParser(await t.queue.body(first.transmissions[0]!.queueId!));
    expect(mail.text?.trim()).toBe('This message was sent by Example Hospital at the request of Jane Doe.');
    expect(mail.attachments.map((p) => p.filename)).toEqual(['result.pdf', 'request.txt', 'metadata.txt']);
    expect(mail.attachments[1]!.content.toString()).toContain(`Destination: ${PHR}\r\n`);

    const second = (await client.request('POST', '/v1/patients/MRN-1/records', { key: token, json: push({ assigningAuthority: '1.2.3', trigger: 'manual' }) })).body as Pushed;
    expect(second.sha256).toBe(first.sha256);
    expect(second.transmissions).toMatchObject([{ status: 'skipped', reason: 'duplicate' }]);
    expect(second.transmissions[0]!.queueId).toBeUndefined();

    const history = (await client.request('GET', '/v1/patients/MRN-1/transmissions?assigningAuthority=1.2.3&limit=1', { key: token })).body as {
      transmissions: { status: string; trigger: string; delivery: { state: string } | null }[];
      nextCursor: string;
    };
    expect(history.transmissions).toMatchObject([{ status: 'queued', trigger: 'new-result', delivery: { state: 'queued' } }]);
    const rest = (await client.request('GET', `/v1/patients/MRN-1/transmissions?assigningAuthority=1.2.3&after=${history.nextCursor}`, { key: token })).body;
    expect(rest).toMatchObject({ transmissions: [{ status: 'skipped', trigger: 'manual', delivery: null }], nextCursor: null });
  });

  it('an expired authorization shows as expired and sends nothing: 409', async () => {
    let clock = Date.now();
    const { client, t } = await server.start({ dns, now: () => clock });
    const token = (await t.key()).token;
    const expiresAt = new Date(clock + 60_000).toISOString();
    const a = (await client.request('POST', '/v1/patients/MRN-3/authorizations', { key: token, json: authorization({ expiresAt }) })).body as AuthorizationJson;
    expect(a).toMatchObject({ status: 'active', expiresAt });
    clock += 60_000;
    expect((await client.request('GET', `/v1/patients/MRN-3/authorizations/${a.id}`, { key: token })).body).toMatchObject({ status: 'expired' });
    expect((await client.request('POST', '/v1/patients/MRN-3/records', { key: token, json: push() })).body).toMatchObject({ status: 409, code: 'HISP_TRANSMIT_NOT_AUTHORIZED' });
    expect(t.db.sqlite.prepare('SELECT count(*) FROM messages').pluck().get()).toBe(0);
  });

  it('the history shows a failed delivery with its reason and the reply', async () => {
    const { client, t, token } = await start();
    await client.request('POST', '/v1/patients/MRN-1/authorizations', { key: token, json: authorization() });
    const pushed = (await client.request('POST', '/v1/patients/MRN-1/records', { key: token, json: push() })).body as Pushed;
    // The relay's answer for it: refused at the destination (what a worker records, gateway/queue/).
    const [delivery] = await t.queue.lease(10, 'w1', 60_000);
    expect(delivery?.queueId).toBe(pushed.transmissions[0]!.queueId);
    await t.queue.fail(delivery!, { code: 554, enhanced: '5.7.5', text: 'no certificate [HISP_DISCOVERY_NO_CERT]', reason: 'no-certificate' });
    const history = (await client.request('GET', '/v1/patients/MRN-1/transmissions', { key: token })).body as { transmissions: { id: string; status: string; delivery: unknown }[] };
    expect(history.transmissions).toMatchObject([
      { id: pushed.transmissions[0]!.id, status: 'queued', delivery: { state: 'failed', reason: 'no-certificate', detail: '554 5.7.5 no certificate [HISP_DISCOVERY_NO_CERT]' } },
    ]);
  });

  it('a document whose delivery failed (no certificate) goes again on its next push; the history shows both, the old one resentBy the new', async () => {
    const { client, t, token } = await start();
    await client.request('POST', '/v1/patients/MRN-1/authorizations', { key: token, json: authorization() });
    const first = ((await client.request('POST', '/v1/patients/MRN-1/records', { key: token, json: push() })).body as Pushed).transmissions[0]!;
    const [delivery] = await t.queue.lease(10, 'w1', 60_000);
    await t.queue.fail(delivery!, { code: 554, enhanced: '5.7.5', text: 'no certificate [HISP_DISCOVERY_NO_CERT]', reason: 'no-certificate' });
    const again = await client.request('POST', '/v1/patients/MRN-1/records', { key: token, json: push() });
    expect(again.status).toBe(202);
    const second = (again.body as Pushed).transmissions[0]!;
    expect(second).toMatchObject({ status: 'queued', destination: PHR });
    expect(second.queueId).not.toBe(first.queueId);
    // On its way now: the same document once more is a duplicate.
    const third = ((await client.request('POST', '/v1/patients/MRN-1/records', { key: token, json: push() })).body as Pushed).transmissions[0]!;
    expect(third).toMatchObject({ status: 'skipped', reason: 'duplicate' });
    const history = (await client.request('GET', '/v1/patients/MRN-1/transmissions', { key: token })).body as { transmissions: Record<string, unknown>[] };
    expect(history.transmissions).toMatchObject([
      { id: first.id, status: 'queued', queueId: first.queueId, delivery: { state: 'failed', reason: 'no-certificate' }, resentBy: second.id },
      { id: second.id, status: 'queued', queueId: second.queueId, delivery: { state: 'queued' } },
      { id: third.id, status: 'skipped', reason: 'duplicate', delivery: null },
    ]);
    expect(history.transmissions.slice(1).map((x) => 'resentBy' in x)).toEqual([false, false]);
    expect(t.db.sqlite.prepare('SELECT count(*) FROM messages').pluck().get()).toBe(2);
  });

  it('humanReadable false: a C-CDA goes without its rendering; true (the default) with it', async () => {
    const { client, t, token } = await start();
    const ccda = { filename: 'summary.xml', contentType: 'application/xml', kind: 'ccda', content: Buffer.from(cdaDocument({ sections: [section('Discharged home.')] })).toString('base64') };
    const attachments = async (patient: string, destination: Record<string, unknown>) => {
      await client.request('POST', `/v1/patients/${patient}/authorizations`, { key: token, json: authorization({ destinations: [destination] }) });
      const pushed = (await client.request('POST', `/v1/patients/${patient}/records`, { key: token, json: push({ document: ccda }) })).body as Pushed;
      const mail = await simpleParser(await t.queue.body(pushed.transmissions[0]!.queueId!));
      return mail.attachments.map((p) => [p.filename, p.contentType]);
    };
    expect(await attachments('MRN-1', { address: PHR, package: 'mime', humanReadable: false })).toEqual([
      ['summary.xml', 'application/xml'],
      ['metadata.txt', 'text/plain'],
    ]);
    expect(await attachments('MRN-2', { address: PHR, package: 'mime' })).toEqual([
      ['summary.xml', 'application/xml'],
      ['summary.html', 'text/html'],
      ['metadata.txt', 'text/plain'],
    ]);
  });

  it('a once-authorization under two pushes of different documents at once: one goes, the other is skipped: fulfilled', async () => {
    const { client, t, token } = await start();
    await client.request('POST', '/v1/patients/MRN-1/authorizations', { key: token, json: authorization({ frequency: 'once' }) });
    const both = await Promise.all(['result 1', 'result 2'].map((text) => client.request('POST', '/v1/patients/MRN-1/records', { key: token, json: push({ document: document(text) }) })));
    expect(both.map((r) => r.status)).toEqual([202, 202]);
    expect(both.map((r) => (r.body as Pushed).transmissions.map((x) => `${x.status}:${x.reason ?? ''}`)[0]).sort()).toEqual(['queued:', 'skipped:fulfilled']);
    expect(t.db.sqlite.prepare('SELECT count(*) FROM messages').pluck().get()).toBe(1);
  });

  it('409 HISP_TRANSMIT_REVOKED when one authorization is revoked and the other expired: the latest revokedAt and expiredAt', async () => {
    let clock = Date.UTC(2026, 11, 7, 12);
    const { client, t } = await server.start({ dns, now: () => clock });
    const token = (await t.key()).token;
    const expiresAt = new Date(clock + 60_000).toISOString();
    const a = (await client.request('POST', '/v1/patients/MRN-1/authorizations', { key: token, json: authorization() })).body as AuthorizationJson;
    await client.request('POST', '/v1/patients/MRN-1/authorizations', { key: token, json: authorization({ expiresAt }) });
    clock += 1000;
    const revoked = (await client.request('DELETE', `/v1/patients/MRN-1/authorizations/${a.id}`, { key: token })).body as AuthorizationJson;
    clock += 60_000;
    const refused = await client.request('POST', '/v1/patients/MRN-1/records', { key: token, json: push() });
    expect(refused.status).toBe(409);
    expect(refused.body).toMatchObject({ code: 'HISP_TRANSMIT_REVOKED', revokedAt: revoked.revokedAt, expiredAt: expiresAt });
    expect(t.db.sqlite.prepare('SELECT count(*) FROM messages').pluck().get()).toBe(0);
  });

  it('409 after revocation with revokedAt; 409 when a once-authorization has sent; 400 for malformed records', async () => {
    const { client, token } = await start();
    const a = (await client.request('POST', '/v1/patients/MRN-1/authorizations', { key: token, json: authorization() })).body as AuthorizationJson;
    const revoked = (await client.request('DELETE', `/v1/patients/MRN-1/authorizations/${a.id}`, { key: token })).body as AuthorizationJson;
    const refused = await client.request('POST', '/v1/patients/MRN-1/records', { key: token, json: push() });
    expect(refused.status).toBe(409);
    expect(refused.body).toMatchObject({ code: 'HISP_TRANSMIT_REVOKED', revokedAt: revoked.revokedAt });

    await client.request('POST', '/v1/patients/MRN-2/authorizations', { key: token, json: authorization({ frequency: 'once' }) });
    expect((await client.request('POST', '/v1/patients/MRN-2/records', { key: token, json: push() })).status).toBe(202);
    expect((await client.request('POST', '/v1/patients/MRN-2/records', { key: token, json: push({ document: document('result 2') }) })).body).toMatchObject({
      status: 409,
      code: 'HISP_TRANSMIT_NOT_AUTHORIZED',
    });

    for (const json of [push({ trigger: 'birthday' }), push({ madeAt: 'yesterday' }), push({ document: { ...document(), content: '***' } }), push({ document: { ...document(), kind: 'xdm' } }), push({ extra: true })]) {
      const r = await client.request('POST', '/v1/patients/MRN-2/records', { key: token, json });
      expect([r.status, (r.body as { code: string }).code], JSON.stringify(json).slice(0, 120)).toEqual([400, 'HISP_API_INVALID_REQUEST']);
    }
  });
});
