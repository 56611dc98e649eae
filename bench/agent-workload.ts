import { createPrivateKey, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Certificate } from '../gateway/core/certificate.js';
import type { DecryptionCredential } from '../gateway/agent/open-envelope.js';
import type { SigningCredential } from '../gateway/agent/sign-detached.js';

/** Repository root, from dist/bench/ or bench/. */
export const REPO_ROOT = (() => {
  const here = dirname(fileURLToPath(import.meta.url));
  return here.includes(`${join('dist', 'bench')}`) ? join(here, '..', '..') : join(here, '..');
})();

const PKI = join(REPO_ROOT, 'test', 'fixtures', 'pki');

export function pkiPath(name: string, kind: 'cert.pem' | 'cert.der' | 'key.pem' | 'chain.pem'): string {
  return join(PKI, `${name}.${kind}`);
}

function cert(name: string): Certificate {
  return Certificate.fromDer(readFileSync(pkiPath(name, 'cert.der')));
}

/** The credentials of the benchmark: RSA-2048 signer (with its intermediate) and RSA-2048 recipient. */
export function benchCredentials(): { signers: SigningCredential[]; recipients: Certificate[]; decrypt: DecryptionCredential[] } {
  const recipient = cert('recipient-rsa');
  return {
    signers: [
      { key: createPrivateKey(readFileSync(pkiPath('sender-rsa', 'key.pem'))), certificate: cert('sender-rsa'), chain: [cert('intermediate-ca')] },
    ],
    recipients: [recipient],
    decrypt: [{ key: createPrivateKey(readFileSync(pkiPath('recipient-rsa', 'key.pem'))), certificate: recipient }],
  };
}

/** A realistic message of about `size` bytes: headers and a base64 attachment body (CRLF lines). */
export function makeMessage(size: number): Buffer {
  const head =
    'From: Sender <sender@sender.test>\r\nTo: patient@recipient.test\r\nSubject: Continuity of care document\r\n' +
    'Message-ID: <bench@sender.test>\r\nDate: Wed, 25 Nov 2026 09:00:00 +0000\r\nMIME-Version: 1.0\r\n' +
    'Content-Type: application/xml; name=ccda.xml\r\nContent-Transfer-Encoding: base64\r\n\r\n';
  const lines = Math.max(1, Math.ceil((size - head.length) / 78));
  const raw = randomBytes(lines * 57);
  const parts: string[] = [];
  for (let i = 0; i < lines; i++) parts.push(raw.subarray(i * 57, i * 57 + 57).toString('base64'));
  return Buffer.from(head + parts.join('\r\n') + '\r\n', 'latin1');
}
