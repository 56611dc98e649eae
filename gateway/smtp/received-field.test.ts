import { describe, expect, it } from 'vitest';
import { receivedField, withProtocol, type ReceivedTrace } from './received-field.js';

const DATE = new Date('2026-11-25T10:00:05Z');
const base: ReceivedTrace = { helo: 'ehr.clinic.test', remoteAddress: '192.0.2.7', by: 'hisp.example.org', protocol: 'ESMTPSA', date: DATE };

const text = (t: ReceivedTrace) => receivedField(t).toString('latin1');

/**
 * RFC 5321 §4.4 Time-stamp-line, as hisp writes it: "Received:" From-domain By-domain Opt-info ";"
 * date-time, folded (CRLF + TAB) before "by", "for" and the date.
 */
const STAMP =
  /^Received: (?:from (?<helo>[\x21-\x7e]+)(?: \(\[(?<ip>[^\]\s]+)\]\))?\r\n\t)?by (?<by>[\x21-\x7e]+) \(hisp\) with (?<with>[A-Za-z0-9-]+)(?: id (?<id>[\x21-\x7e]+))?(?:\r\n\tfor <(?<for>[^>\s]+)>)?;\r\n\t(?<date>(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{1,2} (?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} \d{2}:\d{2}:\d{2} [+-]\d{4})\r\n$/;

describe('withProtocol (RFC 3848 §2)', () => {
  it.each([
    [false, false, false, 'SMTP'],
    [true, false, false, 'ESMTP'],
    [true, true, false, 'ESMTPS'],
    [true, false, true, 'ESMTPA'],
    [true, true, true, 'ESMTPSA'],
  ])('esmtp=%s tls=%s auth=%s → %s', (esmtp, tls, auth, keyword) => {
    expect(withProtocol(esmtp, tls, auth)).toBe(keyword);
  });
});

describe('receivedField (RFC 5321 §4.4)', () => {
  it('has the Time-stamp-line shape: from HELO ([ip]) by host with PROTOCOL id ID for <rcpt>; date', () => {
    const t = text({ ...base, id: 'Q123', recipient: 'patient@direct.example.org' });
    expect(t).toBe(
      'Received: from ehr.clinic.test ([192.0.2.7])\r\n\tby hisp.example.org (hisp) with ESMTPSA id Q123\r\n\tfor <patient@direct.example.org>;\r\n\tWed, 25 Nov 2026 10:00:05 +0000\r\n',
    );
    const m = STAMP.exec(t);
    expect(m?.groups).toMatchObject({ helo: 'ehr.clinic.test', ip: '192.0.2.7', by: 'hisp.example.org', with: 'ESMTPSA', id: 'Q123', for: 'patient@direct.example.org' });
  });

  it('names a recipient (for) only when one is given', () => {
    expect(STAMP.exec(text(base))?.groups?.for).toBeUndefined();
    expect(text(base)).not.toMatch(/\bfor\b/);
    expect(STAMP.exec(text({ ...base, recipient: 'a@b.test' }))?.groups?.for).toBe('a@b.test');
  });

  it('leaves out the from clause when neither HELO nor address is known (an internal hand-off)', () => {
    const t = text({ by: 'hisp.example.org', protocol: 'local', date: DATE });
    expect(t).toBe('Received: by hisp.example.org (hisp) with local;\r\n\tWed, 25 Nov 2026 10:00:05 +0000\r\n');
  });

  it('writes "unknown" for a client that gave no HELO, and no literal without an address', () => {
    expect(text({ ...base, helo: undefined })).toMatch(/^Received: from unknown \(\[192\.0\.2\.7\]\)\r\n/);
    expect(text({ ...base, remoteAddress: undefined })).toMatch(/^Received: from ehr\.clinic\.test\r\n\tby /);
  });

  it('takes the RFC 3848 keyword of withProtocol as its with clause', () => {
    expect(STAMP.exec(text({ ...base, protocol: withProtocol(true, true, false) }))?.groups?.with).toBe('ESMTPS');
  });

  it('strips control characters and spaces from client-given values: no header injection', () => {
    const t = text({
      ...base,
      helo: 'evil.test\r\nX-Injected: yes',
      recipient: 'a@b.test>\r\n\r\nbody',
      id: 'id\u0000\t1',
      remoteAddress: '192.0.2.7\n',
    });
    expect(t).not.toMatch(/X-Injected: /);
    // Every line break is a fold (CRLF + TAB) or the final CRLF; no other control character.
    const unfolded = t.replace(/\r\n\t/g, ' ').replace(/\r\n$/, '');
    expect([...unfolded].filter((ch) => ch.charCodeAt(0) < 0x20 || ch.charCodeAt(0) === 0x7f)).toEqual([]);
    expect(t).toContain('from evil.testX-Injected:yes ([192.0.2.7])');
    expect(t).toContain(' id id1');
    // Non-ASCII is dropped too (the field is ASCII, RFC 5322 §2.2).
    expect(text({ ...base, helo: 'h\u00e9llo.test' })).toContain('from hllo.test ');
  });

  it('is folded with CRLF + TAB, every line short, ending in CRLF', () => {
    const t = text({ ...base, id: 'x', recipient: 'a@b.test' });
    expect(t.endsWith('\r\n')).toBe(true);
    const lines = t.slice(0, -2).split('\r\n');
    expect(lines.length).toBe(4);
    for (const line of lines.slice(1)) expect(line.startsWith('\t')).toBe(true);
    expect(t.match(/\r\n/g)?.length).toBe(4);
    for (const line of lines) expect(line.length).toBeLessThanOrEqual(998);
  });

  it('bounds each client-given value (no line over RFC 5322 §2.1.1 limit from a long HELO)', () => {
    const t = text({ ...base, helo: 'h'.repeat(5000) });
    for (const line of t.split('\r\n')) expect(line.length).toBeLessThanOrEqual(998);
  });

  it('writes the date in RFC 5322 form, UTC', () => {
    expect(STAMP.exec(text({ ...base, date: new Date('2027-01-03T23:59:59Z') }))?.groups?.date).toBe('Sun, 3 Jan 2027 23:59:59 +0000');
  });

  // RFC 5321 §4.1.3: an IPv6 address literal is "[IPv6:" IPv6-addr "]"; §4.4 TCP-info takes an
  // address-literal. receivedField writes every address as "[addr]", so an IPv6 client (or an IPv4
  // one on a dual-stack listener, "::ffff:192.0.2.7") gets "([::1])", which is not in the grammar.
  it('writes an IPv6 client address as an RFC 5321 IPv6 address literal ([IPv6:...]), an IPv4-mapped one as IPv4', () => {
    expect(text({ ...base, remoteAddress: '2001:db8::7' })).toContain('([IPv6:2001:db8::7])');
    expect(text({ ...base, remoteAddress: '::ffff:192.0.2.9' })).toContain('([192.0.2.9])');
  });

  it('keeps comment and clause delimiters of a HELO name out of the field', () => {
    const f = text({ ...base, helo: 'x(evil; by y' });
    expect(f).toContain('from xevilby');
    expect(f).not.toContain('x(');
  });
});
