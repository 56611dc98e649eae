// The vitest configuration of mutation testing (npm run mutate, stryker.config.mjs; docs/testing.md):
// only the tests that exercise gateway/agent, gateway/trust, gateway/policy and gateway/mdn: the unit
// tests beside that code, and the integration, interop and conformance files of test/ that drive it.
// The end-to-end files (test/e2e: whole gateways, Postfix, knot) are left out: each mutant run would
// start their peers again, and what they add over these is the SMTP and queue code, not mutated here.
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: [
      'gateway/agent/**/*.test.ts',
      'gateway/trust/**/*.test.ts',
      'gateway/policy/**/*.test.ts',
      'gateway/mdn/**/*.test.ts',
      'gateway/flows/discover-recipient.test.ts',
      'test/conformance/*.test.ts',
      'test/interop/openssl-cms.test.ts',
      'test/integration/negative-cases.test.ts',
      'test/integration/parsers.property.test.ts',
      'test/integration/trust-*.test.ts',
      'test/integration/signer-trust.test.ts',
    ],
    testTimeout: 30_000,
    hookTimeout: 120_000,
    pool: 'forks',
  },
});
