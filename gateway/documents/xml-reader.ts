import { DOMParser, type Document, type Element } from '@xmldom/xmldom';
import { HispError } from '../core/errors.js';

/** Bounds of {@link readXml}: a C-CDA of a long stay is a few MB; nothing legitimate nests 200 deep. */
export interface XmlLimits {
  /** Octets of the document; default 32 MiB. */
  maxBytes: number;
  /** Element nesting; default 200 (and every walker of a document may recurse that deep). */
  maxDepth: number;
  /** Elements in all; default 2,000,000. */
  maxElements: number;
}

export const DEFAULT_XML_LIMITS: Readonly<XmlLimits> = Object.freeze({ maxBytes: 32 * 1024 * 1024, maxDepth: 200, maxElements: 2_000_000 });

/** Encodings a document may declare (XML 1.0 §4.3.3); anything else is refused, never guessed. */
const DECODERS: Readonly<Record<string, string>> = { 'utf-8': 'utf-8', utf8: 'utf-8', 'us-ascii': 'utf-8', ascii: 'utf-8', 'iso-8859-1': 'latin1', 'latin1': 'latin1', 'windows-1252': 'windows-1252', 'utf-16': 'utf-16le' };

/**
 * Reads an XML document received from someone else (a C-CDA, an XDM package's METADATA.XML) into
 * a DOM with `@xmldom/xmldom`, as a hostile input: bounded in size, depth and element count, and
 * with no document type declaration at all. A DTD is where XML's attacks live (external entities
 * reading files or URLs, XXE; entity expansion, "billion laughs": OWASP XXE Prevention) and no
 * CDA or XDM metadata needs one (HL7 CDA R2 and IHE ITI TF-3 4.2.3 are schema-validated, not
 * DTD-validated), so a document that declares one is refused, before anything in it is used.
 * xmldom resolves no external entity and expands no declared one; the refusal makes that a rule
 * rather than a property of a library version.
 *
 * Any error the parser reports (not warnings) refuses the document: HISP_XML_MALFORMED.
 */
export function readXml(input: Buffer | string, limits: Partial<XmlLimits> = {}): Document {
  const bounds = { ...DEFAULT_XML_LIMITS, ...limits };
  const size = typeof input === 'string' ? Buffer.byteLength(input, 'utf8') : input.length;
  if (size > bounds.maxBytes) throw new HispError('HISP_XML_MALFORMED', `the XML document is ${size} octets, more than the ${bounds.maxBytes} this reader takes`);
  const text = typeof input === 'string' ? input : decode(input);
  if (/<!DOCTYPE/i.test(text.slice(0, prologEnd(text)))) {
    throw new HispError('HISP_XML_MALFORMED', 'the XML document declares a document type (DTD): refused, no DTD or entity is ever read');
  }
  let doc: Document;
  try {
    doc = new DOMParser({
      locator: false,
      onError: (level, message) => {
        if (level !== 'warning') throw new Error(message);
      },
    }).parseFromString(text, 'application/xml');
  } catch (err) {
    const why = err instanceof Error ? err.message : String(err);
    throw new HispError('HISP_XML_MALFORMED', `the XML document is not well-formed: ${why.slice(0, 200)}`);
  }
  if (doc.doctype) throw new HispError('HISP_XML_MALFORMED', 'the XML document declares a document type (DTD): refused');
  const root = doc.documentElement;
  if (!root) throw new HispError('HISP_XML_MALFORMED', 'the XML document has no root element');
  checkShape(root, bounds);
  return doc;
}

/** Where the prolog ends: the first `<` that starts an element (not `<?`, `<!`). */
function prologEnd(text: string): number {
  const m = /<[^?!]/.exec(text);
  return m ? m.index : text.length;
}

/**
 * The octets as text: a byte-order mark or the encoding declaration decides (XML 1.0 §4.3.3,
 * Appendix F); UTF-8 when neither says otherwise.
 */
function decode(bytes: Buffer): string {
  if (bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf) return new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(3));
  if (bytes[0] === 0xff && bytes[1] === 0xfe) return new TextDecoder('utf-16le').decode(bytes.subarray(2));
  if (bytes[0] === 0xfe && bytes[1] === 0xff) return new TextDecoder('utf-16be').decode(bytes.subarray(2));
  const declaration = /^<\?xml[^>]*?encoding\s*=\s*["']([A-Za-z0-9._-]+)["']/.exec(bytes.subarray(0, 200).toString('latin1'));
  const declared = declaration?.[1]?.toLowerCase() ?? 'utf-8';
  const label = DECODERS[declared];
  if (!label) throw new HispError('HISP_XML_MALFORMED', `the XML document declares an encoding this reader does not take: ${declared.slice(0, 40)}`);
  try {
    return new TextDecoder(label, { fatal: label === 'utf-8' }).decode(bytes);
  } catch {
    throw new HispError('HISP_XML_MALFORMED', `the XML document is not valid ${declared}`);
  }
}

/** Depth and element count, walked without recursion (a deep document must not overflow the stack). */
function checkShape(root: Element, bounds: XmlLimits): void {
  let elements = 0;
  const stack: { el: Element; depth: number }[] = [{ el: root, depth: 1 }];
  while (stack.length > 0) {
    const { el, depth } = stack.pop()!;
    if (++elements > bounds.maxElements) throw new HispError('HISP_XML_MALFORMED', `the XML document has more than ${bounds.maxElements} elements`);
    if (depth > bounds.maxDepth) throw new HispError('HISP_XML_MALFORMED', `the XML document nests elements more than ${bounds.maxDepth} deep`);
    for (let child = el.firstChild; child; child = child.nextSibling) {
      if (child.nodeType === 1) stack.push({ el: child as Element, depth: depth + 1 });
    }
  }
}
