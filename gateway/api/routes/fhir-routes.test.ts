// The FHIR routes in process (issue 16, "FHIR"): an ITI-65 Provide Document Bundle → the
// transaction-response and one queued Direct message per intended recipient, each a Task; every
// malformed Bundle its OperationOutcome (never a problem+json, never a 500); keys out of scope 403;
// received messages as Communications with their parts' urls. Responses are checked against
// /openapi.json by the ApiClient.
import { documentTools } from '../../documents/document-tools.js';
import { simpleParser } from 'mailparser';
import { describe, expect, it } from 'vitest';
import { apiServerPerTest, TEST_DOMAIN, type ApiTestContext } from '../../../test/helpers/api-context.js';
import type { ApiClient } from '../../../test/helpers/api-client.js';
import { cdaDocument, section } from '../../../test/helpers/ccda-documents.js';
import { CCDA_FORMAT, mhdBundle, type TestBundle } from '../../../test/helpers/mhd-bundles.js';
import { MailboxStore } from '../../mailbox/mailbox-store.js';

const server = apiServerPerTest();
const FROM = `doctor@${TEST_DOMAIN}`;
const CCDA = Buffer.from(cdaDocument({ title: 'Discharge summary for Ada', sections: [section('<paragraph>Allergies: none known.</paragraph>', 'Allergies')] }));
const FHIR = 'application/fhir+json';

interface Outcome {
  resourceType: 'OperationOutcome';
  issue: { severity: string; code: string; diagnostics: string; expression?: string[]; details: { coding: { code: string }[] } }[];
}
interface SearchSet<T> {
  resourceType: 'Bundle';
  type: string;
  total: number;
  entry: { fullUrl: string; resource: T }[];
}
interface TaskJson {
  id: string;
  status: string;
  businessStatus: { coding: { code: string }[] };
  focus: { reference: string };
  for?: { reference: string };
  owner: { display: string };
  input: { valueReference: { reference: string } }[];
}

const post = (client: ApiClient, key: string, body: unknown, query = '') => client.request('POST', `/fhir/Bundle${query}`, { key, body: JSON.stringify(body), contentType: FHIR });

async function start(): Promise<{ client: ApiClient; t: ApiTestContext; token: string }> {
  const { client, t } = await server.start();
  return { client, t, token: (await t.key()).token };
}

const valid = () => mhdBundle({ recipients: ['patient@phr.example', 'nurse@clinic.example'], documents: [{ content: CCDA, format: CCDA_FORMAT, title: 'discharge.xml' }], patient: 'Patient/ada-1' });

