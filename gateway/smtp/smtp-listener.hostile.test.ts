/**
 * The SMTP listener against hostile and careless clients (issue 14, items 3, 5, 6, 8, 9, 10, 15):
 * each test plays what such a client does on a real socket and asserts what it hears.
 */
import { existsSync, mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { afterEach, describe, expect, it } from 'vitest';
import { authPlain, rawSmtp, type RawSmtp } from '../../test/helpers/raw-smtp.js';
import { DEFAULTS, type AuthLimitsConfig, type SmtpListenerConfig } from '../config/schema.js';
import { HispError } from '../core/errors.js';
import { createLogger } from '../core/logger.js';
import { SmtpListener, type SmtpEdgeHandlers, type SmtpTransaction } from './smtp-listener.js';

const TRUST = path.resolve(import.meta.dirname, '../../test/fixtures/trust');
const TLS = { tlsCert: path.join(TRUST, 'tls-server.cert.pem'), tlsKey: path.join(TRUST, 'tls-server.key.pem') };
const logger = createLogger({ level: 'silent' });
const MESSAGE = 'From: sender@a.test\r\nTo: patient@b.test\r\nSubject: test\r\n\r\nHello.\r\n';

function listenerConfig(overrides: Partial<SmtpListenerConfig> = {}): SmtpListenerConfig {
  return {
    enabled: true,
    host: '127.0.0.1',
    port: 0,
    requireTls: false,
    maxMessageBytes: 8 * 1024 * 1024,
    commandTimeoutMs: 10_000,
    dataTimeoutMs: 10_000,
    maxClients: 30,
    perClient: { maxConnections: 20, messagesPerMinute: 0, bytesPerMinute: 0 },
    ...overrides,
  };
}

interface Recorder {
  handlers: SmtpEdgeHandlers;
  auths: string[];
  messages: { tx: SmtpTransaction; bytes: Buffer; fileDuring: string | undefined }[];
}

function recorder(overrides: Partial<SmtpEdgeHandlers> = {}): Recorder {
  const r: Recorder = {
    auths: [],
    messages: [],
    handlers: {
      authenticate: (username, password) => {
        r.auths.push(username);
        return Promise.resolve(password === 'secret');
      },
      mailFrom: () => undefined,
      rcptTo: () => undefined,
      message: (tx) => {
        const bytes = tx.data.whole ? tx.data.head : readFileSync(tx.data.file!);
        r.messages.push({ tx, bytes, fileDuring: tx.data.file !== undefined && existsSync(tx.data.file) ? tx.data.file : undefined });
        return Promise.resolve('2.0.0 Ok: queued as T1');
      },
      ...overrides,
    },
  };
  return r;
}

const open: SmtpListener[] = [];
const clients: RawSmtp[] = [];

interface StartOptions {
  auth?: boolean;
  authLimits?: Partial<AuthLimitsConfig>;
  incomingDir?: string;
  now?: () => number;
}

async function start(config: SmtpListenerConfig, handlers: SmtpEdgeHandlers, o: StartOptions = {}): Promise<SmtpListener> {
  const l = new SmtpListener(config, handlers, {
    name: 'test',
    hostname: 'hisp.test',
    logger,
    auth: o.auth ?? false,
    closeTimeoutMs: 200,
    authLimits: { ...DEFAULTS.submission.authLimits, ...o.authLimits },
    ...(o.incomingDir ? { incomingDir: o.incomingDir } : {}),
    ...(o.now ? { now: o.now } : {}),
  });
  open.push(l);
  await l.listen();
  return l;
}

async function connect(port: number): Promise<RawSmtp> {
  const c = await rawSmtp(port);
  clients.push(c);
  return c;
}

async function session(port: number): Promise<RawSmtp> {
  const c = await connect(port);
  expect(await c.read()).toMatch(/^220 /);
  expect(await c.send('EHLO client.test\r\n')).toMatch(/^250/);
  return c;
}

/** A transaction up to the 354, then the content as given (unstuffed by the caller) and the end of data. */
async function sendMessage(c: RawSmtp, content: string | Buffer): Promise<string> {
  expect(await c.send('MAIL FROM:<sender@a.test>\r\n')).toMatch(/^250/);
  expect(await c.send('RCPT TO:<patient@b.test>\r\n')).toMatch(/^250/);
  expect(await c.send('DATA\r\n')).toMatch(/^354/);
  return c.send(Buffer.concat([Buffer.from(content), Buffer.from('.\r\n')]));
}

/** Resolves when the server has closed the client's connection (the raw client reads "closed"). */
async function closedBy(c: RawSmtp): Promise<string> {
  return c.read();
}

afterEach(async () => {
  for (const c of clients.splice(0)) c.close();
  await Promise.all(open.splice(0).map((l) => l.close()));
});

describe('STARTTLS (item 8, RFC 3207)', () => {
  it('without a certificate, STARTTLS is neither announced nor served: 454 4.7.0, and the session goes on in clear', async () => {
    const l = await start(listenerConfig(), recorder().handlers);
    const c = await connect(l.port);
    await c.read();
    expect(await c.send('EHLO client.test\r\n')).not.toMatch(/STARTTLS/);
    expect(await c.send('STARTTLS\r\n')).toBe('454 4.7.0 TLS not available: this listener has no certificate');
    expect(await c.send('MAIL FROM:<sender@a.test>\r\n')).toMatch(/^250 /);
  });

  it('with a certificate, TLS 1.2+ with forward-secret AEAD suites only (Mozilla intermediate)', async () => {
    const l = await start(listenerConfig({ ...TLS }), recorder().handlers);
    const handshake = async (options: tls.ConnectionOptions): Promise<string> => {
      const socket = net.connect(l.port, '127.0.0.1');
      const c = { socket, buffer: '' };
      socket.on('data', (d: Buffer) => (c.buffer += d.toString('latin1')));
      const until = async (re: RegExp) => {
        for (let i = 0; i < 200 && !re.test(c.buffer); i++) await new Promise((r) => setTimeout(r, 10));
      };
      await until(/^220 /m);
      socket.write('EHLO client.test\r\n');
      await until(/^250 /m);
      socket.write('STARTTLS\r\n');
      await until(/^220 .*TLS/m);
      socket.removeAllListeners('data');
      const secure = tls.connect({ socket, rejectUnauthorized: false, ...options });
      try {
        return await new Promise<string>((resolve) => {
          secure.once('secureConnect', () => resolve(`${secure.getProtocol() ?? ''} ${secure.getCipher().name}`));
          secure.once('error', (err: NodeJS.ErrnoException) => resolve(`failed: ${err.code ?? err.message}`));
        });
      } finally {
        secure.destroy();
      }
    };
    expect(await handshake({ maxVersion: 'TLSv1.2', ciphers: 'ECDHE-RSA-AES128-GCM-SHA256' })).toBe('TLSv1.2 ECDHE-RSA-AES128-GCM-SHA256');
    expect(await handshake({})).toMatch(/^TLSv1\.3 TLS_/);
    // CBC without forward secrecy, and CBC with it: both refused by the server.
    expect(await handshake({ maxVersion: 'TLSv1.2', ciphers: 'AES128-SHA:AES256-SHA256' })).toMatch(/^failed/);
    expect(await handshake({ maxVersion: 'TLSv1.2', ciphers: 'ECDHE-RSA-AES128-SHA' })).toMatch(/^failed/);
    expect(await handshake({ minVersion: 'TLSv1.1', maxVersion: 'TLSv1.1', ciphers: 'DEFAULT:@SECLEVEL=0' })).toMatch(/^failed/);
  });

  it('the client settings refused above work against a TLS server without the profile (the refusal is the server\'s)', async () => {
    const server = tls.createServer({ cert: readFileSync(TLS.tlsCert), key: readFileSync(TLS.tlsKey), ciphers: 'ALL:@SECLEVEL=0', minVersion: 'TLSv1' }, (s) => s.end());
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as net.AddressInfo).port;
    try {
      const result = await new Promise<string>((resolve) => {
        const s = tls.connect({ port, host: '127.0.0.1', rejectUnauthorized: false, maxVersion: 'TLSv1.2', ciphers: 'ECDHE-RSA-AES128-SHA' }, () => {
          resolve(s.getCipher().name);
          s.destroy();
        });
        s.once('error', (err: Error) => resolve(`failed: ${err.message}`));
      });
      expect(result).toBe('ECDHE-RSA-AES128-SHA');
    } finally {
      server.close();
    }
  });
});

