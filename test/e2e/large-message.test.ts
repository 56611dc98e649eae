/**
 * Issue 14, item 6: a large message goes to disk as it arrives (both ports), and is delivered
 * whole and unchanged: through the inbound port (the received file becomes the stored body and is
 * unwrapped from its file) and through the submission port (the file copied behind hisp's trace
 * fields). Nothing is left in the folder of messages being received.
 */
import { mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadCredential } from '../../gateway/agent/key-material.js';
import { wrapMessage } from '../../gateway/agent/wrap-message.js';
import { createLogger } from '../../gateway/core/logger.js';
import { HispGateway } from '../../gateway/flows/hisp-gateway.js';
import { EDGE_PASSWORD, EDGE_USER, gatewayConfigObject, makeCa, makeDomainCredential, maildirMessages, toConfig, waitFor } from '../helpers/direct-network.js';
import { authPlain, rawSmtp } from '../helpers/raw-smtp.js';

let dir: string;
let gw: HispGateway;
let wrap: (inner: Buffer) => Buffer;

beforeAll(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'hisp-large-'));
  const caA = await makeCa(dir, 'Large Peer CA');
  const caB = await makeCa(dir, 'Large Gateway CA');
  const a = await makeDomainCredential(dir, caA, 'a.test');
  const b = await makeDomainCredential(dir, caB, 'b.test');
  const raw = await gatewayConfigObject(
    { domain: 'b.test', credential: b, anchors: [caA.certFile, caB.certFile], submissionPort: 0, inboundPort: 0, remotePorts: {}, dataDir: path.join(dir, 'data') },
    '127.0.0.1:9',
  );
  gw = await HispGateway.start({ config: toConfig(raw, dir), logger: createLogger({ level: 'silent' }), pollIntervalMs: 50, closeTimeoutMs: 500, jitter: (ms) => ms });
  const signer = loadCredential(a.keyFile, a.certFile);
  const recipient = loadCredential(b.keyFile, b.certFile).certificate;
  wrap = (inner) => wrapMessage(inner, { signers: [signer], recipients: [recipient], messageIdDomain: 'hisp.a.test' }).message;
}, 60_000);

afterAll(async () => {
  await gw?.stop();
});

function clinical(tag: string, from: string, bytes: number): Buffer {
  const head = `From: ${from}\r\nTo: patient@b.test\r\nSubject: ${tag}\r\nMessage-ID: <${tag}@test>\r\nDate: Mon, 07 Dec 2026 10:00:00 +0000\r\n\r\n`;
  const line = 'A line of a large clinical document, such as a C-CDA with its attachments.\r\n';
  return Buffer.from(head + line.repeat(Math.ceil(bytes / line.length)));
}

async function send(port: number, from: string, message: Buffer, auth = false): Promise<string> {
  const c = await rawSmtp(port);
  try {
    await c.read();
    await c.send('EHLO sender.test\r\n');
    if (auth) {
      await c.startTls('sender.test');
      expect(await c.send(`AUTH PLAIN ${authPlain(EDGE_USER, EDGE_PASSWORD)}\r\n`)).toMatch(/^235 /);
    }
    expect(await c.send(`MAIL FROM:<${from}>\r\n`)).toMatch(/^250 /);
    expect(await c.send('RCPT TO:<patient@b.test>\r\n')).toMatch(/^250 /);
    expect(await c.send('DATA\r\n')).toMatch(/^354 /);
    return await c.send(Buffer.concat([message, Buffer.from('.\r\n')]));
  } finally {
    c.close();
  }
}

const inbox = () => path.join(dir, 'data', 'maildir', 'patient@b.test');
const body = (m: Buffer) => m.subarray(m.indexOf('\r\n\r\n') + 4);

describe('large messages (issue 14, item 6)', () => {
  it('a 3 MB message from a peer HISP is stored from its file, unwrapped from it and delivered unchanged', async () => {
    const inner = clinical('large-inbound', 'provider@a.test', 3 * 1024 * 1024);
    const reply = await send(gw.inboundPort!, 'provider@a.test', wrap(inner));
    expect(reply).toMatch(/^250 2\.0\.0 Ok: queued as /);
    const delivered = await waitFor('the delivery', () => maildirMessages(inbox()).find((m) => m.includes('Subject: large-inbound')), 60_000);
    expect(body(delivered).equals(body(inner))).toBe(true);
    expect(readdirSync(path.join(dir, 'data', 'incoming'))).toEqual([]);
  });

  it('a 2 MB submission is stored behind the trace fields from its file and delivered unchanged', async () => {
    const inner = clinical('large-submitted', 'provider@b.test', 2 * 1024 * 1024);
    expect(await send(gw.submissionPort!, 'provider@b.test', inner, true)).toMatch(/^250 2\.0\.0 Ok: queued as /);
    const delivered = await waitFor('the delivery', () => maildirMessages(inbox()).find((m) => m.includes('Subject: large-submitted')), 60_000);
    expect(body(delivered).equals(body(inner))).toBe(true);
    expect(delivered.toString('latin1')).toMatch(/Received: from sender\.test/);
    expect(readdirSync(path.join(dir, 'data', 'incoming'))).toEqual([]);
  });
});
