import net from 'node:net';
import path from 'node:path';
import nodemailer from 'nodemailer';
import type { SMTPServerSession } from 'smtp-server';
import { afterEach, describe, expect, it } from 'vitest';
import { authPlain, rawSmtp, type RawSmtp } from '../../test/helpers/raw-smtp.js';
import type { SmtpListenerConfig } from '../config/schema.js';
import { createLogger } from '../core/logger.js';
import { HispError } from '../core/errors.js';
import { SmtpListener, type SmtpEdgeHandlers, type SmtpTransaction } from './smtp-listener.js';

const TRUST = path.resolve(import.meta.dirname, '../../test/fixtures/trust');
const TLS = { tlsCert: path.join(TRUST, 'tls-server.cert.pem'), tlsKey: path.join(TRUST, 'tls-server.key.pem') };
const logger = createLogger({ level: 'silent' });

function listenerConfig(overrides: Partial<SmtpListenerConfig> = {}): SmtpListenerConfig {
  return {
    enabled: true,
    host: '127.0.0.1',
    port: 0,
    requireTls: false,
    maxMessageBytes: 4096,
    commandTimeoutMs: 10_000,
    dataTimeoutMs: 10_000,
    maxClients: 10,
    perClient: { maxConnections: 10, messagesPerMinute: 0, bytesPerMinute: 0 },
    ...overrides,
  };
}

interface Recorder {
  handlers: SmtpEdgeHandlers;
  authCalls: { username: string; password: string }[];
  mailFroms: string[];
  rcptTos: string[];
  messages: SmtpTransaction[];
}

/** Handlers that record their calls; each step can be replaced. */
function recorder(overrides: Partial<SmtpEdgeHandlers> = {}): Recorder {
  const r: Recorder = {
    authCalls: [],
    mailFroms: [],
    rcptTos: [],
    messages: [],
    handlers: {
      authenticate: (username: string, password: string) => {
        r.authCalls.push({ username, password });
        return Promise.resolve(username === 'ehr' && password === 'secret');
      },
      mailFrom: (address: string) => {
        r.mailFroms.push(address);
      },
      rcptTo: (address: string) => {
        r.rcptTos.push(address);
      },
      message: (tx: SmtpTransaction) => {
        r.messages.push(tx);
        return Promise.resolve('2.0.0 Ok: queued as TEST1');
      },
      ...overrides,
    },
  };
  return r;
}

const open: SmtpListener[] = [];
const clients: RawSmtp[] = [];

async function start(config: SmtpListenerConfig, handlers: SmtpEdgeHandlers, auth = false, closeTimeoutMs = 200): Promise<SmtpListener> {
  const l = new SmtpListener(config, handlers, { name: 'test', hostname: 'hisp.test', logger, auth, closeTimeoutMs });
  open.push(l);
  await l.listen();
  return l;
}

async function connect(port: number): Promise<RawSmtp> {
  const c = await rawSmtp(port);
  clients.push(c);
  return c;
}

/** A raw session past the greeting and EHLO. */
async function session(port: number): Promise<RawSmtp> {
  const c = await connect(port);
  expect(await c.read()).toMatch(/^220 /);
  expect(await c.send('EHLO client.test\r\n')).toMatch(/^250/);
  return c;
}

const MESSAGE = 'From: sender@a.test\r\nTo: patient@b.test\r\nSubject: test\r\n\r\nHello.\r\n';

afterEach(async () => {
  for (const c of clients.splice(0)) c.close();
  await Promise.all(open.splice(0).map((l) => l.close()));
});