describe('AUTH and TLS (item 15, RFC 4954 §4)', () => {
  it('with a certificate, AUTH is not announced before STARTTLS and is refused 530 5.7.0 without a password check; after it, it is', async () => {
    const r = recorder();
    const l = await start(listenerConfig({ ...TLS, requireTls: true }), r.handlers, { auth: true });
    const c = await connect(l.port);
    await c.read();
    const before = await c.send('EHLO client.test\r\n');
    expect(before).toMatch(/STARTTLS/);
    expect(before).not.toMatch(/AUTH/);
    expect(await c.send(`AUTH PLAIN ${authPlain('ehr', 'secret')}\r\n`)).toBe('530 5.7.0 Must issue a STARTTLS command first');
    expect(await c.send('AUTH LOGIN\r\n')).toBe('530 5.7.0 Must issue a STARTTLS command first');
    expect(r.auths).toEqual([]);
    await c.startTls();
    // startTls sent EHLO again: a new one shows what the secure session offers.
    const after = await c.send('EHLO client.test\r\n');
    expect(after).toMatch(/^250-AUTH PLAIN LOGIN$/m);
    expect(after).not.toMatch(/STARTTLS/);
    expect(await c.send(`AUTH PLAIN ${authPlain('ehr', 'secret')}\r\n`)).toMatch(/^235 2\.7\.0 /);
  });

  it('every refusal of a confused or hostile session carries an enhanced status code, and every reply is ASCII', async () => {
    const r = recorder({
      mailFrom: (address) => {
        if (address.startsWith('bad')) throw new HispError('HISP_SMTP_SENDER_NOT_ALLOWED', 'see RFC 5322 §3.6 — not yours');
      },
    });
    const l = await start(listenerConfig({ ...TLS, requireTls: true }), r.handlers, { auth: true });
    const c = await connect(l.port);
    const replies = [await c.read()];
    const helo: string[] = [];
    for (const line of [
      'MAIL FROM:<a@b.test>',
      'HELO',
      'EHLO client.test',
      'FOO bar',
      'RCPT TO:<x@y.test>',
      'DATA',
      'AUTH PLAIN',
      'AUTH CRAM-MD5',
      'VRFY someone',
      'MAIL FROM:<a@b.test> SIZE=x',
      'RSET extra',
      'NOOP',
      'MAIL FROM:<a@b.test>',
    ]) {
      const reply = await c.send(`${line}\r\n`);
      // RFC 2034 §3: the replies to HELO and EHLO carry no enhanced status code.
      if (/^(HELO|EHLO)/.test(line)) helo.push(reply);
      else replies.push(reply);
      if (reply.startsWith('421')) break;
    }
    // smtp-server's own guard against a session that will not authenticate.
    expect(replies.at(-1)).toBe('421 4.4.2 Error: too many unauthenticated commands');
    const d = await session(l.port);
    await d.startTls();
    expect(await d.send(`AUTH PLAIN ${authPlain('ehr', 'secret')}\r\n`)).toMatch(/^235 /);
    replies.push(await d.send('MAIL FROM:<bad@a.test>\r\n'));
    replies.push(await d.send(`AUTH PLAIN ${authPlain('ehr', 'secret')}\r\n`));
    replies.push(await d.send('MAIL FROM:<a@a.test> BODY=9BIT\r\n'));
    replies.push(await d.send('STARTTLS\r\n'));
    const refusals = replies.filter((x) => /^[45]/.test(x));
    expect(refusals.length).toBeGreaterThanOrEqual(10);
    for (const x of refusals) expect(x).toMatch(/^[45]\d\d [45]\.\d{1,3}\.\d{1,3} \S/);
    for (const x of [...replies, ...helo]) expect(x).toMatch(/^[\t\x20-\x7e\r\n]*$/);
    expect(replies).toContain('553 5.7.1 see RFC 5322 section 3.6 ? not yours [HISP_SMTP_SENDER_NOT_ALLOWED]');
  });
});

