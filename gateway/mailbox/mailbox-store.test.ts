import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { composeMessage } from '../mime/message-composer.js';
import { HispDatabase } from '../store/database.js';
import { readMailboxMessage, readMailboxPart, type ReceivedDocumentTools } from './mailbox-message.js';
import { MailboxStore, type MailboxDelivery } from './mailbox-store.js';

let dir: string;
let db: HispDatabase;
let clock: number;
let store: MailboxStore;
const T0 = Date.UTC(2026, 11, 7, 12);

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'hisp-mailbox-'));
  db = HispDatabase.open({ dataDir: dir });
  clock = T0;
  store = new MailboxStore(db, () => clock);
});

afterEach(async () => {
  await db.close();
  rmSync(dir, { recursive: true, force: true });
});

const security = {
  sender: 'doctor@hospital.example',
  signers: [{ subject: 'CN=doctor@hospital.example', sha256: 'ab'.repeat(32), binding: 'address', anchor: { subject: 'CN=Hospital CA', sha256: 'cd'.repeat(32), bundle: null } }],
  algorithms: { cipher: 'aes256-cbc', keyTransport: 'rsa-oaep-sha256', digest: 'sha256' },
};

function item(n: number, extra: Partial<MailboxDelivery> = {}): MailboxDelivery {
  return {
    deliveryId: `d${n}`,
    mailbox: 'Patient@PHR.example',
    queueId: `q${n}`,
    mailFrom: 'doctor@hospital.example',
    messageId: `m${n}@hospital.example`,
    receivedAt: new Date(T0 + n),
    message: Buffer.from(`From: doctor@hospital.example\r\nTo: patient@phr.example\r\nSubject: n${n}\r\n\r\nhello ${n}\r\n`),
    security,
    dispatchedRequested: true,
    ...extra,
  };
}

describe('MailboxStore', () => {
  it('delivers once per delivery id, as a file of its own, durable before it answers', async () => {
    const first = await store.deliver(item(1));
    const again = await store.deliver(item(1, { message: Buffer.from('another copy') }));
    expect(again.id).toBe(first.id);
    expect(readdirSync(join(dir, 'mailboxes'))).toEqual([`${first.id}.eml`]);
    expect(readFileSync(store.fileOf(first.id)!, 'utf8')).toContain('hello 1');
    expect(first).toMatchObject({ mailbox: 'patient@phr.example', queueId: 'q1', ackedAt: null, dispatchedRequested: true });
  });

  it('lists a mailbox after a cursor, waiting ones by default; acknowledging is idempotent', async () => {
    for (let n = 1; n <= 5; n++) await store.deliver(item(n));
    await store.deliver(item(6, { mailbox: 'other@phr.example' }));
    const page = store.list('patient@phr.example', 0, 2);
    expect(page.map((e) => e.queueId)).toEqual(['q1', 'q2']);
    expect(store.list('PATIENT@phr.example', page[1]!.seq, 10).map((e) => e.queueId)).toEqual(['q3', 'q4', 'q5']);
    clock += 1000;
    expect(await store.acknowledge(page[0]!.id, 'key_1')).toBe(true);
    expect(await store.acknowledge(page[0]!.id, 'key_2')).toBe(false);
    expect(store.get(page[0]!.id)).toMatchObject({ ackedAt: new Date(T0 + 1000), ackedBy: 'key_1' });
    expect(store.list('patient@phr.example', 0, 10).map((e) => e.queueId)).toEqual(['q2', 'q3', 'q4', 'q5']);
    expect(store.list('patient@phr.example', 0, 10, 'acknowledged').map((e) => e.queueId)).toEqual(['q1']);
    expect(store.list('patient@phr.example', 0, 10, 'all')).toHaveLength(5);
  });

  it('sweep removes a file that no entry names (a crash between the write and the commit), and nothing else', async () => {
    const kept = await store.deliver(item(1));
    writeFileSync(join(dir, 'mailboxes', 'msg_stray.eml'), 'x');
    expect(await store.sweep()).toBe(1);
    expect(existsSync(store.fileOf(kept.id)!)).toBe(true);
  });
});

describe('readMailboxMessage', () => {
  const tools: ReceivedDocumentTools = {
    summarizeCcda: (bytes) => (bytes.includes('ClinicalDocument') ? { title: 'Summary' } : undefined),
    describeXdm: (bytes) => Promise.resolve(bytes.subarray(0, 2).toString() === 'PK' ? { submissionSet: { id: 's' }, documents: [{ path: 'IHE_XDM/SUBSET01/DOC0001.XML' }] } : undefined),
  };

  it('lists the parts with their sizes and SHA-256, the security facts, and the C-CDA and XDM found among them', async () => {
    const chunks: Buffer[] = [];
    const ccda = Buffer.from('<ClinicalDocument xmlns="urn:hl7-org:v3"/>');
    const zip = Buffer.from('PK\u0003\u0004rest', 'latin1');
    for await (const c of composeMessage({
      from: 'doctor@hospital.example',
      to: ['patient@phr.example'],
      cc: [],
      subject: 'Records',
      text: 'hello',
      documents: [
        { filename: 'ccda.xml', contentType: 'application/xml', kind: 'ccda', content: ccda },
        { filename: 'XDM.zip', contentType: 'application/zip', kind: 'xdm', content: zip },
      ],
      messageId: '<m@h>',
      date: new Date(T0),
      finalDelivery: true,
    }) as AsyncIterable<Buffer>)
      chunks.push(c);
    const entry = await store.deliver(item(1, { message: Buffer.concat([Buffer.from('Authentication-Results: hisp.phr.example; smime=pass\r\n'), ...chunks]) }));
    const view = await readMailboxMessage(entry, store.fileOf(entry.id)!, tools);
    expect(view).toMatchObject({
      from: 'doctor@hospital.example',
      to: ['patient@phr.example'],
      subject: 'Records XDM/1.0/DDM',
      security: { signer: 'CN=doctor@hospital.example', fingerprint: 'ab'.repeat(32), binding: 'address', anchor: { subject: 'CN=Hospital CA' }, algorithms: { cipher: 'aes256-cbc' } },
      ccda: { title: 'Summary' },
      xdm: { documents: [{ path: 'IHE_XDM/SUBSET01/DOC0001.XML' }] },
    });
    expect(view.parts.map((p) => [p.id, p.contentType, p.filename, p.size])).toEqual([
      ['text', 'text/plain', null, 5],
      ['p1', 'application/xml', 'ccda.xml', ccda.length],
      ['p2', 'application/zip', 'XDM.zip', zip.length],
    ]);
    const p1 = await readMailboxPart(store.fileOf(entry.id)!, 'p1');
    expect(p1.bytes.equals(ccda)).toBe(true);
    await expect(readMailboxPart(store.fileOf(entry.id)!, 'p9')).rejects.toMatchObject({ code: 'HISP_NOT_FOUND' });
  });
});
