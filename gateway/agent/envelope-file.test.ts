import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { credentialPaths } from '../../test/helpers/pki.js';
import { hispRejection } from '../../test/helpers/hisp-error.js';
import { readEnvelopeFile } from './envelope-file.js';
import { loadCredential } from './key-material.js';
import { unwrapMessage } from './unwrap-message.js';
import { wrapMessage } from './wrap-message.js';

const p = credentialPaths('recipient-rsa');
const credential = loadCredential(p.key, p.chain);
const dir = mkdtempSync(join(tmpdir(), 'hisp-envelope-file-'));

function file(name: string, bytes: Buffer | string): string {
  const path = join(dir, name);
  writeFileSync(path, bytes);
  return path;
}

describe('readEnvelopeFile: a large message unwrapped from its file (issue 14, item 6)', () => {
  it('gives unwrapMessage the same message as the bytes in memory would', async () => {
    const line = `${'a clinical summary line '.repeat(3)}\r\n`;
    const inner = Buffer.from(`From: sender@a.test\r\nTo: patient@b.test\r\nSubject: big\r\n\r\n${line.repeat(40_000)}`);
    const wrapped = wrapMessage(inner, { signers: [credential], recipients: [credential.certificate], messageIdDomain: 'hisp.test' }).message;
    const path = file('big.eml', wrapped);
    const fromFile = unwrapMessage(await readEnvelopeFile(path), { credentials: [credential] });
    const inMemory = unwrapMessage(wrapped, { credentials: [credential] });
    expect(fromFile.message.equals(inMemory.message)).toBe(true);
    expect(fromFile.signers.map((s) => s.verified)).toEqual([true]);
  });

  it('reads no body of a message that is not S/MIME: refused from its header', async () => {
    const path = file('plain.eml', `From: a@a.test\r\nTo: b@b.test\r\n\r\n${'x'.repeat(100_000)}\r\n`);
    const envelope = await readEnvelopeFile(path);
    expect(envelope.der).toBeUndefined();
    expect(() => unwrapMessage(envelope, { credentials: [credential] })).toThrow(expect.objectContaining({ code: 'HISP_SMIME_NOT_ENCRYPTED' }) as Error);
  });

  it('refuses a header section that does not end within the octets read, and tells foreign characters in base64 as a MIME error', async () => {
    const long = file('long-header.eml', `X-Long: ${'y'.repeat(300_000)}\r\n\r\nbody\r\n`);
    expect(await hispRejection(readEnvelopeFile(long))).toMatchObject({ code: 'HISP_MIME_MALFORMED' });
    const bad = file(
      'bad-base64.eml',
      `From: a@a.test\r\nContent-Type: application/pkcs7-mime; smime-type=enveloped-data\r\nContent-Transfer-Encoding: base64\r\n\r\n${'MIIB!!notbase64!!\r\n'.repeat(10)}`,
    );
    const envelope = await readEnvelopeFile(bad);
    expect(envelope.notBase64).toBe(true);
    expect(() => unwrapMessage(envelope, { credentials: [credential] })).toThrow(expect.objectContaining({ code: 'HISP_MIME_MALFORMED' }) as Error);
  });
});