describe('AUTH failures (item 3)', () => {
  it('on one connection: the first failures are 535 5.7.8, the last one allowed 421 4.7.0 and the connection closed', async () => {
    const r = recorder();
    const l = await start(listenerConfig(), r.handlers, { auth: true, authLimits: { maxFailuresPerConnection: 3, maxFailuresPerClient: 0, maxFailuresPerUser: 0 } });
    const c = await session(l.port);
    expect(await c.send(`AUTH PLAIN ${authPlain('ehr', 'one')}\r\n`)).toMatch(/^535 5\.7\.8 /);
    expect(await c.send(`AUTH PLAIN ${authPlain('ehr', 'two')}\r\n`)).toMatch(/^535 5\.7\.8 /);
    expect(await c.send(`AUTH PLAIN ${authPlain('ehr', 'three')}\r\n`)).toMatch(/^421 4\.7\.0 too many failed authentications/);
    expect(await closedBy(c)).toMatch(/^closed/);
    expect(r.auths).toHaveLength(3);
  });

  it('per client: after maxFailuresPerClient failures (over several connections), even the right password is 454 4.7.0 without a check, until the lock-out ends', async () => {
    let now = Date.parse('2026-12-07T12:00:00Z');
    const r = recorder();
    const l = await start(listenerConfig(), r.handlers, {
      auth: true,
      now: () => now,
      authLimits: { maxFailuresPerConnection: 2, maxFailuresPerClient: 4, maxFailuresPerUser: 0, windowMinutes: 15, lockoutMinutes: 15 },
    });
    for (let i = 0; i < 2; i++) {
      const c = await session(l.port);
      expect(await c.send(`AUTH PLAIN ${authPlain('ehr', 'bad')}\r\n`)).toMatch(/^535 /);
      expect(await c.send(`AUTH PLAIN ${authPlain('ehr', 'bad')}\r\n`)).toMatch(/^421 /);
    }
    expect(r.auths).toHaveLength(4);
    const c = await session(l.port);
    expect(await c.send(`AUTH PLAIN ${authPlain('ehr', 'secret')}\r\n`)).toMatch(/^454 4\.7\.0 too many failed authentications: try again in 15 minutes/);
    expect(await c.send(`AUTH PLAIN ${authPlain('someone-else', 'secret')}\r\n`)).toMatch(/^421 4\.7\.0 /);
    expect(r.auths).toHaveLength(4);
    now += 15 * 60_000 + 1;
    const d = await session(l.port);
    expect(await d.send(`AUTH PLAIN ${authPlain('ehr', 'secret')}\r\n`)).toMatch(/^235 /);
  });

  it('per client: a success with an account of its own does not reset the client\'s count of failures', async () => {
    const r = recorder();
    const l = await start(listenerConfig(), r.handlers, { auth: true, authLimits: { maxFailuresPerConnection: 10, maxFailuresPerClient: 4, maxFailuresPerUser: 0 } });
    const c = await session(l.port);
    for (let i = 0; i < 3; i++) expect(await c.send(`AUTH PLAIN ${authPlain(`victim${i}`, 'guess')}\r\n`)).toMatch(/^535 /);
    const d = await session(l.port);
    expect(await d.send(`AUTH PLAIN ${authPlain('ehr', 'secret')}\r\n`)).toMatch(/^235 /);
    expect(await c.send(`AUTH PLAIN ${authPlain('victim3', 'guess')}\r\n`)).toMatch(/^535 /);
    expect(await c.send(`AUTH PLAIN ${authPlain('victim4', 'guess')}\r\n`)).toMatch(/^454 4\.7\.0 /);
  });

  it('per user name: maxFailuresPerUser failures lock that name, whatever the client, not the others', async () => {
    const r = recorder();
    const l = await start(listenerConfig(), r.handlers, {
      auth: true,
      authLimits: { maxFailuresPerConnection: 10, maxFailuresPerClient: 0, maxFailuresPerUser: 3 },
    });
    const c = await session(l.port);
    for (let i = 0; i < 3; i++) expect(await c.send(`AUTH PLAIN ${authPlain('EHR', 'bad')}\r\n`)).toMatch(/^535 /);
    expect(await c.send(`AUTH PLAIN ${authPlain('ehr', 'secret')}\r\n`)).toMatch(/^454 4\.7\.0 /);
    expect(await c.send(`AUTH PLAIN ${authPlain('other', 'secret')}\r\n`)).toMatch(/^235 /);
    expect(r.auths).toEqual(['EHR', 'EHR', 'EHR', 'other']);
  });
});

