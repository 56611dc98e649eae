// The JSON intake of POST /v1/recipients/validate under hostile input (issue 15): random JSON
// values, random objects near the schema with stray fields, random bytes and deep nesting sent as
// application/json. Every answer is a 4xx problem or a 200, each matching /openapi.json (the
// ApiClient checks), never a 500, never a hang.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { apiServerPerFile, TEST_DOMAIN } from '../../../test/helpers/api-context.js';
import type { ApiResponse } from '../../../test/helpers/api-client.js';

const server = apiServerPerFile({ api: { rateLimit: { perKeyPerMinute: 1_000_000 } } });

/** One request, which must be answered (within 10 s) by a 200 or a 4xx, as the document says. */
async function send(body: string | Buffer): Promise<ApiResponse> {
  let timer: NodeJS.Timeout | undefined;
  const hang = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error('no answer within 10 s')), 10_000)));
  try {
    const r = await Promise.race([server.client.request('POST', '/v1/recipients/validate', { key: server.token, body, contentType: 'application/json' }), hang]);
    expect(r.status === 200 || (r.status >= 400 && r.status < 500), `${r.status} ${r.text.slice(0, 300)}`).toBe(true);
    return r;
  } finally {
    clearTimeout(timer);
  }
}

const address = fc.oneof(
  fc.emailAddress(),
  fc.constantFrom(`patient@${TEST_DOMAIN}`, `x@${TEST_DOMAIN}`, 'a@b.test', 'A@B.TEST.', 'a@b@c.test', '"q uoted"@x.test', '@x.test', 'x@', 'x@-.test'),
  fc.string({ maxLength: 80 }),
  fc.string({ unit: 'binary', maxLength: 40 }),
);

describe('POST /v1/recipients/validate under random JSON', () => {
  it('any JSON value: 200 or a 4xx problem', async () => {
    await fc.assert(
      fc.asyncProperty(fc.jsonValue({ maxDepth: 6 }), async (value) => {
        await send(JSON.stringify(value) ?? 'null');
      }),
      { numRuns: 300 },
    );
  });

  it('objects near the schema, stray fields and wrong types: 200 only when every field is as declared', async () => {
    // Mostly what the schema declares, each field sometimes anything at all, a stray field now and then.
    const mostly = <T>(valid: fc.Arbitrary<T>) => fc.oneof({ arbitrary: valid, weight: 6 }, { arbitrary: fc.anything(), weight: 1 });
    const body = fc.record(
      {
        addresses: mostly(fc.array(fc.oneof({ arbitrary: fc.emailAddress(), weight: 8 }, { arbitrary: address, weight: 1 }), { minLength: 1, maxLength: 8 })),
        from: mostly(fc.constantFrom(TEST_DOMAIN, 'HOSPITAL.TEST.', `ehr@${TEST_DOMAIN}`, 'elsewhere.test')),
        patientDirected: mostly(fc.boolean()),
        stray: fc.anything(),
      },
      { requiredKeys: [] },
    ).map((v) => v);
    const statuses = new Set<number>();
    await fc.assert(
      fc.asyncProperty(body, async (value) => {
        const text = JSON.stringify(value);
        const r = await send(text);
        statuses.add(r.status);
        if (r.status === 200) {
          // What was sent (undefined members vanish in JSON): no stray field, 1 to 50 addresses.
          const sent = JSON.parse(text) as Record<string, unknown>;
          expect(Object.keys(sent)).not.toContain('stray');
          expect(Array.isArray(sent.addresses) && sent.addresses.length >= 1 && sent.addresses.length <= 50).toBe(true);
          expect((r.body as { recipients: unknown[] }).recipients).toHaveLength((sent.addresses as unknown[]).length);
        }
      }),
      { numRuns: 300 },
    );
    // Both fates were reached: the property says something about accepted bodies too.
    expect(statuses).toContain(200);
    expect(statuses).toContain(400);
  });

  it('random bytes and deep nesting as application/json: a 4xx problem', async () => {
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ maxLength: 2000 }), async (bytes) => {
        await send(Buffer.from(bytes));
      }),
      { numRuns: 200 },
    );
    for (const deep of ['['.repeat(100_000), `${'{"a":'.repeat(50_000)}1${'}'.repeat(50_000)}`, `{"addresses":${'['.repeat(20_000)}${']'.repeat(20_000)}}`]) {
      const r = await send(deep);
      expect(r.status).toBeGreaterThanOrEqual(400);
    }
  });
});
