/**
 * Issue 14 item 4, end to end: an unauthenticated inbound message whose signer certificate points its
 * AIA caIssuers and CRL distribution point at a loopback HTTP server (the "blind request forgery"
 * seen in the black-box test). With the default configuration the gateway must not send that server
 * a single request: the message is quarantined with the trust error, which says the address is not
 * allowed. With the address in `[fetch] allowAddresses` (a private PKI), the same message is
 * delivered after fetching its intermediate and CRL, so the loopback server is really the one the
 * certificate names. Then the per-message fetch budget through processIncoming: a signer naming many
 * caIssuers URLs causes at most `maxFetchesPerMessage` requests, a transient error, and the budget's
 * refusal is not remembered for the next message.
 *
 * `hisp unwrap` (the built CLI) likewise: refused by default, fetched with `--allow-fetch`.
 *
 * No DNS server is needed: the URLs are IP literals. The gateway's DNS points at a closed port.
 */
import 'reflect-metadata';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import * as x509 from '@peculiar/x509';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadCredential, type PrivateCredential } from '../../gateway/agent/key-material.js';
import { wrapMessage } from '../../gateway/agent/wrap-message.js';
import { Certificate } from '../../gateway/core/certificate.js';
import type { HispGateway } from '../../gateway/flows/hisp-gateway.js';
import { processIncoming } from '../../gateway/flows/process-incoming.js';
import { createHttpFetcher } from '../../gateway/trust/http-fetch.js';
import { TrustValidator } from '../../gateway/trust/trust-validator.js';
import { startPkiServer, type PkiServer } from '../fixtures/trust/pki-server.js';
import { hispRejection as rejection } from '../helpers/hisp-error.js';
import { gatewayConfigObject, maildirMessages, makeCa, makeDomainCredential, startGateway, toConfig, waitFor, type DomainCredential, type TestCa } from '../helpers/direct-network.js';
import { rawSmtp } from '../helpers/raw-smtp.js';

let dir: string;
let pki: PkiServer;
let root: TestCa;
/** b.test: the receiving gateway's domain credential (issued by the root). */
let recipient: DomainCredential;
/** a.test's signer: issued by the partner CA, whose certificate the message does not carry. */
let sender: PrivateCredential;
/** A signer whose certificate names six caIssuers URLs on the loopback server. */
let greedy: PrivateCredential;

const AIA_PATH = '/partner-ca.cer';
const CRL_PATH = '/partner-ca.crl';

/** An a.test certificate issued by `issuer` with these AIA caIssuers and CRL URLs, its file without the chain. */
async function signerCredential(name: string, issuer: TestCa, aia: string[], crl: string[]): Promise<PrivateCredential> {
  const extensions: x509.Extension[] = [new x509.AuthorityInfoAccessExtension({ caIssuers: aia.map((value) => new x509.GeneralName('url', value)) })];
  if (crl.length > 0) extensions.push(new x509.CRLDistributionPointsExtension(crl));
  const c = await makeDomainCredential(dir, issuer, 'a.test', { name, extensions, chain: false });
  return loadCredential(c.keyFile, c.certFile);
}

/** A Direct message from someone@a.test to patient@b.test, signed by `signer`, encrypted to b.test. */
function directMessage(signer: PrivateCredential, subject: string): Buffer {
  const plain = Buffer.from(
    `From: someone@a.test\r\nTo: patient@b.test\r\nSubject: ${subject}\r\nDate: Wed, 25 Nov 2026 10:00:00 +0000\r\n` +
      `Message-ID: <${subject.replace(/\W+/g, '-')}.${Date.now()}@a.test>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\nClinical summary.\r\n`,
  );
  return wrapMessage(plain, { signers: [signer], recipients: [recipientCertificate()] }).message;
}

const recipientCertificate = () => loadCredential(recipient.keyFile, recipient.certFile).certificate;

