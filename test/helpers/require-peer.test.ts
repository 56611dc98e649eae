// The rule of hisp's guide, "With CI=true, a missing peer or vector folder fails the run: it never
// skips", as test/helpers/require-peer.ts applies it: unit cases of the gate, then a real vitest run
// of a test file that needs a peer no machine has, with and without CI=true.
import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { firstMissing, isCiRun, missingExecutable, MissingPeerError, requirePeer, skipOrFail } from './require-peer.js';
import { REPO_ROOT } from './vectors.js';

const execFileAsync = promisify(execFile);

describe('requirePeer', () => {
  it('CI=true turns a missing peer into a MissingPeerError that names it', () => {
    const missing = missingExecutable('hisp-no-such-peer');
    expect(missing).toMatch(/^hisp-no-such-peer is not installed .*install-test-peers\.sh/);
    let thrown: unknown;
    try {
      requirePeer(missing, { CI: 'true' });
    } catch (err) {
      thrown = err;
    }
    expect(thrown).toBeInstanceOf(MissingPeerError);
    expect((thrown as MissingPeerError).message).toContain('CI=true');
    expect((thrown as MissingPeerError).message).toContain('hisp-no-such-peer is not installed');
    expect((thrown as MissingPeerError).missing).toBe(missing);
  });

  it('without CI a missing peer skips, with the reason in the title', () => {
    const gate = requirePeer('knotd is not installed', {});
    expect(gate).toMatchObject({ skip: true, reason: 'knotd is not installed' });
    expect(gate.title('two gateways')).toBe('two gateways (skipped: knotd is not installed)');
  });

  it('a peer that is there never skips and leaves the title alone, CI or not', () => {
    for (const env of [{}, { CI: 'true' }]) {
      const gate = requirePeer(missingExecutable('sh'), env);
      expect(gate).toMatchObject({ skip: false, reason: '' });
      expect(gate.title('t')).toBe('t');
    }
  });

  it('reads CI as runners set it: true and 1 are CI; unset, empty, 0 and false are not', () => {
    expect([{ CI: 'true' }, { CI: '1' }, { CI: 'TRUE' }].map((env) => isCiRun(env))).toEqual([true, true, true]);
    expect([{}, { CI: '' }, { CI: '0' }, { CI: 'false' }].map((env) => isCiRun(env))).toEqual([false, false, false, false]);
  });

  it('skipOrFail: a peer found missing inside a test fails it with CI=true, else skips it with a note', () => {
    const notes: (string | undefined)[] = [];
    const ctx = {
      skip: (note?: string): never => {
        notes.push(note);
        throw new Error('skipped');
      },
    };
    expect(() => skipOrFail(ctx, 'no legacy provider', { CI: 'true' })).toThrow(MissingPeerError);
    expect(notes).toEqual([]);
    expect(() => skipOrFail(ctx, 'no legacy provider', {})).toThrow('skipped');
    expect(notes).toEqual(['no legacy provider']);
  });

  it('firstMissing gives the first unmet need', () => {
    expect(firstMissing(undefined, 'b', 'c')).toBe('b');
    expect(firstMissing(undefined, '')).toBeUndefined();
  });
});

describe('a test file that needs a missing peer, run by vitest', () => {
  const config = path.join(REPO_ROOT, 'test/fixtures/require-peer/vitest.config.ts');
  const vitest = path.join(REPO_ROOT, 'node_modules/vitest/vitest.mjs');
  const runFixture = async (ci: string | undefined): Promise<{ code: number; out: string }> => {
    const env: NodeJS.ProcessEnv = { ...process.env, NO_COLOR: '1', FORCE_COLOR: '0' };
    delete env.CI;
    // vitest sets VITEST* in its workers; the child must run as a top-level vitest of its own.
    for (const k of Object.keys(env)) if (k.startsWith('VITEST')) delete env[k];
    if (ci !== undefined) env.CI = ci;
    try {
      const r = await execFileAsync(process.execPath, [vitest, 'run', '--config', config, '--reporter=verbose'], { env, cwd: REPO_ROOT, timeout: 60_000 });
      return { code: 0, out: r.stdout + r.stderr };
    } catch (err) {
      const e = err as { code?: number; stdout?: string; stderr?: string };
      if (typeof e.code !== 'number') throw err;
      return { code: e.code, out: `${e.stdout ?? ''}${e.stderr ?? ''}` };
    }
  };

  it('fails the run with CI=true, naming what is missing; passes with the skip shown without it', async () => {
    const [ci, dev] = await Promise.all([runFixture('true'), runFixture(undefined)]);
    expect(ci.code, ci.out).not.toBe(0);
    expect(ci.out).toContain('MissingPeerError');
    expect(ci.out).toContain('hisp-no-such-peer is not installed');
    expect(ci.out).toMatch(/1 failed/);

    expect(dev.code, dev.out).toBe(0);
    expect(dev.out).toContain('a test that needs hisp-no-such-peer (skipped: hisp-no-such-peer is not installed');
    expect(dev.out).toMatch(/1 skipped/);
  });
});
