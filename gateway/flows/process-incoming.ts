import type { Certificate } from '../core/certificate.js';
import { DirectAddress } from '../core/direct-address.js';
import { HispError, type HispErrorCode } from '../core/errors.js';
import type { EnvelopeFromFile } from '../agent/envelope-file.js';
import type { DecryptionCredential } from '../agent/open-envelope.js';
import { MimeEntity } from '../mime/mime-entity.js';
import { unwrapMessage, type UnwrapResult } from '../agent/unwrap-message.js';
import type { FetchBudget } from '../trust/fetch-budget.js';
import { checkPolicy, type CertificatePolicy } from '../policy/cert-policy.js';
import { checkBinding, type Binding } from '../trust/name-binding.js';
import type { RevocationMode } from '../trust/revocation.js';
import { TrustValidator } from '../trust/trust-validator.js';

export interface ProcessIncomingOptions {
  credentials: readonly DecryptionCredential[];
  /** Incoming anchors of the recipient (R-TRU-5). */
  anchors: readonly Certificate[];
  /** Validation time; default now. */
  at?: Date;
  /** The SHA-1 legacy switch (requirements §5.7): message digest and certificate signatures. */
  allowSha1?: boolean;
  /** What an unavailable CRL means; default soft-fail (as the RIs). */
  revocation?: RevocationMode;
  /** The trust layer (CRL, AIA); default a TrustValidator on the system resolver. */
  validator?: TrustValidator;
  /**
   * What the CRL and AIA fetches of this message may cost, all signers together (issue 14 item 4):
   * default a fresh budget with the validator's limits ({@link TrustValidator.newFetchBudget}).
   */
  fetchBudget?: FetchBudget;
  /**
   * The recipient domain's certificate policy (`[domains.policy]`): when given, its allowSha1,
   * revocation and minRsaBits replace the options above, and every signer's path must also meet
   * its key usages and signature algorithms (checkPolicy, purpose signing), as on the sending side.
   */
  policy?: CertificatePolicy;
}

export interface AcceptedSigner {
  certificate: Certificate;
  binding: Binding;
  anchor: Certificate;
  path: Certificate[];
  /** Trust warnings (revocation not checked under soft-fail, …). */
  warnings: string[];
}

export interface RejectedSigner {
  certificate: Certificate | undefined;
  code: HispErrorCode;
  reason: string;
  /** The failure may not happen again (a CRL or AIA server down, a spent fetch budget): try later. */
  transient: boolean;
}

export interface IncomingResult {
  unwrapped: UnwrapResult;
  /** The inner From address the signers were bound to (requirements §5.8). */
  sender: DirectAddress;
  accepted: AcceptedSigner[];
  rejected: RejectedSigner[];
}

/**
 * The receive-side security step: decrypt, verify, then trust. A message is accepted when at least
 * one signature verifies and its signer chains to an incoming anchor of the recipient (R-TRU-5),
 * unrevoked, intermediates completed from AIA when missing (R-TRU-3/4), and is bound to the inner
 * From address or its domain (R-CRT-1, requirements §5.8). Throws the most telling HispError
 * otherwise.
 */
export async function processIncoming(raw: Buffer | EnvelopeFromFile, options: ProcessIncomingOptions): Promise<IncomingResult> {
  const policy = options.policy;
  const allowSha1 = policy?.allowSha1 ?? options.allowSha1 ?? false;
  const revocation = policy?.revocation ?? options.revocation ?? 'soft-fail';
  const unwrapped = unwrapMessage(raw, { credentials: options.credentials, allowSha1 });
  const from = MimeEntity.parse(unwrapped.message).header('from');
  if (!from) throw new HispError('HISP_MIME_MALFORMED', 'the signed message has no From field');
  const sender = DirectAddress.fromHeader(from);

  const validator = options.validator ?? new TrustValidator();
  // One budget for the whole message: a message with many signers, each naming many AIA and CRL
  // URLs, cannot make more requests than one (the message is anyone's, on the inbound port).
  const budget = options.fetchBudget ?? validator.newFetchBudget();
  const accepted: AcceptedSigner[] = [];
  const rejected: RejectedSigner[] = [];
  for (const s of unwrapped.signers) {
    if (!s.verified || !s.certificate) {
      const e = s.error ?? new HispError('HISP_SIG_INVALID', 'signature does not verify');
      rejected.push({ certificate: s.certificate, code: e.code, reason: e.message, transient: e.transient });
      continue;
    }
    try {
      const chain = await validator.validate(s.certificate, {
        anchors: options.anchors,
        intermediates: unwrapped.certificates,
        ...(options.at ? { at: options.at } : {}),
        purpose: 'signing',
        allowSha1,
        revocation,
        budget,
        ...(policy ? { minRsaBits: policy.minRsaBits } : {}),
      });
      if (policy) checkPolicy(policy, { path: chain.path, anchored: true, purpose: 'signing' });
      const binding = checkBinding(s.certificate, sender);
      accepted.push({ certificate: s.certificate, binding, anchor: chain.anchor, path: chain.path, warnings: chain.warnings });
    } catch (e) {
      if (!(e instanceof HispError)) throw e;
      rejected.push({ certificate: s.certificate, code: e.code, reason: e.message, transient: e.transient });
    }
  }
  if (accepted.length === 0) {
    // A rejection that may not happen again (a CRL or AIA server down, the fetch budget spent) makes
    // the whole outcome transient, as in discoverRecipient: the receive worker retries the message
    // later instead of quarantining a message that a working server would have let through.
    const first = rejected.find((r) => r.transient) ?? rejected[0];
    throw new HispError(first?.code ?? 'HISP_SIG_INVALID', first?.reason ?? 'no trusted signer', {
      transient: first?.transient ?? false,
      details: { rejected: rejected.map((r) => ({ code: r.code, subject: r.certificate?.subject })) },
    });
  }
  return { unwrapped, sender, accepted, rejected };
}
