// Conformance against messages and keys produced by the Direct reference implementations (Java RI,
// .NET RI), the ONC Edge Testing Tool and the legacy DCDT: each vector shows what it can honestly
// show. Real RI output decrypts, verifies and (where its PKI still allows it) is trusted; where
// the vector's PKI is weak, expired or incomplete, the exact refusal is asserted and explained.
//
// The vectors are third-party data in ../shared/vectors (see each group's INDEX.md); every group
// is skipped, with the reason in its title, when absent.
import type { UnwrapFailureReport, UnwrapReport } from '../../gateway/cli/unwrap-command.js';
import { spawnSync } from 'node:child_process';
import { createHash, sign, verify } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type * as asn1js from 'asn1js';
import * as pkijs from 'pkijs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { keyMatchesCertificate, pairCredential, readCertificates, readPkcs12, readPrivateKey, type PrivateCredential } from '../../gateway/agent/key-material.js';
import { unwrapMessage } from '../../gateway/agent/unwrap-message.js';
import { verifySignature } from '../../gateway/agent/verify-signature.js';
import type { Certificate } from '../../gateway/core/certificate.js';
import { processIncoming } from '../../gateway/flows/process-incoming.js';
import { validateChain } from '../../gateway/trust/chain-validator.js';
import { ensureBuilt } from '../helpers/openssl.js';
import { bodyOf, hispErrorOf, hispErrorOfAsync, multipartParts, REPO_ROOT, vectorGroup } from '../helpers/vectors.js';

const OID_MD5_RSA = '1.2.840.113549.1.1.4';
const OID_SHA1_RSA = '1.2.840.113549.1.1.5';
const OID_SHA256_RSA = '1.2.840.113549.1.1.11';

function onlyCert(bytes: Buffer): Certificate {
  const [cert, ...rest] = readCertificates(bytes);
  expect(rest).toHaveLength(0);
  return cert!;
}

// ------------------------------------------------------------------------------------------------
// CLI plumbing (bin/hisp.js runs the compiled dist/)

const BIN = path.join(REPO_ROOT, 'bin/hisp.js');

interface CliRun {
  status: number | null;
  stdout: string;
  stderr: string;
}

