import { describe, expect, it } from 'vitest';
import type { LeafName } from '../../test/helpers/pki.js';
import { receiveSigned } from '../../test/helpers/received-message.js';
import { HispError } from '../core/errors.js';
import { resolvePolicy, type CertificatePolicyInput } from '../policy/cert-policy.js';

const INNER = Buffer.from('From: sender@sender.test\r\nTo: patient@recipient.test\r\nSubject: policy\r\n\r\nbody\r\n', 'latin1');

/** A message from the fixture `signer`, received with the recipient domain's `[domains.policy]`. */
const receivedUnder = (signer: LeafName, policy: CertificatePolicyInput) => receiveSigned(signer, INNER, { policy: resolvePolicy(policy) });

async function refusal(signer: LeafName, policy: CertificatePolicyInput): Promise<HispError> {
  try {
    await receivedUnder(signer, policy);
  } catch (err) {
    if (err instanceof HispError) return err;
    throw err;
  }
  throw new Error('the message was accepted');
}

// The documented keys of [domains.policy] apply to the senders' signatures too (issue 14, item 13:
// they were read for the sending side only; minRsaBits was 2048 on receipt whatever it said).
describe('processIncoming under the recipient domain policy', () => {
  it('minRsaBits: a 2048-bit signer is refused under 3072, a 1024-bit one accepted under 1024', async () => {
    expect(await refusal('sender-rsa', { minRsaBits: 3072 })).toMatchObject({ code: 'HISP_TRUST_WEAK_KEY' });
    expect((await receivedUnder('sender-rsa', {})).accepted).toHaveLength(1);
    expect((await receivedUnder('sender-rsa1024', { minRsaBits: 1024 })).accepted).toHaveLength(1);
    expect((await refusal('sender-rsa1024', {})).code).toMatch(/^HISP_TRUST_/);
  });

  it('requiredKeyUsage.signing and allowedSignatureAlgorithms are enforced on the signer path', async () => {
    const usage = await refusal('sender-rsa', { requiredKeyUsage: { signing: ['keyAgreement'] } });
    expect(usage).toMatchObject({ code: 'HISP_TRUST_POLICY' });
    expect(usage.message).toContain('keyAgreement');
    const algorithms = await refusal('sender-rsa', { allowedSignatureAlgorithms: ['ecdsa-with-SHA256'] });
    expect(algorithms).toMatchObject({ code: 'HISP_TRUST_POLICY' });
    expect(algorithms.message).toContain('not allowed by the domain');
  });
});
