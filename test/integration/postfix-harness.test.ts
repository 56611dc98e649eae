// The Postfix/smtp-sink harness (test/helpers/postfix.ts) against real peers on 127.0.0.1: swaks
// into a "mailbox" Postfix (Maildir), a "relay" Postfix in front of a node smtp-server that wants
// AUTH over STARTTLS, and smtp-sink in SMTP and LMTP mode fed by the gateway's own relayMessage().
// Each test starts and stops its own servers.
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { SMTPServer, type SMTPServerAuthentication } from 'smtp-server';
import { afterEach, describe, expect, it } from 'vitest';
import { relayMessage } from '../../gateway/delivery/smtp-relay.js';
import {
  postfixUnavailableReason,
  smtpGreets,
  startPostfix,
  startSmtpSink,
  swaksPath,
} from '../helpers/postfix.js';
import { firstMissing, missingExecutable, requirePeer } from '../helpers/require-peer.js';

const execFileAsync = promisify(execFile);

const TLS_KEY = new URL('../fixtures/trust/tls-server.key.pem', import.meta.url);
const TLS_CERT = new URL('../fixtures/trust/tls-server.cert.pem', import.meta.url);

// Postfix (as root) with swaks, and smtp-sink: with CI=true a missing one fails the run (test/helpers/require-peer.ts).
const postfix = requirePeer(firstMissing(postfixUnavailableReason(), missingExecutable('swaks')));
const sink = requirePeer(missingExecutable('smtp-sink'));

/** Servers and folders of the current test, released after it whatever happened. */
let cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  const pending = cleanups.reverse();
  cleanups = [];
  for (const c of pending) await c();
});

/** A message with what a transfer can damage: a leading dot, 8-bit UTF-8, trailing blanks, a tab. */
function testMessage(subject: string): { crlf: Buffer; body: Buffer } {
  const header = [
    'From: Sender <y@src.test>',
    'To: Recipient <x@dest.test>',
    `Subject: ${subject}`,
    'MIME-Version: 1.0',
    'Content-Type: text/plain; charset=utf-8',
    'Content-Transfer-Encoding: 8bit',
  ];
  const body = ['first line', '.a line with a leading dot', '..two dots', 'Grüße, café — ✓', 'trailing blanks   ', '\tindented', '', 'last'];
  return {
    crlf: Buffer.from(`${header.join('\r\n')}\r\n\r\n${body.join('\r\n')}\r\n`, 'utf8'),
    body: Buffer.from(`${body.join('\n')}\n`, 'utf8'),
  };
}

/** Processes whose working directory is under `dir` (Postfix daemons chdir to the queue). */
function processesUnder(dir: string): number[] {
  const found: number[] = [];
  for (const pid of readdirSync('/proc').filter((n) => /^\d+$/.test(n))) {
    try {
      if (readlinkSync(`/proc/${pid}/cwd`).startsWith(dir)) found.push(Number(pid));
    } catch {
      // gone, or a zombie
    }
  }
  return found;
}

async function swaks(port: number, args: readonly string[]): Promise<{ code: number; out: string }> {
  try {
    const r = await execFileAsync(swaksPath() ?? 'swaks', ['--server', '127.0.0.1', '--port', String(port), ...args], { timeout: 20_000 });
    return { code: 0, out: r.stdout + r.stderr };
  } catch (e) {
    const err = e as { code?: unknown; stdout?: string; stderr?: string };
    if (typeof err.code !== 'number') throw e;
    return { code: err.code, out: `${err.stdout ?? ''}${err.stderr ?? ''}` };
  }
}

