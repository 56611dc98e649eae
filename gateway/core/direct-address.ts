import addressparser from 'nodemailer/lib/addressparser';
import { HispError } from './errors.js';

/**
 * The longest From, Sender or To value hisp reads an address from. RFC 5322 sets no limit on a
 * folded field, but no real originator field comes near it; past it, the field is malformed.
 */
export const MAX_ADDRESS_FIELD = 16_384;

/**
 * A Direct address: an RFC 5321 mailbox `local@domain` (R-ADR-1). The domain compares
 * case-insensitively; the local part is kept as written, and compared case-insensitively too when
 * matching certificates, as every Direct implementation does in practice.
 */
export class DirectAddress {
  readonly local: string;
  readonly domain: string;

  private constructor(local: string, domain: string) {
    this.local = local;
    this.domain = domain.toLowerCase().replace(/\.$/, '');
  }

  /** Parses a bare address (`a@b`), with or without angle brackets. Throws HISP_MIME_MALFORMED. */
  static parse(text: string): DirectAddress {
    const t = text.trim().replace(/^<(.*)>$/, '$1');
    const at = t.lastIndexOf('@');
    if (at <= 0 || at === t.length - 1 || /[\s<>]/.test(t)) {
      throw new HispError('HISP_MIME_MALFORMED', `not a mailbox address: ${JSON.stringify(text.slice(0, 100))}`);
    }
    return new DirectAddress(t.slice(0, at), t.slice(at + 1));
  }

  /**
   * The address of the first mailbox of a From/To header value (RFC 5322 §3.4): the angle-addr when
   * there is one, else the addr-spec, with comments, quoted display names and groups read as the
   * grammar says (nodemailer's addressparser, one linear pass: the regular expressions this used to
   * take were quadratic on an unclosed quote or comment, and a peer's 1 MB From field froze the
   * gateway). The same reading as the submission edge's checks (checkOriginators), so what the edge
   * accepts is what every receiving hisp reads. Throws HISP_MIME_MALFORMED.
   */
  static fromHeader(value: string): DirectAddress {
    if (value.length > MAX_ADDRESS_FIELD) throw new HispError('HISP_MIME_MALFORMED', `an address field longer than ${MAX_ADDRESS_FIELD} characters`);
    const first = addressparser(value, { flatten: true }).find((m) => m.address !== '');
    return DirectAddress.parse(first?.address ?? '');
  }

  /** The address-bound DNS owner name of R-DIS-3: `local.domain`. */
  get dnsOwnerName(): string {
    return `${this.local}.${this.domain}`;
  }

  equals(other: DirectAddress): boolean {
    return this.domain === other.domain && this.local.toLowerCase() === other.local.toLowerCase();
  }

  toString(): string {
    return `${this.local}@${this.domain}`;
  }
}