describe('connections per client and in all (item 9)', () => {
  it('a client may hold perClient.maxConnections; one more is answered 421 4.7.0; a closed one frees its place', async () => {
    const l = await start(listenerConfig({ perClient: { maxConnections: 2, messagesPerMinute: 0, bytesPerMinute: 0 } }), recorder().handlers);
    const a = await connect(l.port);
    const b = await connect(l.port);
    expect(await a.read()).toMatch(/^220 /);
    expect(await b.read()).toMatch(/^220 /);
    const c = await connect(l.port);
    expect(await c.read()).toBe('421 4.7.0 too many connections from your address (at most 2) [HISP_SMTP_TOO_MANY_CONNECTIONS]');
    expect(await closedBy(c)).toMatch(/^closed/);
    a.close();
    // The server sees the close asynchronously: a new connection is taken once it has.
    let reply = '';
    for (let i = 0; i < 50 && !reply.startsWith('220'); i++) {
      const d = await connect(l.port);
      reply = await d.read();
      if (!reply.startsWith('220')) d.close();
    }
    expect(reply).toMatch(/^220 /);
  });

  it('beyond maxClients in all, 421 4.3.2 with an enhanced code', async () => {
    const l = await start(listenerConfig({ maxClients: 2, perClient: { maxConnections: 2, messagesPerMinute: 0, bytesPerMinute: 0 } }), recorder().handlers);
    await (await connect(l.port)).read();
    await (await connect(l.port)).read();
    const c = await connect(l.port);
    expect(await c.read()).toMatch(/^421 4\.(3\.2|7\.0) /);
  });

  it('a command dribbled a byte at a time is cut (421 4.4.2) once commandTimeoutMs has passed since its first byte', async () => {
    const l = await start(listenerConfig({ commandTimeoutMs: 600 }), recorder().handlers);
    const c = await session(l.port);
    const started = Date.now();
    const line = 'MAIL FROM:<sender@a.test>';
    let i = 0;
    // Each byte comes well within the idle time-out (which alone would never fire).
    const dribble = setInterval(() => {
      if (i < line.length) c.write(line[i++]!);
    }, 150);
    try {
      const reply = await c.read();
      expect(reply).toMatch(/^421 4\.4\.2 command line not completed within 1 s/);
      expect(Date.now() - started).toBeLessThan(5_000);
    } finally {
      clearInterval(dribble);
    }
  });
});

