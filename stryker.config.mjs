// Mutation testing of the security agent and the trust code (issue 14 item 20; docs/testing.md).
// Run it with `npm run mutate` (scripts/mutate.sh): one folder at a time, niced, one worker, in
// the background on the shared 2-core machines. Not part of CI.
//
// HISP_MUTATE picks what to mutate: a folder (agent, trust, policy, mdn), or files of one folder
// (`trust/name-binding.ts,trust/chain-validator.ts`) for a quick look at one piece of code. Each
// target keeps its own incremental file (reports/, not committed: docs/testing.md says why), so that
// its next run re-tests only the mutants whose code or covering tests changed.
const target = process.env.HISP_MUTATE ?? 'agent';
const FOLDERS = ['agent', 'trust', 'policy', 'mdn'];
const folder = target.split('/')[0];
if (!FOLDERS.includes(folder) || target.split(',').some((t) => !t.startsWith(`${folder}/`) && t !== folder)) {
  throw new Error(`HISP_MUTATE must be one of ${FOLDERS.join(', ')}, or files of one of them (trust/name-binding.ts,…), not ${target}`);
}
const label = target.replace(/\.ts\b/g, '').replace(/[^A-Za-z0-9]+/g, '-');
const files = target === folder ? [`gateway/${folder}/**/*.ts`, `!gateway/${folder}/**/*.test.ts`] : target.split(',').map((f) => `gateway/${f}`);

/** Not mutated, with the reason (docs/testing.md, "Left out"). */
const LEFT_OUT = [
  // Runs in a worker thread, where Stryker's mutant switch (a global of the test process) does not
  // reach; what it does is wrapMessage's, proven equal by wrap-pool.test.ts.
  '!gateway/agent/wrap-thread.ts',
];

/** @type {import('@stryker-mutator/api/core').PartialStrykerOptions} */
export default {
  testRunner: 'vitest',
  vitest: { configFile: 'vitest.mutate.config.mjs', related: true, pool: 'forks' },
  coverageAnalysis: 'perTest',
  mutate: [...files, ...LEFT_OUT],
  // Two cores shared with other engineers: one test runner, and the script runs Stryker under nice.
  concurrency: 1,
  // A busy machine makes runs slower, not endless: generous before a mutant counts as a time-out.
  timeoutMS: 20_000,
  timeoutFactor: 2,
  dryRunTimeoutMinutes: 30,
  incremental: true,
  incrementalFile: `reports/mutation/incremental-${label}.json`,
  ignorePatterns: ['dist', 'coverage', 'reports', 'hisp-data', 'bench/results', '.stryker-tmp'],
  reporters: ['clear-text', 'progress', 'html', 'json'],
  htmlReporter: { fileName: `reports/mutation/${label}.html` },
  jsonReporter: { fileName: `reports/mutation/${label}.json` },
  clearTextReporter: { allowEmojis: false, logTests: false, reportTests: false, reportScoreTable: true, reportMutants: true },
  // docs/testing.md: the target is 85 % of the mutants killed per folder; below 70 % is a regression.
  thresholds: { high: 85, low: 70, break: null },
  tempDirName: '.stryker-tmp',
};
