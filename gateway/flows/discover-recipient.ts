import type { Certificate } from '../core/certificate.js';
import type { DirectAddress } from '../core/direct-address.js';
import { HispError, type HispErrorCode } from '../core/errors.js';
import type { CertificateDiscovery, DiscoveryLevel, DiscoveryStep } from '../discovery/certificate-discovery.js';
import { DEFAULT_CERTIFICATE_POLICY, type CertificatePolicy } from '../policy/cert-policy.js';
import { decideTrust } from '../policy/trust-decision.js';
import type { FetchBudget } from '../trust/fetch-budget.js';
import { checkBinding, type Binding } from '../trust/name-binding.js';
import type { TrustValidator } from '../trust/trust-validator.js';

export interface SelectedCertificate {
  certificate: Certificate;
  binding: Binding;
  source: 'dns' | 'ldap';
  /** 'anchor': a valid path to an anchor; 'blue-button-plus': the patient-directed exception. */
  basis: 'anchor' | 'blue-button-plus';
  anchor: Certificate | undefined;
  warnings: string[];
}

export interface RejectedCertificate {
  /** Undefined only when the published bytes were not a certificate at all. */
  certificate: Certificate | undefined;
  sha256: string;
  /** Where it was published: DNS or LDAP, at the address or at its domain (R-DIS-3, R-DIS-4). */
  source: 'dns' | 'ldap';
  binding: Binding;
  code: HispErrorCode;
  reason: string;
  transient: boolean;
}

export interface RecipientDiscovery {
  address: DirectAddress;
  /** selected: at least one usable certificate; none: permanent (DSN); transient: try again later. */
  status: 'selected' | 'none' | 'transient';
  level?: DiscoveryLevel;
  selected: SelectedCertificate[];
  rejected: RejectedCertificate[];
  steps: DiscoveryStep[];
  /** The code that explains a `none` or `transient` outcome. */
  code?: HispErrorCode;
  reason?: string;
}

export interface DiscoverRecipientOptions {
  discovery: CertificateDiscovery;
  validator: TrustValidator;
  /** Outgoing anchors of the sending domain (R-TRU-5), bundles included. */
  anchors: readonly Certificate[];
  /** The sending domain's certificate policy; default the built-in one (requirements §5). */
  policy?: CertificatePolicy;
  at?: Date;
  /** A patient-directed send (Blue Button+ transmit), for the policy's §5.5 exception. */
  patientDirected?: boolean;
  /** What the fetches for this recipient may cost; default a fresh budget of the validator's limits. */
  fetchBudget?: FetchBudget;
}

/**
 * Finds the certificates to encrypt to for one recipient: discovery (stopping at the first level that
 * publishes records, R-DIS-4), then each certificate bound to the address or its domain (R-CRT-1) and
 * validated against the sending domain's outgoing anchors (R-TRU-5) under its certificate policy
 * (which may admit patient-directed sends without an anchor, §5.5). Every valid one is used
 * (R-MULT-1) and every rejected one keeps its reason. When the level's certificates are all invalid
 * there is no fallback to another level (R-DIS-5): the outcome is `none`, unless a rejection was
 * transient (a CRL or AIA server down under hard-fail), which makes it `transient`.
 */
export async function discoverRecipient(address: DirectAddress, options: DiscoverRecipientOptions): Promise<RecipientDiscovery> {
  // One fetch budget for the recipient (issue 14 item 4): IPKIX URLs of its CERT records, then AIA
  // and CRLs of every certificate found; DNS records are anyone's to write.
  const budget = options.fetchBudget ?? options.validator.newFetchBudget();
  const outcome = await options.discovery.discover(address, { budget });
  const base = { address, steps: outcome.steps, ...(outcome.level ? { level: outcome.level } : {}) };
  if (outcome.status === 'transient') {
    return { ...base, status: 'transient', selected: [], rejected: [], code: 'HISP_DISCOVERY_TEMPORARY', reason: outcome.reason ?? 'discovery failed for now' };
  }
  if (outcome.status === 'none') {
    return { ...base, status: 'none', selected: [], rejected: [], code: 'HISP_DISCOVERY_NO_CERT', reason: `no certificate published for ${address.toString()} or its domain` };
  }
  const selected: SelectedCertificate[] = [];
  const rejected: RejectedCertificate[] = [];
  for (const found of outcome.certificates) {
    const cert = found.certificate;
    const sha256 = cert?.sha256 ?? '';
    try {
      if (!cert) throw found.error ?? new HispError('HISP_KEY_UNREADABLE', 'not a certificate');
      const binding = checkBinding(cert, address);
      const d = await decideTrust(options.validator, cert, {
        policy: options.policy ?? DEFAULT_CERTIFICATE_POLICY,
        anchors: options.anchors,
        ...(options.at ? { at: options.at } : {}),
        purpose: 'encryption',
        patientDirected: options.patientDirected ?? false,
        dnssecValidated: outcome.authenticated,
        budget,
      });
      selected.push({ certificate: cert, binding, source: found.source, basis: d.basis, anchor: d.anchor, warnings: d.warnings });
    } catch (err) {
      if (!(err instanceof HispError)) throw err;
      rejected.push({ certificate: cert, sha256, source: found.source, binding: found.binding, code: err.code, reason: err.message, transient: err.transient });
    }
  }
  if (selected.length > 0) return { ...base, status: 'selected', selected, rejected };
  const transient = rejected.find((r) => r.transient);
  if (transient) return { ...base, status: 'transient', selected, rejected, code: transient.code, reason: transient.reason };
  return {
    ...base,
    status: 'none',
    selected,
    rejected,
    code: 'HISP_DISCOVERY_NO_VALID_CERT',
    reason: `${rejected.length} certificate(s) published for ${address.toString()}, none valid and trusted`,
  };
}
