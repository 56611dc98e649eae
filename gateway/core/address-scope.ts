import { DirectAddress } from './direct-address.js';

/**
 * True when `address` is within `scopes`: a scope is a full address (`a@domain`) or a whole domain
 * (`@domain`). Domains compare case-insensitively (R-ADR-1), and so do local parts, as every Direct
 * implementation matches them in practice (core/direct-address.ts). The one rule for "may send
 * as" and "may read" of SMTP submission accounts (`mayUseAddresses`) and API keys (`sendAs`,
 * `mailboxes`). Anything that is not an address is in no scope.
 */
export function addressInScopes(scopes: readonly string[], address: string | DirectAddress): boolean {
  let a: DirectAddress;
  try {
    a = typeof address === 'string' ? DirectAddress.parse(address) : address;
  } catch {
    return false;
  }
  const full = a.toString().toLowerCase();
  return scopes.some((scope) => {
    const s = scope.toLowerCase();
    return s.startsWith('@') ? s.slice(1).replace(/\.$/, '') === a.domain : s === full;
  });
}
