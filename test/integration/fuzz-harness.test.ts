// The smoke test of `npm run fuzz` (bench/fuzz.ts), whose long run is not part of npm test: every
// target set up and fed a few inputs in this process (each input a result or a HispError, and some
// of them refusals, so the mutations reach the parsers' checks), then the CLI itself on its planted
// self-test target: a hang, a crash and an untyped error counted, the slice going on after each,
// and the figures merged into a latest.json that keeps the figures of `npm run bench`.
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { runSlice } from '../../bench/fuzz-core.js';
import { FUZZ_TARGETS } from '../../bench/fuzz-targets.js';
import { ensureBuilt } from '../helpers/openssl.js';
import { REPO_ROOT } from '../helpers/vectors.js';

const execFileAsync = promisify(execFile);
const SEED = 20261207;
/** Inputs per target here: enough to reach typed refusals, cheap enough for every npm test. */
const SMOKE: Record<string, number> = { unwrap: 20, cms: 40, 'ldap-search': 20, smtp: 120 };

describe('npm run fuzz, smoke', () => {
  it.each(Object.keys(FUZZ_TARGETS))('%s: inputs fed, each a result or a HispError, some refused', async (name) => {
    const runner = await FUZZ_TARGETS[name]!.setup();
    try {
      const count = SMOKE[name] ?? 150;
      let seen = -1;
      const r = await runSlice(runner, SEED, 0, count, (done) => {
        expect(done).toBe(seen + 1);
        seen = done;
      });
      expect(r.failures).toEqual([]);
      expect(r.inputs).toBe(count);
      expect(r.ok + r.typed).toBe(count);
      expect(r.typed).toBeGreaterThan(0);
      expect(seen).toBe(count);
    } finally {
      await runner.close?.();
    }
  });

  it('the CLI counts a planted hang, crash and untyped error, goes on after each, and merges its figures into latest.json', async () => {
    ensureBuilt();
    // ensureBuilt() looks at gateway/ only: build again when bench/ is newer than its build.
    const newest = (dir: string, ext: string): number =>
      existsSync(dir) ? Math.max(0, ...readdirSync(dir).filter((f) => f.startsWith('fuzz') && f.endsWith(ext)).map((f) => statSync(path.join(dir, f)).mtimeMs)) : 0;
    if (newest(path.join(REPO_ROOT, 'dist/bench'), '.js') < newest(path.join(REPO_ROOT, 'bench'), '.ts')) {
      await execFileAsync('npm', ['run', 'build'], { cwd: REPO_ROOT });
    }
    const dir = mkdtempSync(path.join(tmpdir(), 'hisp-fuzz-'));
    try {
      const out = path.join(dir, 'latest.json');
      const bench = { name: 'agent.wrap.10KB.msgs_per_s_per_core', value: 1, unit: 'msg/s', reference: null, ratio: null, target: null, pass: null, machine: 'm' };
      const stale = { ...bench, name: 'fuzz.mime.inputs', value: 5 };
      writeFileSync(out, JSON.stringify([bench, stale]));
      const run = await execFileAsync(process.execPath, [path.join(REPO_ROOT, 'dist/bench/fuzz.js'), '--self-test', '--watchdog-ms', '1000', '--out', out], { timeout: 60_000 }).then(
        (r) => ({ code: 0, stdout: r.stdout }),
        (e: { code: number; stdout: string }) => ({ code: e.code, stdout: e.stdout }),
      );
      // Crashes and hangs fail the run.
      expect(run.code, run.stdout).toBe(1);
      expect(run.stdout).toMatch(/1 × hang: no progress for # ms/);
      expect(run.stdout).toMatch(/1 × crash: Error: planted crash/);
      expect(run.stdout).toMatch(/1 × TypeError: planted untyped error/);
      expect(run.stdout).toMatch(/--replay self-test:3/);

      const figures = JSON.parse(readFileSync(out, 'utf8')) as { name: string; value: number; pass: boolean | null; target: string | null }[];
      const value = (n: string) => figures.find((f) => f.name === n);
      // Inputs 0–9 all counted: 3 hung, 5 killed its worker, 7 threw a TypeError, 1 and 9 were refused with a HispError.
      expect(value('fuzz.self-test.inputs')?.value).toBe(10);
      expect(value('fuzz.self-test.hangs')).toMatchObject({ value: 1, target: '= 0', pass: false });
      expect(value('fuzz.self-test.crashes')).toMatchObject({ value: 2, target: '= 0', pass: false });
      expect(value('fuzz.self-test.typed_errors')?.value).toBe(2);
      expect(value('fuzz.total.inputs')?.value).toBe(10);
      // The bench figure is kept; the fuzz figure of an earlier run is replaced.
      expect(value('agent.wrap.10KB.msgs_per_s_per_core')).toEqual(bench);
      expect(value('fuzz.mime.inputs')).toBeUndefined();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 120_000);
});
