/**
 * PEM text (RFC 7468, with the RFC 1421 header lines some tools still write), for every reader of
 * keys, certificates and PKCS#7 files.
 */
export interface PemBlock {
  label: string;
  /** The whole block from `-----BEGIN` to the end of the `-----END …-----` line, plus a newline. */
  text: string;
  /** Header lines (RFC 1421 style, e.g. `Proc-Type: 4,ENCRYPTED`). */
  headers: string[];
  /** Base64 body with whitespace removed. */
  base64: string;
  /** The decoded body, or undefined when the base64 is not strictly valid. */
  der: Buffer | undefined;
}

/**
 * True when the bytes look like PEM text: a BEGIN line anywhere (after `openssl x509 -text` output,
 * say). DER (a SEQUENCE, 0x30) never is, even when PEM text sits inside it (a signed trust bundle's
 * eContent).
 */
export function looksLikePem(bytes: Uint8Array): boolean {
  if (bytes[0] === 0x30) return false;
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).includes('-----BEGIN ');
}

/** Every well-formed `-----BEGIN X-----` … `-----END X-----` block; other text is ignored. */
export function pemBlocks(bytes: Uint8Array): PemBlock[] {
  const text = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('latin1');
  const blocks: PemBlock[] = [];
  let at = 0;
  for (;;) {
    const begin = text.indexOf('-----BEGIN ', at);
    if (begin < 0) break;
    const labelEnd = text.indexOf('-----', begin + 11);
    if (labelEnd < 0) break;
    const name = text.slice(begin + 11, labelEnd);
    if (!/^[A-Z0-9 #]{1,64}$/.test(name)) {
      at = begin + 11;
      continue;
    }
    const endMarker = `-----END ${name}-----`;
    const end = text.indexOf(endMarker, labelEnd + 5);
    if (end < 0) {
      at = labelEnd + 5;
      continue;
    }
    const headers: string[] = [];
    const body: string[] = [];
    for (const line of text.slice(labelEnd + 5, end).split(/\r?\n|\r/)) {
      const trimmed = line.trim();
      if (trimmed === '') continue;
      if (trimmed.includes(':')) headers.push(trimmed);
      else body.push(trimmed);
    }
    const base64 = body.join('').replace(/\s+/g, '');
    blocks.push({
      label: name,
      text: text.slice(begin, end + endMarker.length) + '\n',
      headers,
      base64,
      der: /^[A-Za-z0-9+/]+={0,2}$/.test(base64) && base64.length % 4 === 0 ? Buffer.from(base64, 'base64') : undefined,
    });
    at = end + endMarker.length;
  }
  return blocks;
}