describe('sessions that send no message (item 9)', () => {
  it('more than 100 junk commands (NOOP, RSET, VRFY…) without a message end the session with 421 4.7.0; a message starts the count again', async () => {
    const l = await start(listenerConfig(), recorder().handlers);
    const c = await session(l.port);
    for (let i = 0; i < 90; i++) expect(await c.send('NOOP\r\n')).toMatch(/^250 /);
    expect(await sendMessage(c, MESSAGE)).toMatch(/^250 /);
    // sendMessage's RSET-free transaction reset the count: 100 more are allowed.
    for (let i = 0; i < 100; i++) expect(await c.send(i % 2 ? 'RSET\r\n' : 'NOOP\r\n')).toMatch(/^250 /);
    expect(await c.send('NOOP\r\n')).toBe('421 4.7.0 too many junk commands without a message: closing the connection');
    expect(await closedBy(c)).toMatch(/^closed/);
  });

  it('more than 20 refusals without a message end the session with 421 4.7.0', async () => {
    const l = await start(listenerConfig(), recorder({ rcptTo: () => { throw new HispError('HISP_SMTP_UNKNOWN_RECIPIENT', 'no such recipient'); } }).handlers);
    const c = await session(l.port);
    expect(await c.send('MAIL FROM:<sender@a.test>\r\n')).toMatch(/^250 /);
    for (let i = 0; i < 20; i++) expect(await c.send(`RCPT TO:<nobody${i}@b.test>\r\n`)).toMatch(/^550 5\.1\.1 /);
    const last = await c.send('RCPT TO:<nobody@b.test>\r\n');
    expect(last).toMatch(/^550 5\.1\.1 /);
    expect(await c.read()).toBe('421 4.7.0 too many errors without a message: closing the connection');
  });

  it('a command line left open before STARTTLS does not cut the TLS session that follows', async () => {
    const l = await start(listenerConfig({ ...TLS, commandTimeoutMs: 600 }), recorder().handlers);
    const c = await connect(l.port);
    await c.read();
    await c.send('EHLO client.test\r\n');
    // STARTTLS and the start of a plaintext line in one write: the line is discarded with the
    // plaintext parser (RFC 3207 §4.2); its clock must go with it.
    c.write('STARTTLS\r\nNO');
    await c.startTlsAfterReply();
    // Complete lines, past the 600 ms the left-over plaintext clock would have run for.
    for (let i = 0; i < 8; i++) {
      await new Promise((r) => setTimeout(r, 200));
      expect(await c.send('NOOP\r\n')).toMatch(/^250 /);
    }
  });
});

