/**
 * The receive side of two hisp gateways on loopback, over a real DNS server (knotd), proving issue 5:
 *
 * - partial trust: one message To a trusted and Cc an untrusted recipient: one delivered, one DSN;
 * - quarantine: unencrypted, untrusted, undecryptable, unsigned, tampered and malformed-CMS messages
 *   are acknowledged (250), not delivered, get no MDN, and are listed with their reason by
 *   `hisp quarantine` (the built CLI, on the running gateway's database);
 * - de-duplication: a sender's retry after a lost 250 is acknowledged and not delivered again;
 * - key roll-over: a message encrypted to a retired certificate is still decrypted, and the MDN is
 *   signed with the active one;
 * - bad input on the inbound port: each refusal with its reply, nothing stored for what was refused.
 *
 * Domains: a.test and b.test (trusted CA), u.test (untrusted CA; published in DNS, no gateway).
 * Gateways: a (a.test), b (b.test, active credential + a retired older one) and `strict`, a second
 * b.test gateway on its own ports and data folder (catchAll off, a 10,000-byte inbound limit) for
 * the bad-input test, so that its queue holds only what that test sent.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_CIPHER, DEFAULT_KEY_TRANSPORT } from '../../gateway/agent/algorithms.js';
import { createEnvelope } from '../../gateway/agent/create-envelope.js';
import { loadCredential, type PrivateCredential } from '../../gateway/agent/key-material.js';
import { decodeBase64, MimeEntity } from '../../gateway/mime/mime-entity.js';
import { openEnvelope } from '../../gateway/agent/open-envelope.js';
import { unwrapMessage } from '../../gateway/agent/unwrap-message.js';
import { wrapMessage } from '../../gateway/agent/wrap-message.js';
import type { Certificate } from '../../gateway/core/certificate.js';
import type { HispGateway } from '../../gateway/flows/hisp-gateway.js';
import { notificationKind, parseMdn } from '../../gateway/mdn/mdn-parser.js';
import { parseDsn } from '../../gateway/queue/dsn-parser.js';
import type { MessageStatus } from '../../gateway/queue/outbound-queue.js';
import { rawSmtp } from '../helpers/raw-smtp.js';
import {
  gatewayConfigObject,
  maildirMessages,
  makeDomainCredential,
  startDirectNetwork,
  startGateway,
  toConfig,
  waitFor,
  type DirectNetwork,
  type DomainCredential,
  edgeTransport,
} from '../helpers/direct-network.js';
import { freePort } from '../helpers/postfix.js';
import { missingExecutable, requirePeer } from '../helpers/require-peer.js';

const run = promisify(execFile);
const REPO = path.resolve(import.meta.dirname, '../..');
const HISP = path.join(REPO, 'bin/hisp.js');

let serial = 0;
/** A plain RFC 5322 message with a fresh Message-ID (`<…@a.test>` unless `from` says otherwise). */
function plain(from: string, to: string, subject: string, extraHeaders = ''): { bytes: Buffer; messageId: string } {
  const messageId = `<${subject.replace(/\W+/g, '-')}.${Date.now()}.${++serial}.${randomBytes(3).toString('hex')}@${from.slice(from.indexOf('@') + 1)}>`;
  const bytes = Buffer.from(
    `From: ${from}\r\nTo: ${to}\r\nSubject: ${subject}\r\nDate: Wed, 25 Nov 2026 10:00:00 +0000\r\nMessage-ID: ${messageId}\r\n` +
      `MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n${extraHeaders}\r\nClinical summary: ${subject}.\r\n`,
    'latin1',
  );
  return { bytes, messageId };
}

/** Signed by `signer`, encrypted to `to` (a Direct message as a sending HISP makes it). */
function wrapped(message: Buffer, signer: PrivateCredential, to: Certificate): Buffer {
  return wrapMessage(message, { signers: [signer], recipients: [to] }).message;
}

/** An S/MIME enveloped message (R-FMT-4 outer entity) of `content`, encrypted to `to`, with the given outer header fields. */
function enveloped(outerHeaders: string, content: Buffer, to: Certificate): Buffer {
  const der = createEnvelope(content, [to], { cipher: DEFAULT_CIPHER, keyTransport: DEFAULT_KEY_TRANSPORT });
  return Buffer.from(
    `${outerHeaders}MIME-Version: 1.0\r\nContent-Type: application/pkcs7-mime; smime-type=enveloped-data; name=smime.p7m\r\n` +
      `Content-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=smime.p7m\r\n\r\n${der.toString('base64').replace(/.{76}/g, '$&\r\n')}\r\n`,
    'latin1',
  );
}

