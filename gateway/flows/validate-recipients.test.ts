// validateRecipients: verdicts from checks, one time budget for the whole call, a bounded number
// of discoveries at once.
import { afterEach, describe, expect, it } from 'vitest';
import { apiTestContext, TEST_DOMAIN, type ApiTestContext } from '../../test/helpers/api-context.js';
import { scriptedDns } from '../../test/helpers/scripted-dns.js';
import type { DiscoveryDns } from '../discovery/certificate-discovery.js';
import { validateRecipients } from './validate-recipients.js';

let t: ApiTestContext | undefined;
afterEach(async () => {
  await t?.close();
  t = undefined;
});
const sender = { scope: TEST_DOMAIN, domain: TEST_DOMAIN };

describe('validateRecipients', () => {
  it('answers try-later for what did not finish within the time budget, and the rest as decided', async () => {
    t = await apiTestContext({ dns: scriptedDns({}, {}, { silent: ['hangs.test', 'x.hangs.test'] }) });
    const started = Date.now();
    const r = await validateRecipients(['x@hangs.test', 'nobody@nowhere.test', `patient@${TEST_DOMAIN}`], sender, t.ctx, { timeoutMs: 200, concurrency: 1 });
    expect(Date.now() - started).toBeLessThan(5000);
    expect(r.map((x) => [x.address, x.verdict, x.code])).toEqual([
      ['x@hangs.test', 'try-later', 'HISP_DISCOVERY_TEMPORARY'],
      // One at a time: the second and third never started before the budget ran out.
      ['nobody@nowhere.test', 'try-later', 'HISP_DISCOVERY_TEMPORARY'],
      [`patient@${TEST_DOMAIN}`, 'try-later', 'HISP_DISCOVERY_TEMPORARY'],
    ]);
    expect(r[0]!.reason).toBe('the validation did not finish within 200 ms: try again later');
    expect(r[0]!.check).toBeUndefined();
    // With room for all at once, those that answer are decided; only the silent one is late.
    const wide = await validateRecipients(['x@hangs.test', 'nobody@nowhere.test', `patient@${TEST_DOMAIN}`], sender, t.ctx, { timeoutMs: 300, concurrency: 8 });
    expect(wide.map((x) => x.verdict)).toEqual(['try-later', 'no-certificate', 'trusted']);
  });

  it('runs at most `concurrency` discoveries at once', async () => {
    let inFlight = 0;
    let most = 0;
    const inner = scriptedDns({});
    const counting: DiscoveryDns = {
      lookupFunction: () => inner.lookupFunction(),
      query: (async (name: string, type: 'CERT') => {
        inFlight++;
        most = Math.max(most, inFlight);
        await new Promise((r) => setTimeout(r, 5));
        inFlight--;
        return inner.query(name, type);
      }) as DiscoveryDns['query'],
    };
    t = await apiTestContext({ dns: counting });
    const addresses = Array.from({ length: 20 }, (_, i) => `p${i}@nowhere${i}.test`);
    const r = await validateRecipients(addresses, sender, t.ctx, { concurrency: 3 });
    expect(r.every((x) => x.verdict === 'no-certificate')).toBe(true);
    expect(most).toBe(3);
  });
});
