import { readFileSync } from 'node:fs';
import net, { type AddressInfo } from 'node:net';
import { SMTPServer, type SMTPServerOptions } from 'smtp-server';
import { afterEach, describe, expect, it } from 'vitest';
import { parseReply, relayMessage, SmtpConnectionCache } from './smtp-relay.js';

const tlsKey = readFileSync(new URL('../../test/fixtures/trust/tls-server.key.pem', import.meta.url));
const tlsCert = readFileSync(new URL('../../test/fixtures/trust/tls-server.cert.pem', import.meta.url));
const MESSAGE = Buffer.from('From: a@sender.test\r\nTo: b@recipient.test\r\nSubject: relay\r\n\r\nbody\r\n');

let servers: SMTPServer[] = [];
afterEach(async () => {
  await Promise.all(servers.map((s) => new Promise<void>((r) => s.close(() => r()))));
  servers = [];
});

/** A real SMTP server on 127.0.0.1:0 that records what it accepted. */
async function server(options: Partial<SMTPServerOptions>, received: Buffer[] = []): Promise<{ port: number; received: Buffer[] }> {
  const s = new SMTPServer({
    authOptional: true,
    key: tlsKey,
    cert: tlsCert,
    logger: false,
    onData(stream, _session, cb) {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => {
        received.push(Buffer.concat(chunks));
        cb();
      });
    },
    ...options,
  });
  servers.push(s);
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  return { port: (s.server.address() as AddressInfo).port, received };
}

describe('relayMessage', () => {
  it('delivers over opportunistic STARTTLS and reports each recipient delivered', async () => {
    const { port, received } = await server({});
    const r = await relayMessage('127.0.0.1', port, { from: 'a@sender.test', to: ['b@recipient.test', 'c@recipient.test'] }, MESSAGE, { name: 'hisp.test' });
    expect(r.tls).toBe(true);
    expect(r.recipients.map((x) => x.outcome)).toEqual(['delivered', 'delivered']);
    expect(received).toHaveLength(1);
    expect(received[0]!.toString()).toContain('Subject: relay');
  });

  it('classifies per recipient: 550 permanent, 450 transient, the others delivered', async () => {
    const { port } = await server({
      onRcptTo(address, _s, cb) {
        if (address.address.startsWith('gone')) return cb(Object.assign(new Error('5.1.1 no such user'), { responseCode: 550 }));
        if (address.address.startsWith('busy')) return cb(Object.assign(new Error('4.2.1 try later'), { responseCode: 450 }));
        cb();
      },
    });
    const r = await relayMessage('127.0.0.1', port, { from: 'a@sender.test', to: ['ok@recipient.test', 'gone@recipient.test', 'busy@recipient.test'] }, MESSAGE, {
      name: 'hisp.test',
    });
    expect(r.recipients.map((x) => [x.recipient, x.outcome, x.reply.code])).toEqual([
      ['ok@recipient.test', 'delivered', 250],
      ['gone@recipient.test', 'permanent', 550],
      ['busy@recipient.test', 'transient', 450],
    ]);
  });

  it('is transient for every recipient when nothing listens (connection refused)', async () => {
    const { port } = await server({});
    await new Promise<void>((r) => servers.pop()!.close(() => r()));
    const r = await relayMessage('127.0.0.1', port, { from: 'a@sender.test', to: ['b@recipient.test'] }, MESSAGE, { name: 'hisp.test', connectTimeoutMs: 1000 });
    expect(r.recipients[0]).toMatchObject({ outcome: 'transient', reply: { code: 421 } });
  });

  it('refuses to send in clear when TLS is required and the server offers no STARTTLS', async () => {
    const { port, received } = await server({ disabledCommands: ['STARTTLS'] });
    const r = await relayMessage('127.0.0.1', port, { from: 'a@sender.test', to: ['b@recipient.test'] }, MESSAGE, { name: 'hisp.test', tlsRequired: true });
    expect(r.recipients[0]!.outcome).not.toBe('delivered');
    expect(received).toHaveLength(0);
  });

  it('with TLS required, verifies the server certificate against the given roots', async () => {
    const { port, received } = await server({});
    const r = await relayMessage('127.0.0.1', port, { from: 'a@sender.test', to: ['b@recipient.test'] }, MESSAGE, {
      name: 'hisp.test',
      tlsRequired: true,
      tls: { ca: tlsCert, checkServerIdentity: () => undefined },
    });
    expect(r).toMatchObject({ tls: true, recipients: [{ outcome: 'delivered' }] });
    expect(received).toHaveLength(1);
  });

  it('a 554 to the DATA is permanent for every recipient', async () => {
    const { port } = await server({
      onData(stream, _s, cb) {
        stream.resume();
        stream.on('end', () => cb(Object.assign(new Error('5.7.1 refused'), { responseCode: 554 })));
      },
    });
    const r = await relayMessage('127.0.0.1', port, { from: 'a@sender.test', to: ['b@recipient.test', 'c@recipient.test'] }, MESSAGE, { name: 'hisp.test' });
    expect(r.recipients.map((x) => [x.outcome, x.reply.code])).toEqual([
      ['permanent', 554],
      ['permanent', 554],
    ]);
  });

  it('parses replies with and without an enhanced status code', () => {
    expect(parseReply('550 5.1.1 No such user', 0, undefined)).toEqual({ code: 550, enhanced: '5.1.1', text: 'No such user' });
    expect(parseReply('250 OK: queued as 12345', 0, undefined)).toEqual({ code: 250, text: 'OK: queued as 12345' });
    expect(parseReply('garbage', 451, '4.4.2')).toEqual({ code: 451, enhanced: '4.4.2', text: 'garbage' });
  });
});