beforeAll(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'hisp-fetch-policy-'));
  pki = await startPkiServer();
  root = await makeCa(dir, 'fetch policy root');
  // The partner HISP's intermediate CA, issued by the anchored root, published only at its AIA URL.
  const partnerCa = await makeCa(dir, 'partner HISP CA', root);
  pki.routes.set(AIA_PATH, { body: Buffer.from(partnerCa.cert.rawData), type: 'application/pkix-cert' });
  // The CRL route answers 404: under the default soft-fail the CRL counts as unavailable (a warning).
  recipient = await makeDomainCredential(dir, root, 'b.test');
  sender = await signerCredential('sender', partnerCa, [pki.url(AIA_PATH)], [pki.url(CRL_PATH)]);
  greedy = await signerCredential('greedy', partnerCa, [1, 2, 3, 4, 5, 6].map((i) => pki.url(`/nothing-${i}.cer`)), []);
});

afterAll(async () => {
  await pki.close();
  rmSync(dir, { recursive: true, force: true });
});

/** Hands `message` to the inbound port as a peer HISP would; the reply to the end of DATA. */
async function sendInbound(port: number, message: Buffer): Promise<string> {
  const c = await rawSmtp(port);
  try {
    await c.read();
    await c.send('EHLO peer.test\r\n');
    expect(await c.send('MAIL FROM:<someone@a.test>\r\n')).toMatch(/^250/);
    expect(await c.send('RCPT TO:<patient@b.test>\r\n')).toMatch(/^250/);
    expect(await c.send('DATA\r\n')).toMatch(/^354/);
    const stuffed = message.toString('latin1').replace(/\r\n\./g, '\r\n..');
    return await c.send(`${stuffed}${stuffed.endsWith('\r\n') ? '' : '\r\n'}.\r\n`);
  } finally {
    c.close();
  }
}

async function gatewayB(name: string, extra: Record<string, unknown> = {}): Promise<HispGateway> {
  const dataDir = path.join(dir, `data-${name}`);
  const raw = await gatewayConfigObject(
    {
      domain: 'b.test',
      credential: recipient,
      anchors: [root.certFile],
      submissionPort: 0,
      inboundPort: 0,
      remotePorts: {},
      dataDir,
      extra,
    },
    '127.0.0.1:9', // discard: no DNS is asked for these IP-literal URLs
  );
  return startGateway(toConfig(raw, dir));
}

describe('an inbound message whose signer names loopback AIA and CRL URLs (issue 14 item 4)', () => {
  it('default configuration: the loopback server sees no connection; the message is quarantined with the trust error', async () => {
    const b = await gatewayB('default');
    try {
      const before = pki.connections();
      expect(await sendInbound(b.inboundPort!, directMessage(sender, 'SSRF default'))).toMatch(/^250/);
      const entry = await waitFor('the message quarantined', () => b.ctx.quarantine.list()[0]);
      expect(entry.reasonCode).toBe('HISP_TRUST_AIA_FAILED');
      expect(entry.detail).toMatch(new RegExp(`fetch of http://127\\.0\\.0\\.1:${pki.port}${AIA_PATH} refused: the address 127\\.0\\.0\\.1, which is not an allowed address \\(loopback`));
      expect(pki.connections()).toBe(before);
      expect(pki.hitCount(AIA_PATH) + pki.hitCount(CRL_PATH)).toBe(0);
      expect(maildirMessages(path.join(dir, 'data-default', 'maildir', 'patient@b.test'))).toEqual([]);
    } finally {
      await b.stop();
    }
  });

  it('with the address in [fetch] allowAddresses: the intermediate and the CRL are fetched and the message delivered', async () => {
    const b = await gatewayB('allowed', { fetch: { allowAddresses: ['127.0.0.1/32'] } });
    try {
      expect(await sendInbound(b.inboundPort!, directMessage(sender, 'SSRF allowed'))).toMatch(/^250/);
      const delivered = await waitFor('the message delivered', () => maildirMessages(path.join(dir, 'data-allowed', 'maildir', 'patient@b.test'))[0]);
      expect(delivered.toString('latin1')).toMatch(/Subject: SSRF allowed/);
      expect(pki.hitCount(AIA_PATH)).toBe(1);
      expect(pki.hitCount(CRL_PATH)).toBe(1);
      expect(b.ctx.quarantine.list()).toEqual([]);
    } finally {
      await b.stop();
    }
  });
});

