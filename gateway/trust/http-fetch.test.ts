import type { LookupFunction } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HispError } from '../core/errors.js';
import { startPkiServer, type PkiServer } from '../../test/fixtures/trust/pki-server.js';
import { FetchBudget } from './fetch-budget.js';
import { asFetchError, createHttpFetcher, fetchErrorCode, type FetchPurpose } from './http-fetch.js';
import { hispRejection as rejection } from '../../test/helpers/hisp-error.js';

let server: PkiServer;
/** The same routes on ::1 (IPv6 loopback). */
let server6: PkiServer;
/** A second host, 127.0.0.2, that redirects to the first. */
let redirector: PkiServer;
beforeAll(async () => {
  server = await startPkiServer();
  server6 = await startPkiServer({ host: '::1' });
  server6.routes.set('/ok', { body: 'hello' });
  redirector = await startPkiServer({ host: '127.0.0.2' });
  redirector.routes.set('/to-loopback', { redirect: server.url('/ok') });
  redirector.routes.set('/to-self', { redirect: '/ok' });
  redirector.routes.set('/ok', { body: 'from 127.0.0.2' });
  server.routes.set('/ok', { body: 'hello' });
  server.routes.set('/big', { body: Buffer.alloc(5000, 1) });
  server.routes.set('/big-chunked', { body: Buffer.alloc(5000, 1), chunked: true });
  server.routes.set('/missing', { status: 404 });
  server.routes.set('/down', { status: 503 });
  server.routes.set('/hop1', { redirect: '/hop2' });
  server.routes.set('/hop2', { redirect: '/ok' });
  server.routes.set('/loop', { redirect: '/loop' });
  server.routes.set('/hang', { hang: true });
});
afterAll(async () => {
  await Promise.all([server.close(), server6.close(), redirector.close()]);
});

const req = (purpose: FetchPurpose = 'crl', extra: Partial<{ timeoutMs: number; maxBytes: number }> = {}) => ({
  purpose,
  timeoutMs: 5000,
  maxBytes: 1 << 20,
  ...extra,
});

describe('createHttpFetcher', () => {
  // The test server is on loopback, which the fetcher refuses unless allowed (see below).
  const fetch = createHttpFetcher({ allowAddresses: ['127.0.0.1/32'] });

  it('returns the body of a 200 answer, following redirects', async () => {
    expect((await fetch(new URL(server.url('/ok')), req())).toString()).toBe('hello');
    expect((await fetch(new URL(server.url('/hop1')), req())).toString()).toBe('hello');
  });

  it('errors carry the code of their purpose', async () => {
    for (const purpose of ['crl', 'aia', 'bundle'] as const) {
      const e = await rejection(fetch(new URL(server.url('/missing')), req(purpose)));
      expect(e.code).toBe(fetchErrorCode(purpose));
      expect(e.message).toMatch(/HTTP 404/);
    }
    expect(fetchErrorCode('crl')).toBe('HISP_TRUST_REVOCATION_UNAVAILABLE');
    expect(fetchErrorCode('aia')).toBe('HISP_TRUST_AIA_FAILED');
    expect(fetchErrorCode('bundle')).toBe('HISP_BUNDLE_FETCH_FAILED');
    expect((await rejection(fetch(new URL(server.url('/down')), req()))).transient).toBe(true);
  });

  it('enforces the size limit from Content-Length and while streaming', async () => {
    expect((await rejection(fetch(new URL(server.url('/big')), req('crl', { maxBytes: 1000 })))).message).toMatch(/5000 bytes exceeds the limit of 1000/);
    expect((await rejection(fetch(new URL(server.url('/big-chunked')), req('crl', { maxBytes: 1000 })))).message).toMatch(/exceeds the limit of 1000/);
    expect(await fetch(new URL(server.url('/big-chunked')), req('crl', { maxBytes: 5000 }))).toHaveLength(5000);
  });

  it('times out a server that does not answer', async () => {
    const t0 = Date.now();
    const e = await rejection(fetch(new URL(server.url('/hang')), req('aia', { timeoutMs: 150 })));
    expect(e.code).toBe('HISP_TRUST_AIA_FAILED');
    expect(e.message).toMatch(/within 150 ms/);
    expect(Date.now() - t0).toBeLessThan(2000);
  });

  it('stops redirect loops and refuses schemes it is not allowed', async () => {
    expect((await rejection(fetch(new URL(server.url('/loop')), req()))).message).toMatch(/too many redirects/);
    expect((await rejection(fetch(new URL('ftp://127.0.0.1/x'), req()))).message).toMatch(/ftp: URLs are not allowed/);
    const httpsOnly = createHttpFetcher({ protocols: ['https:'], allowAddresses: ['127.0.0.1/32'] });
    expect((await rejection(httpsOnly(new URL(server.url('/ok')), req('bundle')))).code).toBe('HISP_BUNDLE_FETCH_FAILED');
  });

  it('asFetchError wraps foreign errors into the purpose’s code and keeps HispErrors', () => {
    const url = new URL('http://x.test/a');
    expect(asFetchError(new Error('boom'), url, 'aia')).toMatchObject({ code: 'HISP_TRUST_AIA_FAILED', transient: true });
    const h = new HispError('HISP_BUNDLE_INVALID', 'x');
    expect(asFetchError(h, url, 'crl')).toBe(h);
  });
});