/** The outer header fields of a plain message (From … Message-ID), without MIME-Version and content fields. */
function outerOf(message: Buffer): string {
  return MimeEntity.parse(message)
    .headers.filter((h) => ['from', 'to', 'subject', 'date', 'message-id'].includes(h.name.toLowerCase()))
    .map((h) => h.raw.toString('latin1'))
    .join('');
}

/** One SMTP transaction with the raw client; the replies to RCPT and to the end of DATA. */
async function sendRaw(port: number, from: string, recipients: readonly string[], body: Buffer): Promise<{ rcpt: string[]; data: string | undefined }> {
  const c = await rawSmtp(port);
  try {
    expect(await c.read()).toMatch(/^220 /);
    expect(await c.send('EHLO sender.test\r\n')).toMatch(/^250/);
    expect(await c.send(`MAIL FROM:<${from}>\r\n`)).toMatch(/^250/);
    const rcpt: string[] = [];
    for (const r of recipients) rcpt.push(await c.send(`RCPT TO:<${r}>\r\n`));
    if (!rcpt.some((r) => r.startsWith('250'))) return { rcpt, data: undefined };
    expect(await c.send('DATA\r\n')).toMatch(/^354/);
    // Dot-stuffing (RFC 5321 §4.5.2); the body ends with CRLF.
    const stuffed = Buffer.from(body.toString('latin1').replace(/(^|\r\n)\./g, '$1..'), 'latin1');
    const data = await c.send(Buffer.concat([stuffed, Buffer.from('.\r\n')]));
    await c.send('QUIT\r\n');
    return { rcpt, data };
  } finally {
    c.close();
  }
}

const queuedAs = (reply: string | undefined): string => {
  const m = /^250 2\.0\.0 Ok: queued as (\w+)$/.exec(reply ?? '');
  if (!m?.[1]) throw new Error(`not a 250 "queued as" reply: ${reply}`);
  return m[1];
};

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface QuarantineEntryJson {
  id: string;
  reasonCode: string;
  detail: string;
  messageId: string | null;
  direction: string;
  mailFrom: string;
  recipients: string[];
  size: number;
}

/** The built CLI against a running gateway's data folder (same SQLite database, WAL + busy timeout). */
async function hisp(args: string[]): Promise<{ stdout: string; stderr: string; code: number }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [HISP, ...args], { encoding: 'buffer', maxBuffer: 16 * 1024 * 1024 });
    return { stdout: stdout.toString('latin1'), stderr: stderr.toString(), code: 0 };
  } catch (err) {
    const e = err as { stdout?: Buffer; stderr?: Buffer; code?: number };
    return { stdout: e.stdout?.toString('latin1') ?? '', stderr: e.stderr?.toString() ?? '', code: typeof e.code === 'number' ? e.code : -1 };
  }
}

/** knotd serves the test zones: with CI=true its absence fails the run (test/helpers/require-peer.ts). */
const knot = requirePeer(missingExecutable('knotd'));

