import type { SMTPServerSession } from 'smtp-server';
import { describe, expect, it } from 'vitest';
import { HispError } from '../core/errors.js';
import { hispError, hispRejection } from '../../test/helpers/hisp-error.js';
import { DEFAULTS, type SubmissionUser } from '../config/schema.js';
import { createLogger } from '../core/logger.js';
import type { GatewayContext } from '../flows/gateway-context.js';
import type { MessageEnvelope } from '../store/message-store.js';
import type { SmtpTransaction } from './smtp-listener.js';
import { MimeEntity } from '../mime/mime-entity.js';
import { DirectAddress } from '../core/direct-address.js';
import { replyForError } from './reply-mapping.js';
import { checkOriginators, mayUse, submissionHandlers } from './submission-edge.js';

const user = (mayUseAddresses: string[]): SubmissionUser => ({ username: 'ehr', passwordHash: 'unused', mayUseAddresses });

describe('mayUse', () => {
  it('allows an address listed as such', () => {
    expect(mayUse(user(['provider@direct.example.org']), 'provider@direct.example.org')).toBe(true);
  });

  it('refuses another address of the same domain when only one address is listed', () => {
    expect(mayUse(user(['provider@direct.example.org']), 'nurse@direct.example.org')).toBe(false);
  });

  it('allows any address of a domain listed as @domain', () => {
    const u = user(['@direct.example.org']);
    expect(mayUse(u, 'provider@direct.example.org')).toBe(true);
    expect(mayUse(u, 'nurse@direct.example.org')).toBe(true);
  });

  it('compares case-insensitively, both the entry and the address, local part and domain', () => {
    expect(mayUse(user(['Provider@Direct.Example.org']), 'PROVIDER@direct.EXAMPLE.ORG')).toBe(true);
    expect(mayUse(user(['@DIRECT.example.org']), 'provider@Direct.Example.Org')).toBe(true);
  });

  it('accepts the address in angle brackets and with a trailing dot on the domain', () => {
    expect(mayUse(user(['@direct.example.org']), '<provider@direct.example.org>')).toBe(true);
    expect(mayUse(user(['@direct.example.org']), 'provider@direct.example.org.')).toBe(true);
  });

  it('refuses another domain, a subdomain, a parent domain and a look-alike', () => {
    const u = user(['@direct.example.org', 'provider@direct.example.org']);
    expect(mayUse(u, 'provider@other.example.org')).toBe(false);
    expect(mayUse(u, 'provider@sub.direct.example.org')).toBe(false);
    expect(mayUse(u, 'provider@example.org')).toBe(false);
    expect(mayUse(u, 'provider@evildirect.example.org')).toBe(false);
    expect(mayUse(u, 'provider@direct.example.org.evil.test')).toBe(false);
  });

  it('refuses an address whose domain is the allowed one only in its local part', () => {
    expect(mayUse(user(['@direct.example.org']), 'x@direct.example.org@evil.test')).toBe(false);
    expect(mayUse(user(['provider@direct.example.org']), 'provider@direct.example.org@evil.test')).toBe(false);
  });

  it('refuses garbage', () => {
    const u = user(['@direct.example.org', 'provider@direct.example.org']);
    for (const g of ['', ' ', 'provider', '@direct.example.org', 'provider@', 'pro vider@direct.example.org', '<>', 'a@b@', '\u0000']) {
      expect(mayUse(u, g), JSON.stringify(g)).toBe(false);
    }
  });

  it('refuses everything for an account with no entries', () => {
    expect(mayUse(user([]), 'provider@direct.example.org')).toBe(false);
  });
});

// ------------------------------------------------------------------------------------------------
// The handlers, on a context that records what would be queued.

interface Queued {
  envelope: MessageEnvelope;
  body: string;
}