describe('the fetch budget of one inbound message (processIncoming)', () => {
  const credentials = () => [loadCredential(recipient.keyFile, recipient.certFile)];
  const anchors = () => [Certificate.fromDer(Buffer.from(root.cert.rawData))];

  it('a signer naming six caIssuers URLs causes at most maxFetchesPerMessage requests, then a transient HISP_TRUST_AIA_FAILED', async () => {
    const validator = new TrustValidator({ fetcher: createHttpFetcher({ allowAddresses: ['127.0.0.1/32'] }), fetchBudget: { maxFetches: 2 } });
    const count = () => [1, 2, 3, 4, 5, 6].reduce((n, i) => n + pki.hitCount(`/nothing-${i}.cer`), 0);
    const e = await rejection(processIncoming(directMessage(greedy, 'greedy 1'), { credentials: credentials(), anchors: anchors(), validator }));
    expect(count()).toBe(2);
    expect(e.code).toBe('HISP_TRUST_AIA_FAILED');
    expect(e.transient).toBe(true);
    expect(e.message).toMatch(/fetch budget of this message \(2 requests\) is spent/);
    // The next message has its own budget, and the refusals of the first were not cached as the URLs'
    // failures: it fetches the next two (the 404s of the first two are remembered for a minute).
    await rejection(processIncoming(directMessage(greedy, 'greedy 2'), { credentials: credentials(), anchors: anchors(), validator }));
    expect(count()).toBe(4);
  });
});

describe('hisp unwrap: the same policy, and --allow-fetch', () => {
  const REPO = path.resolve(import.meta.dirname, '../..');
  /** Runs the built CLI asynchronously (the loopback PKI server lives in this process). */
  async function unwrap(file: string, ...extra: string[]): Promise<{ status: number | null; stderr: string }> {
    const args = [path.join(REPO, 'bin/hisp.js'), 'unwrap', '--in', file, '--out', path.join(dir, 'inner.eml'), '--decrypt-key', recipient.keyFile, '--decrypt-cert', recipient.certFile, '--anchor', root.certFile, '--json', ...extra];
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const status = await new Promise<number | null>((done) => child.on('close', done));
    return { status, stderr };
  }

  it('refuses the loopback AIA URL by default (exit 1, the reason names the address); --allow-fetch 127.0.0.1/32 lets it through', async () => {
    const file = path.join(dir, 'ssrf-cli.eml');
    writeFileSync(file, directMessage(sender, 'SSRF CLI'));
    const before = { connections: pki.connections(), aia: pki.hitCount(AIA_PATH) };
    const refused = await unwrap(file);
    expect(refused.status).toBe(1);
    expect(JSON.parse(refused.stderr)).toMatchObject({ code: 'HISP_TRUST_AIA_FAILED', reason: expect.stringMatching(/127\.0\.0\.1, which is not an allowed address/) as unknown });
    expect(pki.connections()).toBe(before.connections);

    const allowed = await unwrap(file, '--allow-fetch', '127.0.0.1/32');
    expect(allowed.status).toBe(0);
    expect(pki.hitCount(AIA_PATH)).toBe(before.aia + 1);

    const bad = await unwrap(file, '--allow-fetch', 'localhost');
    expect(bad.status).toBe(2);
    expect(JSON.parse(bad.stderr)).toMatchObject({ code: 'HISP_USAGE', reason: expect.stringMatching(/--allow-fetch "localhost" is not an IP address or CIDR range/) as unknown });
  });
});
