import type { Certificate } from '../core/certificate.js';
import { HispError, isHispError } from '../core/errors.js';
import type { CertificatePurpose } from '../trust/chain-validator.js';
import type { FetchBudget } from '../trust/fetch-budget.js';
import type { TrustValidator } from '../trust/trust-validator.js';
import { checkPolicy, validationSettings, type CertificatePolicy } from './cert-policy.js';

/**
 * The whole trust decision for one candidate certificate under a domain's policy: a valid path to
 * one of the anchors (TrustValidator: AIA, revocation) that also meets the policy; or, for a
 * patient-directed send with the Blue Button+ switch on (requirements §5.5), a certificate that is
 * well-formed, unexpired and unrevoked without any anchor, from a DNSSEC-validated answer when the
 * policy demands one.
 */

export interface TrustDecisionInput {
  policy: CertificatePolicy;
  /** The anchors of the local address for this direction (AnchorStore.anchorsFor). */
  anchors: readonly Certificate[];
  /** Untrusted certificates that may complete a path (from the SignedData, discovery, …). */
  intermediates?: readonly Certificate[];
  at?: Date;
  purpose: CertificatePurpose;
  /** The send is directed by a patient to an address of their choosing (BB+ transmit). */
  patientDirected?: boolean;
  /** The certificate came from a DNSSEC-validated DNS answer (the AD bit of a validating resolver). */
  dnssecValidated?: boolean;
  /** The fetch budget AIA and CRL downloads are charged to (one per recipient or message). */
  budget?: FetchBudget;
}

export interface TrustDecision {
  /** 'anchor': a valid path to an anchor; 'blue-button-plus': accepted without an anchor (§5.5). */
  basis: 'anchor' | 'blue-button-plus';
  path: Certificate[];
  anchor: Certificate | undefined;
  warnings: string[];
  revocation: 'checked' | 'unavailable' | 'off';
}

/** Resolves to the decision or rejects with the HispError (HISP_TRUST_*) that refuses the certificate. */
export async function decideTrust(validator: TrustValidator, leaf: Certificate, input: TrustDecisionInput): Promise<TrustDecision> {
  const settings = validationSettings(input.policy);
  const common = {
    ...settings,
    purpose: input.purpose,
    ...(input.intermediates ? { intermediates: input.intermediates } : {}),
    ...(input.at ? { at: input.at } : {}),
    ...(input.budget ? { budget: input.budget } : {}),
  };
  try {
    const r = await validator.validate(leaf, { ...common, anchors: input.anchors });
    checkPolicy(input.policy, { path: r.path, anchored: true, purpose: input.purpose });
    return { basis: 'anchor', path: r.path, anchor: r.anchor, warnings: r.warnings, revocation: r.revocation };
  } catch (err) {
    const bb = input.policy.blueButtonPlus;
    const noAnchor = isHispError(err) && (err.code === 'HISP_TRUST_NO_ANCHOR' || err.code === 'HISP_TRUST_AIA_FAILED');
    if (!noAnchor || !bb.enabled || !input.patientDirected) throw err;
    if (bb.requireDnssec && !input.dnssecValidated) {
      throw new HispError(
        'HISP_TRUST_POLICY',
        `${leaf.subject} does not chain to an anchor, and the Blue Button+ exception of this domain requires a DNSSEC-validated discovery answer`,
        { cause: err, details: { rule: 'dnssec', subject: leaf.subject, sha256: leaf.sha256 } },
      );
    }
    const r = await validator.validateUnanchored(leaf, common);
    checkPolicy(input.policy, { path: r.path, anchored: false, purpose: input.purpose });
    return {
      basis: 'blue-button-plus',
      path: r.path,
      anchor: undefined,
      warnings: [`${leaf.subject} accepted without a trust anchor under the Blue Button+ patient-directed policy`, ...r.warnings],
      revocation: r.revocation,
    };
  }
}