/** A lookup answering `answers[i]` at its i-th call (the last one after that), counting its calls. */
function scriptedLookup(...answers: string[][]): LookupFunction & { calls: string[] } {
  const calls: string[] = [];
  const lookup = ((hostname: string, options: { all?: boolean }, callback: (...args: unknown[]) => void) => {
    const list = answers[Math.min(calls.length, answers.length - 1)]!.map((address) => ({ address, family: address.includes(':') ? 6 : 4 }));
    calls.push(hostname);
    if (options.all) callback(null, list);
    else callback(null, list[0]!.address, list[0]!.family);
  }) as unknown as LookupFunction;
  return Object.assign(lookup, { calls });
}

describe('request forgery: where the fetcher may connect (issue 14 item 4)', () => {
  /** Runs `fn` and returns how many TCP connections the servers accepted meanwhile. */
  async function connectionsDuring(fn: () => Promise<unknown>, ...servers: PkiServer[]): Promise<number> {
    const before = servers.reduce((n, s) => n + s.connections(), 0);
    await fn();
    return servers.reduce((n, s) => n + s.connections(), 0) - before;
  }

  it('refuses 127.0.0.1 by default, for every purpose, without connecting: a permanent error of the purpose that names the address', async () => {
    const fetch = createHttpFetcher();
    const hits = server.hitCount('/ok');
    for (const purpose of ['crl', 'aia', 'bundle'] as const) {
      let e: HispError | undefined;
      expect(await connectionsDuring(async () => (e = await rejection(fetch(new URL(server.url('/ok')), req(purpose)))), server)).toBe(0);
      expect(e!.code).toBe(fetchErrorCode(purpose));
      expect(e!.transient).toBe(false);
      expect(e!.message).toMatch(/127\.0\.0\.1, which is not an allowed address \(loopback/);
      expect(e!.details).toMatchObject({ host: '127.0.0.1', address: '127.0.0.1', refused: true });
    }
    expect(server.hitCount('/ok')).toBe(hits);
  });

  it('refuses [::1] and IPv4-mapped loopback ([::ffff:127.0.0.1]) without connecting', async () => {
    const fetch = createHttpFetcher();
    const v6 = await connectionsDuring(async () => {
      expect((await rejection(fetch(new URL(server6.url('/ok')), req()))).message).toMatch(/::1, which is not an allowed address/);
    }, server6);
    const mapped = await connectionsDuring(async () => {
      expect((await rejection(fetch(new URL(`http://[::ffff:127.0.0.1]:${server.port}/ok`), req()))).message).toMatch(/as 127\.0\.0\.1 in an IPv6 address/);
    }, server);
    expect([v6, mapped]).toEqual([0, 0]);
  });

  it('checks the addresses a name resolves to: one resolving to 10.x, or to loopback, or to a mix, is refused; the name is resolved once', async () => {
    const priv = scriptedLookup(['10.20.30.40']);
    const e = await rejection(createHttpFetcher({ lookup: priv })(new URL('http://crl.partner.test/ca.crl'), req()));
    expect(e.message).toMatch(/crl\.partner\.test resolves to 10\.20\.30\.40, which is not an allowed address \(private \(RFC 1918\)/);
    expect(e.transient).toBe(false);
    expect(priv.calls).toEqual(['crl.partner.test']);

    const loop = scriptedLookup(['127.0.0.1']);
    expect(await connectionsDuring(() => rejection(createHttpFetcher({ lookup: loop })(new URL(`http://aia.evil.test:${server.port}/ok`), req('aia'))), server)).toBe(0);
    // Every address must be allowed, not just one of them.
    const mixed = scriptedLookup(['127.0.0.1', '10.0.0.1']);
    const fetchMixed = createHttpFetcher({ lookup: mixed, allowAddresses: ['127.0.0.1/32'] });
    expect(await connectionsDuring(async () => expect((await rejection(fetchMixed(new URL(`http://mixed.test:${server.port}/ok`), req()))).message).toMatch(/10\.0\.0\.1/), server)).toBe(0);
  });

  it('connects to the address it checked (no second DNS answer between check and connect), with the name in Host', async () => {
    // Allowed: 127.0.0.2 only. A rebinding resolver answers 127.0.0.2 first, then 127.0.0.1 (where the
    // server listens). The fetcher resolves once and connects to 127.0.0.2: nothing listens there.
    const rebinding = scriptedLookup(['127.0.0.2'], ['127.0.0.1']);
    const fetch = createHttpFetcher({ lookup: rebinding, allowAddresses: ['127.0.0.2/32'] });
    const n = await connectionsDuring(async () => {
      const e = await rejection(fetch(new URL(`http://rebind.test:${server.port}/ok`), req()));
      expect(e.message).toMatch(/ECONNREFUSED/);
    }, server);
    expect(n).toBe(0);
    expect(rebinding.calls).toEqual(['rebind.test']);

    const named = createHttpFetcher({ lookup: scriptedLookup(['127.0.0.2']), allowAddresses: ['127.0.0.2/32'] });
    expect((await named(new URL(`http://pki.private.test:${redirector.port}/ok`), req())).toString()).toBe('from 127.0.0.2');
    expect(redirector.hostHeaders.at(-1)).toBe(`pki.private.test:${redirector.port}`);
  });

  it('checks again at every redirect: an allowed host redirecting to 127.0.0.1 is refused there', async () => {
    const fetch = createHttpFetcher({ allowAddresses: ['127.0.0.2/32'] });
    const hopsBefore = redirector.hitCount('/to-loopback');
    const n = await connectionsDuring(async () => {
      const e = await rejection(fetch(new URL(redirector.url('/to-loopback')), req('aia')));
      expect(e.code).toBe('HISP_TRUST_AIA_FAILED');
      expect(e.message).toMatch(new RegExp(`fetch of http://127\\.0\\.0\\.1:${server.port}/ok refused`));
    }, server);
    expect(n).toBe(0);
    expect(redirector.hitCount('/to-loopback')).toBe(hopsBefore + 1);
    // Within the allowed host, redirects are followed.
    expect((await fetch(new URL(redirector.url('/to-self')), req())).toString()).toBe('from 127.0.0.2');
  });

  it('fetches only http: and https: URLs, before resolving anything', async () => {
    const lookup = scriptedLookup(['127.0.0.1']);
    const fetch = createHttpFetcher({ lookup, allowAddresses: ['0.0.0.0/0', '::/0'] });
    for (const url of ['ftp://pki.test/ca.cer', 'file:///etc/passwd', 'ldap://ldap.test/cn=ca', 'gopher://pki.test:70/1', 'data:,hello']) {
      const e = await rejection(fetch(new URL(url), req('aia')));
      expect(e.message).toMatch(/URLs are not allowed here/);
    }
    expect(lookup.calls).toEqual([]);
    // A configuration cannot widen the schemes either.
    const widened = createHttpFetcher({ protocols: ['ftp:' as 'http:'], allowAddresses: ['127.0.0.1/32'] });
    expect((await rejection(widened(new URL('ftp://127.0.0.1/x'), req()))).message).toMatch(/ftp: URLs are not allowed/);
  });

  it('an allowed range lets the fetch through (the operator’s allow-list for a private PKI)', async () => {
    expect((await createHttpFetcher({ allowAddresses: ['127.0.0.0/8'] })(new URL(server.url('/ok')), req())).toString()).toBe('hello');
    expect((await createHttpFetcher({ allowAddresses: ['::1'] })(new URL(server6.url('/ok')), req())).toString()).toBe('hello');
    const viaName = createHttpFetcher({ lookup: scriptedLookup(['127.0.0.1']), allowAddresses: ['127.0.0.1'] });
    expect((await viaName(new URL(`http://crl.private.test:${server.port}/ok`), req())).toString()).toBe('hello');
  });

  it('logs a refused fetch with the URL’s host and the refused address', async () => {
    const lines: { obj: Record<string, unknown>; msg: string }[] = [];
    const logger = { warn: (obj: Record<string, unknown>, msg: string) => void lines.push({ obj, msg }) };
    const fetch = createHttpFetcher({ lookup: scriptedLookup(['169.254.169.254']), logger: logger as never });
    await rejection(fetch(new URL('http://metadata.evil.test/latest/'), req('crl')));
    expect(lines).toEqual([
      {
        obj: { purpose: 'crl', url: 'http://metadata.evil.test/latest/', host: 'metadata.evil.test', address: '169.254.169.254', range: 'link-local (RFC 3927)' },
        msg: 'fetch refused: the address is not allowed',
      },
    ]);
  });
});

describe('the fetch budget of a message', () => {
  const fetch = createHttpFetcher({ allowAddresses: ['127.0.0.1/32'] });

  it('stops the (N+1)th request: a transient error of the purpose, and the server sees N', async () => {
    const budget = new FetchBudget({ maxFetches: 3 });
    const before = server.hitCount('/ok');
    for (let i = 0; i < 3; i++) await fetch(new URL(server.url('/ok')), { ...req('aia'), budget });
    const e = await rejection(fetch(new URL(server.url('/ok')), { ...req('aia'), budget }));
    expect(e.code).toBe('HISP_TRUST_AIA_FAILED');
    expect(e.transient).toBe(true);
    expect(e.message).toMatch(/fetch budget of this message \(3 requests\) is spent/);
    expect(server.hitCount('/ok') - before).toBe(3);
    expect(budget.fetches).toBe(3);
  });

  it('counts each redirect as a request', async () => {
    const budget = new FetchBudget({ maxFetches: 2 });
    const e = await rejection(fetch(new URL(server.url('/hop1')), { ...req('crl'), budget })); // hop1 → hop2 → ok
    expect(e.code).toBe('HISP_TRUST_REVOCATION_UNAVAILABLE');
    expect(e.details).toMatchObject({ budget: 'fetches' });
  });

  it('limits the bytes of all answers together (declared or streamed) and the time of all requests', async () => {
    const declared = new FetchBudget({ maxBytes: 8000 });
    expect(await fetch(new URL(server.url('/big')), { ...req(), budget: declared })).toHaveLength(5000);
    expect((await rejection(fetch(new URL(server.url('/big')), { ...req('bundle'), budget: declared }))).details).toMatchObject({ budget: 'bytes' });
    const streamed = new FetchBudget({ maxBytes: 8000 });
    await fetch(new URL(server.url('/big-chunked')), { ...req(), budget: streamed });
    expect((await rejection(fetch(new URL(server.url('/big-chunked')), { ...req(), budget: streamed }))).message).toMatch(/8000 bytes\) is spent/);
    const slow = new FetchBudget({ maxMs: 100 });
    const e = await rejection(fetch(new URL(server.url('/hang')), { ...req('aia'), budget: slow }));
    expect(e.details).toMatchObject({ budget: 'time' });
    expect((await rejection(fetch(new URL(server.url('/ok')), { ...req('aia'), budget: slow }))).details).toMatchObject({ budget: 'time' });
  });
});
