import { isAscii } from 'node:buffer';

const CR = 0x0d;
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
    // (three times the time over a C-CDA's 2,000 lines); SLICE keeps the string out of V8's
    // large-object space.
    const text = chunk.toString('latin1');
    let start = 0;
    if (this.#pendingCr) {
      if (text.charCodeAt(0) !== LF) return this.#dirty();
      this.#pendingCr = false;
      this.#endLine();
      start = 1;
    }
    // Every LF closes a CRLF; the lines it ends are short enough and do not begin with `--=_`.
    let lineStart = start;
    for (let lf = text.indexOf('\n', start); lf !== -1; lf = text.indexOf('\n', lineStart)) {
      if (lf === start || text.charCodeAt(lf - 1) !== CR) return this.#dirty();
      if (lineStart === start && (this.#lineLength > 0 || this.#headSeen > 0)) {
        // The line the previous chunk began.
        this.#content(text, lineStart, lf - 1);
        if (!this.#clean) return this;
        this.#endLine();
      } else if (lf - 1 - lineStart > MAX_LINE || text.startsWith(DELIMITER_HEAD, lineStart)) {
        // A whole line of this slice: its length and beginning read at once (a line shorter than
        // the delimiter's head never begins with it: its CR would have to match).
        return this.#dirty();
      }
      lineStart = lf + 1;
    }
    // Every CR is followed by its LF, but a CR at the very end, whose LF may begin the next chunk.
    for (let cr = text.indexOf('\r', start); cr !== -1; cr = text.indexOf('\r', cr + 2)) {
      if (cr === text.length - 1) this.#pendingCr = true;
      else if (text.charCodeAt(cr + 1) !== LF) return this.#dirty();
    }
    // The line that goes on in the next chunk.
    return this.#content(text, lineStart, this.#pendingCr ? text.length - 1 : text.length);
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