describe('SmtpListener: SIZE (RFC 1870)', () => {
  it('announces maxMessageBytes in the EHLO reply', async () => {
    const l = await start(listenerConfig({ maxMessageBytes: 4096 }), recorder().handlers);
    const c = await connect(l.port);
    await c.read();
    const ehlo = await c.send('EHLO client.test\r\n');
    expect(ehlo).toMatch(/^250[- ]SIZE 4096$/m);
  });

  it('refuses a message over maxMessageBytes with 552 5.3.4, without calling the message handler', async () => {
    const r = recorder();
    const l = await start(listenerConfig({ maxMessageBytes: 4096 }), r.handlers);
    const c = await session(l.port);
    expect(await c.send('MAIL FROM:<sender@a.test>\r\n')).toMatch(/^250/);
    expect(await c.send('RCPT TO:<patient@b.test>\r\n')).toMatch(/^250/);
    expect(await c.send('DATA\r\n')).toMatch(/^354/);
    const big = `${MESSAGE}${'x'.repeat(70)}\r\n`.repeat(80); // about 8 KB
    const reply = await c.send(`${big}.\r\n`);
    expect(reply).toMatch(/^552 5\.3\.4 /);
    expect(r.messages).toEqual([]);
    // The session goes on: the next transaction is taken.
    expect(await c.send('MAIL FROM:<sender@a.test>\r\n')).toMatch(/^250/);
  });

  it('refuses MAIL with a declared SIZE over the limit with 552, before any handler', async () => {
    const r = recorder();
    const l = await start(listenerConfig({ maxMessageBytes: 4096 }), r.handlers);
    const c = await session(l.port);
    expect(await c.send('MAIL FROM:<sender@a.test> SIZE=4097\r\n')).toMatch(/^552 /);
    expect(r.mailFroms).toEqual([]);
    expect(await c.send('MAIL FROM:<sender@a.test> SIZE=4096\r\n')).toMatch(/^250/);
  });

  it('takes a message just under the limit', async () => {
    const r = recorder();
    const l = await start(listenerConfig({ maxMessageBytes: 4096 }), r.handlers);
    const transport = nodemailer.createTransport({ host: '127.0.0.1', port: l.port, secure: false, ignoreTLS: true });
    const body = `${MESSAGE}${'y'.repeat(3000)}\r\n`;
    const info = await transport.sendMail({ envelope: { from: 'sender@a.test', to: ['patient@b.test'] }, raw: body });
    expect(info.response).toMatch(/^250 /);
    expect(r.messages).toHaveLength(1);
    expect(r.messages[0]!.data.head.toString('latin1')).toBe(body);
  });

  it('refuses an oversized message sent by nodemailer with 552', async () => {
    const r = recorder();
    const l = await start(listenerConfig({ maxMessageBytes: 4096 }), r.handlers);
    const transport = nodemailer.createTransport({ host: '127.0.0.1', port: l.port, secure: false, ignoreTLS: true });
    await expect(
      transport.sendMail({ envelope: { from: 'sender@a.test', to: ['patient@b.test'] }, raw: `${MESSAGE}${'z'.repeat(10_000)}\r\n` }),
    ).rejects.toMatchObject({ responseCode: 552, response: expect.stringContaining('5.3.4') as string });
    expect(r.messages).toEqual([]);
  });
});