function fakeContext(queued: Queued[]): GatewayContext {
  const ctx = {
    config: {
      hostname: 'hisp.example.org',
      submission: {
        users: [{ username: 'ehr', passwordHash: 'unused', mayUseAddresses: ['@direct.example.org'] }],
        authLimits: DEFAULTS.submission.authLimits,
      },
    },
    registry: {
      isLocalDomain: (d: string) => d.toLowerCase() === 'direct.example.org',
      domainConfig: () => ({ mdn: { requestFinalDelivery: true } }),
    },
    queue: {
      enqueue: (envelope: MessageEnvelope, body: Uint8Array) => {
        queued.push({ envelope, body: Buffer.from(body).toString('latin1') });
        return Promise.resolve(`Q${queued.length}`);
      },
    },
    now: () => Date.parse('2026-11-25T10:00:00Z'),
    wake: () => undefined,
  };
  return ctx as unknown as GatewayContext;
}

function session(user: string | undefined, secure = true): SMTPServerSession {
  return { id: 's1', user, secure, remoteAddress: '192.0.2.7', hostNameAppearsAs: 'ehr.clinic.test', envelope: { mailFrom: false, rcptTo: [] } } as unknown as SMTPServerSession;
}

function tx(recipients: string[], body: string, user: string | undefined = 'ehr'): SmtpTransaction {
  const bytes = Buffer.from(body, 'latin1');
  return { session: session(user), mailFrom: 'provider@direct.example.org', recipients, data: { size: bytes.length, head: bytes, whole: true }, log: createLogger({ level: 'silent' }) };
}

const MESSAGE = 'From: Dr. P <provider@direct.example.org>\r\nTo: patient@other.test\r\nSubject: x\r\nMessage-ID: <m1@ehr.test>\r\nDate: Wed, 25 Nov 2026 09:00:00 +0000\r\n\r\nbody\r\n';

