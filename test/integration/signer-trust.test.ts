// The receive side's judgement of a signer (processIncoming: unwrap, then trust, then binding), on
// signers made for each case: what the receiving HISP delivers and what it refuses, with the code the
// operator finds in quarantine. Kills the mutants of docs/testing.md that survived the suite before:
// notBefore ignored, the R-CRT-2 emailAddress check removed.
import { KeyObject } from 'node:crypto';
import { beforeAll, describe, expect, it } from 'vitest';
import { loadCredential } from '../../gateway/agent/key-material.js';
import { wrapMessage } from '../../gateway/agent/wrap-message.js';
import { processIncoming } from '../../gateway/flows/process-incoming.js';
import { TrustValidator } from '../../gateway/trust/trust-validator.js';
import { makeCaPair, makeCertificate, type CertSpec, type MadeCertificate } from '../helpers/cert-factory.js';
import { hispRejection } from '../helpers/hisp-error.js';
import { credentialPaths } from '../helpers/pki.js';

const recipientPaths = credentialPaths('recipient-rsa');
const recipient = loadCredential(recipientPaths.key, recipientPaths.chain);
const AT = new Date('2030-06-01T00:00:00Z');
/** No CRL distribution points in these certificates: nothing is fetched; a fetch would be a bug. */
const validator = new TrustValidator({
  fetcher: () => Promise.reject(new Error('no fetch expected')),
  clock: () => AT,
});

let root: MadeCertificate;
let intermediate: MadeCertificate;

beforeAll(async () => {
  ({ root, intermediate } = await makeCaPair('Sender'));
});

async function signer(spec: Partial<CertSpec>) {
  const made = await makeCertificate({
    subject: 'CN=doctor',
    issuer: intermediate,
    emails: ['doctor@sender.test'],
    notBefore: new Date('2030-01-01T00:00:00Z'),
    notAfter: new Date('2031-01-01T00:00:00Z'),
    ...spec,
  });
  return { key: KeyObject.from(made.keys.privateKey), certificate: made.cert, chain: [intermediate.cert] };
}

function message(from = 'doctor@sender.test'): Buffer {
  return Buffer.from(
    `From: ${from}\r\nTo: patient@recipient.test\r\nSubject: results\r\nDate: Sat, 01 Jun 2030 00:00:00 +0000\r\n` +
      'Message-ID: <signer-trust@sender.test>\r\n\r\nYour results.\r\n',
  );
}

async function receive(signing: Awaited<ReturnType<typeof signer>>, from?: string) {
  const raw = wrapMessage(message(from), { signers: [signing], recipients: [recipient.certificate], signingTime: AT }).message;
  return processIncoming(raw, { credentials: [recipient], anchors: [root.cert], at: AT, validator });
}

describe('processIncoming: the signer’s certificate', () => {
  it('a signer valid at the time, bound to the From address, chaining to the anchor: accepted', async () => {
    const r = await receive(await signer({}));
    expect(r.accepted).toHaveLength(1);
    expect(r.accepted[0]!.binding).toBe('address');
    expect(r.accepted[0]!.anchor).toBe(root.cert);
    expect(r.sender.toString()).toBe('doctor@sender.test');
  });

  it('a signer not yet valid (notBefore after the validation time) is refused: HISP_TRUST_EXPIRED', async () => {
    const e = await hispRejection(receive(await signer({ notBefore: new Date('2030-07-01T00:00:00Z') })));
    expect(e.code).toBe('HISP_TRUST_EXPIRED');
    expect(e.message).toContain('is not valid at 2030-06-01T00:00:00.000Z (2030-07-01T00:00:00.000Z');
    expect(e.details).toEqual({ rejected: [{ code: 'HISP_TRUST_EXPIRED', subject: 'CN=doctor' }] });
  });

  it('a signer expired at the validation time is refused: HISP_TRUST_EXPIRED', async () => {
    const e = await hispRejection(receive(await signer({ notBefore: new Date('2029-01-01T00:00:00Z'), notAfter: new Date('2030-05-31T23:59:59Z') })));
    expect(e.code).toBe('HISP_TRUST_EXPIRED');
  });

  it('a signer whose subject emailAddress contradicts its subjectAltName is refused, though the rfc822Name is the From address (R-CRT-2)', async () => {
    const e = await hispRejection(receive(await signer({ subject: 'CN=doctor, E=mallory@elsewhere.test' })));
    expect(e.code).toBe('HISP_TRUST_BINDING_MISMATCH');
    expect(e.message).toContain('subject emailAddress mallory@elsewhere.test differs from its subjectAltName (R-CRT-2)');
  });

  it('a signer bound to another address of the sender’s domain is refused: HISP_TRUST_BINDING_MISMATCH', async () => {
    const e = await hispRejection(receive(await signer({}), 'nurse@sender.test'));
    expect(e.code).toBe('HISP_TRUST_BINDING_MISMATCH');
  });

  it('a domain-bound signer signs for every address of its domain', async () => {
    const r = await receive(await signer({ emails: [], dnsNames: ['sender.test'] }), 'nurse@sender.test');
    expect(r.accepted[0]!.binding).toBe('domain');
  });
});