describe.skipIf(knot.skip)(knot.title('the receive side over a real DNS server (knotd)'), () => {
  let net: DirectNetwork;
  let a: HispGateway;
  let b: HispGateway;
  let strict: HispGateway;
  let oldB: DomainCredential;
  let aCred: PrivateCredential;
  let bNew: PrivateCredential;
  let bOld: PrivateCredential;
  let uCred: PrivateCredential;

  beforeAll(async () => {
    net = await startDirectNetwork(['a.test', 'b.test'], ['u.test']);
    // b.test's previous credential (same trusted CA), kept as retired: what is still encrypted to it must open.
    const oldDir = path.join(net.dir, 'b-old');
    mkdirSync(oldDir);
    oldB = await makeDomainCredential(oldDir, net.trusted, 'b.test');
    const bc = net.credentials['b.test']!;
    a = await startGateway(toConfig(await gatewayConfigObject(net.spec('a.test'), net.dns.address), net.dir));
    b = await startGateway(
      toConfig(
        await gatewayConfigObject(
          net.spec('b.test', {
            domainExtra: { credentials: [{ key: bc.keyFile, cert: bc.certFile }, { key: oldB.keyFile, cert: oldB.certFile, retired: true }] },
          }),
          net.dns.address,
        ),
        net.dir,
      ),
    );
    const strictInbound = await freePort();
    strict = await startGateway(
      toConfig(
        await gatewayConfigObject(
          net.spec('b.test', {
            submissionPort: await freePort(),
            inboundPort: strictInbound,
            dataDir: path.join(net.dir, 'data-b-strict'),
            domainExtra: { catchAll: false, addresses: [{ address: 'patient@b.test' }] },
            extra: { inbound: { host: '127.0.0.1', port: strictInbound, maxMessageBytes: 10_000 } },
          }),
          net.dns.address,
        ),
        net.dir,
      ),
    );
    const cred = (d: DomainCredential) => loadCredential(d.keyFile, d.certFile);
    aCred = cred(net.credentials['a.test']!);
    bNew = cred(bc);
    bOld = cred(oldB);
    uCred = cred(net.credentials['u.test']!);
  }, 60_000);

  afterAll(async () => {
    await a?.stop();
    await b?.stop();
    await strict?.stop();
    await net?.stop();
  });

  const maildir = (domain: string, address: string) => maildirMessages(path.join(net.dir, `data-${domain}`, 'maildir', address));
  const bDataDir = () => path.join(net.dir, 'data-b.test');
  /** b's outbound MDNs (queued by its receive worker) answering the inbound message `queueId`. */
  const mdnsFor = async (gw: HispGateway, queueId: string): Promise<MessageStatus[]> =>
    (await gw.ctx.queue.list({ direction: 'outbound', limit: 1000 })).filter((m) => m.meta.kind === 'mdn' && m.meta.for === queueId);

  it('partial trust: To a trusted and Cc an untrusted recipient: one delivered, one DSN naming the untrusted one', async () => {
    const { bytes: original, messageId } = plain('provider@a.test', 'patient@b.test', 'Partial trust', 'Cc: someone@u.test\r\n');
    const transport = edgeTransport(a.submissionPort);
    const info = await transport.sendMail({ envelope: { from: 'provider@a.test', to: ['patient@b.test', 'someone@u.test'] }, raw: original });
    expect(info.response).toMatch(/^250 2\.0\.0 Ok: queued as \w+/);

    // b delivers its copy.
    const [delivered] = await waitFor('delivery at b.test', () => {
      const m = maildir('b.test', 'patient@b.test').filter((x) => x.includes(messageId));
      return m.length > 0 ? m : undefined;
    });
    expect(delivered!.toString('latin1')).toContain('Cc: someone@u.test\r\n');
    expect(delivered!.toString('latin1')).toContain('\r\n\r\nClinical summary: Partial trust.\r\n');

    // a's provider: one DSN (someone@u.test failed, trust reason) and the MDNs of b.
    const notes = await waitFor('DSN and processed + dispatched MDNs at a.test', () => {
      const all = maildir('a.test', 'provider@a.test');
      const dsns = all.filter((m) => notificationKind(m) === 'dsn');
      const mdns = all.filter((m) => notificationKind(m) === 'mdn').map((m) => parseMdn(m));
      return dsns.length >= 1 && mdns.length >= 2 ? { dsns, mdns } : undefined;
    });
    await sleep(1500); // nothing more must come (no second DSN, no DSN for the delivered recipient)
    const settled = maildir('a.test', 'provider@a.test');
    expect(settled.filter((m) => notificationKind(m) === 'dsn')).toHaveLength(1);
    const dsn = parseDsn(notes.dsns[0]!);
    expect(dsn.originalMessageId).toBe(messageId);
    expect(dsn.recipients).toHaveLength(1);
    const failed = dsn.recipients[0]!;
    expect(failed.finalRecipient).toBe('someone@u.test');
    expect(failed.action).toBe('failed');
    expect(failed.status).toMatch(/^5\.7\.\d+$/);
    const text = notes.dsns[0]!.toString('latin1');
    expect(text).toMatch(/trust|anchor/i);
    expect(text).not.toMatch(/Final-Recipient: rfc822; ?patient@b\.test/i);

    expect(notes.mdns.map((m) => m.disposition).sort()).toEqual(['dispatched', 'processed']);
    for (const m of notes.mdns) {
      expect(m.originalMessageId).toBe(messageId);
      expect(m.finalRecipient).toBe('patient@b.test');
    }

    const status = await a.ctx.queue.get(messageId);
    const states = Object.fromEntries((status?.deliveries ?? []).map((d) => [d.recipient, d.state]));
    expect(states).toEqual({ 'patient@b.test': 'delivered', 'someone@u.test': 'failed' });
    const uDelivery = status!.deliveries.find((d) => d.recipient === 'someone@u.test')!;
    expect(uDelivery.lastReply?.enhanced).toMatch(/^5\.7\./);
    expect(uDelivery.dsnQueuedAt).not.toBeNull();
    // Nothing was ever relayed to u.test: the refusal was a's own trust decision.
    expect(uDelivery.lastReply?.text).toMatch(/HISP_(DISCOVERY|TRUST)_/);
  });

  it('quarantines unencrypted, untrusted, undecryptable, unsigned, tampered and malformed messages after a 250: not delivered, no MDN, listed with the reason', async () => {
    const bCert = bNew.certificate;
    const cases = {
      plain: plain('quarantine@a.test', 'patient@b.test', 'Q plain'),
      untrusted: (() => {
        const m = plain('someone@u.test', 'patient@b.test', 'Q untrusted');
        return { ...m, bytes: wrapped(m.bytes, uCred, bCert) };
      })(),
      undecryptable: (() => {
        // Signed by a trusted sender, but encrypted to a.test's certificate only, not b's.
        const m = plain('quarantine@a.test', 'patient@b.test', 'Q not for b');
        return { ...m, bytes: wrapped(m.bytes, aCred, aCred.certificate) };
      })(),
      unsigned: (() => {
        // Encrypted to b, but the content is a bare text/plain entity: no signature at all.
        const m = plain('quarantine@a.test', 'patient@b.test', 'Q unsigned');
        return { ...m, bytes: enveloped(outerOf(m.bytes), Buffer.from('Content-Type: text/plain\r\n\r\nClinical summary: Q unsigned.\r\n'), bCert) };
      })(),
      tampered: (() => {
        // Signed by a trusted sender and encrypted to b, but one octet of the signed content changed
        // (decrypted with b's key, altered, encrypted again): the signature no longer verifies.
        const m = plain('quarantine@a.test', 'patient@b.test', 'Q tampered');
        const signedEntity = openEnvelope(decodeBase64(MimeEntity.parse(wrapped(m.bytes, aCred, bCert)).body), [{ key: bNew.key, certificate: bCert }]).content;
        const at = signedEntity.indexOf('Clinical summary');
        expect(at).toBeGreaterThan(0);
        signedEntity[at] = 'c'.charCodeAt(0);
        return { ...m, bytes: enveloped(outerOf(m.bytes), signedEntity, bCert) };
      })(),
      malformed: (() => {
        const messageId = `<Q-malformed.${Date.now()}@a.test>`;
        const junk = randomBytes(600).toString('base64').replace(/.{76}/g, '$&\r\n');
        const bytes = Buffer.from(
          `From: quarantine@a.test\r\nTo: patient@b.test\r\nSubject: Q malformed\r\nDate: Wed, 25 Nov 2026 10:00:00 +0000\r\n` +
            `Message-ID: ${messageId}\r\nMIME-Version: 1.0\r\nContent-Type: application/pkcs7-mime; smime-type=enveloped-data; name="smime.p7m"\r\n` +
            `Content-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename="smime.p7m"\r\n\r\n${junk}\r\n`,
          'latin1',
        );
        return { bytes, messageId };
      })(),
    };
    const ids: Record<keyof typeof cases, string> = { plain: '', untrusted: '', undecryptable: '', unsigned: '', tampered: '', malformed: '' };
    for (const [name, c] of Object.entries(cases) as [keyof typeof cases, { bytes: Buffer; messageId: string }][]) {
      const from = name === 'untrusted' ? 'someone@u.test' : 'quarantine@a.test';
      const r = await sendRaw(b.inboundPort!, from, ['patient@b.test'], c.bytes);
      expect(r.rcpt).toEqual([expect.stringMatching(/^250 /)]);
      ids[name] = queuedAs(r.data); // stored first: the checks come after the 250
    }

    // Each ends failed (not delivered), without a DSN (the receive side never sends one).
    for (const id of Object.values(ids)) {
      const s = await waitFor(`receive outcome of ${id}`, async () => {
        const st = await b.ctx.queue.get(id);
        return st?.deliveries.every((d) => d.state === 'failed') ? st : undefined;
      });
      expect(s.deliveries).toHaveLength(1);
      expect(s.deliveries[0]!.lastReply?.code).toBeGreaterThanOrEqual(500);
    }

    const { stdout, code } = await hisp(['quarantine', 'list', '--json', '--data-dir', bDataDir()]);
    expect(code).toBe(0);
    const entries = (JSON.parse(stdout) as { entries: QuarantineEntryJson[] }).entries;
    const byId = new Map(entries.map((e) => [e.id, e]));
    for (const [name, id] of Object.entries(ids)) expect(byId.has(id), `${name} (${id}) listed`).toBe(true);
    expect(byId.get(ids.plain)!.reasonCode).toBe('HISP_SMIME_NOT_ENCRYPTED');
    expect(byId.get(ids.untrusted)!.reasonCode).toBe('HISP_TRUST_NO_ANCHOR');
    expect(byId.get(ids.undecryptable)!.reasonCode).toMatch(/^HISP_CMS_(NOT_FOR_RECIPIENT|DECRYPT_FAILED)$/);
    expect(byId.get(ids.unsigned)!.reasonCode).toBe('HISP_SMIME_NOT_SIGNED');
    expect(byId.get(ids.tampered)!.reasonCode).toBe('HISP_SIG_INVALID');
    expect(byId.get(ids.malformed)!.reasonCode).toMatch(/^HISP_(CMS|MIME)_MALFORMED$/);
    for (const [name, id] of Object.entries(ids)) {
      const e = byId.get(id)!;
      expect(e.direction).toBe('inbound');
      expect(e.recipients).toEqual(['patient@b.test']);
      expect(e.messageId).toBe(cases[name as keyof typeof cases].messageId.slice(1, -1));
      expect(e.size).toBe(cases[name as keyof typeof cases].bytes.length);
      expect(e.detail.length).toBeGreaterThan(0);
    }

    // `show --raw`: the stored bytes, unchanged.
    await Promise.all(
      Object.entries(ids).map(async ([name, id]) => {
        const shown = await hisp(['quarantine', 'show', id, '--raw', '--data-dir', bDataDir()]);
        expect(shown.code).toBe(0);
        expect(Buffer.from(shown.stdout, 'latin1').equals(cases[name as keyof typeof cases].bytes), `${name} raw bytes`).toBe(true);
      }),
    );

    // No delivery, no MDN: nothing in b's Maildir, nothing queued at b, nothing reached a's edge.
    await sleep(1500);
    const subjects = ['Q plain', 'Q untrusted', 'Q not for b', 'Q unsigned', 'Q tampered', 'Q malformed'];
    expect(maildir('b.test', 'patient@b.test').filter((m) => subjects.some((s) => m.includes(`Subject: ${s}\r\n`)))).toEqual([]);
    for (const id of Object.values(ids)) expect(await mdnsFor(b, id)).toEqual([]);
    expect(b.ctx.db.sqlite.prepare(`SELECT COUNT(*) AS n FROM mdn_sent WHERE queue_id IN (${Object.values(ids).map(() => '?').join(',')})`).get(...Object.values(ids))).toEqual({ n: 0 });
    expect(maildir('a.test', 'quarantine@a.test')).toEqual([]);

    // `delete` removes one entry and its message; the others stay.
    const del = await hisp(['quarantine', 'delete', ids.malformed, '--json', '--data-dir', bDataDir()]);
    expect(del.code).toBe(0);
    expect(JSON.parse(del.stdout)).toEqual({ id: ids.malformed, deleted: true });
    const after = (JSON.parse((await hisp(['quarantine', 'list', '--json', '--data-dir', bDataDir()])).stdout) as { entries: QuarantineEntryJson[] }).entries.map((e) => e.id);
    expect(after).not.toContain(ids.malformed);
    for (const id of [ids.plain, ids.untrusted, ids.undecryptable, ids.unsigned, ids.tampered]) expect(after).toContain(id);
    expect(await b.ctx.queue.get(ids.malformed)).toBeUndefined();
    const gone = await hisp(['quarantine', 'show', ids.malformed, '--json', '--data-dir', bDataDir()]);
    expect(gone.code).toBe(1);
    expect((JSON.parse(gone.stdout) as { error: { code: string } }).error.code).toBe('HISP_NOT_FOUND');

    // A message that was quarantined was not delivered: sent again, it is processed again (not
    // swallowed as "already received"), and quarantined again since nothing changed.
    const again = await sendRaw(b.inboundPort!, 'quarantine@a.test', ['patient@b.test'], cases.plain.bytes);
    expect(again.data).toMatch(/^250 2\.0\.0 Ok: queued as \w+$/);
    const againId = /queued as (\w+)/.exec(again.data ?? '')![1]!;
    await waitFor('the resent plain message quarantined', () => b.ctx.quarantine.get(againId));
  }, 60_000); // ten runs of the CLI (a process each)

  it('de-duplicates: the same message from the same envelope sender twice is acknowledged twice and delivered once', async () => {
    const { bytes, messageId } = plain('dedupe@a.test', 'patient@b.test', 'Dedupe');
    const direct = wrapped(bytes, aCred, bNew.certificate);
    const first = await sendRaw(b.inboundPort!, 'dedupe@a.test', ['patient@b.test'], direct);
    const queueId = queuedAs(first.data);
    // The sender lost our 250 and sends again (same envelope sender, Message-ID and recipient).
    const second = await sendRaw(b.inboundPort!, 'dedupe@a.test', ['patient@b.test'], direct);
    expect(second.data).toBe('250 2.0.0 Ok: already received, not delivered again');

    const copies = () => maildir('b.test', 'patient@b.test').filter((m) => m.includes(`Message-ID: ${messageId}\r\n`));
    await waitFor('the first copy delivered', () => copies().length > 0);
    const [mdn] = await waitFor('the processed MDN at a.test', () => {
      const m = maildir('a.test', 'dedupe@a.test').map((x) => parseMdn(x));
      return m.length > 0 ? m : undefined;
    });
    expect(mdn!.disposition).toBe('processed');
    expect(mdn!.originalMessageId).toBe(messageId);
    expect(mdn!.finalRecipient).toBe('patient@b.test');
    await sleep(1500);
    expect(copies()).toHaveLength(1);
    expect(maildir('a.test', 'dedupe@a.test')).toHaveLength(1);
    expect((await mdnsFor(b, queueId)).map((m) => m.meta.disposition)).toEqual(['processed']);
    expect(b.ctx.queue.messages.findByMessageId(messageId).map((m) => m.queueId)).toEqual([queueId]);

    // A copy for the same recipient and a new one: only the new recipient gets it.
    const third = await sendRaw(b.inboundPort!, 'dedupe@a.test', ['patient@b.test', 'patient3@b.test'], direct);
    const thirdId = queuedAs(third.data);
    expect((await b.ctx.queue.get(thirdId))?.deliveries.map((d) => d.recipient)).toEqual(['patient3@b.test']);
    await waitFor('the copy for patient3', () => maildir('b.test', 'patient3@b.test').some((m) => m.includes(messageId)));
    await sleep(500);
    expect(copies()).toHaveLength(1);
  });

  it('rolls keys over: a message encrypted to the retired certificate is delivered; the MDN is signed with the active one', async () => {
    expect(bOld.certificate.sha256).not.toBe(bNew.certificate.sha256);
    const { bytes, messageId } = plain('rollover@a.test', 'patient@b.test', 'Rollover');
    const r = await sendRaw(b.inboundPort!, 'rollover@a.test', ['patient@b.test'], wrapped(bytes, aCred, bOld.certificate));
    const queueId = queuedAs(r.data);

    const [delivered] = await waitFor('delivery of the message encrypted to the old certificate', () => {
      const m = maildir('b.test', 'patient@b.test').filter((x) => x.includes(`Message-ID: ${messageId}\r\n`));
      return m.length > 0 ? m : undefined;
    });
    expect(delivered!.toString('latin1')).toContain('\r\n\r\nClinical summary: Rollover.\r\n');
    // The file is in the Maildir before the queue records the delivery: wait for the record.
    await waitFor('the delivery recorded', async () => (await b.ctx.queue.get(queueId))?.deliveries.every((d) => d.state === 'delivered'));

    const [mdn] = await waitFor('the processed MDN at a.test', () => {
      const m = maildir('a.test', 'rollover@a.test');
      return m.length > 0 ? m : undefined;
    });
    expect(parseMdn(mdn!).originalMessageId).toBe(messageId);

    // The MDN as it reached a's inbound port (a keeps the raw message): signed with b's active
    // credential, and encrypted to a (only a's key opens it).
    const received = (await a.ctx.queue.list({ direction: 'inbound', limit: 1000 })).filter((m) => m.mailFrom === '' && m.recipients.includes('rollover@a.test') && m.meta.kind === undefined);
    expect(received).toHaveLength(1);
    const raw = await a.ctx.queue.body(received[0]!.queueId);
    const opened = unwrapMessage(raw, { credentials: [{ key: aCred.key, certificate: aCred.certificate }] });
    const signers = opened.signers.filter((s) => s.verified).map((s) => s.certificate?.sha256);
    expect(signers).toEqual([bNew.certificate.sha256]);
    expect(parseMdn(opened.message).originalMessageId).toBe(messageId);
  });

  it('refuses bad input on the inbound port with the specific replies and stores nothing of it', async () => {
    const port = strict.inboundPort!;
    const accepted: string[] = [];
    const c = await rawSmtp(port);
    expect(await c.read()).toMatch(/^220 /);
    // Commands out of order, and AUTH (not offered on the inbound port).
    expect(await c.send('RCPT TO:<patient@b.test>\r\n')).toMatch(/^503 /);
    expect(await c.send('EHLO sender.test\r\n')).toMatch(/^250/);
    expect(await c.send('DATA\r\n')).toMatch(/^503 /);
    expect(await c.send('AUTH PLAIN AGVocgBwYXNz\r\n')).toMatch(/^50[02] /);

    // Recipients: other domains 550 5.7.1, unknown local addresses 550 5.1.1 (catchAll off).
    expect(await c.send('MAIL FROM:<doc@a.test>\r\n')).toMatch(/^250/);
    expect(await c.send('RCPT TO:<someone@elsewhere.test>\r\n')).toMatch(/^550 5\.7\.1 /);
    expect(await c.send('RCPT TO:<nobody@b.test>\r\n')).toMatch(/^550 5\.1\.1 /);
    expect(await c.send('DATA\r\n')).toMatch(/^503 /); // no valid recipient yet

    // Oversized: 552 5.3.4 once the whole message is in.
    expect(await c.send('RCPT TO:<patient@b.test>\r\n')).toMatch(/^250 /);
    expect(await c.send('DATA\r\n')).toMatch(/^354/);
    const big = plain('doc@a.test', 'patient@b.test', 'Too big', `X-Padding: ${'x'.repeat(900)}\r\n`).bytes.toString('latin1') + `${'y'.repeat(998)}\r\n`.repeat(12);
    expect(await c.send(`${big}.\r\n`)).toMatch(/^552 5\.3\.4 /);

    // A declared size over the limit is refused at MAIL (RFC 1870 §6.1); smtp-server's own reply,
    // which carries no enhanced status code.
    expect(await c.send('MAIL FROM:<doc@a.test> SIZE=20000\r\n')).toMatch(/^552 /);

    // Bare LF: 550 5.6.0.
    expect(await c.send('MAIL FROM:<doc@a.test>\r\n')).toMatch(/^250/);
    expect(await c.send('RCPT TO:<patient@b.test>\r\n')).toMatch(/^250/);
    expect(await c.send('DATA\r\n')).toMatch(/^354/);
    expect(await c.send(`${plain('doc@a.test', 'patient@b.test', 'Bare LF').bytes.toString('latin1')}one\nline\r\n.\r\n`)).toMatch(/^550 5\.6\.0 bare LF/);

    // No header section: 554 5.6.0.
    expect(await c.send('MAIL FROM:<doc@a.test>\r\n')).toMatch(/^250/);
    expect(await c.send('RCPT TO:<patient@b.test>\r\n')).toMatch(/^250/);
    expect(await c.send('DATA\r\n')).toMatch(/^354/);
    expect(await c.send('\r\nA body and no header section at all.\r\n.\r\n')).toMatch(/^554 5\.6\.0 /);

    // A header section that is not `name: value` lines: 554 5.6.0.
    expect(await c.send('MAIL FROM:<doc@a.test>\r\n')).toMatch(/^250/);
    expect(await c.send('RCPT TO:<patient@b.test>\r\n')).toMatch(/^250/);
    expect(await c.send('DATA\r\n')).toMatch(/^354/);
    expect(await c.send('this is not a header field\r\nFrom: doc@a.test\r\n\r\nbody\r\n.\r\n')).toMatch(/^554 5\.6\.0 .*\[HISP_MIME_MALFORMED\]$/);

    // The session still works: a well-formed (here unencrypted) message gets its 250.
    const good = plain('doc@a.test', 'patient@b.test', 'After the refusals');
    expect(await c.send('MAIL FROM:<doc@a.test>\r\n')).toMatch(/^250/);
    expect(await c.send('RCPT TO:<patient@b.test>\r\n')).toMatch(/^250/);
    expect(await c.send('RCPT TO:<nobody@b.test>\r\n')).toMatch(/^550 5\.1\.1 /);
    expect(await c.send('DATA\r\n')).toMatch(/^354/);
    accepted.push(queuedAs(await c.send(Buffer.concat([good.bytes, Buffer.from('.\r\n')]))));
    expect(await c.send('QUIT\r\n')).toMatch(/^221/);
    c.close();

    // The queue holds the accepted message only, for the accepted recipient only; no orphan body files.
    await waitFor('the accepted message processed', async () => (await strict.ctx.queue.get(accepted[0]!))?.deliveries.every((d) => d.state === 'failed'));
    const all = await strict.ctx.queue.list({ limit: 1000 });
    expect(all.map((m) => m.queueId)).toEqual(accepted);
    expect(all[0]!.recipients).toEqual(['patient@b.test']);
    expect(all[0]!.messageId).toBe(good.messageId.slice(1, -1));
    expect(strict.ctx.db.sqlite.prepare('SELECT queue_id FROM messages').all()).toEqual(accepted.map((id) => ({ queue_id: id })));
    const files = readdirSync(path.join(net.dir, 'data-b-strict', 'messages'));
    expect(files.filter((f) => !strict.ctx.queue.messages.has(f.replace(/\.eml$/, '')))).toEqual([]);
    expect(maildirMessages(path.join(net.dir, 'data-b-strict', 'maildir', 'patient@b.test'))).toEqual([]);
  });

  it('within one HISP: a submitted message to a known address of a local domain is delivered, to an unknown one refused with a DSN (catchAll off)', async () => {
    const { bytes, messageId } = plain('provider@b.test', 'patient@b.test', 'Local hand-off', 'Cc: nobody@b.test\r\n');
    await edgeTransport(strict.submissionPort).sendMail({ envelope: { from: 'provider@b.test', to: ['patient@b.test', 'nobody@b.test'] }, raw: bytes });
    const status = await waitFor('both recipients final', async () => {
      // The outbound message (the inbound copy of the hand-off has the same Message-ID).
      const st = (await strict.ctx.queue.list({ direction: 'outbound', limit: 1000 })).find((m) => `<${m.messageId}>` === messageId || m.messageId === messageId);
      return st && st.deliveries.every((d) => d.state !== 'queued') ? st : undefined;
    });
    expect(Object.fromEntries(status.deliveries.map((d) => [d.recipient, d.state]))).toEqual({ 'patient@b.test': 'delivered', 'nobody@b.test': 'failed' });
    const dir = (a: string) => path.join(net.dir, 'data-b-strict', 'maildir', a);
    await waitFor('the message at patient@b.test', () => maildirMessages(dir('patient@b.test')).some((m) => m.toString().includes('Local hand-off')));
    expect(maildirMessages(dir('nobody@b.test'))).toEqual([]);
    // The sender (not listed, allowed by @b.test) gets its DSN through the domain's delivery.
    const dsn = await waitFor('the DSN at provider@b.test', () =>
      maildirMessages(dir('provider@b.test'))
        .map((m) => { try { return parseDsn(m); } catch { return undefined; } })
        .find((d) => d?.recipients.some((r) => r.finalRecipient === 'nobody@b.test')),
    );
    expect(dsn.recipients).toHaveLength(1);
    expect(dsn.recipients[0]).toMatchObject({ action: 'failed', status: '5.1.1' });
  });
});