describe('rates per client (item 5)', () => {
  it('messagesPerMinute: the next MAIL is 451 4.7.0 until the bucket has refilled', async () => {
    let now = Date.parse('2026-12-07T12:00:00Z');
    const r = recorder();
    const l = await start(listenerConfig({ perClient: { maxConnections: 20, messagesPerMinute: 2, bytesPerMinute: 0 } }), r.handlers, { now: () => now });
    const c = await session(l.port);
    expect(await sendMessage(c, MESSAGE)).toMatch(/^250 /);
    expect(await sendMessage(c, MESSAGE)).toMatch(/^250 /);
    expect(await c.send('MAIL FROM:<sender@a.test>\r\n')).toMatch(/^451 4\.7\.0 too many messages from your address/);
    // Another connection of the same client is the same client.
    const d = await session(l.port);
    expect(await d.send('MAIL FROM:<sender@a.test>\r\n')).toMatch(/^451 4\.7\.0 /);
    now += 30_000; // half a minute: one message's worth
    expect(await sendMessage(d, MESSAGE)).toMatch(/^250 /);
    expect(r.messages).toHaveLength(3);
  });

  it('bytesPerMinute: a transfer that runs a minute\'s worth into debt is cut (451 4.7.0), nothing stored', async () => {
    const r = recorder();
    const l = await start(listenerConfig({ perClient: { maxConnections: 20, messagesPerMinute: 0, bytesPerMinute: 1000 } }), r.handlers);
    const c = await session(l.port);
    expect(await sendMessage(c, `${MESSAGE}${'x'.repeat(5000)}\r\n`)).toMatch(/^451 4\.7\.0 too many octets/);
    expect(r.messages).toEqual([]);
  });

  it('bytesPerMinute: a client in debt is refused at its next MAIL', async () => {
    const r = recorder();
    const l = await start(listenerConfig({ perClient: { maxConnections: 20, messagesPerMinute: 0, bytesPerMinute: 1000 } }), r.handlers);
    const c = await session(l.port);
    expect(await sendMessage(c, `${MESSAGE}${'x'.repeat(1500)}\r\n`)).toMatch(/^250 /);
    expect(await c.send('MAIL FROM:<sender@a.test>\r\n')).toMatch(/^451 4\.7\.0 too many octets/);
  });
});

