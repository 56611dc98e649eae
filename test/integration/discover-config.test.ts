/**
 * Issue 14, item 16: `hisp discover --config FILE` sees exactly what the gateway of that
 * configuration sees for a message from `--from`: the DNS servers of the file (no --dns given), the
 * sending domain's outgoing anchors, its trust bundles as the gateway loads them, its policy.
 * Against knotd serving CERT records (b.test from the trusted CA, u.test from the untrusted one).
 */
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DiscoverReport } from '../../gateway/cli/discover-command.js';
import { gatewayConfigObject, startDirectNetwork, writeToml, type DirectNetwork } from '../helpers/direct-network.js';
import { ensureBuilt, REPO_ROOT } from '../helpers/openssl.js';

const HISP = path.join(REPO_ROOT, 'bin', 'hisp.js');
let net: DirectNetwork;
/** Two local domains: a.test trusts the trusted CA and requires 3072-bit RSA from recipients; u.test trusts only the untrusted CA. */
let twoDomains: string;
/** One local domain (a.test, default policy), and a trust bundle that cannot be fetched. */
let oneDomain: string;

function discover(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [HISP, 'discover', ...args], { encoding: 'utf8', env: { PATH: process.env.PATH ?? '' } });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

const json = (r: { stdout: string }) => JSON.parse(r.stdout) as DiscoverReport;

beforeAll(async () => {
  ensureBuilt();
  net = await startDirectNetwork(['a.test', 'b.test'], ['u.test']);
  const a = await gatewayConfigObject(net.spec('a.test'), net.dns.address);
  const u = await gatewayConfigObject(net.spec('u.test', { anchors: [net.untrusted.certFile] }), net.dns.address);
  const domains = (o: Record<string, unknown>) => o.domains as Record<string, unknown>[];
  twoDomains = path.join(net.dir, 'two.toml');
  writeToml(twoDomains, { ...a, domains: [{ ...domains(a)[0], policy: { minRsaBits: 3072 } }, domains(u)[0]] });
  oneDomain = path.join(net.dir, 'one.toml');
  writeToml(oneDomain, {
    ...a,
    domains: [{ ...domains(a)[0], bundles: [{ url: 'https://127.0.0.1:1/bundle.p7b', direction: 'outgoing' }] }],
  });
}, 180_000);

afterAll(async () => {
  await net?.stop();
});

describe('hisp discover --config', () => {
  it('uses the configuration: its DNS server, the only domain’s anchors and policy, and shows them', () => {
    const r = discover('someone@b.test', '--config', oneDomain, '--json');
    expect(r.status, r.stderr).toBe(0);
    const report = json(r);
    expect(report).toMatchObject({ status: 'selected', level: 'dns-domain', selected: [{ binding: 'domain', source: 'dns', basis: 'anchor' }] });
    const view = report.view!;
    expect(view).toMatchObject({
      config: oneDomain,
      from: 'a.test',
      domain: 'a.test',
      localRecipient: false,
      dns: { servers: [net.dns.address], timeoutMs: 1000, retries: 1 },
      policy: { minRsaBits: 2048, revocation: 'soft-fail' },
    });
    expect(view.anchors.map((a) => a.subject)).toEqual(['O=hisp e2e,CN=e2e trusted CA']);
    expect(view.fetch.aia.timeoutMs).toBeGreaterThan(0);
    // The bundle, fetched as the gateway fetches it at start: here it cannot be, and the view says so.
    expect(view.bundles).toHaveLength(1);
    expect(view.bundles[0]).toMatchObject({ url: 'https://127.0.0.1:1/bundle.p7b', status: 'failed', anchors: 0 });
    expect(view.bundles[0]!.error).toMatch(/^HISP_BUNDLE_FETCH_FAILED/);
  });

  it('prints the view before the steps without --json', () => {
    const r = discover('someone@b.test', '--config', oneDomain);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^view of a\.test \(domain a\.test\) in /);
    expect(r.stdout).toContain(`  dns      ${net.dns.address} (time-out 1000 ms, retries 1)`);
    expect(r.stdout).toMatch(/ {2}anchors {2}1 outgoing\n {11}O=hisp e2e,CN=e2e trusted CA sha256 [0-9a-f]{64} until /);
    expect(r.stdout).toContain('  bundle   https://127.0.0.1:1/bundle.p7b: not loaded (HISP_BUNDLE_FETCH_FAILED');
    expect(r.stdout).toMatch(/policy {3}RSA >= 2048 bits, SHA-1 refused, revocation soft-fail/);
    expect(r.stdout).toContain('discover someone@b.test');
    expect(r.stdout).toContain('result: 1 certificate(s) to encrypt to');
  });

  it('takes the view of --from: each domain its own anchors and policy', () => {
    // a.test's policy wants 3072-bit keys: b.test's 2048-bit certificate is refused.
    const fromA = json(discover('someone@b.test', '--config', twoDomains, '--from', 'a.test', '--json'));
    expect(fromA).toMatchObject({ status: 'none', rejected: [{ reason: 'HISP_TRUST_WEAK_KEY' }], view: { domain: 'a.test', policy: { minRsaBits: 3072 } } });
    // u.test anchors only the untrusted CA: b.test's certificate has no anchor, u.test's own CA's has.
    const fromU = discover('someone@b.test', '--config', twoDomains, '--from', 'provider@u.test', '--json');
    expect(fromU.status).toBe(3);
    expect(json(fromU)).toMatchObject({ status: 'none', rejected: [{ reason: 'HISP_TRUST_NO_ANCHOR' }], view: { from: 'provider@u.test', domain: 'u.test' } });
    expect(json(discover('x@u.test', '--config', twoDomains, '--from', 'a.test', '--json'))).toMatchObject({ status: 'selected', view: { localRecipient: true } });
  });

  it('needs --from when the configuration has several domains, and a local one', () => {
    const none = discover('someone@b.test', '--config', twoDomains);
    expect(none.status).toBe(2);
    expect(none.stderr).toContain('the configuration has 2 domains (a.test, u.test): give --from ADDRESS_OR_DOMAIN');
    const foreign = discover('someone@b.test', '--config', twoDomains, '--from', 'b.test');
    expect(foreign.status).toBe(2);
    expect(foreign.stderr).toContain('--from b.test: b.test is not a domain of the configuration');
  });

  it('refuses flags that the configuration sets, and --from without --config', () => {
    for (const extra of [['--dns', '127.0.0.1:53'], ['--anchor', net.trusted.certFile], ['--revocation', 'off'], ['--timeout', '100'], ['--allow-sha1']]) {
      const r = discover('someone@b.test', '--config', oneDomain, ...extra);
      expect(r.status, extra.join(' ')).toBe(2);
      expect(r.stderr).toContain(`${extra[0]} cannot be combined with --config`);
    }
    const r = discover('someone@b.test', '--from', 'a.test', '--anchor', net.trusted.certFile);
    expect(r.status).toBe(2);
    expect(r.stderr).toContain('--from needs --config');
  });

  it('for a recipient of a local domain, shows that the gateway encrypts to the domain’s own certificates', () => {
    const r = discover('patient@a.test', '--config', oneDomain, '--json');
    expect(r.status, r.stderr).toBe(0);
    expect(json(r)).toMatchObject({ status: 'selected', steps: [], selected: [{ source: 'local', basis: 'local', subject: 'CN=a.test' }], view: { localRecipient: true } });
  });
});
