import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { HTTP_STATUS_BY_CODE, problemForError } from '../api/problem-mapping.js';
import { SMTP_REPLY_BY_CODE, replyForError } from '../smtp/reply-mapping.js';
import { ERROR_CODES, HispError, type HispErrorCode } from './errors.js';

const docs = readFileSync(new URL('../../docs/errors.md', import.meta.url), 'utf8');
const codes = Object.keys(ERROR_CODES) as HispErrorCode[];

describe('error codes', () => {
  it.each(codes)('%s is documented in docs/errors.md with its SMTP reply and HTTP status', (code) => {
    const r = SMTP_REPLY_BY_CODE[code];
    expect(docs).toContain(`| \`${code}\` | ${r.code} ${r.enhanced} | ${HTTP_STATUS_BY_CODE[code]} |`);
  });

  it('every HTTP status is a client or server error (RFC 9110 §15.5, §15.6)', () => {
    for (const code of codes) expect(HTTP_STATUS_BY_CODE[code]).toBeGreaterThanOrEqual(400);
    for (const code of codes) expect(HTTP_STATUS_BY_CODE[code]).toBeLessThan(600);
  });

  it('a problem carries the code and, for an internal failure, a trace id instead of the detail', () => {
    const shown = problemForError(new HispError('HISP_XDM_UNSAFE', 'entry ../x escapes the package'), 't1');
    expect(shown).toMatchObject({ status: 422, code: 'HISP_XDM_UNSAFE', type: 'tag:hisp.dev,2026:problem:HISP_XDM_UNSAFE', detail: 'entry ../x escapes the package' });
    const hidden = problemForError(new HispError('HISP_IO', 'cannot write /var/lib/hisp/x: ENOSPC'), 't2');
    expect(hidden).toMatchObject({ status: 500, code: 'HISP_IO', trace: 't2' });
    expect(JSON.stringify(hidden)).not.toContain('/var/lib');
    const foreign = problemForError(new TypeError('at /src/x.ts:1'), 't3');
    expect(foreign).toMatchObject({ status: 500, code: 'HISP_INTERNAL', trace: 't3' });
    expect(JSON.stringify(foreign)).not.toContain('/src');
    expect(problemForError(new HispError('HISP_DISCOVERY_NO_VALID_CERT', 'later', { transient: true }), 't').status).toBe(503);
  });

  it('docs/errors.md lists no code that does not exist', () => {
    const documented = [...docs.matchAll(/`(HISP_[A-Z0-9_]+)`/g)].map((m) => m[1]);
    for (const d of documented) expect([...codes, 'HISP_INTERNAL']).toContain(d);
  });

  it('every reply is a well-formed RFC 3463 status whose class matches the basic code', () => {
    for (const code of codes) {
      const { code: basic, enhanced } = SMTP_REPLY_BY_CODE[code];
      expect(enhanced).toMatch(/^[245]\.\d{1,3}\.\d{1,3}$/);
      expect(enhanced[0]).toBe(String(basic)[0]);
    }
  });

  it('a transient error is answered with the 4xx form of the same status', () => {
    const r = replyForError(new HispError('HISP_TRUST_NO_ANCHOR', 'later', { transient: true }));
    expect(r).toMatchObject({ code: 451, enhanced: '4.7.1' });
    expect(r.text).toContain('[HISP_TRUST_NO_ANCHOR]');
  });

  it('a permanent error keeps its 5xx reply and a foreign error is a local 451', () => {
    expect(replyForError(new HispError('HISP_CMS_DECRYPT_FAILED', 'x'))).toMatchObject({ code: 554, enhanced: '5.7.5' });
    expect(replyForError(new TypeError('boom'))).toMatchObject({ code: 451, enhanced: '4.3.0' });
  });

  it('a HispError serializes to the {code, reason} shape the CLI prints', () => {
    expect(JSON.parse(JSON.stringify(new HispError('HISP_IO', 'cannot read x')))).toEqual({ code: 'HISP_IO', reason: 'cannot read x' });
  });
});