function hisp(args: readonly string[]): CliRun {
  const r = spawnSync(process.execPath, [BIN, ...args], { cwd: REPO_ROOT, encoding: 'utf8', timeout: 60_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** The last stderr line, parsed: hisp --json writes exactly one JSON report there. */
function jsonReport<T>(run: CliRun): T {
  const lines = run.stderr.trim().split('\n');
  return JSON.parse(lines[lines.length - 1] ?? '') as T;
}

let tmp = '';
beforeAll(() => {
  tmp = mkdtempSync(path.join(tmpdir(), 'hisp-ri-vectors-'));
});
afterAll(() => {
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

// ------------------------------------------------------------------------------------------------
// Java RI: EncryptedMessage2 (RI 8.0 output, June 2021)

const JAVA_FILES = {
  message: 'messages/EncryptedMessage2.txt',
  key: 'keys/ryanKey.der',
  cert: 'keys/ryan.der',
  signer: 'keys/gm2552.der',
  anchor: 'certs/anchors/secureHealthEmailCACert.der',
  decrypted: 'derived/EncryptedMessage2.decrypted.eml',
  signedContent: 'derived/EncryptedMessage2.signed-content.bin',
  p7s: 'derived/EncryptedMessage2.p7s.der',
} as const;
const java = vectorGroup('java-ri', Object.values(JAVA_FILES));

// The certificates are valid 2021 … 2048; a fixed time keeps the test independent of the clock.
const JAVA_AT = '2025-06-01T00:00:00Z';

describe.skipIf(!java.present)(java.title('Java RI EncryptedMessage2 (BER, PKCS#1 v1.5, AES-128-CBC, SHA-256, CMSAlgorithmProtection)'), () => {
  let ryan: PrivateCredential;
  let anchor: Certificate;
  let raw: Buffer;

  beforeAll(() => {
    ryan = pairCredential(readPrivateKey(java.read(JAVA_FILES.key)), readCertificates(java.read(JAVA_FILES.cert)));
    anchor = onlyCert(java.read(JAVA_FILES.anchor));
    raw = java.read(JAVA_FILES.message);
  });

  it('is the vector the INDEX describes (LF line ends, SHA-1-signed certificates)', () => {
    expect(raw.includes('\r\n')).toBe(false);
    expect(raw.includes('\n')).toBe(true);
    expect(ryan.certificate.rfc822Names).toEqual(['ryan@securehealthemail.com']);
    expect(onlyCert(java.read(JAVA_FILES.signer)).signatureAlgorithmOid).toBe(OID_SHA1_RSA);
  });

  it('with the legacy SHA-1 switch: decrypts, verifies, chains to SimpleInterop and binds gm2552 by address', async () => {
    const r = await processIncoming(raw, { credentials: [ryan], anchors: [anchor], at: new Date(JAVA_AT), allowSha1: true });
    const u = r.unwrapped;
    expect(u.wrapped).toBe(true);
    expect(u.cipher).toBe('aes128-cbc');
    expect(u.keyTransport).toBe('rsa-pkcs1');
    expect(u.digest).toBe('sha256');
    expect(u.recipient.certificate.der.equals(ryan.certificate.der)).toBe(true);
    expect(u.warnings).toEqual([]);

    expect(u.signers).toHaveLength(1);
    const signer = u.signers[0]!;
    expect(signer.verified).toBe(true);
    expect(signer.error).toBeUndefined();
    expect(signer.algorithmProtection).toBe(true);
    expect(signer.signatureAlgorithm).toBe(OID_SHA256_RSA);
    expect(signer.signingTime?.toISOString()).toBe('2021-06-09T12:59:34.000Z');
    expect(signer.certificate?.der.equals(java.read(JAVA_FILES.signer))).toBe(true);

    expect(r.sender.toString()).toBe('gm2552@securehealthemail.com');
    expect(r.rejected).toEqual([]);
    expect(r.accepted).toHaveLength(1);
    const accepted = r.accepted[0]!;
    expect(accepted.binding).toBe('address');
    expect(accepted.certificate.rfc822Names).toEqual(['gm2552@securehealthemail.com']);
    expect(accepted.anchor.der.equals(anchor.der)).toBe(true);
    expect(accepted.path.map((c) => c.sha256)).toEqual([accepted.certificate.sha256, anchor.sha256]);
  });

  it('decrypted content, signed part and signature equal the OpenSSL-derived oracles byte for byte', () => {
    const u = unwrapMessage(raw, { credentials: [ryan], allowSha1: true });
    const decrypted = java.read(JAVA_FILES.decrypted);
    const signedContent = java.read(JAVA_FILES.signedContent);
    expect(u.decrypted.length).toBe(6046);
    expect(u.decrypted.equals(decrypted)).toBe(true);

    // The signed part, cut by hand from what we decrypted, is the oracle (3177 bytes, ends 008--CRLF)…
    const [signedPart, signaturePart, ...more] = multipartParts(u.decrypted);
    expect(more).toHaveLength(0);
    expect(signedPart!.equals(signedContent)).toBe(true);
    expect(signedContent.length).toBe(3177);
    expect(signedContent.subarray(-7).toString('latin1')).toBe('008--\r\n');
    // …its SHA-256 is the messageDigest attribute quoted in the INDEX…
    const sha256 = createHash('sha256').update(signedContent).digest('hex');
    expect(sha256.startsWith('19663503')).toBe(true);
    expect(sha256.endsWith('5ca685')).toBe(true);
    // …the inner message is the body of that message/rfc822 part…
    expect(signedContent.toString('latin1').toLowerCase().startsWith('content-type: message/rfc822\r\n\r\n')).toBe(true);
    expect(u.message.equals(bodyOf(signedContent))).toBe(true);
    expect(u.message.toString('latin1')).toMatch(/^From: Greg Meyer <gm2552@securehealthemail\.com>\r$/m);
    // …and the signature part carries the detached SignedData of the oracle.
    const p7s = java.read(JAVA_FILES.p7s);
    expect(Buffer.from(bodyOf(signaturePart!).toString('latin1'), 'base64').equals(p7s)).toBe(true);
  });

  it('the detached p7s verifies over the signed part (no SHA-1 switch needed) and not over altered bytes', () => {
    const p7s = java.read(JAVA_FILES.p7s);
    const content = java.read(JAVA_FILES.signedContent);
    const v = verifySignature(p7s, content, { allowSha1: false });
    expect(v.signers.map((s) => [s.verified, s.digest, s.algorithmProtection])).toEqual([[true, 'sha256', true]]);
    expect(v.certificates.map((c) => c.der.equals(java.read(JAVA_FILES.signer)))).toEqual([true]);

    const altered = Buffer.from(content);
    altered[100] = altered[100]! ^ 0x01;
    const bad = verifySignature(p7s, altered, { allowSha1: false });
    expect(bad.signers[0]!.verified).toBe(false);
    expect(bad.signers[0]!.error?.code).toBe('HISP_SIG_INVALID');
  });

  it('without the switch the message itself is fine (SHA-256) but the SHA-1-signed certificates are refused: HISP_TRUST_WEAK_SIGNATURE', async () => {
    // The message digest is SHA-256, so the agent layer accepts it without the legacy switch…
    const u = unwrapMessage(raw, { credentials: [ryan] });
    expect(u.digest).toBe('sha256');
    expect(u.signers[0]!.verified).toBe(true);
    // …and the refusal comes from the trust layer: gm2552.der is sha1WithRSAEncryption-signed.
    const err = await hispErrorOfAsync(() => processIncoming(raw, { credentials: [ryan], anchors: [anchor], at: new Date(JAVA_AT) }));
    expect(err.code).toBe('HISP_TRUST_WEAK_SIGNATURE');
    expect(err.message).toMatch(/SHA-1/);
    expect(err.details).toEqual({
      rejected: [{ code: 'HISP_TRUST_WEAK_SIGNATURE', subject: u.signers[0]!.certificate!.subject }],
    });
  });

  describe('hisp unwrap CLI', () => {
    // dist/ is built (again, when older than the sources) rather than the CLI cases skipped.
    beforeAll(() => {
      ensureBuilt();
    }, 120_000);
    const base = () => [
      'unwrap',
      '--decrypt-key', java.path(JAVA_FILES.key),
      '--decrypt-cert', java.path(JAVA_FILES.cert),
      '--anchor', java.path(JAVA_FILES.anchor),
      '--at', JAVA_AT,
      '--json',
      '--in', java.path(JAVA_FILES.message),
    ];

    it('--allow-sha1: exit 0, writes the inner message, reports the algorithms and the address binding', () => {
      const out = path.join(tmp, 'java-ok.eml');
      const run = hisp([...base(), '--allow-sha1', '--out', out]);
      expect(run.stderr).not.toMatch(/"code"/);
      expect(run.status).toBe(0);
      expect(run.stdout).toBe('');
      expect(readFileSync(out).equals(bodyOf(java.read(JAVA_FILES.signedContent)))).toBe(true);
      const report = jsonReport<UnwrapReport>(run);
      expect(report).toMatchObject({
        digest: 'sha256',
        cipher: 'aes128-cbc',
        keyTransport: 'rsa-pkcs1',
        wrapped: true,
        sender: 'gm2552@securehealthemail.com',
        rejected: [],
        warnings: [],
      });
      expect(report.signers).toHaveLength(1);
      expect(report.signers[0]).toMatchObject({
        binding: 'address',
        sha256: createHash('sha256').update(java.read(JAVA_FILES.signer)).digest('hex'),
      });
      expect(report.recipient.sha256).toBe(createHash('sha256').update(java.read(JAVA_FILES.cert)).digest('hex'));
    });

    it('without --allow-sha1: exit 1, HISP_TRUST_WEAK_SIGNATURE, nothing written', () => {
      const out = path.join(tmp, 'java-refused.eml');
      const run = hisp([...base(), '--out', out]);
      expect(run.status).toBe(1);
      expect(jsonReport<UnwrapFailureReport>(run).code).toBe('HISP_TRUST_WEAK_SIGNATURE');
      expect(existsSync(out)).toBe(false);
    });
  });
});

// ------------------------------------------------------------------------------------------------
// .NET RI: envelopeSignature.eml (OAEP-SHA-1 with empty params, AES-128-CBC, SHA-1 signature)

const DOTNET_FILES = {
  message: 'messages/envelopeSignature.eml',
  message1: 'messages/envelopeSignatureContentType1.eml',
  message2: 'messages/envelopeSignatureContentType2.eml',
  pfx: 'keys/nhind_umamalga1_vm1.pfx',
  signer: 'certs/redmond.cer',
  anchor: 'certs/anchors/umamalga1.cer',
  decrypted: 'derived/envelopeSignature.decrypted.eml',
  signedContent: 'derived/envelopeSignature.signed-content.bin',
  p7s: 'derived/envelopeSignature.p7s.der',
} as const;
const dotnet = vectorGroup('dotnet-ri', Object.values(DOTNET_FILES));
const DOTNET_PASSWORD = 'passw0rd!';
/** Unix 1500000000: the redmond / UM-AMALGA1 chain is valid then (INDEX). */
const DOTNET_AT = '2017-07-14T02:40:00Z';

describe.skipIf(!dotnet.present)(dotnet.title('.NET RI envelopeSignature (OAEP-SHA-1, AES-128-CBC, SHA-1 signature, org cert)'), () => {
  let creds: PrivateCredential[];
  let biff: PrivateCredential;
  let nancy: PrivateCredential;
  let raw: Buffer;

  beforeAll(() => {
    creds = readPkcs12(dotnet.read(DOTNET_FILES.pfx), DOTNET_PASSWORD, DOTNET_FILES.pfx);
    const by = (addr: string) => {
      const c = creds.find((x) => x.certificate.rfc822Names.includes(addr));
      if (!c) throw new Error(`no credential for ${addr}`);
      return c;
    };
    biff = by('biff@nhind.hsgincubator.com');
    nancy = by('nancy@nhind.hsgincubator.com');
    raw = dotnet.read(DOTNET_FILES.message);
  });

  it("decrypts with biff's key (and only his) to the oracle; the SHA-1 signature verifies with allowSha1", () => {
    const u = unwrapMessage(raw, { credentials: [biff], allowSha1: true });
    expect(u.recipient).toBe(biff);
    expect(u.keyTransport).toBe('rsa-oaep-sha1');
    expect(u.cipher).toBe('aes128-cbc');
    expect(u.decrypted.length).toBe(2354);
    expect(u.decrypted.equals(dotnet.read(DOTNET_FILES.decrypted))).toBe(true);
    expect(u.wrapped).toBe(true);
    expect(u.digest).toBe('sha1');
    expect(u.signers).toHaveLength(1);
    const s = u.signers[0]!;
    expect(s.verified).toBe(true);
    expect(s.algorithmProtection).toBe(false);
    expect(s.certificate?.der.equals(onlyCert(dotnet.read(DOTNET_FILES.signer)).der)).toBe(true);
    // The outer headers of this RI test message carry no Message-ID: tolerated with a warning.
    expect(u.warnings).toContain('outer header message-id missing');
    expect(u.message.toString('latin1')).toMatch(/^From: <toby@redmond\.hsgincubator\.com>\r$/m);

    // With both keys of the PFX the right one is picked; with nancy's alone it is not ours.
    expect(unwrapMessage(raw, { credentials: creds, allowSha1: true }).recipient).toBe(biff);
    expect(hispErrorOf(() => unwrapMessage(raw, { credentials: [nancy], allowSha1: true })).code).toBe(
      'HISP_CMS_NOT_FOR_RECIPIENT',
    );
  });

  it('without allowSha1 the SHA-1 signature is refused: HISP_CMS_WEAK_ALGORITHM', () => {
    const err = hispErrorOf(() => unwrapMessage(raw, { credentials: [biff] }));
    expect(err.code).toBe('HISP_CMS_WEAK_ALGORITHM');
    expect(err.message).toMatch(/SHA-1/);
  });

  it('processIncoming at 2017-07-14 with allowSha1: the chain is good but redmond.cer binds no address → HISP_TRUST_BINDING_MISMATCH', async () => {
    const anchor = onlyCert(dotnet.read(DOTNET_FILES.anchor));
    const signer = onlyCert(dotnet.read(DOTNET_FILES.signer));
    const at = new Date(DOTNET_AT);
    // The chain itself validates (so the refusal below is about binding, not trust)…
    const chain = validateChain(signer, { anchors: [anchor], at, purpose: 'signing', allowSha1: true });
    expect(chain.path.map((c) => c.sha256)).toEqual([signer.sha256, anchor.sha256]);
    // …but the org certificate has no subjectAltName: emailAddress=redmond.hsgincubator.com in the
    // subject DN alone binds nothing (requirements §5.8), so toby@redmond… is not bound.
    expect(signer.rfc822Names).toEqual([]);
    expect(signer.dnsNames).toEqual([]);
    expect(signer.subjectEmailAddresses).toEqual(['redmond.hsgincubator.com']);
    const err = await hispErrorOfAsync(() => processIncoming(raw, { credentials: creds, anchors: [anchor], at, allowSha1: true }));
    expect(err.code).toBe('HISP_TRUST_BINDING_MISMATCH');
    expect(err.details).toEqual({ rejected: [{ code: 'HISP_TRUST_BINDING_MISMATCH', subject: signer.subject }] });
  });

  it('the Content-Type variants (reordered, quoted/unquoted parameters) decrypt to the same inner entity', () => {
    const reference = unwrapMessage(raw, { credentials: creds, allowSha1: true });
    for (const file of [DOTNET_FILES.message1, DOTNET_FILES.message2]) {
      const variant = dotnet.read(file);
      expect(variant.equals(raw)).toBe(false);
      const u = unwrapMessage(variant, { credentials: creds, allowSha1: true });
      expect(u.decrypted.equals(dotnet.read(DOTNET_FILES.decrypted))).toBe(true);
      expect(u.message.equals(reference.message)).toBe(true);
      expect(u.signers[0]!.verified).toBe(true);
    }
  });

  it('the detached p7s (one unwrapped base64 line in the original) verifies over the signed part with allowSha1 only', () => {
    const p7s = dotnet.read(DOTNET_FILES.p7s);
    const content = dotnet.read(DOTNET_FILES.signedContent);
    // The oracles are the two parts of the decrypted entity.
    const [signedPart, signaturePart] = multipartParts(dotnet.read(DOTNET_FILES.decrypted));
    expect(signedPart!.equals(content)).toBe(true);
    expect(content.length).toBe(251);
    expect(Buffer.from(bodyOf(signaturePart!).toString('latin1'), 'base64').equals(p7s)).toBe(true);

    const ok = verifySignature(p7s, content, { allowSha1: true });
    expect(ok.signers.map((s) => [s.verified, s.digest])).toEqual([[true, 'sha1']]);
    expect(ok.signers[0]!.certificate?.subjectEmailAddresses).toEqual(['redmond.hsgincubator.com']);
    const strict = verifySignature(p7s, content, { allowSha1: false });
    expect(strict.signers.map((s) => [s.verified, s.error?.code])).toEqual([[false, 'HISP_CMS_WEAK_ALGORITHM']]);
  });

  describe('hisp unwrap CLI', () => {
    // dist/ is built (again, when older than the sources) rather than the CLI cases skipped.
    beforeAll(() => {
      ensureBuilt();
    }, 120_000);
    it('PFX with --password, --at, --allow-sha1: exit 1, HISP_TRUST_BINDING_MISMATCH', () => {
      const out = path.join(tmp, 'dotnet.eml');
      const run = hisp([
        'unwrap',
        '--decrypt-key', dotnet.path(DOTNET_FILES.pfx),
        '--password', DOTNET_PASSWORD,
        '--anchor', dotnet.path(DOTNET_FILES.anchor),
        '--at', DOTNET_AT,
        '--allow-sha1',
        '--json',
        '--in', dotnet.path(DOTNET_FILES.message),
        '--out', out,
      ]);
      expect(run.status).toBe(1);
      expect(jsonReport<UnwrapFailureReport>(run).code).toBe('HISP_TRUST_BINDING_MISMATCH');
      expect(existsSync(out)).toBe(false);
    });
  });
});

// ------------------------------------------------------------------------------------------------
// ETT: TestGeneratedMessage.eml (signed and encrypted with the ETT "good" test credential)

const ETT_FILES = {
  message: 'messages/TestGeneratedMessage.eml',
  p12: 'certs/test-signing/testCert.p12',
  der: 'certs/test-signing/testCert.der',
  anchors: 'certs/public-anchors',
} as const;
const ett = vectorGroup('ett', Object.values(ETT_FILES));

describe.skipIf(!ett.present)(ett.title('ETT TestGeneratedMessage (self-signed RSA-1024 MD5 test credential)'), () => {
  let creds: PrivateCredential[];
  let raw: Buffer;
  let testCert: Certificate;

  beforeAll(() => {
    creds = readPkcs12(ett.read(ETT_FILES.p12), '', ETT_FILES.p12);
    raw = ett.read(ETT_FILES.message);
    testCert = onlyCert(ett.read(ETT_FILES.der));
  });

  it('testCert.p12 (empty password) holds the self-signed, MD5-signed, RSA-1024 CN=Nist credential', () => {
    expect(creds).toHaveLength(1);
    const c = creds[0]!.certificate;
    expect(c.der.equals(testCert.der)).toBe(true);
    expect(c.subject).toBe('CN=Nist,L=Gaithersburg,O=NIST,ST=MD,C=us');
    expect(c.isSelfIssued).toBe(true);
    expect(c.signatureAlgorithmOid).toBe(OID_MD5_RSA);
    expect(c.publicKeyBits).toBe(1024);
    expect(c.notAfter.toISOString()).toBe('2015-06-18T17:07:28.000Z');
    expect(c.rfc822Names).toEqual([]);
  });

  it('decrypts (PKCS#1 v1.5, AES-128-CBC, BER) and its SHA-1 signature by testCert itself verifies with allowSha1', () => {
    const u = unwrapMessage(raw, { credentials: creds, allowSha1: true });
    expect(u.cipher).toBe('aes128-cbc');
    expect(u.keyTransport).toBe('rsa-pkcs1');
    expect(u.wrapped).toBe(true);
    expect(u.digest).toBe('sha1');
    expect(u.decrypted.length).toBe(145516);
    expect(u.decrypted.toString('latin1')).toMatch(/^Content-Type: multipart\/signed;.*micalg=sha-1;/);
    expect(u.signers.map((s) => [s.verified, s.certificate?.der.equals(testCert.der)])).toEqual([[true, true]]);
    const inner = u.message.toString('latin1');
    expect(inner).toMatch(/^From: from@test\.com\r$/m);
    expect(inner).toMatch(/^Subject: Test Message\r$/m);
    expect(inner).toContain('filename=CCDA_Inpatient.xml');
  });

  // The full unwrap refuses it for its signer, whatever the anchors; which check fires first:
  //  - without allowSha1: HISP_CMS_WEAK_ALGORITHM — the SignerInfo digest is SHA-1, refused by the
  //    agent before any trust decision;
  //  - allowSha1, ETT public anchors: HISP_TRUST_NO_ANCHOR — CN=Nist is self-signed and no anchor
  //    is or issues it (the path search stops at a self-issued certificate);
  //  - allowSha1, testCert itself pinned as anchor, now: HISP_TRUST_EXPIRED (expired 2015-06-18);
  //  - same inside its validity (2014-12-01): HISP_TRUST_WEAK_KEY (RSA-1024 < 2048, R-ENC-4).
  //    Its MD5 certificate signature never surfaces: a pinned anchor's own signature is not
  //    checked (it is trusted as configured), and it is the whole path. Were it bound at all, the
  //    binding would fail too (no subjectAltName; From is from@test.com).
  it.each([
    { anchorSet: 'ETT public anchors', allowSha1: false, at: undefined, code: 'HISP_CMS_WEAK_ALGORITHM' },
    { anchorSet: 'testCert pinned', allowSha1: false, at: '2014-12-01T00:00:00Z', code: 'HISP_CMS_WEAK_ALGORITHM' },
    { anchorSet: 'ETT public anchors', allowSha1: true, at: undefined, code: 'HISP_TRUST_NO_ANCHOR' },
    { anchorSet: 'ETT public anchors', allowSha1: true, at: '2014-12-01T00:00:00Z', code: 'HISP_TRUST_NO_ANCHOR' },
    { anchorSet: 'testCert pinned', allowSha1: true, at: undefined, code: 'HISP_TRUST_EXPIRED' },
    { anchorSet: 'testCert pinned', allowSha1: true, at: '2014-12-01T00:00:00Z', code: 'HISP_TRUST_WEAK_KEY' },
  ] as const)('processIncoming with $anchorSet, allowSha1=$allowSha1, at=$at → $code', async ({ anchorSet, allowSha1, at, code }) => {
    const anchors =
      anchorSet === 'testCert pinned'
        ? [testCert]
        : readdirSync(ett.path(ETT_FILES.anchors)).flatMap((n) => readCertificates(ett.read(`${ETT_FILES.anchors}/${n}`), n));
    if (anchorSet !== 'testCert pinned') {
      expect(anchors).toHaveLength(11);
      expect(anchors.some((a) => a.subjectDer.equals(testCert.issuerDer))).toBe(false);
    }
    const err = await hispErrorOfAsync(() =>
      processIncoming(raw, { credentials: creds, anchors, allowSha1, ...(at === undefined ? {} : { at: new Date(at) }) }),
    );
    expect(err.code).toBe(code);
  });
});

// ------------------------------------------------------------------------------------------------
// DCDT 2.x: testDecryptMail.eml (a real 2013 HISP message to DCDT) and testDecryptMail_bad.eml

const DCDT_FILES = {
  message: 'upstream/legacy-dcdt-2.x/testDecryptMail.eml',
  bad: 'upstream/legacy-dcdt-2.x/testDecryptMail_bad.eml',
  key: 'upstream/legacy-dcdt-2.x/testDecryptMail_key.der',
  cert: 'upstream/legacy-dcdt-2.x/testDecryptMail_cert.der',
} as const;
const dcdt = vectorGroup('dcdt', Object.values(DCDT_FILES));

describe.skipIf(!dcdt.present)(dcdt.title('DCDT 2.x testDecryptMail (2013 HISP message, SHA-1, RSA-1024)'), () => {
  let cred: PrivateCredential;
  let raw: Buffer;

  beforeAll(() => {
    cred = pairCredential(readPrivateKey(dcdt.read(DCDT_FILES.key)), readCertificates(dcdt.read(DCDT_FILES.cert)));
    raw = dcdt.read(DCDT_FILES.message);
  });

  it('decrypts with testDecryptMail_key/_cert and the provider1 SHA-1 signature verifies with allowSha1', () => {
    expect(cred.certificate.rfc822Names).toEqual(['dts500@direct1.direct-test.com']);
    const u = unwrapMessage(raw, { credentials: [cred], allowSha1: true });
    expect(u.recipient).toBe(cred);
    expect(u.cipher).toBe('aes128-cbc');
    expect(u.keyTransport).toBe('rsa-pkcs1');
    expect(u.wrapped).toBe(true);
    expect(u.digest).toBe('sha1');
    expect(u.decrypted.length).toBe(3293);
    expect(u.message.toString('latin1')).toMatch(
      /^From: "provider1@hisp1\.provider-directories\.com" <provider1@hisp1\.provider-directories\.com>\r$/m,
    );
    expect(u.signers).toHaveLength(1);
    const s = u.signers[0]!;
    expect(s.verified).toBe(true);
    const signer = s.certificate!;
    expect(signer.rfc822Names).toEqual(['provider1@hisp1.provider-directories.com']);
    expect(signer.issuer).toBe('O=hisp1ca,ST=MD,C=US,CN=hisp1ca');
    expect(signer.signatureAlgorithmOid).toBe(OID_SHA1_RSA);
    expect(signer.publicKeyBits).toBe(1024);
    expect(signer.notAfter.toISOString()).toBe('2013-04-16T14:53:55.000Z');
    // The SignedData carries the leaf only: its issuer hisp1ca is nowhere in the vectors.
    expect(u.certificates.map((c) => c.sha256)).toEqual([signer.sha256]);
  });

  // The full unwrap refuses it for its signer:
  //  - without allowSha1: HISP_CMS_WEAK_ALGORITHM (SHA-1 SignerInfo digest, micalg=sha1);
  //  - allowSha1 with the only anchor-like certificate the vector has (our own recipient cert,
  //    issued by direct-test.com_ca): HISP_TRUST_NO_ANCHOR — provider1's issuer hisp1ca is
  //    neither an anchor nor carried in the message;
  //  - allowSha1, provider1's own certificate pinned as anchor, now: HISP_TRUST_EXPIRED (2013-04-16);
  //  - same at the message date 2013-01-16: HISP_TRUST_WEAK_KEY (RSA-1024).
  it.each([
    { anchorSet: 'recipient cert', allowSha1: false, at: undefined, code: 'HISP_CMS_WEAK_ALGORITHM' },
    { anchorSet: 'recipient cert', allowSha1: true, at: undefined, code: 'HISP_TRUST_NO_ANCHOR' },
    { anchorSet: 'signer pinned', allowSha1: true, at: undefined, code: 'HISP_TRUST_EXPIRED' },
    { anchorSet: 'signer pinned', allowSha1: true, at: '2013-01-16T10:10:00Z', code: 'HISP_TRUST_WEAK_KEY' },
  ] as const)('processIncoming with $anchorSet, allowSha1=$allowSha1, at=$at → $code', async ({ anchorSet, allowSha1, at, code }) => {
    const signer = unwrapMessage(raw, { credentials: [cred], allowSha1: true }).signers[0]!.certificate!;
    const anchors = anchorSet === 'signer pinned' ? [signer] : [cred.certificate];
    const err = await hispErrorOfAsync(() =>
      processIncoming(raw, { credentials: [cred], anchors, allowSha1, ...(at === undefined ? {} : { at: new Date(at) }) }),
    );
    expect(err.code).toBe(code);
  });

  it('testDecryptMail_bad.eml: RC2-CBC content encryption, addressed to another certificate → HISP_CMS_WEAK_ALGORITHM', () => {
    const bad = dcdt.read(DCDT_FILES.bad);
    // Facts of the vector, read with pkijs: RC2-CBC (1.2.840.113549.3.2) and a RecipientInfo for a
    // direct-test.com_ca certificate with a 64-octet serial, not ours (0x75C7C3ED0EE6FEFA).
    const b64 = bodyOf(bad).toString('latin1');
    const info = pkijs.ContentInfo.fromBER(Buffer.from(b64, 'base64'));
    const env = new pkijs.EnvelopedData({ schema: info.content as asn1js.Sequence });
    expect(env.encryptedContentInfo.contentEncryptionAlgorithm.algorithmId).toBe('1.2.840.113549.3.2');
    expect(env.recipientInfos).toHaveLength(1);
    const ktri = env.recipientInfos[0]!.value as pkijs.KeyTransRecipientInfo;
    const rid = ktri.rid as pkijs.IssuerAndSerialNumber;
    const serial = Buffer.from(rid.serialNumber.valueBlock.valueHexView).toString('hex');
    expect(serial.length).toBe(128);
    expect(serial).not.toBe(cred.certificate.serialHex);
    expect(cred.certificate.serialHex).toBe('75c7c3ed0ee6fefa');

    // The agent refuses RC2 before it looks for a matching recipient (with or without the switch).
    for (const allowSha1 of [false, true]) {
      const err = hispErrorOf(() => unwrapMessage(bad, { credentials: [cred], allowSha1 }));
      expect(err.code).toBe('HISP_CMS_WEAK_ALGORITHM');
      expect(err.message).toMatch(/RC2/);
    }
  });
});

// ------------------------------------------------------------------------------------------------
// PKCS#12 files of the RIs (legacy PBE: RC2-40 cert bags, 3DES key bags, SHA-1 MAC)

const javaKeys = vectorGroup('java-ri', ['keys']);
const dotnetKeys = vectorGroup('dotnet-ri', ['keys']);
const P12_PASSWORDS: Record<string, string> = {
  'java-ri/keys/gm2552encrypted.p12': '1kingpuff',
  'dotnet-ri/keys/kryptiq.DirectCi.lab.pfx': 'Passw0rd!',
};

function pkcs12Files(group: typeof javaKeys, ext: string, defaultPassword: string): { file: string; password: string }[] {
  if (!group.present) return [{ file: `${group.name}/keys/(absent)`, password: '' }];
  return readdirSync(group.path('keys'))
    .filter((n) => n.endsWith(ext))
    .sort()
    .map((n) => {
      const file = `${group.name}/keys/${n}`;
      return { file, password: P12_PASSWORDS[file] ?? defaultPassword };
    });
}

function checkPkcs12(group: typeof javaKeys, file: string, password: string): PrivateCredential[] {
  const rel = file.slice(group.name.length + 1);
  const creds = readPkcs12(group.read(rel), password, file);
  expect(creds.length).toBeGreaterThanOrEqual(1);
  const data = Buffer.from(`round trip ${file}`);
  for (const c of creds) {
    expect(c.key.type).toBe('private');
    expect(keyMatchesCertificate(c.key, c.certificate)).toBe(true);
    const signature = sign('sha256', data, c.key);
    expect(verify('sha256', data, c.certificate.publicKey, signature)).toBe(true);
    expect(verify('sha256', Buffer.from('other data'), c.certificate.publicKey, signature)).toBe(false);
  }
  // A wrong password is a clean HISP_KEY_UNREADABLE, not a garbage key.
  expect(hispErrorOf(() => readPkcs12(group.read(rel), `${password}x`, file)).code).toBe('HISP_KEY_UNREADABLE');
  return creds;
}

describe.skipIf(!javaKeys.present)(javaKeys.title('Java RI PKCS#12 files open (empty password; gm2552encrypted → 1kingpuff)'), () => {
  const files = pkcs12Files(javaKeys, '.p12', '');
  it('are the seven of the INDEX', () => {
    expect(files.map((f) => path.basename(f.file))).toEqual([
      'altNameOnly.p12',
      'digSigOnly.p12',
      'dualUse.p12',
      'gm2552encrypted.p12',
      'keyEncOnly.p12',
      'test.email.com.p12',
      'user1.p12',
    ]);
  });
  it.each(files)('$file yields a credential whose key signs for its certificate', ({ file, password }) => {
    checkPkcs12(javaKeys, file, password);
  });
});

describe.skipIf(!dotnetKeys.present)(dotnetKeys.title(".NET RI PFX files open (passw0rd!; kryptiq.DirectCi.lab → Passw0rd!)"), () => {
  const files = pkcs12Files(dotnetKeys, '.pfx', DOTNET_PASSWORD);
  it('are the six of the INDEX', () => {
    expect(files.map((f) => path.basename(f.file))).toEqual([
      'dev.singleuse.lab.encipherment.pfx',
      'dev.singleuse.lab.sign.pfx',
      'fha-crossover.DirectInt.lab_dualUse.pfx',
      'kryptiq.DirectCi.lab.pfx',
      'nhind_umamalga1_vm1.pfx',
      'redmond.pfx',
    ]);
  });
  it.each(files)('$file yields credential(s) whose key signs for the certificate', ({ file, password }) => {
    const creds = checkPkcs12(dotnetKeys, file, password);
    if (file.endsWith('nhind_umamalga1_vm1.pfx')) {
      expect(creds.map((c) => c.certificate.rfc822Names)).toEqual([
        ['biff@nhind.hsgincubator.com'],
        ['nancy@nhind.hsgincubator.com'],
      ]);
    } else {
      expect(creds).toHaveLength(1);
    }
  });
});
