/** base64 alphabet value of each octet; 64 = white space, 65 = '=', anything else above 63 is ignored. */
const B64_VALUE = (() => {
  const t = new Uint8Array(256).fill(255);
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
  for (let i = 0; i < 64; i++) t[alphabet.charCodeAt(i)] = i;
  for (const ws of [0x20, 0x09, 0x0d, 0x0a]) t[ws] = 64;
  t[0x3d] = 65;
  return t;
})();

/**
 * Decodes base64 as RFC 2045 §6.8 says, a chunk at a time, straight into one output buffer:
 * characters outside the alphabet (line breaks, spaces, anything else) are ignored, and decoding
 * ends at the padding. Used for bodies too large to hold twice (a 45 MB message decoded from its
 * file without reading the file whole, issue 14 item 6). `sawForeign` tells whether any character
 * other than the alphabet, white space and '=' came by (RFC 2045 calls that text not base64).
 */
export class Base64Decoder {
  private out: Buffer;
  private o = 0;
  private acc = 0;
  private n = 0;
  private pad = 0;
  sawForeign = false;

  /** `expectedInput`: the octets of base64 text to come, to size the output once. */
  constructor(expectedInput: number) {
    this.out = Buffer.allocUnsafe(Math.floor((expectedInput * 3) / 4) + 3);
  }

  push(text: Uint8Array): void {
    if (this.pad) {
      for (let i = 0; i < text.length; i++) if (B64_VALUE[text[i]!]! > 65) this.sawForeign = true;
      return;
    }
    const out = this.out;
    let { o, acc, n } = this;
    for (let i = 0; i < text.length; i++) {
      const v = B64_VALUE[text[i]!]!;
      if (v < 64) {
        if (this.pad) break; // data after padding
        acc = (acc << 6) | v;
        if (++n === 4) {
          if (o + 3 > out.length) {
            this.out = Buffer.concat([out.subarray(0, o), Buffer.allocUnsafe(Math.max(out.length, 1024))]);
            return this.resume(text, i, o, acc, n);
          }
          out[o++] = acc >> 16;
          out[o++] = (acc >> 8) & 0xff;
          out[o++] = acc & 0xff;
          acc = 0;
          n = 0;
        }
      } else if (v === 65) {
        this.pad++;
      } else if (v > 65) {
        this.sawForeign = true;
      }
    }
    this.o = o;
    this.acc = acc;
    this.n = n;
  }

  /** After growing the output (more input than announced): go on from input octet `i`, which completed a quad. */
  private resume(text: Uint8Array, i: number, o: number, acc: number, n: number): void {
    this.o = o;
    this.acc = acc >> 6;
    this.n = n - 1;
    this.push(text.subarray(i));
  }

  /** The decoded octets (a view of the output buffer). */
  end(): Buffer {
    // Room for the last one or two octets of a partial quad.
    if (this.o + 2 > this.out.length) this.out = Buffer.concat([this.out.subarray(0, this.o), Buffer.alloc(2)]);
    const out = this.out;
    let o = this.o;
    if (this.n === 2) out[o++] = this.acc >> 4;
    if (this.n === 3) {
      out[o++] = this.acc >> 10;
      out[o++] = (this.acc >> 2) & 0xff;
    }
    return out.subarray(0, o);
  }
}
