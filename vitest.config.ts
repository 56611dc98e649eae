import { availableParallelism } from 'node:os';
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['gateway/**/*.test.ts', 'test/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    pool: 'forks',
    // Vitest's default is one worker fewer than the CPUs: one on the 2-vCPU CI. Most files wait on
    // servers (knotd, slapd, Postfix, Chromium, gateways) more than they compute, so every CPU
    // runs a file of its own; the tests measure no time that contention could break.
    maxWorkers: Math.max(2, availableParallelism()),
  },
});
