/**
 * A Direct message from the committed test PKI, received as the receive side does: `inner` signed by
 * a fixture leaf (its chain included), encrypted to recipient-rsa, then decrypted, verified and
 * trusted by processIncoming against root-ca at a time inside the fixtures' validity (2025–2049).
 */
import { readFileSync } from 'node:fs';
import { loadCredential, readCertificates, type PrivateCredential } from '../../gateway/agent/key-material.js';
import { wrapMessage } from '../../gateway/agent/wrap-message.js';
import type { Certificate } from '../../gateway/core/certificate.js';
import { processIncoming, type IncomingResult, type ProcessIncomingOptions } from '../../gateway/flows/process-incoming.js';
import { credentialPaths, type LeafName } from './pki.js';

/** The validation and signing time. */
export const RECEIVED_AT = new Date('2030-01-01T00:00:00Z');

let recipient: PrivateCredential | undefined;
let anchors: Certificate[] | undefined;

export function receiveSigned(signer: LeafName, inner: Buffer, options: Partial<ProcessIncomingOptions> = {}): Promise<IncomingResult> {
  const r = credentialPaths('recipient-rsa');
  recipient ??= loadCredential(r.key, r.cert);
  anchors ??= readCertificates(readFileSync(credentialPaths('root-ca').cert), 'root-ca');
  const p = credentialPaths(signer);
  const wrapped = wrapMessage(inner, { signers: [loadCredential(p.key, p.chain)], recipients: [recipient.certificate], signingTime: RECEIVED_AT }).message;
  return processIncoming(wrapped, { credentials: [{ key: recipient.key, certificate: recipient.certificate }], anchors, at: RECEIVED_AT, ...options });
}