describe('relayMessage with a SmtpConnectionCache', () => {
  it('sends consecutive messages to one hop over one session, and opens a new one when that one was closed', async () => {
    let connections = 0;
    const { port, received } = await server({
      onConnect(_s, cb) {
        connections++;
        cb();
      },
    });
    const cache = new SmtpConnectionCache({ idleMs: 5000 });
    try {
      for (let i = 0; i < 3; i++) {
        const r = await relayMessage('127.0.0.1', port, { from: 'a@sender.test', to: [`b${i}@recipient.test`] }, MESSAGE, { name: 'hisp.test', cache });
        expect(r.recipients[0]!.outcome).toBe('delivered');
      }
      expect(received).toHaveLength(3);
      expect(connections).toBe(1);

      // The server drops its idle sessions (a restart): the next message goes over a new connection.
      const s = servers[servers.length - 1]!;
      for (const c of (s as unknown as { connections: Set<{ close(): void }> }).connections) c.close();
      await new Promise((r) => setTimeout(r, 100));
      const r = await relayMessage('127.0.0.1', port, { from: 'a@sender.test', to: ['b@recipient.test'] }, MESSAGE, { name: 'hisp.test', cache });
      expect(r.recipients[0]!.outcome).toBe('delivered');
      expect(connections).toBe(2);
    } finally {
      cache.close();
    }
  });

  it('keeps the session after a refused message (RSET) and delivers the next one on it', async () => {
    let connections = 0;
    const { port, received } = await server({
      onConnect(_s, cb) {
        connections++;
        cb();
      },
      onRcptTo(address, _s, cb) {
        if (address.address.startsWith('gone')) return cb(Object.assign(new Error('5.1.1 no such user'), { responseCode: 550 }));
        cb();
      },
    });
    const cache = new SmtpConnectionCache();
    try {
      const refused = await relayMessage('127.0.0.1', port, { from: 'a@sender.test', to: ['gone@recipient.test'] }, MESSAGE, { name: 'hisp.test', cache });
      expect(refused.recipients[0]).toMatchObject({ outcome: 'permanent', reply: { code: 550 } });
      const ok = await relayMessage('127.0.0.1', port, { from: 'a@sender.test', to: ['ok@recipient.test'] }, MESSAGE, { name: 'hisp.test', cache });
      expect(ok.recipients[0]!.outcome).toBe('delivered');
      expect(received).toHaveLength(1);
      expect(connections).toBe(1);
    } finally {
      cache.close();
    }
  });

  it('survives a peer that resets the connection during QUIT (no uncaught error)', async () => {
    // A minimal peer: accepts the message, then answers QUIT with a TCP reset.
    const peer = net.createServer((socket) => {
      let data = false;
      socket.write('220 peer ready\r\n');
      socket.on('data', (chunk: Buffer) => {
        for (const line of chunk.toString('latin1').split('\r\n')) {
          if (data) {
            if (line === '.') {
              data = false;
              socket.write('250 2.0.0 queued\r\n');
            }
            continue;
          }
          const verb = line.slice(0, 4).toUpperCase();
          if (verb === 'EHLO') socket.write('250 peer\r\n');
          else if (verb === 'MAIL' || verb === 'RCPT') socket.write('250 2.1.0 ok\r\n');
          else if (verb === 'DATA') {
            data = true;
            socket.write('354 go on\r\n');
          } else if (verb === 'QUIT') socket.resetAndDestroy();
        }
      });
      socket.on('error', () => undefined);
    });
    await new Promise<void>((r) => peer.listen(0, '127.0.0.1', r));
    const errors: unknown[] = [];
    const onUncaught = (e: unknown) => errors.push(e);
    process.on('uncaughtException', onUncaught);
    try {
      const port = (peer.address() as AddressInfo).port;
      const r = await relayMessage('127.0.0.1', port, { from: 'a@sender.test', to: ['b@recipient.test'] }, MESSAGE, { name: 'hisp.test' });
      expect(r.recipients[0]!.outcome).toBe('delivered');
      await new Promise((r2) => setTimeout(r2, 200));
      expect(errors).toEqual([]);
    } finally {
      process.off('uncaughtException', onUncaught);
      await new Promise<void>((r) => peer.close(() => r()));
    }
  });
});
