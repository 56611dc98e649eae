// POST /fhir/Bundle under hostile input (issue 16: "invalid resources get an OperationOutcome,
// never a 500"): any JSON, valid ITI-65 Bundles with values replaced or removed anywhere, and
// bytes that are no JSON. Every answer is application/fhir+json: a transaction-response (200, one
// message per recipient queued) or an OperationOutcome with a 4xx; nothing is queued for a 4xx.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { apiServerPerFile } from '../../../test/helpers/api-context.js';
import { mhdBundle } from '../../../test/helpers/mhd-bundles.js';

const server = apiServerPerFile({ api: { rateLimit: { perKeyPerMinute: 1_000_000 } } });

const stored = () => server.t.db.sqlite.prepare('SELECT count(*) FROM messages').pluck().get() as number;

async function expectFhirAnswer(body: string): Promise<number> {
  const before = stored();
  // The ApiClient checks the answer against /openapi.json: the status declared, fhir+json, the schema.
  const r = await server.client.request('POST', '/fhir/Bundle', { key: server.token, body, contentType: 'application/fhir+json' });
  expect(r.headers['content-type']).toMatch(/^application\/fhir\+json/);
  if (r.status === 200) {
    expect((r.body as { type: string }).type).toBe('transaction-response');
    expect(stored()).toBeGreaterThan(before);
  } else {
    expect(r.status).toBeGreaterThanOrEqual(400);
    expect(r.status).toBeLessThan(500);
    expect((r.body as { resourceType: string; issue: unknown[] }).resourceType).toBe('OperationOutcome');
    expect(stored()).toBe(before);
  }
  return r.status;
}

const valid = mhdBundle({ recipients: ['patient@phr.example'], patientResource: { identifier: [{ system: 'urn:oid:1.2.3', value: 'MRN-1' }], name: [{ family: 'Jones', given: ['Ada'] }], birthDate: '1970-01-31' } });

function paths(value: unknown, at: (string | number)[] = [], out: (string | number)[][] = []): (string | number)[][] {
  out.push(at);
  if (Array.isArray(value)) value.forEach((v, i) => paths(v, [...at, i], out));
  else if (value !== null && typeof value === 'object') for (const [k, v] of Object.entries(value)) paths(v, [...at, k], out);
  return out;
}
const validPaths = paths(valid).filter((p) => p.length > 0);

describe('POST /fhir/Bundle under hostile input', () => {
  it('any JSON value: an OperationOutcome 4xx, nothing queued', async () => {
    await fc.assert(
      fc.asyncProperty(fc.jsonValue({ maxDepth: 6 }), async (value) => {
        expect(await expectFhirAnswer(JSON.stringify(value) ?? 'null')).toBeGreaterThanOrEqual(400);
      }),
      { numRuns: 150 },
    );
  });

  it('a valid Bundle with a value replaced by any JSON, or removed: 200 or an OperationOutcome 4xx', async () => {
    const statuses = new Set<number>();
    await fc.assert(
      fc.asyncProperty(fc.nat(validPaths.length - 1), fc.jsonValue({ maxDepth: 3 }), fc.boolean(), async (i, value, remove) => {
        const body = structuredClone(valid) as unknown as Record<string | number, unknown>;
        const path = validPaths[i]!;
        let node = body;
        for (const p of path.slice(0, -1)) node = node[p] as Record<string | number, unknown>;
        if (remove) delete node[path.at(-1)!];
        else node[path.at(-1)!] = value;
        statuses.add(await expectFhirAnswer(JSON.stringify(body)));
      }),
      { numRuns: 200 },
    );
    // Both outcomes were seen: the property is about real Bundles, not only refusals.
    expect(statuses.has(200)).toBe(true);
    expect([...statuses].some((s) => s >= 400)).toBe(true);
  });

  it('bytes that are no JSON: 400 OperationOutcome', async () => {
    await fc.assert(
      fc.asyncProperty(fc.string({ maxLength: 200 }).filter((s) => { try { JSON.parse(s); return false; } catch { return true; } }), async (text) => {
        expect(await expectFhirAnswer(text)).toBe(400);
      }),
      { numRuns: 100 },
    );
  });

  it('a Bundle nested a million deep is refused as an OperationOutcome; a body over 16 MiB is 413', async () => {
    const deep = `{"resourceType":"Bundle","type":"transaction","entry":[${'['.repeat(1_000_000)}${']'.repeat(1_000_000)}]}`;
    expect(await expectFhirAnswer(deep)).toBe(422);
    const big = await server.app.inject({ method: 'POST', url: '/fhir/Bundle', headers: { authorization: `Bearer ${server.token}`, 'content-type': 'application/fhir+json' }, payload: `"${'x'.repeat(16 * 1024 * 1024)}"` });
    expect(big.statusCode).toBe(413);
    expect(big.json()).toMatchObject({ resourceType: 'OperationOutcome', issue: [{ code: 'too-costly' }] });
  });

  it('an unknown FHIR interaction is a 404 OperationOutcome, not a problem', async () => {
    const r = await server.app.inject({ method: 'GET', url: '/fhir/Patient/1', headers: { authorization: `Bearer ${server.token}` } });
    expect(r.statusCode).toBe(404);
    expect(r.headers['content-type']).toMatch(/^application\/fhir\+json/);
    expect(r.json()).toMatchObject({ resourceType: 'OperationOutcome', issue: [{ code: 'not-found' }] });
  });
});
