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

/** A domain name as scopes hold it: LDH labels (and `_`), lowercased, without a trailing dot. */
const DOMAIN = /^[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?)*$/;

/**
 * A scope as written by an operator (`A@Example.org`, `@Example.org.`) in the form it is kept
 * (`A@example.org`, `@example.org`); undefined when it is neither an address nor `@domain`.
 */
export function normalizeScope(value: string): string | undefined {
  const v = value.trim();
  if (v.startsWith('@')) {
    const domain = v.slice(1).toLowerCase().replace(/\.$/, '');
    return domain.length <= 253 && DOMAIN.test(domain) ? `@${domain}` : undefined;
  }
  if (v.length > 320) return undefined;
  try {
    const a = DirectAddress.parse(v);
    return DOMAIN.test(a.domain) && a.domain.length <= 253 ? a.toString() : undefined;
  } catch {
    return undefined;
  }
}
