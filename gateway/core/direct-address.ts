import { HispError } from './errors.js';

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
   * there is one, else the addr-spec, with comments and quoted display names skipped.
   */
  static fromHeader(value: string): DirectAddress {
    const noQuotes = value.replace(/"(?:[^"\\]|\\.)*"/g, '""');
    const noComments = noQuotes.replace(/\((?:[^()\\]|\\.)*\)/g, ' ');
    const angle = /<([^<>]*)>/.exec(noComments);
    const first = angle ? angle[1]! : (noComments.split(',')[0] ?? '');
    return DirectAddress.parse(first);
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
