import type { DomainRegistry } from '../admin/domain-registry.js';
import type { Certificate } from '../core/certificate.js';
import type { DirectAddress } from '../core/direct-address.js';
import type { CertificateDiscovery } from '../discovery/certificate-discovery.js';
import type { TrustValidator } from '../trust/trust-validator.js';
import { discoverRecipient, type RecipientDiscovery, type SelectedCertificate } from './discover-recipient.js';

/** The sender whose view is taken: its outgoing anchors (`scope`: an address or its domain) and its domain's policy. */
export interface SendingScope {
  /** A local address (address-scoped anchors count too) or a local domain. */
  readonly scope: string;
  /** The local domain whose policy applies. */
  readonly domain: string;
}

/** A certificate of a local domain: the gateway encrypts to it without discovery. */
export interface LocalCertificate {
  certificate: Certificate;
  binding: 'domain';
  source: 'local';
  basis: 'local';
}

/** {@link RecipientDiscovery}, or for a recipient of a local domain the domain's own certificates. */
export interface RecipientCheck extends Omit<RecipientDiscovery, 'selected'> {
  /** The recipient is in a local domain: not discovered. */
  local: boolean;
  selected: (SelectedCertificate | LocalCertificate)[];
}

/** What the check runs on: the running gateway's services, or `hisp discover --config`'s (createTrustServices). */
export interface RecipientCheckServices {
  readonly registry: DomainRegistry;
  readonly discovery: CertificateDiscovery;
  readonly validator: TrustValidator;
}

/**
 * What the gateway encrypts to for `address` in a message from `sender`, decided as the relay
 * worker decides it: a recipient of a local domain gets that domain's own certificates when the
 * domain accepts the address (unknown: HISP_SMTP_UNKNOWN_RECIPIENT); any other is discovered and
 * validated against the sender's outgoing anchors under its domain's policy (R-TRU-5,
 * discoverRecipient). Shared by `hisp discover --config` and `POST /v1/recipients/validate`.
 */
export async function checkRecipient(
  address: DirectAddress,
  sender: SendingScope,
  services: RecipientCheckServices,
  options: { at?: Date; patientDirected?: boolean } = {},
): Promise<RecipientCheck> {
  const { registry } = services;
  if (registry.isLocalDomain(address.domain)) {
    const accepted = registry.acceptance(address.toString()) === 'accept';
    const selected: LocalCertificate[] = accepted
      ? registry.encryptionCertificates(address.domain).map((certificate) => ({ certificate, binding: 'domain', source: 'local', basis: 'local' }))
      : [];
    return {
      address,
      local: true,
      status: accepted ? 'selected' : 'none',
      selected,
      rejected: [],
      steps: [],
      ...(accepted ? {} : { code: 'HISP_SMTP_UNKNOWN_RECIPIENT' as const, reason: `${address.toString()} is not an address of the local domain ${address.domain}` }),
    };
  }
  const found = await discoverRecipient(address, {
    discovery: services.discovery,
    validator: services.validator,
    anchors: registry.anchorsFor(sender.scope, 'outgoing', { patientDirected: options.patientDirected ?? false }),
    policy: registry.policy(sender.domain),
    ...(options.at ? { at: options.at } : {}),
    patientDirected: options.patientDirected ?? false,
  });
  return { ...found, local: false };
}
