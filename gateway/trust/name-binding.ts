import type { Certificate } from '../core/certificate.js';
import { DirectAddress } from '../core/direct-address.js';
import { HispError } from '../core/errors.js';

/** How a certificate is bound to a Direct address (R-CRT-1). */
export type Binding = 'address' | 'domain';

/**
 * Checks the certificate–entity binding of AS §4.1 (R-CRT-1/2, requirements §5.8): an address-bound
 * certificate names the address in a subjectAltName rfc822Name, a domain-bound one the domain in a
 * dNSName (no wildcards, v1.3). A subject emailAddress alone never binds, and one that contradicts
 * the rfc822Name voids the certificate (R-CRT-2). Throws HISP_TRUST_BINDING_MISMATCH.
 */
export function checkBinding(cert: Certificate, address: DirectAddress): Binding {
  const rfc822 = cert.rfc822Names.flatMap((n) => {
    try {
      return [DirectAddress.parse(n)];
    } catch {
      return [];
    }
  });
  for (const email of cert.subjectEmailAddresses) {
    const e = safeParse(email);
    if (e && rfc822.length > 0 && !rfc822.some((r) => r.equals(e))) {
      throw new HispError(
        'HISP_TRUST_BINDING_MISMATCH',
        `${cert.subject}: subject emailAddress ${email} differs from its subjectAltName (R-CRT-2)`,
      );
    }
  }
  if (rfc822.some((r) => r.equals(address))) return 'address';
  if (cert.dnsNames.some((d) => d.toLowerCase().replace(/\.$/, '') === address.domain)) return 'domain';
  const names = [...cert.rfc822Names.map((n) => `rfc822Name ${n}`), ...cert.dnsNames.map((n) => `dNSName ${n}`)];
  throw new HispError(
    'HISP_TRUST_BINDING_MISMATCH',
    names.length === 0
      ? `${cert.subject} has no subjectAltName, so it is bound to no address (R-CRT-1)`
      : `${cert.subject} is bound to ${names.join(', ')}, not to ${address.toString()} or its domain`,
  );
}

function safeParse(text: string): DirectAddress | undefined {
  try {
    return DirectAddress.parse(text);
  } catch {
    return undefined;
  }
}