describe.skipIf(postfix.skip)(postfix.title('startPostfix, mailbox mode'), () => {
  it('stores what swaks sends in the recipient Maildir, body bytes intact; other domains are refused', async () => {
    const mx = await startPostfix({ mode: 'mailbox', domains: ['dest.test', 'other.test'] });
    cleanups.push(() => mx.stop());
    const { crlf, body } = testMessage('swaks into Postfix');
    const work = mkdtempSync(path.join(tmpdir(), 'hisp-swaks-'));
    cleanups.push(() => rmSync(work, { recursive: true, force: true }));
    const dataFile = path.join(work, 'message.eml');
    // Ends with the "." line: given a file ending in CRLF without it, swaks sends CRLF "." CRLF
    // after it, which adds an empty line to the body.
    writeFileSync(dataFile, Buffer.concat([crlf, Buffer.from('.\r\n')]));

    const sent = await swaks(mx.port, ['--to', 'X@dest.test', '--from', 'y@src.test', '--data', `@${dataFile}`]);
    expect(sent.code, sent.out).toBe(0);
    expect(sent.out).toMatch(/^<- {2}250 2\.0\.0 Ok: queued as /m);

    // The recipient filter ignores case; Delivered-To keeps the envelope's spelling.
    const [m] = await mx.waitForMessages(1, { recipient: 'x@dest.test' });
    expect(m?.recipient).toBe('X@dest.test');
    // virtual(8) prepends the envelope; smtpd adds its Received:; the body follows unchanged apart
    // from CRLF → LF (Postfix stores lines) and the dot-stuffing swaks added and smtpd removed.
    expect(m?.header).toMatch(/^Return-Path: <y@src\.test>\nX-Original-To: X@dest\.test\nDelivered-To: X@dest\.test\nReceived: from /);
    expect(m?.header).toContain('\nSubject: swaks into Postfix');
    expect(m?.header).toContain(`by ${mx.myhostname} (Postfix) with ESMTP`);
    expect(m?.body.equals(body), m?.body.toString('utf8')).toBe(true);
    expect(mx.messages('other@dest.test')).toEqual([]);
    expect(mx.messages()).toHaveLength(1);

    // Not one of its domains: smtpd refuses the recipient (reject_unauth_destination), nothing queued.
    const refused = await swaks(mx.port, ['--to', 'x@elsewhere.test', '--from', 'y@src.test', '--data', `@${dataFile}`]);
    expect(refused.code).not.toBe(0);
    expect(refused.out).toMatch(/^<\*\* 554 5\.7\.1 <x@elsewhere\.test>: Relay access denied$/m);
    expect(await mx.queue()).toEqual([]);
  });

  it('offers STARTTLS with smtpdTls and keeps one Maildir per recipient', async () => {
    const mx = await startPostfix({
      mode: 'mailbox',
      domains: ['dest.test'],
      smtpdTls: { keyFile: TLS_KEY.pathname, certFile: TLS_CERT.pathname },
    });
    cleanups.push(() => mx.stop());
    const { crlf, body } = testMessage('over STARTTLS');
    const r = await relayMessage('127.0.0.1', mx.port, { from: 'y@src.test', to: ['a@dest.test', 'b@dest.test'] }, crlf, {
      name: 'hisp.test',
    });
    expect(r.tls).toBe(true);
    expect(r.recipients.map((x) => x.outcome)).toEqual(['delivered', 'delivered']);
    const all = await mx.waitForMessages(2);
    expect(all.map((m) => m.recipient).sort()).toEqual(['a@dest.test', 'b@dest.test']);
    for (const m of all) expect(m.body.equals(body)).toBe(true);
    expect(mx.messages('b@dest.test')).toHaveLength(1);
    expect(mx.log()).toMatch(/Anonymous TLS connection established from/);
  });

  it('stop() ends every Postfix process and removes the temporary folder', async () => {
    const mx = await startPostfix({ mode: 'mailbox', domains: ['dest.test'] });
    cleanups.push(() => mx.stop());
    expect(mx.startupMs).toBeLessThan(10_000);
    expect(processesUnder(mx.tempDir).length).toBeGreaterThan(0); // master's children (qmgr, pickup, …)
    await mx.stop();
    await mx.stop(); // idempotent
    expect(existsSync(mx.tempDir)).toBe(false);
    expect(processesUnder(mx.tempDir)).toEqual([]);
    expect(await smtpGreets(mx.port, '127.0.0.1', 500)).toBe(false);
  });
});