describe('submissionHandlers', () => {
  it('mailFrom refuses a sender the account may not use (HISP_SMTP_SENDER_NOT_ALLOWED) and the null sender', () => {
    const h = submissionHandlers(fakeContext([]));
    expect(() => h.mailFrom('provider@direct.example.org', session('ehr'))).not.toThrow();
    expect(hispError(() => h.mailFrom('provider@other.test', session('ehr'))).code).toBe('HISP_SMTP_SENDER_NOT_ALLOWED');
    expect(hispError(() => h.mailFrom('', session('ehr'))).code).toBe('HISP_SMTP_SENDER_NOT_ALLOWED');
    expect(hispError(() => h.mailFrom('provider@direct.example.org', session(undefined))).code).toBe('HISP_SMTP_AUTH_REQUIRED');
  });

  it('rcptTo refuses what is not an address (HISP_SMTP_BAD_ADDRESS), takes any domain', () => {
    const h = submissionHandlers(fakeContext([]));
    expect(() => h.rcptTo('patient@anywhere.test', session('ehr'))).not.toThrow();
    expect(hispError(() => h.rcptTo('not an address', session('ehr'))).code).toBe('HISP_SMTP_BAD_ADDRESS');
  });

  it('adds a Received field naming the recipient when there is one recipient', async () => {
    const queued: Queued[] = [];
    const reply = await submissionHandlers(fakeContext(queued)).message(tx(['patient@other.test'], MESSAGE));
    expect(reply).toBe('2.0.0 Ok: queued as Q1');
    expect(queued[0]!.body).toMatch(/^Received: from ehr\.clinic\.test \(\[192\.0\.2\.7\]\)\r\n\tby hisp\.example\.org \(hisp\) with ESMTPSA\r\n\tfor <patient@other\.test>;\r\n\t/);
  });

  it("records the From address and the final-delivery request it leaves in the message, for the relay", async () => {
    const queued: Queued[] = [];
    await submissionHandlers(fakeContext(queued)).message(tx(['patient@other.test'], MESSAGE));
    expect(queued[0]!.envelope.meta).toMatchObject({ from: 'provider@direct.example.org', finalDelivery: true });
    expect(queued[0]!.body).toContain('X-DIRECT-FINAL-DESTINATION-DELIVERY=optional,true');
  });

  it('hands the message to an idle relay worker, its deliveries leased to it in the same commit; cancels the claim when storing fails', async () => {
    const events: string[] = [];
    const ctx = fakeContext([]) as unknown as Record<string, unknown>;
    const queue = ctx.queue as Record<string, unknown>;
    let fail = false;
    queue.enqueueLeased = (envelope: MessageEnvelope, _body: Uint8Array, owner: string, leaseMs: number) => {
      events.push(`store leased to ${owner} for ${leaseMs} ms`);
      if (fail) return Promise.reject(new HispError('HISP_IO', 'disk full', { transient: true }));
      return Promise.resolve({ message: { queueId: 'Q9', recipients: envelope.recipients }, deliveries: [{ id: 1 }] });
    };
    ctx.wake = () => events.push('wake');
    ctx.claimRelay = () => ({
      owner: 'relay-1',
      leaseMs: 300_000,
      give: (m: { queueId: string }, d: unknown[]) => events.push(`give ${m.queueId} (${d.length})`),
      cancel: () => events.push('cancel'),
    });
    const h = submissionHandlers(ctx as unknown as GatewayContext);
    expect(await h.message(tx(['patient@other.test'], MESSAGE))).toBe('2.0.0 Ok: queued as Q9');
    expect(events).toEqual(['store leased to relay-1 for 300000 ms', 'give Q9 (1)']);
    events.length = 0;
    fail = true;
    expect((await hispRejection(h.message(tx(['patient@other.test'], MESSAGE)))).code).toBe('HISP_IO');
    expect(events).toEqual(['store leased to relay-1 for 300000 ms', 'cancel']);
  });

  it('does not name recipients in the Received field when there are several (RFC 5321 §7.2)', async () => {
    const queued: Queued[] = [];
    await submissionHandlers(fakeContext(queued)).message(tx(['patient@other.test', 'bcc@other.test'], MESSAGE));
    const received = /^Received:[^]*?\r\n(?![ \t])/.exec(queued[0]!.body)?.[0] ?? '';
    expect(received).toMatch(/^Received: /);
    expect(received).not.toMatch(/\sfor\s/);
    expect(received).not.toContain('patient@other.test');
    expect(received).not.toContain('bcc@other.test');
    expect(queued[0]!.envelope.recipients).toEqual(['patient@other.test', 'bcc@other.test']);
  });

  it('refuses a From address the account may not use, and queues nothing', async () => {
    const queued: Queued[] = [];
    const err = await hispRejection(submissionHandlers(fakeContext(queued)).message(tx(['patient@other.test'], MESSAGE.replace('provider@direct.example.org', 'someone@other.test'))));
    expect(err.code).toBe('HISP_SMTP_SENDER_NOT_ALLOWED');
    expect(queued).toEqual([]);
  });
});

