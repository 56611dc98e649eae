import type { Certificate } from '../core/certificate.js';
import type { DirectAddress } from '../core/direct-address.js';
import { HispError, type HispErrorCode } from '../core/errors.js';
import type { CertificateDiscovery, DiscoveryLevel, DiscoveryStep } from '../discovery/certificate-discovery.js';
import { checkBinding, type Binding } from '../trust/name-binding.js';

/** What the flow needs of the trust layer (implemented by TrustValidator). */
export interface RecipientValidator {
  validate(
    leaf: Certificate,
    options: {
      anchors: readonly Certificate[];
      at?: Date;
      purpose: 'encryption';
      allowSha1?: boolean;
      revocation?: 'soft-fail' | 'hard-fail' | 'off';
    },
  ): Promise<{ anchor: Certificate; path: Certificate[]; warnings: string[] }>;
}

export interface SelectedCertificate {
  certificate: Certificate;
  binding: Binding;
  source: 'dns' | 'ldap';
  anchor: Certificate;
  warnings: string[];
}

export interface RejectedCertificate {
  /** Undefined only when the published bytes were not a certificate at all. */
  certificate: Certificate | undefined;
  sha256: string;
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
  validator: RecipientValidator;
  /** Outgoing anchors of the sending domain (R-TRU-5), bundles included. */
  anchors: readonly Certificate[];
  at?: Date;
  allowSha1?: boolean;
  revocation?: 'soft-fail' | 'hard-fail' | 'off';
}

/**
 * Finds the certificates to encrypt to for one recipient: discovery (stopping at the first level that
 * publishes records, R-DIS-4), then each certificate bound to the address or its domain (R-CRT-1) and
 * validated against the sending domain's outgoing anchors (R-TRU-5). Every valid one is used
 * (R-MULT-1) and every rejected one keeps its reason. When the level's certificates are all invalid
 * there is no fallback to another level (R-DIS-5): the outcome is `none`, unless a rejection was
 * transient (a CRL or AIA server down under hard-fail), which makes it `transient`.
 */
export async function discoverRecipient(address: DirectAddress, options: DiscoverRecipientOptions): Promise<RecipientDiscovery> {
  const outcome = await options.discovery.discover(address);
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
      const v = await options.validator.validate(cert, {
        anchors: options.anchors,
        ...(options.at ? { at: options.at } : {}),
        purpose: 'encryption',
        allowSha1: options.allowSha1 ?? false,
        revocation: options.revocation ?? 'soft-fail',
      });
      selected.push({ certificate: cert, binding, source: found.source, anchor: v.anchor, warnings: v.warnings });
    } catch (err) {
      if (!(err instanceof HispError)) throw err;
      rejected.push({ certificate: cert, sha256, code: err.code, reason: err.message, transient: err.transient });
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
