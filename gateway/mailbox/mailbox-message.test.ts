// Reading a received message for the PHR: the Direct Context of a message composed with one (the
// X-Direct-Context header naming its metadata.txt part), and what a broken one shows instead.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { composeMessageToBuffer, type ComposeInput } from '../mime/message-composer.js';
import { readMailboxMessage } from './mailbox-message.js';
import type { MailboxEntry } from './mailbox-store.js';

const dir = mkdtempSync(join(tmpdir(), 'hisp-mailbox-message-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const entry: MailboxEntry = {
  id: 'mb_1',
  seq: 1,
  mailbox: 'patient@phr.example',
  queueId: 'q1',
  mailFrom: 'records@hospital.example',
  messageId: null,
  receivedAt: new Date(Date.UTC(2026, 11, 7)),
  size: 0,
  security: {},
  dispatchedRequested: false,
  ackedAt: null,
  ackedBy: null,
};
const tools = { summarizeCcda: () => undefined, describeXdm: () => Promise.resolve(undefined) };
const input: ComposeInput = {
  from: 'records@hospital.example',
  to: ['patient@phr.example'],
  cc: [],
  subject: 'Radiology report',
  text: 'This message was sent by Example Hospital at the request of Jane Doe.',
  documents: [{ filename: 'report.pdf', contentType: 'application/pdf', kind: 'pdf', content: Buffer.from('%PDF-1.4\n') }],
  messageId: '<m1@hospital.example>',
  date: new Date(Date.UTC(2026, 11, 7)),
  finalDelivery: false,
  directContext: {
    version: '1.1',
    id: '0d1b6f5e-3c64-4a42-9f0f-2d0c1f6b7a55',
    patientId: [{ authority: '2.16.840.1.113883.19.5', id: 'MRN-1' }],
    type: { category: 'radiology', action: 'report' },
    purpose: 'treatment',
    patient: { givenName: 'Jane', surname: 'Doe', dateOfBirth: '1970-01-31' },
  },
};

async function read(raw: Buffer) {
  const file = join(dir, `m${Math.random()}.eml`);
  writeFileSync(file, raw);
  return readMailboxMessage(entry, file, tools);
}

describe('readMailboxMessage: Direct Context', () => {
  it('reads the context the header names: a message composed with one carries the header and its metadata.txt part', async () => {
    const raw = await composeMessageToBuffer(input);
    expect(raw.toString('latin1')).toMatch(/^X-Direct-Context: <ctx\.[0-9a-f]{16}@hospital\.example>\r$/m);
    const view = await read(raw);
    expect(view.context).toEqual({ valid: true, ...input.directContext });
    expect(view.parts.map((p) => [p.filename, p.contentType])).toEqual([
      [null, 'text/plain'],
      ['report.pdf', 'application/pdf'],
      ['metadata.txt', 'text/plain'],
    ]);
  });

  it('says why when the named part is missing or malformed; no header, no context', async () => {
    const raw = (await composeMessageToBuffer(input)).toString('latin1');
    const missing = await read(Buffer.from(raw.replace(/^(X-Direct-Context: <)ctx\./m, '$1other.'), 'latin1'));
    expect(missing.context).toMatchObject({ valid: false, reason: expect.stringMatching(/no part has the Content-ID/) as unknown });
    const malformed = await read(Buffer.from(raw.replace('purpose: treatment', 'purpose: curiosity'), 'latin1'));
    expect(malformed.context).toMatchObject({ valid: false, reason: expect.stringMatching(/purpose/) as unknown });
    const none = await read(await composeMessageToBuffer({ ...input, directContext: undefined }));
    expect(none.context).toBeUndefined();
  });
});
