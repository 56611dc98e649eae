import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HispError } from '../core/errors.js';
import { startPkiServer, type PkiServer } from '../../test/fixtures/trust/pki-server.js';
import { asFetchError, createHttpFetcher, fetchErrorCode, type FetchPurpose } from './http-fetch.js';
import { hispRejection as rejection } from '../../test/helpers/hisp-error.js';

let server: PkiServer;
beforeAll(async () => {
  server = await startPkiServer();
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
  await server.close();
});

const req = (purpose: FetchPurpose = 'crl', extra: Partial<{ timeoutMs: number; maxBytes: number }> = {}) => ({
  purpose,
  timeoutMs: 5000,
  maxBytes: 1 << 20,
  ...extra,
});

describe('createHttpFetcher', () => {
  const fetch = createHttpFetcher();

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
    const httpsOnly = createHttpFetcher({ protocols: ['https:'] });
    expect((await rejection(httpsOnly(new URL(server.url('/ok')), req('bundle')))).code).toBe('HISP_BUNDLE_FETCH_FAILED');
  });

  it('asFetchError wraps foreign errors into the purpose’s code and keeps HispErrors', () => {
    const url = new URL('http://x.test/a');
    expect(asFetchError(new Error('boom'), url, 'aia')).toMatchObject({ code: 'HISP_TRUST_AIA_FAILED', transient: true });
    const h = new HispError('HISP_BUNDLE_INVALID', 'x');
    expect(asFetchError(h, url, 'crl')).toBe(h);
  });
});