describe('checkOriginators: every From and Sender mailbox is the user\'s (issue 14, item 2, RFC 5322 §3.6)', () => {
  const alice: SubmissionUser = { username: 'alice-ehr', passwordHash: 'unused', mayUseAddresses: ['alice@direct.example.org'] };
  const local = (d: string) => d === 'direct.example.org';
  const check = (header: string) => checkOriginators(MimeEntity.parse(Buffer.from(`${header}To: p@x.test\r\n\r\nbody\r\n`)), alice, local);
  const refusal = (header: string) => hispError(() => check(header));

  it('takes the user\'s own mailbox, however written (display name, quoted, comment)', () => {
    for (const from of ['alice@direct.example.org', 'Dr. Alice <alice@direct.example.org>', '"Alice @ the clinic" <alice@direct.example.org>', '<alice@direct.example.org> (alice@direct.example.org)', 'ALICE@DIRECT.EXAMPLE.ORG', '=?utf-8?q?Alice_M=C3=BCller?= <alice@direct.example.org>']) {
      expect(check(`From: ${from}\r\n`).toString().toLowerCase()).toBe('alice@direct.example.org');
    }
    expect(check('From: alice@direct.example.org\r\nSender: Alice <alice@direct.example.org>\r\n').toString()).toBe('alice@direct.example.org');
  });

  it('refuses a second From field, and a second Sender field', () => {
    expect(refusal('From: alice@direct.example.org\r\nFrom: bob@direct.example.org\r\n')).toMatchObject({ code: 'HISP_SMTP_SENDER_NOT_ALLOWED', message: expect.stringContaining('more than one From field') as string });
    expect(refusal('From: alice@direct.example.org\r\nFrom: alice@direct.example.org\r\n').code).toBe('HISP_SMTP_SENDER_NOT_ALLOWED');
    expect(refusal('From: alice@direct.example.org\r\nSender: alice@direct.example.org\r\nSender: alice@direct.example.org\r\n').code).toBe('HISP_SMTP_SENDER_NOT_ALLOWED');
  });

  it('refuses another mailbox anywhere in From or Sender: a list, a group, an unquoted display name, a second angle address', () => {
    for (const header of [
      'From: <alice@direct.example.org>, bob@direct.example.org\r\n',
      'From: alice@direct.example.org, "Bob" <bob@direct.example.org>\r\n',
      'From: team: alice@direct.example.org, bob@direct.example.org;\r\n',
      'From: bob@direct.example.org <alice@direct.example.org>\r\n',
      'From: <alice@direct.example.org> <bob@direct.example.org>\r\n',
      'From: <alice@direct.example.org>\r\n\t<bob@direct.example.org>\r\n',
      'From: alice@direct.example.org\r\nSender: bob@direct.example.org\r\n',
      'From: alice@other.test\r\n',
      // A display name or comment that shows another address (after RFC 2047 decoding).
      'From: "bob@direct.example.org" <alice@direct.example.org>\r\n',
      'From: <alice@direct.example.org> (bob@direct.example.org)\r\n',
      'From: (") bob@direct.example.org (") <alice@direct.example.org>\r\n',
      'From: =?utf-8?q?bob=40direct.example.org?= <alice@direct.example.org>\r\n',
      'From: "<bob@direct.example.org>" alice@direct.example.org\r\n',
    ]) {
      expect(refusal(header), header).toMatchObject({ code: 'HISP_SMTP_SENDER_NOT_ALLOWED' });
    }
  });

  it('reads pathological fields in linear time and refuses overlong ones (a quadratic parser froze the gateway)', () => {
    for (const evil of ['"\\'.repeat(100_000), '(\\'.repeat(100_000), 'a'.repeat(200_000), '<'.repeat(100_000)]) {
      expect(refusal(`From: ${evil}\r\n`).code).toBe('HISP_SMTP_SENDER_NOT_ALLOWED');
      expect(hispError(() => DirectAddress.fromHeader(evil)).code).toBe('HISP_MIME_MALFORMED');
      expect(hispError(() => DirectAddress.fromHeader(evil.slice(0, 16_000))).code).toBe('HISP_MIME_MALFORMED');
    }
  });

  it('refuses a From field without a mailbox', () => {
    for (const from of ['undisclosed:;', 'garbage', '<>']) expect(refusal(`From: ${from}\r\n`).code).toBe('HISP_SMTP_SENDER_NOT_ALLOWED');
    expect(hispError(() => checkOriginators(MimeEntity.parse(Buffer.from('To: p@x.test\r\n\r\nx\r\n')), alice, local)).code).toBe('HISP_MIME_MALFORMED');
  });

  it('at DATA: a second From field is answered 553 5.7.1 and nothing is queued', async () => {
    const queued: Queued[] = [];
    const err = await hispRejection(submissionHandlers(fakeContext(queued)).message(tx(['patient@other.test'], `From: provider@direct.example.org\r\nFrom: bob@evil.test\r\n${MESSAGE.slice(MESSAGE.indexOf('To:'))}`)));
    expect(replyForError(err)).toMatchObject({ code: 553, enhanced: '5.7.1' });
    expect(queued).toEqual([]);
  });
});
