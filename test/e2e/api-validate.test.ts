/**
 * POST /v1/recipients/validate with real discovery (issue 15): a gateway for a.test whose API
 * asks knotd, which publishes b.test's certificate from the anchored CA and u.test's from a CA
 * nobody anchors (test/helpers/direct-network.ts). Each verdict as `hisp discover` explains it,
 * and the same answer as `hisp discover --config` for the same sender.
 */
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DiscoverReport } from '../../gateway/cli/discover-command.js';
import type { HispGateway } from '../../gateway/flows/hisp-gateway.js';
import { ApiKeyStore } from '../../gateway/store/api-key-store.js';
import { ApiClient } from '../helpers/api-client.js';
import { gatewayConfigObject, startDirectNetwork, startGateway, toConfig, writeToml, type DirectNetwork } from '../helpers/direct-network.js';
import { ensureBuilt, REPO_ROOT } from '../helpers/openssl.js';
import { missingExecutable, requirePeer } from '../helpers/require-peer.js';

const knot = requirePeer(missingExecutable('knotd'));

interface Recipient {
  address: string;
  verdict: string;
  code?: string;
  level?: string;
  local: boolean;
  certificates: { fingerprint?: string; source: string; binding: string; subject?: string; accepted: boolean; basis?: string; code?: string }[];
  steps: { step: string; name: string; result: string }[];
}

describe.skipIf(knot.skip)(knot.title('POST /v1/recipients/validate against knotd'), () => {
  let net: DirectNetwork;
  let gateway: HispGateway;
  let client: ApiClient;
  let token: string;
  let configFile: string;

  beforeAll(async () => {
    ensureBuilt();
    net = await startDirectNetwork(['a.test', 'b.test'], ['u.test']);
    const raw = await gatewayConfigObject(net.spec('a.test'), net.dns.address);
    const withApi = { ...raw, api: { enabled: true, host: '127.0.0.1', port: 0 } };
    configFile = path.join(net.dir, 'a.toml');
    writeToml(configFile, raw);
    gateway = await startGateway(toConfig(withApi, net.dir));
    token = (await new ApiKeyStore(gateway.ctx.db).create({ name: 'ehr', actions: ['validate'], sendAs: ['@a.test'] }, Date.now())).token;
    client = await ApiClient.forUrl(gateway.apiUrl!);
  }, 180_000);

  afterAll(async () => {
    await gateway?.stop();
    await net?.stop();
  });

  it('trusted, untrusted, no-certificate, try-later and local, each with its certificates and steps', async () => {
    const r = await client.request('POST', '/v1/recipients/validate', {
      key: token,
      json: { addresses: ['someone@b.test', 'someone@u.test', 'nobody@nowhere.test', 'x@outside.example', 'patient@a.test'] },
    });
    expect(r.status).toBe(200);
    const [b, u, none, later, local] = (r.body as { recipients: Recipient[] }).recipients as [Recipient, Recipient, Recipient, Recipient, Recipient];
    expect(b).toMatchObject({
      verdict: 'trusted',
      level: 'dns-domain',
      certificates: [{ source: 'dns', binding: 'domain', subject: 'CN=b.test', accepted: true, basis: 'anchor' }],
    });
    expect(b.steps.map((s) => [s.step, s.name, s.result])).toEqual([
      ['dns-cert', 'someone.b.test', 'nxdomain'],
      ['dns-cert', 'b.test', 'found'],
    ]);
    expect(u).toMatchObject({ verdict: 'untrusted', code: 'HISP_DISCOVERY_NO_VALID_CERT', certificates: [{ subject: 'CN=u.test', accepted: false, code: 'HISP_TRUST_NO_ANCHOR' }] });
    expect(none).toMatchObject({ verdict: 'no-certificate', code: 'HISP_DISCOVERY_NO_CERT', certificates: [] });
    expect(none.steps.map((s) => s.result)).toEqual(['nxdomain', 'nxdomain', 'nxdomain']);
    // knotd serves only test.: it refuses other zones, which is "try again later" (requirements §5.9).
    expect(later).toMatchObject({ verdict: 'try-later', code: 'HISP_DISCOVERY_TEMPORARY' });
    expect(local).toMatchObject({ verdict: 'trusted', local: true, certificates: [{ source: 'local', subject: 'CN=a.test' }] });
  });

  it('gives the certificates hisp discover --config finds for the same sender', async () => {
    const r = await client.request('POST', '/v1/recipients/validate', { key: token, json: { addresses: ['someone@b.test', 'someone@u.test'] } });
    const recipients = (r.body as { recipients: Recipient[] }).recipients;
    for (const recipient of recipients) {
      const run = spawnSync(process.execPath, [path.join(REPO_ROOT, 'bin', 'hisp.js'), 'discover', recipient.address, '--config', configFile, '--json'], {
        encoding: 'utf8',
        env: { PATH: process.env.PATH ?? '' },
      });
      const report = JSON.parse(run.stdout) as DiscoverReport;
      expect(recipient.steps).toEqual(report.steps);
      expect(recipient.certificates.filter((c) => c.accepted).map((c) => c.fingerprint)).toEqual(report.selected.map((s) => s.sha256));
      expect(recipient.certificates.filter((c) => !c.accepted).map((c) => [c.fingerprint, c.code])).toEqual(report.rejected.map((x) => [x.sha256, x.reason]));
    }
  });
});