describe('SmtpListener: TLS and AUTH', () => {
  it('requireTls: MAIL before STARTTLS gets 530 5.7.0, and the mailFrom handler is not called', async () => {
    const r = recorder();
    const l = await start(listenerConfig({ ...TLS, requireTls: true }), r.handlers);
    const c = await session(l.port);
    expect(await c.send('MAIL FROM:<sender@a.test>\r\n')).toMatch(/^530 5\.7\.0 /);
    expect(r.mailFroms).toEqual([]);
    await c.startTls();
    expect(await c.send('MAIL FROM:<sender@a.test>\r\n')).toMatch(/^250/);
    expect(r.mailFroms).toEqual(['sender@a.test']);
  });

  it('requireTls: nodemailer without STARTTLS is refused 530', async () => {
    const r = recorder();
    const l = await start(listenerConfig({ ...TLS, requireTls: true }), r.handlers);
    const transport = nodemailer.createTransport({ host: '127.0.0.1', port: l.port, secure: false, ignoreTLS: true });
    await expect(transport.sendMail({ envelope: { from: 'sender@a.test', to: ['patient@b.test'] }, raw: MESSAGE })).rejects.toMatchObject({ responseCode: 530 });
    expect(r.messages).toEqual([]);
  });

  it('auth: MAIL before AUTH gets 530 5.7.0', async () => {
    const r = recorder();
    const l = await start(listenerConfig(), r.handlers, true);
    const c = await session(l.port);
    expect(await c.send('MAIL FROM:<sender@a.test>\r\n')).toMatch(/^530 5\.7\.0 /);
    expect(r.mailFroms).toEqual([]);
  });

  it('AUTH PLAIN calls authenticate: bad credentials 535 5.7.8, good ones 235, then MAIL works', async () => {
    const r = recorder();
    const l = await start(listenerConfig(), r.handlers, true);
    const c = await session(l.port);
    expect(await c.send(`AUTH PLAIN ${authPlain('ehr', 'wrong')}\r\n`)).toMatch(/^535 5\.7\.8 /);
    expect(await c.send('MAIL FROM:<sender@a.test>\r\n')).toMatch(/^530 /);
    expect(await c.send(`AUTH PLAIN ${authPlain('ehr', 'secret')}\r\n`)).toMatch(/^235/);
    expect(r.authCalls).toEqual([
      { username: 'ehr', password: 'wrong' },
      { username: 'ehr', password: 'secret' },
    ]);
    expect(await c.send('MAIL FROM:<sender@a.test>\r\n')).toMatch(/^250/);
    expect(r.mailFroms).toEqual(['sender@a.test']);
  });

  it('AUTH LOGIN calls authenticate with the user name and password', async () => {
    const r = recorder();
    const l = await start(listenerConfig(), r.handlers, true);
    const c = await session(l.port);
    const b64 = (s: string) => Buffer.from(s).toString('base64');
    expect(await c.send('AUTH LOGIN\r\n')).toMatch(/^334 /);
    expect(await c.send(`${b64('ehr')}\r\n`)).toMatch(/^334 /);
    expect(await c.send(`${b64('nope')}\r\n`)).toMatch(/^535 5\.7\.8 /);
    expect(await c.send('AUTH LOGIN\r\n')).toMatch(/^334 /);
    expect(await c.send(`${b64('ehr')}\r\n`)).toMatch(/^334 /);
    expect(await c.send(`${b64('secret')}\r\n`)).toMatch(/^235/);
    expect(r.authCalls).toEqual([
      { username: 'ehr', password: 'nope' },
      { username: 'ehr', password: 'secret' },
    ]);
    expect(await c.send('MAIL FROM:<sender@a.test>\r\n')).toMatch(/^250/);
  });

  it('the authenticated user name becomes session.user', async () => {
    let seen: unknown;
    const r = recorder({
      mailFrom: (_address: string, s: SMTPServerSession) => {
        seen = s.user;
      },
    });
    const l = await start(listenerConfig(), r.handlers, true);
    const c = await session(l.port);
    expect(await c.send(`AUTH PLAIN ${authPlain('ehr', 'secret')}\r\n`)).toMatch(/^235/);
    expect(await c.send('MAIL FROM:<sender@a.test>\r\n')).toMatch(/^250/);
    expect(seen).toBe('ehr');
  });

  it('an authenticate that throws a HispError answers from the reply table, an internal one with a trace id only', async () => {
    const r = recorder({ authenticate: () => Promise.reject(new HispError('HISP_IO', 'account store /var/lib/hisp/users unavailable', { transient: true })) });
    const l = await start(listenerConfig(), r.handlers, true);
    const c = await session(l.port);
    const reply = await c.send(`AUTH PLAIN ${authPlain('ehr', 'secret')}\r\n`);
    expect(reply).toMatch(/^451 4\.3\.0 local error in processing \(trace [0-9a-f]{12}\) \[HISP_IO\]$/);
    expect(reply).not.toContain('/var/lib');
  });

  it('refuses AUTH before STARTTLS when a certificate is configured, and takes it after', async () => {
    const r = recorder();
    const l = await start(listenerConfig({ ...TLS }), r.handlers, true);
    const c = await session(l.port);
    // RFC 3207 §4: 530 5.7.0, must issue a STARTTLS command first (AUTH is not even announced).
    expect(await c.send(`AUTH PLAIN ${authPlain('ehr', 'secret')}\r\n`)).toBe('530 5.7.0 Must issue a STARTTLS command first');
    expect(r.authCalls).toEqual([]);
    await c.startTls();
    expect(await c.send(`AUTH PLAIN ${authPlain('ehr', 'secret')}\r\n`)).toMatch(/^235/);
    expect(r.authCalls).toHaveLength(1);
  });

  it('nodemailer: STARTTLS + AUTH submits; wrong password is 535', async () => {
    const r = recorder();
    const l = await start(listenerConfig({ ...TLS, requireTls: true }), r.handlers, true);
    const transport = (pass: string) =>
      nodemailer.createTransport({ host: '127.0.0.1', port: l.port, secure: false, requireTLS: true, auth: { user: 'ehr', pass }, tls: { rejectUnauthorized: false } });
    await expect(transport('bad').sendMail({ envelope: { from: 'sender@a.test', to: ['patient@b.test'] }, raw: MESSAGE })).rejects.toMatchObject({ responseCode: 535 });
    const info = await transport('secret').sendMail({ envelope: { from: 'sender@a.test', to: ['patient@b.test'] }, raw: MESSAGE });
    expect(info.response).toBe('250 2.0.0 Ok: queued as TEST1');
    expect(r.messages).toHaveLength(1);
    expect(r.messages[0]!.session.secure).toBe(true);
  });

  it('without auth, AUTH is not offered', async () => {
    const l = await start(listenerConfig(), recorder().handlers, false);
    const c = await connect(l.port);
    await c.read();
    expect(await c.send('EHLO client.test\r\n')).not.toMatch(/AUTH/);
    expect(await c.send(`AUTH PLAIN ${authPlain('ehr', 'secret')}\r\n`)).toMatch(/^500 /);
  });
});