describe('POST /fhir/Bundle (ITI-65)', () => {
  it('200 transaction-response; one queued message per recipient (C-CDA, its rendering, XDM); each a Task', async () => {
    const { client, t, token } = await start();
    const b = valid();
    const r = await post(client, token, b);
    expect(r.status, r.text).toBe(200);
    expect(r.headers['content-type']).toMatch(/^application\/fhir\+json/);
    const response = r.body as { type: string; entry: { response: { status: string; location: string } }[] };
    expect(response.type).toBe('transaction-response');
    expect(response.entry).toHaveLength(b.entry.length);
    expect(response.entry.every((e) => e.response.status === '201 Created')).toBe(true);
    const list = response.entry[0]!.response.location;
    expect(list).toMatch(/^List\/[0-9a-f]{24}$/);
    const docRef = response.entry[b.entry.findIndex((e) => e.resource.resourceType === 'DocumentReference')]!.response.location;
    expect(docRef).toBe(`DocumentReference/${list.slice(5)}-1`);

    const rows = t.db.sqlite.prepare('SELECT queue_id, rcpt_to, mail_from FROM messages ORDER BY queue_id').all() as { queue_id: string; rcpt_to: string; mail_from: string }[];
    expect(rows.map((m) => [JSON.parse(m.rcpt_to) as string[], m.mail_from])).toEqual([
      [['patient@phr.example'], FROM],
      [['nurse@clinic.example'], FROM],
    ]);
    const mail = await simpleParser(await t.queue.body(rows[0]!.queue_id));
    expect(mail.subject).toContain('Discharge summary');
    // The dispatched MDN is asked for: it is what completes a Task (Direct IG for Delivery Notification §3).
    expect(mail.headers.get('disposition-notification-options')).toContain('X-DIRECT-FINAL-DESTINATION-DELIVERY');
    expect(mail.attachments.map((a) => [a.filename, a.contentType])).toEqual([
      ['discharge.xml', 'application/xml'],
      ['discharge.html', 'text/html'],
      ['XDM.zip', 'application/zip'],
    ]);
    expect(mail.attachments[0]!.content.equals(CCDA)).toBe(true);

    const tasks = await client.request('GET', `/fhir/Task?focus=${encodeURIComponent(list)}`, { key: token });
    expect(tasks.status).toBe(200);
    const set = tasks.body as SearchSet<TaskJson>;
    expect(set.type).toBe('searchset');
    expect(set.entry.map((e) => [e.resource.id, e.resource.owner.display, e.resource.status, e.resource.businessStatus.coding[0]!.code])).toEqual([
      [rows[0]!.queue_id, 'patient@phr.example', 'requested', 'queued'],
      [rows[1]!.queue_id, 'nurse@clinic.example', 'requested', 'queued'],
    ]);
    const one = (await client.request('GET', `/fhir/Task/${rows[0]!.queue_id}`, { key: token })).body as TaskJson;
    expect(one).toMatchObject({ focus: { reference: list }, for: { reference: 'Patient/ada-1' }, input: [{ valueReference: { reference: docRef } }] });
    // By a DocumentReference of the submission, too; another focus lists nothing.
    expect(((await client.request('GET', `/fhir/Task?focus=${encodeURIComponent(docRef)}`, { key: token })).body as SearchSet<TaskJson>).total).toBe(2);
    expect(((await client.request('GET', '/fhir/Task?focus=List/000000000000000000000000', { key: token })).body as SearchSet<TaskJson>).total).toBe(0);
  });

  it('a Task is stored in its message’s commit: when it cannot be, neither is the message', async () => {
    const { client, t, token } = await start();
    t.db.sqlite.exec("CREATE TRIGGER refuse_tasks BEFORE INSERT ON fhir_tasks BEGIN SELECT RAISE(ABORT, 'refused'); END");
    const r = await post(client, token, valid());
    expect(r.status).toBe(500);
    expect((r.body as Outcome).resourceType).toBe('OperationOutcome');
    expect(t.db.sqlite.prepare('SELECT count(*) FROM messages').pluck().get()).toBe(0);
  });

  it('?package=mime sends the documents attached only; POST /fhir (transaction at the base) is the same; application/json is taken too', async () => {
    const { client, t, token } = await start();
    expect((await post(client, token, mhdBundle(), '?package=mime')).status).toBe(200);
    expect((await client.request('POST', '/fhir', { key: token, body: JSON.stringify(mhdBundle()), contentType: FHIR })).status).toBe(200);
    expect((await client.request('POST', '/fhir/Bundle', { key: token, json: mhdBundle() })).status).toBe(200);
    const ids = t.db.sqlite.prepare('SELECT queue_id FROM messages ORDER BY queue_id').pluck().all() as string[];
    expect(ids).toHaveLength(3);
    const mime = await simpleParser(await t.queue.body(ids[0]!));
    expect(mime.attachments.map((a) => a.filename)).toEqual(['note.txt']);
    expect((await post(client, token, mhdBundle(), '?finalDelivery=false')).status).toBe(200);
    const last = t.db.sqlite.prepare('SELECT queue_id FROM messages ORDER BY queue_id DESC').pluck().get() as string;
    expect((await simpleParser(await t.queue.body(last))).headers.has('disposition-notification-options')).toBe(false);
    expect((await post(client, token, mhdBundle(), '?package=zip')).status).toBe(400);
  });

  it('a Patient subject goes along as the Direct Context (X-Direct-Context, metadata.txt)', async () => {
    const { client, t, token } = await start();
    const b = mhdBundle({ patientResource: { identifier: [{ system: 'urn:oid:2.16.840.1.113883.19.5', value: 'MRN-42' }], name: [{ family: 'Jones', given: ['Isabella'] }], birthDate: '1970-01-31' } });
    expect((await post(client, token, b)).status).toBe(200);
    const mail = await simpleParser(await t.queue.body(t.db.sqlite.prepare('SELECT queue_id FROM messages').pluck().get() as string));
    expect(mail.headers.has('x-direct-context')).toBe(true);
    const metadata = mail.attachments.find((a) => a.filename === 'metadata.txt')!.content.toString('utf8');
    expect(metadata).toContain('patient-id: 2.16.840.1.113883.19.5:MRN-42');
    expect(metadata).toMatch(/patient: .*givenName=Isabella.*surname=Jones.*dateOfBirth=1970-01-31/s);
    // The XDM package is built from the same metadata: its SubmissionSet names the patient as CX.
    const xdm = await documentTools().describeXdm(mail.attachments.find((a) => a.filename === 'XDM.zip')!.content);
    expect(xdm?.submissionSet).toMatchObject({ patientId: 'MRN-42^^^&2.16.840.1.113883.19.5&ISO' });
  });

  it('the XDM package’s DocumentEntry is the DocumentReference’s: type, class, format, confidentiality, title, creationTime, language', async () => {
    const { client, t, token } = await start();
    const b = mhdBundle({
      documents: [
        {
          content: CCDA,
          format: CCDA_FORMAT,
          title: 'discharge.xml',
          attachment: { language: 'en-US', creation: '2024-05-01' },
          reference: {
            type: { coding: [{ system: 'http://loinc.org', code: '18842-5', display: 'Discharge summary' }] },
            category: [{ coding: [{ system: 'http://loinc.org', code: '11490-0' }] }],
            securityLabel: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-Confidentiality', code: 'N' }] }],
          },
        },
      ],
    });
    expect((await post(client, token, b, '?package=xdm')).status).toBe(200);
    const mail = await simpleParser(await t.queue.body(t.db.sqlite.prepare('SELECT queue_id FROM messages').pluck().get() as string));
    const xdm = await documentTools().describeXdm(mail.attachments.find((a) => a.filename === 'XDM.zip')!.content);
    expect(xdm?.documents[0]?.entry).toMatchObject({
      title: 'discharge.xml',
      creationTime: '20240501',
      languageCode: 'en-US',
      typeCode: { code: '18842-5', codingScheme: '2.16.840.1.113883.6.1', displayName: 'Discharge summary' },
      classCode: { code: '11490-0', codingScheme: '2.16.840.1.113883.6.1' },
      formatCode: { code: CCDA_FORMAT, codingScheme: '1.3.6.1.4.1.19376.1.2.3' },
      confidentialityCodes: [{ code: 'N', codingScheme: '2.16.840.1.113883.5.25' }],
      // No facility type nor practice setting was given: limited metadata, nothing made up.
      healthcareFacilityTypeCode: null,
      practiceSettingCode: null,
      limitedMetadata: true,
    });
  });

  it('the sender is the key’s one address when the SubmissionSet names no author; none and a key of several addresses is 422', async () => {
    const { client, t, token } = await start();
    const single = (await t.key({ sendAs: [`nurse@${TEST_DOMAIN}`] })).token;
    expect((await post(client, single, mhdBundle({ author: null }))).status).toBe(200);
    expect(t.db.sqlite.prepare('SELECT mail_from FROM messages').pluck().get()).toBe(`nurse@${TEST_DOMAIN}`);
    const r = await post(client, token, mhdBundle({ author: null }));
    expect(r.status).toBe(422);
    expect((r.body as Outcome).issue[0]!.expression).toEqual(['List.source']);
  });

  it('every malformed Bundle is an OperationOutcome naming the entry and the rule, and queues nothing', async () => {
    const { client, t, token } = await start();
    const broken = (edit: (b: TestBundle) => void) => {
      const b = mhdBundle();
      edit(b);
      return b;
    };
    const cases: [string | Buffer, string, number, string, RegExp][] = [
      [JSON.stringify(broken((b) => (b.type = 'batch'))), FHIR, 422, 'Bundle.type', /transaction/],
      [JSON.stringify(broken((b) => (b.entry[b.entry.length - 1]!.resource.data = '%%%'))), FHIR, 422, `Bundle.entry[4].resource.data`, /base64/],
      [JSON.stringify(broken((b) => ((b.entry[3]!.resource.content as { attachment: { size: number } }[])[0]!.attachment.size = 1))), FHIR, 422, 'Bundle.entry[3].resource.content[0].attachment.size', /octets/],
      [JSON.stringify(broken((b) => (b.entry[3]!.resource.type = { text: 'Discharge summary' }))), FHIR, 422, 'Bundle.entry[3].resource.type.coding', /system and a code/],
      [JSON.stringify({ resourceType: 'Patient' }), FHIR, 422, 'Bundle', /Bundle/],
      ['{"resourceType": "Bundle",', FHIR, 400, '', /JSON/],
      ['', FHIR, 400, '', /empty/],
      ['{"__proto__": {"x": 1}}', FHIR, 400, '', /JSON/],
    ];
    for (const [body, type, status, expression, message] of cases) {
      const r = await client.request('POST', '/fhir/Bundle', { key: token, body, contentType: type });
      const outcome = r.body as Outcome;
      expect({ status: r.status, type: r.headers['content-type']?.split(';')[0], resourceType: outcome.resourceType }).toEqual({ status, type: FHIR, resourceType: 'OperationOutcome' });
      const issue = outcome.issue.find((i) => expression === '' || i.expression?.includes(expression));
      expect(issue, JSON.stringify(outcome)).toBeDefined();
      expect(issue!.diagnostics).toMatch(message);
      expect(issue!.code).toBe('invalid');
    }
    // A C-CDA that is no CDA: the send service's refusal, as an OperationOutcome.
    const notCda = await post(client, token, mhdBundle({ documents: [{ content: Buffer.from('<note/>'), format: CCDA_FORMAT }] }));
    expect(notCda.status).toBe(422);
    expect((notCda.body as Outcome).issue[0]!.details.coding[0]!.code).toBe('HISP_CDA_INVALID');
    const text = await client.request('POST', '/fhir/Bundle', { key: token, body: 'x', contentType: 'text/plain' });
    expect([text.status, (text.body as Outcome).issue[0]!.code]).toEqual([415, 'not-supported']);
    expect(t.db.sqlite.prepare('SELECT count(*) FROM messages').pluck().get()).toBe(0);
  });

  it('keys: none 401, another action or sender 403, another key’s Task 404, all as OperationOutcomes', async () => {
    const { client, t, token } = await start();
    const none = await client.request('POST', '/fhir/Bundle', { body: JSON.stringify(mhdBundle()), contentType: FHIR });
    expect([none.status, (none.body as Outcome).issue[0]!.code]).toEqual([401, 'login']);
    const readOnly = (await t.key({ actions: ['status'] })).token;
    const r1 = await post(client, readOnly, mhdBundle());
    expect([r1.status, (r1.body as Outcome).issue[0]!.code]).toEqual([403, 'forbidden']);
    const narrow = (await t.key({ actions: ['send', 'status'], sendAs: [`nurse@${TEST_DOMAIN}`] })).token;
    const r2 = await post(client, narrow, mhdBundle());
    expect([r2.status, (r2.body as Outcome).issue[0]!.details.coding[0]!.code]).toEqual([403, 'HISP_API_FORBIDDEN']);
    expect(t.db.sqlite.prepare('SELECT count(*) FROM messages').pluck().get()).toBe(0);

    const list = ((await post(client, token, mhdBundle())).body as { entry: { response: { location: string } }[] }).entry[0]!.response.location;
    const id = t.db.sqlite.prepare('SELECT queue_id FROM messages').pluck().get() as string;
    expect((await client.request('GET', `/fhir/Task/${id}`, { key: narrow })).status).toBe(404);
    expect(((await client.request('GET', `/fhir/Task?focus=${list}`, { key: narrow })).body as SearchSet<TaskJson>).total).toBe(0);
    const noStatus = (await t.key({ actions: ['send'] })).token;
    expect((await client.request('GET', `/fhir/Task/${id}`, { key: noStatus })).status).toBe(403);
    const missing = await client.request('GET', '/fhir/Task', { key: token });
    expect([missing.status, missing.headers['content-type']?.split(';')[0]]).toEqual([400, FHIR]);
  });
});

