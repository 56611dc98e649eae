import { describe, expect, it } from 'vitest';
import { HispError } from '../core/errors.js';
import { buildDsn } from '../queue/dsn.js';
import { replyForError } from '../smtp/reply-mapping.js';
import { codeInReply, dsnRecipientFor } from './notices.js';

const AT = new Date('2026-11-25T10:00:00Z');
const RCPT = 'patient@b.test';

/** The reply a local failure is recorded with (relay worker: replyForError of the HispError). */
const localReply = (err: HispError) => replyForError(err);

describe('codeInReply', () => {
  it('finds the hisp code at the end of a reply text', () => {
    expect(codeInReply({ code: 554, enhanced: '5.7.5', text: 'no certificate for patient@b.test [HISP_DISCOVERY_NO_CERT]' })).toBe('HISP_DISCOVERY_NO_CERT');
    expect(codeInReply(localReply(new HispError('HISP_TRUST_NO_ANCHOR', 'no anchor')))).toBe('HISP_TRUST_NO_ANCHOR');
  });

  it('tolerates trailing white space', () => {
    expect(codeInReply({ code: 554, text: 'x [HISP_TRUST_REVOKED]  ' })).toBe('HISP_TRUST_REVOKED');
  });

  it('finds nothing in a null reply, a plain remote reply, or a code not at the end', () => {
    expect(codeInReply(null)).toBeUndefined();
    expect(codeInReply({ code: 550, enhanced: '5.1.1', text: 'user unknown' })).toBeUndefined();
    expect(codeInReply({ code: 554, text: '[HISP_TRUST_NO_ANCHOR] and more' })).toBeUndefined();
  });

  it('ignores a bracketed word that is not a hisp error code', () => {
    expect(codeInReply({ code: 554, text: 'x [HISP_NO_SUCH_CODE]' })).toBeUndefined();
    expect(codeInReply({ code: 554, text: 'x [hisp_trust_no_anchor]' })).toBeUndefined();
    expect(codeInReply({ code: 554, text: 'x [HISP_]' })).toBeUndefined();
  });
});

describe('dsnRecipientFor', () => {
  it('[HISP_DISCOVERY_NO_CERT] → failed, 5.7.5, "no certificate found for …"', () => {
    const r = dsnRecipientFor(RCPT, localReply(new HispError('HISP_DISCOVERY_NO_CERT', 'no certificate published')), 24, AT);
    expect(r).toMatchObject({ finalRecipient: RCPT, action: 'failed', status: '5.7.5' });
    expect(r.reason).toContain(`no certificate found for ${RCPT}`);
    expect(r.diagnosticCode?.text).toMatch(/^554 5\.7\.5 /);
    expect(r.lastAttemptDate).toEqual(AT);
  });

  it('[HISP_TRUST_NO_ANCHOR] → 5.7.1, the recipient\'s HISP is not trusted', () => {
    const r = dsnRecipientFor(RCPT, localReply(new HispError('HISP_TRUST_NO_ANCHOR', 'the certificate does not chain to an anchor')), 24, AT);
    expect(r.status).toBe('5.7.1');
    expect(r.reason).toMatch(/recipient's HISP is not trusted/);
    expect(r.diagnosticCode?.text).toMatch(/^554 5\.7\.1 /);
  });

  it('another hisp code without its own sentence gives the reply text, without the code', () => {
    const r = dsnRecipientFor(RCPT, localReply(new HispError('HISP_SMTP_RELAY_DENIED', 'relaying denied by b.test')), 24, AT);
    expect(r.status).toBe('5.7.1');
    expect(r.reason).toBe('relaying denied by b.test');
    expect(r.reason).not.toContain('[HISP_');
  });

  it('a 4xx reply (given up) → expired 5.4.7 naming the give-up hours and the last error', () => {
    const r = dsnRecipientFor(RCPT, { code: 421, enhanced: '4.4.2', text: 'mx.b.test connection timed out' }, 36, AT);
    expect(r.status).toBe('5.4.7');
    expect(r.action).toBe('failed');
    expect(r.reason).toContain('36 hours');
    expect(r.reason).toContain('421 4.4.2 mx.b.test connection timed out');
    expect(r.diagnosticCode?.text).toMatch(/^554 5\.4\.7 /);
  });

  it('a 4xx reply without an enhanced code is still expired, its last error readable', () => {
    const r = dsnRecipientFor(RCPT, { code: 451, text: 'try later' }, 24, AT);
    expect(r.status).toBe('5.4.7');
    expect(r.reason).toContain('24 hours');
    expect(r.reason).toMatch(/451 +try later/);
  });

  it('a 550 5.1.1 from a remote → rejected 5.1.1, quoting the remote reply', () => {
    const r = dsnRecipientFor(RCPT, { code: 550, enhanced: '5.1.1', text: 'no such user here' }, 24, AT);
    expect(r.status).toBe('5.1.1');
    expect(r.reason).toContain('refused');
    expect(r.reason).toContain('550 5.1.1 no such user here');
    expect(r.diagnosticCode).toEqual({ type: 'smtp', text: '550 5.1.1 no such user here' });
  });

  it('a remote 5xx without an enhanced code: 550 → 5.1.1, 554 → 5.0.0', () => {
    expect(dsnRecipientFor(RCPT, { code: 550, text: 'unknown' }, 24, AT).status).toBe('5.1.1');
    expect(dsnRecipientFor(RCPT, { code: 554, text: 'transaction failed' }, 24, AT).status).toBe('5.0.0');
  });

  it('a null reply (no attempt answered) → a failed 5.x.x error', () => {
    const r = dsnRecipientFor(RCPT, null, 24, null);
    expect(r.action).toBe('failed');
    expect(r.status).toMatch(/^5\.\d{1,3}\.\d{1,3}$/);
    expect(r.reason).toBeTruthy();
    expect(r.lastAttemptDate).toBeUndefined();
  });

  it('makes recipients a DSN can be built from (status class matching the action)', () => {
    const recipients = [
      dsnRecipientFor(RCPT, localReply(new HispError('HISP_DISCOVERY_NO_CERT', 'x')), 24, AT),
      dsnRecipientFor('b@b.test', { code: 421, text: 'later' }, 24, AT),
      dsnRecipientFor('c@b.test', { code: 550, enhanced: '5.1.1', text: 'unknown' }, 24, AT),
      dsnRecipientFor('d@b.test', null, 24, null),
      // A transient local error recorded as 4xx, then given up.
      dsnRecipientFor('e@b.test', localReply(new HispError('HISP_DISCOVERY_TEMPORARY', 'DNS timed out', { transient: true })), 24, AT),
    ];
    for (const r of recipients) expect(r.status).toMatch(/^5\./);
    const dsn = buildDsn({ reportingMta: 'hisp.a.test', recipients, to: 'provider@a.test', from: 'mailer-daemon@a.test' }).message.toString();
    expect(dsn).toContain('Status: 5.7.5');
    expect(dsn).toContain('Status: 5.4.7');
    expect(dsn).toContain('Status: 5.1.1');
  });
});