describe('SmtpListener: handler errors take their reply from the one table', () => {
  it('HISP_SMTP_RELAY_DENIED from rcptTo → 550 5.7.1 with the text', async () => {
    const r = recorder({
      rcptTo: () => {
        throw new HispError('HISP_SMTP_RELAY_DENIED', 'relaying to other.test denied');
      },
    });
    const l = await start(listenerConfig(), r.handlers);
    const c = await session(l.port);
    expect(await c.send('MAIL FROM:<sender@a.test>\r\n')).toMatch(/^250/);
    expect(await c.send('RCPT TO:<x@other.test>\r\n')).toBe('550 5.7.1 relaying to other.test denied [HISP_SMTP_RELAY_DENIED]');
  });

  it('an async handler rejection is mapped the same way (HISP_SMTP_SENDER_NOT_ALLOWED → 553 5.7.1)', async () => {
    const r = recorder({ mailFrom: () => Promise.reject(new HispError('HISP_SMTP_SENDER_NOT_ALLOWED', 'sender not allowed')) });
    const l = await start(listenerConfig(), r.handlers);
    const c = await session(l.port);
    expect(await c.send('MAIL FROM:<sender@a.test>\r\n')).toBe('553 5.7.1 sender not allowed [HISP_SMTP_SENDER_NOT_ALLOWED]');
  });

  it('a transient HispError is answered 4xx with the 4.y.z form of its status', async () => {
    const r = recorder({
      rcptTo: () => {
        throw new HispError('HISP_SMTP_UNKNOWN_RECIPIENT', 'directory unavailable', { transient: true });
      },
    });
    const l = await start(listenerConfig(), r.handlers);
    const c = await session(l.port);
    expect(await c.send('MAIL FROM:<sender@a.test>\r\n')).toMatch(/^250/);
    expect(await c.send('RCPT TO:<x@b.test>\r\n')).toBe('451 4.1.1 directory unavailable [HISP_SMTP_UNKNOWN_RECIPIENT]');
  });

  it('a transient HispError from message() → 451, a permanent one → 5xx', async () => {
    let error = new HispError('HISP_DISCOVERY_TEMPORARY', 'DNS timed out', { transient: true });
    const r = recorder({ message: () => Promise.reject(error) });
    const l = await start(listenerConfig(), r.handlers);
    const c = await session(l.port);
    const transaction = async () => {
      await c.send('MAIL FROM:<sender@a.test>\r\n');
      await c.send('RCPT TO:<patient@b.test>\r\n');
      await c.send('DATA\r\n');
      return c.send(`${MESSAGE}.\r\n`);
    };
    expect(await transaction()).toBe('451 4.4.3 DNS timed out [HISP_DISCOVERY_TEMPORARY]');
    error = new HispError('HISP_MIME_MALFORMED', 'no From field');
    expect(await transaction()).toBe('554 5.6.0 no From field [HISP_MIME_MALFORMED]');
  });

  it('an error that is not a HispError is a local failure: 451 4.3.0, no internal text', async () => {
    const r = recorder({ message: () => Promise.reject(new Error('ENOSPC: /var/secret/path')) });
    const l = await start(listenerConfig(), r.handlers);
    const c = await session(l.port);
    await c.send('MAIL FROM:<sender@a.test>\r\n');
    await c.send('RCPT TO:<patient@b.test>\r\n');
    await c.send('DATA\r\n');
    const reply = await c.send(`${MESSAGE}.\r\n`);
    expect(reply).toMatch(/^451 4\.3\.0 /);
    expect(reply).not.toContain('/var/secret');
  });

  it('a line break in the error text does not split the reply', async () => {
    const r = recorder({
      rcptTo: () => {
        throw new HispError('HISP_SMTP_BAD_ADDRESS', 'bad\r\n250 injected');
      },
    });
    const l = await start(listenerConfig(), r.handlers);
    const c = await session(l.port);
    await c.send('MAIL FROM:<sender@a.test>\r\n');
    expect(await c.send('RCPT TO:<x@b.test>\r\n')).toMatch(/^553 5\.1\.3 bad 250 injected \[HISP_SMTP_BAD_ADDRESS\]$/);
    expect(await c.send('NOOP\r\n')).toMatch(/^250/);
  });
});

