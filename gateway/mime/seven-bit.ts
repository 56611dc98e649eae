import { isAscii } from 'node:buffer';

const LF = 0x0a;
/**
 * The composer's multipart boundaries begin with this (nodemailer's boundaryPrefix), so every
 * boundary delimiter line it writes begins with `--=_` (RFC 2046 §5.1.1: `--` and the boundary).
 * `=_` never occurs in base64 nor in quoted-printable (RFC 2045 §6.7, note 4); a 7bit body is
 * refused a line beginning with it, so no body can hold a delimiter (whatever the random rest).
 */
export const COMPOSED_BOUNDARY_PREFIX = '=_hisp';
const DELIMITER_HEAD = `--${COMPOSED_BOUNDARY_PREFIX.slice(0, 2)}`;
/** Read this many octets at a time (see #slice). */
const SLICE = 64 * 1024;
/** RFC 5322 §2.1.1 and RFC 2045 §2.7: at most 998 octets on a line, the CRLF excluded. */
const MAX_LINE = 998;

/**
 * Whether a body can go as it is, `Content-Transfer-Encoding: 7bit` (RFC 2045 §2.7, §6.2: the
 * identity encoding), read a chunk at a time: US-ASCII without NUL, CR and LF only as CRLF, lines
 * of at most 998 octets. Such a body goes without base64's third more octets to store, sign,
 * encrypt and relay, and arrives octet for octet as it was given (a document whose lines end in a
 * bare LF would not: 7bit data has CRLF lines, so it goes in base64).
 *
 * One rule beyond RFC 2045: no line may begin with `--=_`, the beginning of every boundary
 * delimiter the composer writes ({@link COMPOSED_BOUNDARY_PREFIX}); a body without such a line can
 * never hold one. (`--` alone would not do: C-CDAs close their section banners with `-->` at the
 * start of a line.)
 *
 * Each chunk is checked with searches (isAscii, then indexOf line by line), not a loop over its
 * octets in JavaScript: an EHR's 100 KB C-CDA is checked in tens of microseconds.
 */
export class SevenBitScan {
  #clean = true;
  /** Octets of the current line so far. */
  #lineLength = 0;
  /** The last octet seen was a CR (its LF may begin the next chunk). */
  #pendingCr = false;
  /** Octets of the current line's beginning seen (at most 4), and how many of them match `--=_` from its start. */
  #headSeen = 0;
  #headMatched = 0;

  /** Reads the next chunk; once a rule is broken the rest is not read. */
  update(chunk: Buffer): this {
    for (let at = 0; at < chunk.length && this.#clean; at += SLICE) this.#slice(at === 0 && chunk.length <= SLICE ? chunk : chunk.subarray(at, at + SLICE));
    return this;
  }

  #slice(chunk: Buffer): this {
    if (!isAscii(chunk) || chunk.includes(0)) return this.#dirty();
    // Searched as a Latin-1 string (US-ASCII here: one character an octet): String.prototype.indexOf
    // is a builtin the compiler calls directly, where Buffer's crosses into C++ for every line
    // (a third of the time over a C-CDA's 2,000 lines); SLICE keeps the string out of V8's
    // large-object space.
    const text = chunk.toString('latin1');
    let start = 0;
    if (this.#pendingCr) {
      if (text.charCodeAt(0) !== LF) return this.#dirty();
      this.#pendingCr = false;
      this.#endLine();
      start = 1;
    }
    while (start < text.length) {
      const lf = text.indexOf('\n', start);
      const cr = text.indexOf('\r', start);
      if (lf === -1) {
        // The line goes on in the next chunk; a CR may stand only last, its LF still to come.
        if (cr !== -1 && cr !== text.length - 1) return this.#dirty();
        this.#pendingCr = cr !== -1;
        return this.#content(text, start, this.#pendingCr ? text.length - 1 : text.length);
      }
      // A LF must close a CRLF, and no CR may stand before that one.
      if (lf === start || cr !== lf - 1) return this.#dirty();
      if (this.#lineLength === 0 && this.#headSeen === 0) {
        // A whole line of this slice (most lines): its length and beginning read at once. A line
        // shorter than the delimiter's head never starts with it: its CR would have to match.
        if (lf - 1 - start > MAX_LINE || text.startsWith(DELIMITER_HEAD, start)) return this.#dirty();
      } else {
        this.#content(text, start, lf - 1);
        if (!this.#clean) return this;
        this.#endLine();
      }
      start = lf + 1;
    }
    return this;
  }

  /** Whether everything read is 7bit data (a CR at the very end is not). */
  get clean(): boolean {
    return this.#clean && !this.#pendingCr;
  }

  #content(text: string, start: number, end: number): this {
    this.#lineLength += end - start;
    if (this.#lineLength > MAX_LINE) return this.#dirty();
    for (let i = start; i < end && this.#headSeen < DELIMITER_HEAD.length; i++, this.#headSeen++) {
      if (text.charCodeAt(i) === DELIMITER_HEAD.charCodeAt(this.#headSeen) && this.#headMatched === this.#headSeen) this.#headMatched++;
    }
    return this.#headMatched === DELIMITER_HEAD.length ? this.#dirty() : this;
  }

  #endLine(): void {
    this.#lineLength = 0;
    this.#headSeen = 0;
    this.#headMatched = 0;
  }

  #dirty(): this {
    this.#clean = false;
    return this;
  }
}

/** {@link SevenBitScan} over one buffer. */
export function isSevenBit(body: Buffer): boolean {
  return new SevenBitScan().update(body).clean;
}