interface Arrival {
  auth: { method: string; username: string | undefined; password: string | undefined };
  secure: boolean;
  from: string;
  to: string[];
  raw: Buffer;
}

/** smtp-server on 127.0.0.1:0 that wants AUTH, which it only offers after STARTTLS. */
async function authServer(username: string, password: string): Promise<{ port: number; arrivals: Arrival[] }> {
  const arrivals: Arrival[] = [];
  const auths = new Map<string, SMTPServerAuthentication>();
  const server = new SMTPServer({
    key: readFileSync(TLS_KEY),
    cert: readFileSync(TLS_CERT),
    logger: false,
    name: 'downstream.test',
    authMethods: ['PLAIN', 'LOGIN'],
    // Defaults, spelled out: no MAIL without AUTH, no AUTH before STARTTLS.
    authOptional: false,
    allowInsecureAuth: false,
    onAuth(auth, session, callback) {
      auths.set(session.id, auth);
      if (auth.username === username && auth.password === password) callback(null, { user: username });
      else callback(new Error('Invalid username or password'));
    },
    onData(stream, session, callback) {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => {
        const auth = auths.get(session.id);
        arrivals.push({
          auth: { method: auth?.method ?? '', username: auth?.username, password: auth?.password ?? undefined },
          secure: session.secure,
          from: session.envelope.mailFrom === false ? '' : session.envelope.mailFrom.address,
          to: session.envelope.rcptTo.map((r) => r.address),
          raw: Buffer.concat(chunks),
        });
        callback();
      });
    },
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  cleanups.push(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return { port: (server.server.address() as AddressInfo).port, arrivals };
}

async function waitFor<T>(get: () => T | undefined, timeoutMs: number, what: string): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = get();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`${what} did not happen in ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

describe.skipIf(postfix.skip)(postfix.title('startPostfix, relay mode'), () => {
  it.each(['PLAIN', 'LOGIN'] as const)('relays to a relayhost that wants AUTH %s over STARTTLS, with the credentials given', async (mechanism) => {
    const username = 'hisp-relay';
    const password = 'pa:ss wörd'; // a colon and a blank: sasl_passwd splits at the first colon only
    const downstream = await authServer(username, password);
    const relay = await startPostfix({
      mode: 'relay',
      relayhost: { port: downstream.port },
      auth: { username, password, mechanisms: [mechanism] },
    });
    cleanups.push(() => relay.stop());
    expect(relay.relayhost).toBe(`[127.0.0.1]:${downstream.port}`);

    const { crlf, body } = testMessage(`relayed with ${mechanism}`);
    const r = await relayMessage('127.0.0.1', relay.port, { from: 'edge@src.test', to: ['x@dest.test'] }, crlf, { name: 'edge.test' });
    expect(r.recipients[0]?.outcome).toBe('delivered');

    const arrival = await waitFor(() => downstream.arrivals[0], 15_000, `delivery through Postfix:\n${relay.log()}`);
    expect(arrival.auth).toEqual({ method: mechanism, username, password });
    expect(arrival.secure).toBe(true);
    expect(arrival).toMatchObject({ from: 'edge@src.test', to: ['x@dest.test'] });
    const text = arrival.raw.toString('utf8');
    expect(text).toContain(`by ${relay.myhostname} (Postfix) with ESMTP`);
    expect(text).toContain(`Subject: relayed with ${mechanism}`);
    // Postfix sends CRLF again; the body is the one the edge sent.
    expect(arrival.raw.subarray(arrival.raw.indexOf('\r\n\r\n') + 4).equals(Buffer.from(body.toString('latin1').replace(/\n/g, '\r\n'), 'latin1'))).toBe(true);
    expect(await relay.waitForLog(/status=sent/)).toContain(`relay=127.0.0.1[127.0.0.1]:${downstream.port}`);
    expect(relay.log()).toMatch(/Untrusted TLS connection established to 127\.0\.0\.1\[127\.0\.0\.1\]/);
    expect(await relay.queue()).toEqual([]);
  });

  it('keeps the message deferred when the relayhost refuses the credentials', async () => {
    const downstream = await authServer('right', 'right');
    const relay = await startPostfix({ mode: 'relay', relayhost: { port: downstream.port }, auth: { username: 'wrong', password: 'wrong' } });
    cleanups.push(() => relay.stop());
    const { crlf } = testMessage('bad credentials');
    const r = await relayMessage('127.0.0.1', relay.port, { from: 'edge@src.test', to: ['x@dest.test'] }, crlf, { name: 'edge.test' });
    expect(r.recipients[0]?.outcome).toBe('delivered'); // Postfix took it; the hop after fails
    // smtp_sasl_auth_soft_bounce = yes (default): an authentication failure defers, never bounces.
    await relay.waitForLog(/status=deferred \(SASL authentication failed/);
    const queue = await relay.queue();
    expect(queue).toHaveLength(1);
    expect(queue[0]).toMatchObject({ queue_name: 'deferred', sender: 'edge@src.test' });
    expect(downstream.arrivals).toEqual([]);
  });
});

describe.skipIf(sink.skip)(sink.title('startSmtpSink'), () => {
  it.each([
    { lmtp: false, proto: 'ESMTP' },
    { lmtp: true, proto: 'LMTP' },
  ])('takes a message over $proto from relayMessage and dumps it', async ({ lmtp, proto }) => {
    const sink = await startSmtpSink({ lmtp, dump: true });
    cleanups.push(() => sink.stop());
    expect(sink.counters()).toEqual({ sessions: 0, quits: 0, messages: 0 });
    const { crlf, body } = testMessage(`into smtp-sink over ${proto}`);
    const r = await relayMessage('127.0.0.1', sink.port, { from: 'hisp@src.test', to: ['a@dest.test', 'b@dest.test'] }, crlf, {
      name: 'hisp.test',
      lmtp,
    });
    // LMTP: one reply per recipient after the data (RFC 2033 §4.2), each 250.
    expect(r.recipients.map((x) => [x.recipient, x.outcome])).toEqual([
      ['a@dest.test', 'delivered'],
      ['b@dest.test', 'delivered'],
    ]);
    expect((await sink.waitForMessages(1)).messages).toBe(1);
    const dumps = sink.dumps();
    expect(dumps).toHaveLength(1);
    expect(dumps[0]).toMatchObject({ proto, helo: 'hisp.test', rcptArgs: ['<a@dest.test>', '<b@dest.test>'] });
    expect(dumps[0]?.mailArgs).toMatch(/^<hisp@src\.test>/);
    const message = dumps[0]?.message ?? Buffer.alloc(0);
    expect(message.subarray(message.indexOf('\n\n') + 2).equals(body)).toBe(true);
    // relayMessage says QUIT after the transaction: the session ends.
    await waitFor(() => (sink.counters().sessions >= 1 ? true : undefined), 5000, 'the end of the session');
    expect(sink.counters()).toEqual({ sessions: 1, quits: 1, messages: 1 });
  });

  it('counts messages without dumping them (the benchmark set-up)', async () => {
    const sink = await startSmtpSink({ backlog: 512, maxConnections: 64 });
    cleanups.push(() => sink.stop());
    expect(sink.dumpDir).toBeUndefined();
    const { crlf } = testMessage('counted');
    const results = await Promise.all(
      Array.from({ length: 20 }, (_, i) => relayMessage('127.0.0.1', sink.port, { from: 'hisp@src.test', to: [`r${i}@dest.test`] }, crlf, { name: 'hisp.test' })),
    );
    expect(results.every((r) => r.recipients[0]?.outcome === 'delivered')).toBe(true);
    expect((await sink.waitForMessages(20)).messages).toBe(20);
    expect(sink.dumps()).toEqual([]);
    await sink.stop();
    expect(await smtpGreets(sink.port, '127.0.0.1', 500)).toBe(false);
  });
});