describe('SmtpListener: bare line ends (RFC 5321 §2.3.8)', () => {
  for (const [name, body] of [
    ['LF', 'From: sender@a.test\r\nSubject: x\r\n\r\nline one\nline two\r\n'],
    ['CR', 'From: sender@a.test\r\nSubject: x\r\n\r\nline one\rline two\r\n'],
  ] as const) {
    it(`refuses a bare ${name} with 550 5.6.0, without calling the message handler`, async () => {
      const r = recorder();
      const l = await start(listenerConfig(), r.handlers);
      const c = await session(l.port);
      expect(await c.send('MAIL FROM:<sender@a.test>\r\n')).toMatch(/^250/);
      expect(await c.send('RCPT TO:<patient@b.test>\r\n')).toMatch(/^250/);
      expect(await c.send('DATA\r\n')).toMatch(/^354/);
      expect(await c.send(`${body}.\r\n`)).toMatch(new RegExp(`^550 5\\.6\\.0 bare ${name} at octet \\d+`));
      expect(r.messages).toEqual([]);
    });
  }

  it('a bare LF before a smuggled ".\\r\\n" does not end the message early nor start a second transaction', async () => {
    const r = recorder();
    const l = await start(listenerConfig(), r.handlers);
    const c = await session(l.port);
    await c.send('MAIL FROM:<sender@a.test>\r\n');
    await c.send('RCPT TO:<patient@b.test>\r\n');
    await c.send('DATA\r\n');
    const reply = await c.send('From: sender@a.test\r\n\r\nhello\n.\r\nMAIL FROM:<evil@a.test>\r\n.\r\n');
    expect(reply).toMatch(/^550 5\.6\.0 bare LF/);
    expect(r.messages).toEqual([]);
    expect(r.mailFroms).toEqual(['sender@a.test']);
  });
});

describe('SmtpListener: the 250 reply', () => {
  it('is the text message() returned, and carries the transaction as received', async () => {
    let tx: SmtpTransaction | undefined;
    const r = recorder({
      message: (t) => {
        tx = t;
        return Promise.resolve(`2.0.0 Ok: queued as Q${t.recipients.length}`);
      },
    });
    const l = await start(listenerConfig(), r.handlers);
    const c = await session(l.port);
    await c.send('MAIL FROM:<sender@a.test>\r\n');
    await c.send('RCPT TO:<patient@b.test>\r\n');
    await c.send('RCPT TO:<other@b.test>\r\n');
    await c.send('DATA\r\n');
    // A line starting with a dot is dot-stuffed on the wire (RFC 5321 §4.5.2).
    expect(await c.send('From: sender@a.test\r\n\r\n..leading dot\r\n.\r\n')).toBe('250 2.0.0 Ok: queued as Q2');
    expect(tx?.mailFrom).toBe('sender@a.test');
    expect(tx?.recipients).toEqual(['patient@b.test', 'other@b.test']);
    expect(tx?.data.head.toString('latin1')).toBe('From: sender@a.test\r\n\r\n.leading dot\r\n');
  });

  it('gives the null reverse-path as ""', async () => {
    const r = recorder();
    const l = await start(listenerConfig(), r.handlers);
    const c = await session(l.port);
    expect(await c.send('MAIL FROM:<>\r\n')).toMatch(/^250/);
    await c.send('RCPT TO:<patient@b.test>\r\n');
    await c.send('DATA\r\n');
    expect(await c.send(`${MESSAGE}.\r\n`)).toMatch(/^250/);
    expect(r.mailFroms).toEqual(['']);
    expect(r.messages[0]?.mailFrom).toBe('');
  });

  it('comes only after message() resolves', async () => {
    let resolvedAt = 0;
    const r = recorder({
      message: async () => {
        await new Promise((resolve) => setTimeout(resolve, 200));
        resolvedAt = Date.now();
        return '2.0.0 stored';
      },
    });
    const l = await start(listenerConfig(), r.handlers);
    const c = await session(l.port);
    await c.send('MAIL FROM:<sender@a.test>\r\n');
    await c.send('RCPT TO:<patient@b.test>\r\n');
    await c.send('DATA\r\n');
    const sentAt = Date.now();
    const reply = await c.send(`${MESSAGE}.\r\n`);
    const repliedAt = Date.now();
    expect(reply).toBe('250 2.0.0 stored');
    expect(resolvedAt).toBeGreaterThan(0);
    expect(repliedAt).toBeGreaterThanOrEqual(resolvedAt);
    expect(repliedAt - sentAt).toBeGreaterThanOrEqual(190);
  });
});

