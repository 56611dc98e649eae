// GET /v1/audit: what was done through the API shows in the audit log with who did it (the key),
// filtered and paged; only a key with the `audit` action reads it. Responses are checked against
// /openapi.json by the test client.
import { describe, expect, it } from 'vitest';
import { apiServerPerTest, TEST_DOMAIN } from '../../../test/helpers/api-context.js';
import { AuditLog } from '../../audit/audit-log.js';

const server = apiServerPerTest();

interface Page {
  entries: { seq: number; action: string; actor: { kind: string; id: string }; object: { kind: string; id: string }; outcome: string; prevHash: string; hash: string }[];
  nextCursor: string | null;
}

describe('GET /v1/audit', () => {
  it('lists the entries of a send and of keys, oldest first, filtered and a page at a time, each chained to the one before', async () => {
    const { client, t } = await server.start();
    const sender = await t.key({ actions: ['send'] });
    const compliance = await t.key({ actions: ['audit'], sendAs: [] });
    const sent = await client.request('POST', '/v1/messages', {
      key: sender.token,
      json: { from: `doctor@${TEST_DOMAIN}`, to: ['patient@phr.example', 'nurse@clinic.example'], subject: 'Summary', text: 'See attached.' },
    });
    expect(sent.status).toBe(202);
    const id = (sent.body as { id: string }).id;

    const all = await client.request('GET', '/v1/audit', { key: compliance.token });
    expect(all.status).toBe(200);
    const entries = (all.body as Page).entries;
    expect(entries.map((e) => [e.action, e.actor.kind, e.object.kind])).toEqual([
      ['api-key.created', 'operator', 'api-key'],
      ['api-key.created', 'operator', 'api-key'],
      ['message.queued', 'api-key', 'message'],
      ['message.queued', 'api-key', 'message'],
    ]);
    expect(entries[2]).toMatchObject({ actor: { id: sender.id }, object: { id }, outcome: 'success' });
    for (let i = 1; i < entries.length; i++) expect(entries[i]!.prevHash).toBe(entries[i - 1]!.hash);

    const messages = (await client.request('GET', `/v1/audit?action=message.&objectId=${id}&limit=1`, { key: compliance.token })).body as Page;
    expect(messages.entries.map((e) => e.seq)).toEqual([3]);
    const next = (await client.request('GET', `/v1/audit?action=message.&objectId=${id}&after=${messages.nextCursor}`, { key: compliance.token })).body as Page;
    expect(next).toMatchObject({ entries: [{ seq: 4 }], nextCursor: null });
    expect(((await client.request('GET', `/v1/audit?actor=${sender.id}`, { key: compliance.token })).body as Page).entries).toHaveLength(2);
  });

  it('patientRef with its assigningAuthority: the patient as their authorizations name them, another authority’s patient not', async () => {
    const { client, t } = await server.start();
    const compliance = await t.key({ actions: ['audit'], sendAs: [] });
    const log = new AuditLog(t.db.sqlite);
    const entry = (patientRef: string) => log.append({ actor: { kind: 'system', id: 'hisp' }, action: 'record.received', object: { kind: 'record', id: patientRef }, outcome: 'success', patientRef });
    entry('2.16.840.1.113883.19.5|MRN-7');
    entry('MRN-7');
    const objects = async (q: string) => ((await client.request('GET', `/v1/audit?${q}`, { key: compliance.token })).body as Page).entries.map((e) => e.object.id);
    expect(await objects('patientRef=MRN-7&assigningAuthority=2.16.840.1.113883.19.5')).toEqual(['2.16.840.1.113883.19.5|MRN-7']);
    expect(await objects('patientRef=MRN-7')).toEqual(['MRN-7']);
    expect(await objects('patientRef=MRN-7&assigningAuthority=1.2.3')).toEqual([]);
  });

  it('a key without the audit action is 403; a bad filter is 400', async () => {
    const { client, t } = await server.start();
    const sender = await t.key({ actions: ['send', 'status'] });
    expect((await client.request('GET', '/v1/audit', { key: sender.token })).body).toMatchObject({ status: 403, code: 'HISP_API_FORBIDDEN' });
    const compliance = await t.key({ actions: ['audit'], sendAs: [] });
    for (const q of ['after=x', 'since=yesterday', 'action=DROP TABLE', 'limit=5000', 'other=1', 'assigningAuthority=2.16.840.1.113883.19.5']) {
      expect((await client.request('GET', `/v1/audit?${q}`, { key: compliance.token })).status, q).toBe(400);
    }
  });
});
