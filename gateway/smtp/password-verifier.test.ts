import { describe, expect, it } from 'vitest';
import { hispRejection } from '../../test/helpers/hisp-error.js';
import { AuthLimiter } from './auth-limiter.js';
import { PasswordVerifier } from './password-verifier.js';

/** A password check that resolves when told to, counting how many run at once. */
function gatedCheck() {
  const pending: (() => void)[] = [];
  let running = 0;
  let most = 0;
  let calls = 0;
  const verify = (password: string) => {
    calls++;
    running++;
    most = Math.max(most, running);
    return new Promise<boolean>((resolve) =>
      pending.push(() => {
        running--;
        resolve(password === 'right');
      }),
    );
  };
  return { verify, release: () => pending.shift()?.(), stats: () => ({ running, most, calls, pending: pending.length }) };
}

const settle = () => new Promise((r) => setImmediate(r));

describe('PasswordVerifier: scrypt never holds the thread pool (issue 14, item 3)', () => {
  it('runs at most `concurrency` checks; a client holds at most a quarter of the line; the rest are refused 454 at once', async () => {
    const g = gatedCheck();
    const v = new PasswordVerifier({ concurrency: 1, maxWaiting: 4, rememberMs: 0, verify: g.verify });
    const first = v.verify('ehr', 'wrong1', 'h', 'client-a');
    const waiting = v.verify('ehr', 'wrong2', 'h', 'client-b');
    const again = await hispRejection(v.verify('ehr', 'wrong3', 'h', 'client-b'));
    expect(again).toMatchObject({ code: 'HISP_SMTP_AUTH_TEMPORARY', transient: true });
    await settle();
    expect(g.stats()).toMatchObject({ running: 1, calls: 1 });
    g.release();
    expect(await first).toBe(false);
    await settle();
    g.release();
    expect(await waiting).toBe(false);
    expect(g.stats().most).toBe(1);
  });

  it('refuses when the line is full, whoever asks', async () => {
    const g = gatedCheck();
    const v = new PasswordVerifier({ concurrency: 1, maxWaiting: 2, rememberMs: 0, verify: g.verify });
    const running = v.verify('u', 'x0', 'h', 'c0');
    const w1 = v.verify('u', 'x1', 'h', 'c1');
    const w2 = v.verify('u', 'x2', 'h', 'c2');
    expect(await hispRejection(v.verify('u', 'x3', 'h', 'c3'))).toMatchObject({ code: 'HISP_SMTP_AUTH_TEMPORARY' });
    for (let i = 0; i < 3; i++) {
      await settle();
      g.release();
    }
    await Promise.all([running, w1, w2]);
  });

  it('an EHR that opens several connections at once costs one check: identical checks in flight share it', async () => {
    const g = gatedCheck();
    const v = new PasswordVerifier({ concurrency: 1, maxWaiting: 4, rememberMs: 0, verify: g.verify });
    const all = Array.from({ length: 10 }, () => v.verify('ehr', 'right', 'h', 'engine'));
    await settle();
    g.release();
    expect(await Promise.all(all)).toEqual(Array.from({ length: 10 }, () => true));
    expect(g.stats().calls).toBe(1);
  });

  it('remembers a success (no second check) but never a failure, and not across a changed hash', async () => {
    let now = 0;
    let calls = 0;
    const v = new PasswordVerifier({ rememberMs: 60_000, now: () => now, verify: (p) => (calls++, Promise.resolve(p === 'right')) });
    expect(await v.verify('EHR', 'right', 'hash1')).toBe(true);
    expect(await v.verify('ehr', 'right', 'hash1')).toBe(true);
    expect(calls).toBe(1);
    expect(await v.verify('ehr', 'wrong', 'hash1')).toBe(false);
    expect(await v.verify('ehr', 'wrong', 'hash1')).toBe(false);
    expect(calls).toBe(3);
    expect(await v.verify('ehr', 'right', 'hash2')).toBe(true);
    expect(calls).toBe(4);
    now = 60_001;
    expect(await v.verify('ehr', 'right', 'hash1')).toBe(true);
    expect(calls).toBe(5);
  });
});

describe('AuthLimiter (issue 14, item 3)', () => {
  it('locks a key after maxFailures within the window, for lockoutMs; failures outside the window do not add up', () => {
    let now = 0;
    const l = new AuthLimiter({ maxFailures: 3, windowMs: 1000, lockoutMs: 5000, now: () => now });
    expect(l.fail('k')).toBe(false);
    now = 2000; // the first one is out of the window
    expect(l.fail('k')).toBe(false);
    expect(l.fail('k')).toBe(false);
    expect(l.lockedFor('k')).toBe(0);
    expect(l.fail('k')).toBe(true);
    expect(l.lockedFor('k')).toBe(5000);
    now += 5000;
    expect(l.lockedFor('k')).toBe(0);
  });

  it('a flood of fresh keys does not push a lock out of memory', () => {
    let now = 0;
    const l = new AuthLimiter({ maxFailures: 2, windowMs: 60_000, lockoutMs: 60_000, maxKeys: 10, now: () => now });
    l.fail('attacker');
    l.fail('attacker');
    for (let i = 0; i < 1000; i++) {
      now++;
      l.fail(`fresh-${i}`);
    }
    expect(l.lockedFor('attacker')).toBeGreaterThan(0);
  });
});