describe('DATA (items 6 and 10)', () => {
  it('NUL in DATA is refused 554 5.6.0 before the handler (RFC 5322 §2.3)', async () => {
    const r = recorder();
    const l = await start(listenerConfig(), r.handlers);
    const c = await session(l.port);
    expect(await sendMessage(c, `${MESSAGE}a\u0000b\r\n`)).toMatch(/^554 5\.6\.0 NUL at octet \d+/);
    expect(r.messages).toEqual([]);
  });

  it('a large message is written to a file as it arrives, handed over whole, and the file is gone afterwards', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'hisp-incoming-test-'));
    const r = recorder();
    const l = await start(listenerConfig(), r.handlers, { incomingDir: dir });
    const c = await session(l.port);
    const line = `${'0123456789'.repeat(7)}\r\n`;
    const content = `${MESSAGE}${line.repeat(20_000)}`; // 1.4 MB
    expect(await sendMessage(c, content)).toMatch(/^250 /);
    const got = r.messages[0]!;
    expect(got.tx.data.whole).toBe(false);
    expect(got.fileDuring).toBeDefined();
    expect(got.tx.data.size).toBe(content.length);
    expect(got.tx.data.head.length).toBeLessThanOrEqual(256 * 1024);
    expect(got.bytes.toString('latin1')).toBe(content);
    expect(readdirSync(dir)).toEqual([]);
  });

  it('a bare LF, a NUL or too many octets deep in a large message: refused, nothing left on disk', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'hisp-incoming-test-'));
    const r = recorder();
    const l = await start(listenerConfig({ maxMessageBytes: 2 * 1024 * 1024 }), r.handlers, { incomingDir: dir });
    const c = await session(l.port);
    const line = `${'0123456789'.repeat(7)}\r\n`;
    const deep = `${MESSAGE}${line.repeat(10_000)}`;
    expect(await sendMessage(c, `${deep}bare\nLF\r\n`)).toMatch(/^550 5\.6\.0 bare LF at octet 720\d{3}/);
    expect(await sendMessage(c, `${deep}a\u0000\r\n`)).toMatch(/^554 5\.6\.0 NUL/);
    expect(await sendMessage(c, `${deep}${line.repeat(30_000)}`)).toMatch(/^552 5\.3\.4 /);
    expect(r.messages).toEqual([]);
    expect(readdirSync(dir)).toEqual([]);
  });

  it('a handler failure names nothing internal: a trace id, and the log has the rest', async () => {
    const r = recorder({ message: () => Promise.reject(new HispError('HISP_IO', 'cannot create /var/lib/hisp/messages/x.eml: ENOSPC', { transient: true })) });
    const l = await start(listenerConfig(), r.handlers);
    const c = await session(l.port);
    const reply = await sendMessage(c, MESSAGE);
    expect(reply).toMatch(/^451 4\.3\.0 local error in processing \(trace [0-9a-f]{12}\) \[HISP_IO\]$/);
    const bug = recorder({ message: () => Promise.reject(new Error('TypeError at /work/gateway/x.ts:10')) });
    const l2 = await start(listenerConfig(), bug.handlers);
    const d = await session(l2.port);
    expect(await sendMessage(d, MESSAGE)).toMatch(/^451 4\.3\.0 local error in processing \(trace [0-9a-f]{12}\)$/);
  });
});