describe('SmtpListener: time-outs, limits and close', () => {
  it('closes an idle connection with a 421 after commandTimeoutMs', async () => {
    const l = await start(listenerConfig({ commandTimeoutMs: 300 }), recorder().handlers);
    const c = await session(l.port);
    const started = Date.now();
    const reply = await c.read();
    expect(reply).toMatch(/^421 /);
    expect(Date.now() - started).toBeGreaterThanOrEqual(250);
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(await c.read()).toMatch(/^closed/);
  });

  it('cuts a DATA transfer that takes longer than dataTimeoutMs (421 4.4.2, connection closed), without calling message()', async () => {
    const r = recorder();
    const l = await start(listenerConfig({ dataTimeoutMs: 200 }), r.handlers);
    // A plain socket: the first part of the message, a pause longer than dataTimeoutMs (but shorter
    // than the idle time-out), then the rest.
    const socket = net.connect(l.port, '127.0.0.1');
    let received = '';
    socket.on('data', (chunk: Buffer) => (received += chunk.toString('latin1')));
    const until = async (re: RegExp) => {
      const deadline = Date.now() + 5_000;
      while (!re.test(received) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
      return received;
    };
    try {
      await until(/^220 /m);
      socket.write('EHLO client.test\r\nMAIL FROM:<sender@a.test>\r\nRCPT TO:<patient@b.test>\r\nDATA\r\n');
      await until(/^354 /m);
      // A trickle: a line every 100 ms (well within the idle time-out), never the end of the data.
      const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
      const started = Date.now();
      const trickle = setInterval(() => socket.writable && socket.write('X-Slow: more\r\n'), 100);
      try {
        expect(await until(/^(?:4\d\d|5\d\d|250 2\.0\.0 Ok: queued)/m)).toMatch(/^421 4\.4\.2 /m);
        await closed;
      } finally {
        clearInterval(trickle);
      }
      expect(Date.now() - started).toBeGreaterThanOrEqual(150);
      expect(Date.now() - started).toBeLessThan(3_000);
      expect(r.messages).toEqual([]);
    } finally {
      socket.destroy();
    }
  });

  it('maxClients: 1 answers a second concurrent connection 421', async () => {
    const l = await start(listenerConfig({ maxClients: 1 }), recorder().handlers);
    const first = await session(l.port);
    const second = await connect(l.port);
    expect(await second.read()).toMatch(/^421 /);
    // The first is still served.
    expect(await first.send('NOOP\r\n')).toMatch(/^250/);
  });

  it('close() resolves with a session still open (after closeTimeoutMs), telling the client 421', async () => {
    const l = new SmtpListener(listenerConfig(), recorder().handlers, { name: 'test', hostname: 'hisp.test', logger, auth: false, closeTimeoutMs: 150 });
    await l.listen();
    const c = await session(l.port);
    const started = Date.now();
    await l.close();
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(await c.read()).toMatch(/^421 /);
    c.close();
  });

  it('listen() on a port in use fails with HISP_IO naming the listener', async () => {
    const a = await start(listenerConfig(), recorder().handlers);
    const b = new SmtpListener(listenerConfig({ port: a.port }), recorder().handlers, { name: 'inbound', hostname: 'hisp.test', logger, auth: false, closeTimeoutMs: 100 });
    await expect(b.listen()).rejects.toMatchObject({ code: 'HISP_IO', message: expect.stringContaining(`inbound listener: cannot listen on 127.0.0.1:${a.port}`) as string });
  });
});