describe('GET /fhir/metadata', () => {
  it('the CapabilityStatement, without a key: the transaction, Task and Communication with their search parameters', async () => {
    const { client } = await server.start();
    const r = await client.request('GET', '/fhir/metadata');
    expect(r.status).toBe(200);
    const c = r.body as { resourceType: string; fhirVersion: string; rest: { interaction: { code: string }[]; resource: { type: string; searchParam: { name: string }[] }[] }[] };
    expect([c.resourceType, c.fhirVersion, c.rest[0]!.interaction.map((i) => i.code)]).toEqual(['CapabilityStatement', '4.0.1', ['transaction']]);
    expect(c.rest[0]!.resource.map((x) => [x.type, x.searchParam.map((p) => p.name)])).toEqual([
      ['Task', ['focus']],
      ['Communication', ['recipient', '_count']],
    ]);
  });
});

describe('GET /fhir/Communication', () => {
  async function deliver(t: ApiTestContext, mailbox: string): Promise<string> {
    const b = 'b-fhir-test';
    const message = Buffer.from(
      `From: doctor@clinic.example\r\nTo: ${mailbox}\r\nSubject: Your records\r\nMessage-ID: <m1@clinic.example>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="${b}"\r\n\r\n` +
        `--${b}\r\nContent-Type: text/plain\r\n\r\nSee attached.\r\n--${b}\r\nContent-Type: application/xml; name="ccda.xml"\r\nContent-Disposition: attachment; filename="ccda.xml"\r\nContent-Transfer-Encoding: base64\r\n\r\n${CCDA.toString('base64')}\r\n--${b}--\r\n`,
    );
    const entry = await new MailboxStore(t.db, t.ctx.now).deliver({
      deliveryId: `d-${mailbox}`,
      mailbox,
      queueId: `q-${mailbox}`,
      mailFrom: 'doctor@clinic.example',
      messageId: 'm1@clinic.example',
      receivedAt: new Date(Date.UTC(2026, 11, 7, 12)),
      message,
      security: { sender: 'doctor@clinic.example', signers: [{ subject: 'CN=d', sha256: 'ab'.repeat(32), binding: 'address', anchor: { subject: 'CN=CA', sha256: 'cd'.repeat(32), bundle: null } }], algorithms: {} },
      dispatchedRequested: false,
    });
    return entry.id;
  }

  it('a mailbox’s messages as Communications: sender, subject, the documents as DocumentReferences with the part urls; by id; scoped', async () => {
    const { client, t, token } = await start();
    const mailbox = `patient@${TEST_DOMAIN}`;
    const id = await deliver(t, mailbox);
    const r = await client.request('GET', `/fhir/Communication?recipient=${mailbox}`, { key: token });
    expect(r.status).toBe(200);
    const set = r.body as SearchSet<Record<string, unknown>>;
    expect(set.total).toBe(1);
    const c = set.entry[0]!.resource as { id: string; status: string; sender: { display: string }; topic: { text: string }; contained: { resourceType: string; content: { attachment: { url: string; title: string } }[] }[]; payload: unknown[] };
    expect(c).toMatchObject({ id: id.replace('msg_', 'msg-'), status: 'in-progress', sender: { display: 'doctor@clinic.example' }, topic: { text: 'Your records' } });
    expect(c.contained.map((d) => [d.resourceType, d.content[0]!.attachment.title])).toEqual([['DocumentReference', 'ccda.xml']]);
    const url = new URL(c.contained[0]!.content[0]!.attachment.url);
    const part = await client.request('GET', url.pathname, { key: token });
    expect(part.status).toBe(200);
    expect(Buffer.from(part.text).equals(CCDA)).toBe(true);

    expect((await client.request('POST', `/v1/mailboxes/${mailbox}/messages/${id}/ack`, { key: token })).status).toBe(200);
    const byId = await client.request('GET', `/fhir/Communication/${c.id}`, { key: token });
    expect(byId.body).toMatchObject({ id: c.id, status: 'completed' });

    const other = (await t.key({ mailboxes: [`other@${TEST_DOMAIN}`] })).token;
    expect((await client.request('GET', `/fhir/Communication/${c.id}`, { key: other })).status).toBe(404);
    expect((await client.request('GET', `/fhir/Communication?recipient=${mailbox}`, { key: other })).status).toBe(403);
    expect((await client.request('GET', '/fhir/Communication/msg-000000000000000000000000', { key: token })).status).toBe(404);
  });
});
