import { createHash } from 'node:crypto';
import type { Document, Element, Node, Text } from '@xmldom/xmldom';
import { HispError } from '../core/errors.js';
import { displayText, summarizeCcda, type CcdaSummary } from './ccda-summary.js';
import { HL7_NS, hl7Child, hl7Children } from './hl7-dom.js';
import { readXml } from './xml-reader.js';

export type { CcdaPatientId, CcdaSummary } from './ccda-summary.js';

// ---------------------------------------------------------------------------------------------
// The security policy of the page, in one place. The HL7 CDA stylesheet (CDA.xsl) shows what goes
// wrong when a renderer trusts the document: in 2014 it passed nonXMLBody references to an iframe,
// copied XHTML table attributes such as onmouseover and fetched images from any URI; in 2020 a
// regression put base64 bodies (HTML with script included) in an un-sandboxed iframe
// (HL7/CDA-core-xsl#3). So nothing of the document becomes markup here: the narrative (CDA R2
// §4.3.5, NarrativeBlock.xsd) is mapped element by element, attribute by attribute, to the fixed
// vocabulary below; everything else the document holds is text, escaped; and the page forbids
// scripts and every request but its own data: images with a Content-Security-Policy of its own.
// ---------------------------------------------------------------------------------------------

/**
 * The page's stylesheet, fixed: the policy allows exactly this text (its SHA-256) and no other
 * style, so neither a `style` attribute nor a `<style>` element could apply even if one got in.
 */
const STYLESHEET = [
  'body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Noto Sans",Arial,sans-serif;color:#1b1b1b;background:#fff;margin:0 auto;max-width:72rem;padding:1rem 1.5rem}',
  '.cda-header{border-bottom:2px solid #2d5d8b;margin-bottom:1rem}',
  '.cda-header h1{font-size:1.5rem;margin:.2rem 0 .6rem;color:#2d5d8b}',
  '.cda-summary{display:grid;grid-template-columns:max-content 1fr;gap:.15rem 1rem;margin:0 0 .8rem}',
  '.cda-summary dt{font-weight:600;color:#444}.cda-summary dd{margin:0}',
  '.cda-section{margin:1.2rem 0}.cda-section .cda-section{margin-left:1rem}',
  '.cda-title{color:#2d5d8b;margin:.4rem 0;border-bottom:1px solid #d6e0ea}',
  'h2.cda-title{font-size:1.25rem}h3.cda-title{font-size:1.1rem}h4.cda-title,h5.cda-title,h6.cda-title{font-size:1rem}',
  '.cda-untitled{font-style:italic}',
  '.cda-table{overflow-x:auto;margin:.4rem 0}',
  'table{border-collapse:collapse;font-size:.93rem}',
  'th,td{border:1px solid #b9c6d2;padding:.2rem .45rem;text-align:left;vertical-align:top}',
  'th{background:#e8eef4}caption{text-align:left;font-weight:600;padding:.2rem 0}',
  '.cda-caption{font-weight:600}',
  '.cda-bold{font-weight:bold}.cda-italics{font-style:italic}.cda-underline{text-decoration:underline}.cda-emphasis{font-style:italic;font-weight:600}',
  'th.cda-lrule,td.cda-lrule{border-left:2px solid #000}th.cda-rrule,td.cda-rrule{border-right:2px solid #000}',
  'th.cda-toprule,td.cda-toprule{border-top:2px solid #000}th.cda-botrule,td.cda-botrule{border-bottom:2px solid #000}',
  '.cda-arabic{list-style-type:decimal}.cda-littleroman{list-style-type:lower-roman}.cda-bigroman{list-style-type:upper-roman}',
  '.cda-littlealpha{list-style-type:lower-alpha}.cda-bigalpha{list-style-type:upper-alpha}',
  '.cda-disc{list-style-type:disc}.cda-circle{list-style-type:circle}.cda-square{list-style-type:square}',
  '.cda-al-left{text-align:left}.cda-al-center{text-align:center}.cda-al-right{text-align:right}.cda-al-justify{text-align:justify}',
  '.cda-va-top{vertical-align:top}.cda-va-middle{vertical-align:middle}.cda-va-bottom{vertical-align:bottom}.cda-va-baseline{vertical-align:baseline}',
  'del{color:#8a1c1c}ins{color:#1c5e1c}',
  '.cda-link{text-decoration:underline dotted}.cda-link-target{color:#555;font-size:.9em;word-break:break-all}',
  '.cda-fnmark{font-size:.75em}.cda-footnotes{font-size:.9rem;color:#333;border-top:1px solid #d6e0ea;padding-top:.3rem}',
  '.cda-media{display:inline-block;margin:.3rem 0}.cda-media img{max-width:100%;display:block}',
  '.cda-refused,.cda-note{color:#6b4c00;background:#fff6dc;padding:0 .3rem}',
  '.cda-plain{white-space:pre-wrap;font:inherit}',
  '.cda-footer{margin-top:2rem;border-top:1px solid #d6e0ea;color:#555;font-size:.85rem}',
].join('');

/**
 * The Content-Security-Policy of a rendered page: in a `<meta http-equiv>` of its head (so that a
 * saved file is as safe as the served page) and, from the API, as a header too. No script, object,
 * frame, font, fetch or form target of any kind (`default-src 'none'`); images only from `data:`
 * URLs (the embedded ones this renderer checked); style only the page's own stylesheet, by hash
 * rather than `'unsafe-inline'`, which would let any `<style>` or `style` attribute apply.
 * `frame-ancestors` and `sandbox` are left to the API's headers: a `<meta>` policy ignores them.
 */
export const RENDERED_CCDA_CSP = [
  "default-src 'none'",
  "script-src 'none'",
  "object-src 'none'",
  'img-src data:',
  `style-src 'sha256-${createHash('sha256').update(STYLESHEET, 'utf8').digest('base64')}'`,
  "base-uri 'none'",
  "form-action 'none'",
].join('; ');

/**
 * Every element the page can hold, with the only attributes it can carry: the test of the
 * renderer parses its output and checks both. `href` is only ever `#cda-…` (a place in the page),
 * `src` only `data:image/png|jpeg|gif;base64,…`, `class` only names of {@link RENDERED_CLASSES}.
 */
export const RENDERED_HTML_VOCABULARY: Readonly<Record<string, readonly string[]>> = Object.freeze({
  html: ['lang'],
  head: [],
  meta: ['charset', 'http-equiv', 'content', 'name'],
  title: [],
  style: [],
  body: [],
  header: ['class'],
  main: ['class'],
  footer: ['class'],
  h1: [],
  dl: ['class'],
  dt: [],
  dd: [],
  ...Object.fromEntries(['h2', 'h3', 'h4', 'h5', 'h6'].map((h) => [h, ['class']])),
  ...Object.fromEntries(['section', 'div', 'p', 'span', 'ins', 'del', 'ul', 'ol', 'table', 'caption', 'thead', 'tbody', 'tfoot', 'tr'].map((e) => [e, ['class', 'id', 'lang']])),
  sub: [],
  sup: ['class', 'id'],
  br: [],
  a: ['href', 'class', 'id', 'lang'],
  li: ['class', 'id', 'lang', 'value'],
  colgroup: ['class', 'id', 'lang', 'span'],
  col: ['class', 'id', 'lang', 'span'],
  th: ['class', 'id', 'lang', 'colspan', 'rowspan', 'scope', 'headers'],
  td: ['class', 'id', 'lang', 'colspan', 'rowspan', 'scope', 'headers'],
  img: ['src', 'alt'],
  pre: ['class'],
});

/** styleCode values (CDA R2 §4.3.5.11, Table 89), compared without case, to the page's classes; others (local `x…` codes) are dropped. */
const STYLE_CLASSES: ReadonlyMap<string, string> = new Map(
  ['Bold', 'Underline', 'Italics', 'Emphasis', 'Lrule', 'Rrule', 'Toprule', 'Botrule', 'Arabic', 'LittleRoman', 'BigRoman', 'LittleAlpha', 'BigAlpha', 'Disc', 'Circle', 'Square'].map(
    (code) => [code.toLowerCase(), `cda-${code.toLowerCase()}`],
  ),
);
/** align and valign of table parts (NarrativeBlock.xsd enumerations) to classes; `char` (which no browser implements) is dropped. */
const ALIGN_CLASSES: ReadonlyMap<string, string> = new Map(['left', 'center', 'right', 'justify'].map((a) => [a, `cda-al-${a}`]));
const VALIGN_CLASSES: ReadonlyMap<string, string> = new Map(['top', 'middle', 'bottom', 'baseline'].map((a) => [a, `cda-va-${a}`]));
/** The page's own classes, with those above: nothing else ever appears in a `class` attribute. */
const OWN_CLASSES = [
  'cda-header', 'cda-summary', 'cda-body', 'cda-footer', 'cda-section', 'cda-title', 'cda-untitled', 'cda-text', 'cda-table', 'cda-caption',
  'cda-link', 'cda-link-target', 'cda-fnmark', 'cda-footnotes', 'cda-media', 'cda-refused', 'cda-note', 'cda-plain',
];
export const RENDERED_CLASSES: ReadonlySet<string> = new Set([...OWN_CLASSES, ...STYLE_CLASSES.values(), ...ALIGN_CLASSES.values(), ...VALIGN_CLASSES.values()]);

/** th/td scope (NarrativeBlock.xsd). */
const SCOPES: ReadonlySet<string> = new Set(['row', 'col', 'rowgroup', 'colgroup']);
/** HTML caps colspan at 1,000 and rowspan at 65,534 (HTML §4.9.11); a larger number is clamped, not passed on. */
const COLSPAN_MAX = 1000;
const ROWSPAN_MAX = 65534;
/** An XML ID of the document that may become `id="cda-…"` (and a `#cda-…` link target): NCName-like ASCII, at most 128 characters. */
const ID_SHAPE = /^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,127}$/;
/** A `language` value that may become `lang` (BCP 47 shape). */
const LANG_SHAPE = /^[A-Za-z]{1,8}(?:-[A-Za-z0-9]{1,8}){0,7}$/;
/** The only external links shown, and only as text: http and https URLs (never a live link). */
const WEB_URL = /^https?:\/\/[^\s]{1,2000}$/i;
/** Embedded images shown (an ObservationMedia `value` of this type, base64): never SVG, which is a document with scripts and links. */
const IMAGE_SIGNATURES: ReadonlyMap<string, readonly number[]> = new Map([
  ['image/png', [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]],
  ['image/jpeg', [0xff, 0xd8, 0xff]],
  ['image/gif', [0x47, 0x49, 0x46, 0x38]],
]);
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

/** Kinds of NarrativeBlock.xsd element (StrucDoc.*): the same element name is a different kind under a title. */
type Kind =
  | 'text' | 'title' | 'content' | 'titleContent' | 'linkHtml' | 'sub' | 'sup' | 'br' | 'footnote' | 'titleFootnote' | 'footnoteRef'
  | 'renderMultiMedia' | 'paragraph' | 'list' | 'item' | 'caption' | 'table' | 'col' | 'colgroup' | 'thead' | 'tbody' | 'tfoot' | 'tr' | 'th' | 'td';

const INLINE: readonly [string, Kind][] = [
  ['content', 'content'], ['linkHtml', 'linkHtml'], ['sub', 'sub'], ['sup', 'sup'], ['br', 'br'],
  ['footnote', 'footnote'], ['footnoteRef', 'footnoteRef'], ['renderMultiMedia', 'renderMultiMedia'],
];
const BLOCKS: readonly [string, Kind][] = [['paragraph', 'paragraph'], ['list', 'list'], ['table', 'table']];
const TITLE_INLINE: readonly [string, Kind][] = [
  ['content', 'titleContent'], ['sub', 'sub'], ['sup', 'sup'], ['br', 'br'], ['footnote', 'titleFootnote'], ['footnoteRef', 'footnoteRef'],
];
const model = (...groups: (readonly [string, Kind])[][]): ReadonlyMap<string, Kind> => new Map(groups.flat());
const only = (...names: string[]): (readonly [string, Kind])[] => INLINE.filter(([n]) => names.includes(n));

/**
 * NarrativeBlock.xsd's content models: for each kind, the child elements (HL7 namespace) it takes
 * and the kind each becomes. A child element it does not take (any other element, another
 * namespace, a NarrativeBlock element out of place) is not rendered; its text and the elements
 * this context takes are, as if it were not there, so that no text of the sender is lost. Table
 * and list put their caption first (HTML's order) and are walked by their own code.
 */
const CONTENT_MODEL: Readonly<Record<Kind, ReadonlyMap<string, Kind>>> = {
  text: model([...INLINE], [...BLOCKS]),
  title: model([...TITLE_INLINE]),
  content: model([...INLINE]),
  titleContent: model([...TITLE_INLINE]),
  linkHtml: model(only('footnote', 'footnoteRef')),
  sub: model(),
  sup: model(),
  br: model(),
  footnote: model(only('content', 'linkHtml', 'sub', 'sup', 'br', 'renderMultiMedia'), [...BLOCKS]),
  titleFootnote: model(TITLE_INLINE.filter(([n]) => n !== 'footnote' && n !== 'footnoteRef')),
  footnoteRef: model(),
  renderMultiMedia: model([['caption', 'caption']]),
  paragraph: model([['caption', 'caption']], [...INLINE]),
  list: model([['item', 'item']]),
  item: model([['caption', 'caption']], [...INLINE], [...BLOCKS]),
  caption: model(only('linkHtml', 'sub', 'sup', 'footnote', 'footnoteRef')),
  table: model(),
  col: model(),
  colgroup: model([['col', 'col']]),
  thead: model([['tr', 'tr']]),
  tbody: model([['tr', 'tr']]),
  tfoot: model([['tr', 'tr']]),
  tr: model([['th', 'th'], ['td', 'td']]),
  th: model([...INLINE]),
  td: model([...INLINE], [['paragraph', 'paragraph'], ['list', 'list']]),
};
/** Kinds with mixed content (`mixed="true"` in the schema): their text is shown; text elsewhere (between rows, in a list) is not. */
const MIXED: ReadonlySet<Kind> = new Set<Kind>(['text', 'title', 'content', 'titleContent', 'linkHtml', 'sub', 'sup', 'footnote', 'titleFootnote', 'paragraph', 'item', 'caption', 'th', 'td']);
const TABLE_PARTS: ReadonlySet<string> = new Set(['caption', 'col', 'colgroup', 'thead', 'tbody', 'tfoot', 'tr']);

// ---------------------------------------------------------------------------------------------

/** Options of {@link renderCcda}. */
export interface RenderCcdaOptions {
  /** Octets of the document; default 32 MiB (readXml's bound). */
  maxBytes?: number;
  /** Octets of one embedded image, decoded; default 8 MiB. A larger one is not shown (a note says so). */
  maxImageBytes?: number;
}

/** The rendered page and the header summary (see {@link CcdaSummary}). */
export interface RenderedCcda {
  html: string;
  summary: CcdaSummary;
}

const DEFAULT_MAX_IMAGE_BYTES = 8 * 1024 * 1024;

/**
 * Renders a CDA R2 document (a C-CDA) as one self-contained HTML page for people (R-BB-6): a header
 * (patient, title, author, organization, date) and every section in order, nested ones too, with
 * its title and narrative (`section/text`); coded entries are not shown. The document is read with
 * {@link readXml} (no DTD, bounded); not a `ClinicalDocument` of `urn:hl7-org:v3`, or one without a
 * body: HISP_CDA_INVALID.
 *
 * @example
 * const { html, summary } = renderCcda(readFileSync('CCDA_Ambulatory.xml'));
 * // serve `html` with `Content-Security-Policy: ${RENDERED_CCDA_CSP}`; summary.patient.name === 'Isabella Isa Jones'
 */
export function renderCcda(input: Buffer | string, options: RenderCcdaOptions = {}): RenderedCcda {
  const doc = readXml(input, options.maxBytes === undefined ? {} : { maxBytes: options.maxBytes });
  const root = doc.documentElement!;
  if (root.localName !== 'ClinicalDocument' || root.namespaceURI !== HL7_NS) {
    throw new HispError(
      'HISP_CDA_INVALID',
      `the root element is ${JSON.stringify((root.localName ?? '').slice(0, 60))} in namespace ${JSON.stringify((root.namespaceURI ?? '').slice(0, 80))}, not ClinicalDocument in ${HL7_NS} (HL7 CDA R2)`,
    );
  }
  const component = hl7Child(root, 'component');
  const structured = component ? hl7Child(component, 'structuredBody') : null;
  const nonXml = component ? hl7Child(component, 'nonXMLBody') : null;
  if (!structured && !nonXml) {
    throw new HispError('HISP_CDA_INVALID', 'the ClinicalDocument has no body: neither component/structuredBody nor component/nonXMLBody (CDA R2 §4.3.1)');
  }
  const summary = summarizeCcda(doc);
  const page = new NarrativeWriter(doc, options.maxImageBytes ?? DEFAULT_MAX_IMAGE_BYTES);
  const out = page.out;
  const language = hl7Child(root, 'languageCode')?.getAttribute('code') ?? '';
  out.push(
    '<!DOCTYPE html>\n<html lang="', LANG_SHAPE.test(language) ? language : 'en', '"><head>\n<meta charset="utf-8">\n',
    '<meta http-equiv="Content-Security-Policy" content="', RENDERED_CCDA_CSP, '">\n',
    '<meta name="referrer" content="no-referrer">\n<meta name="viewport" content="width=device-width, initial-scale=1">\n',
    '<title>', escapeHtml(summary.title ?? 'Clinical document'), '</title>\n<style>', STYLESHEET, '</style>\n</head>\n<body>\n',
  );
  writeHeader(out, summary);
  out.push('<main class="cda-body">\n');
  if (structured) {
    for (const c of hl7Children(structured, 'component')) for (const section of hl7Children(c, 'section')) page.section(section, 2);
  } else {
    page.nonXmlBody(nonXml!);
  }
  out.push(
    '</main>\n<footer class="cda-footer"><p>Rendered by hisp from the header and the section narrative of the document (HL7 CDA R2). ',
    'Coded entries are not shown; links to other sites are shown as text, and nothing is fetched from them.</p></footer>\n</body></html>\n',
  );
  return { html: page.finish(), summary };
}

function writeHeader(out: Piece[], s: CcdaSummary): void {
  out.push('<header class="cda-header"><h1>', escapeHtml(s.title ?? 'Clinical document'), '</h1>\n<dl class="cda-summary">\n');
  const row = (label: string, value: string | null) => {
    if (value !== null) out.push('<dt>', label, '</dt><dd>', escapeHtml(value), '</dd>\n');
  };
  row('Patient', s.patient.name);
  row('Born', s.patient.birthTime);
  row('Gender', s.patient.gender);
  if (s.patient.ids.length > 0) {
    // one dd, a line per identifier: the summary is a two-column grid of dt and dd
    const ids = s.patient.ids.map((id) => escapeHtml(id.extension === null ? id.root : `${id.extension} (${id.root})`));
    out.push('<dt>Patient IDs</dt><dd>', ids.join('<br>'), '</dd>\n');
  }
  row('Author', s.author);
  row('Organization', s.organization);
  row('Date', s.date);
  out.push('</dl></header>\n');
}

/** A footnote mark whose number is known only at the end (a footnoteRef may point forward). */
interface FootnoteRefSlot {
  idref: string;
  linked: boolean;
}
type Piece = string | FootnoteRefSlot;

const ELEMENT_NODE = 1;
const TEXT_NODE = 3;
const CDATA_NODE = 4;

/**
 * The walk of the body: appends pieces of HTML to `out`. Recursion follows the document's
 * nesting, which readXml bounds (200 deep), and every element is visited once (a footnoteRef or a
 * renderMultiMedia renders a mark or an image, never what it points to again).
 */
class NarrativeWriter {
  readonly out: Piece[] = [];
  private footnoteCount = 0;
  private readonly footnoteNumbers = new Map<string, number>();
  /** Footnote bodies of the section being written, listed after its text. */
  private pendingFootnotes: Piece[][] = [];
  /** Inside a link: a footnote mark is not a link (HTML has no link in a link). */
  private inLink = false;
  /** XML ID → element, built on the first renderMultiMedia (most documents have none). */
  private ids: Map<string, Element> | null = null;

  constructor(
    private readonly doc: Document,
    private readonly maxImageBytes: number,
  ) {}

  section(section: Element, level: number): void {
    const out = this.out;
    const h = `h${Math.min(level, 6)}`;
    out.push('<section', attributes(section, 'cda-section'), '>\n');
    const title = hl7Child(section, 'title');
    if (title && (title.textContent ?? '').trim() !== '') {
      out.push('<', h, ' class="cda-title">');
      this.children(out, title, 'title');
    } else {
      const code = hl7Child(section, 'code')?.getAttribute('displayName') ?? '';
      out.push('<', h, ' class="cda-title cda-untitled">', escapeHtml(displayText(code) || 'Untitled section'));
    }
    out.push('</', h, '>\n');
    const text = hl7Child(section, 'text');
    if (text) {
      out.push('<div', attributes(text, 'cda-text'), '>');
      this.children(out, text, 'text');
      out.push('</div>\n');
    }
    this.flushFootnotes(out);
    for (const c of hl7Children(section, 'component')) for (const sub of hl7Children(c, 'section')) this.section(sub, level + 1);
    out.push('</section>\n');
  }

  /**
   * A nonXMLBody (CDA R2 §4.3.1, Body Choice): plain text is shown as text; anything else (HTML above all, the
   * 2014 and 2020 holes of CDA.xsl) is never rendered, and a note says what it is.
   */
  nonXmlBody(body: Element): void {
    const out = this.out;
    const text = hl7Child(body, 'text');
    const type = (text?.getAttribute('mediaType') || 'text/plain').trim().toLowerCase();
    const representation = (text?.getAttribute('representation') || 'TXT').trim().toUpperCase();
    const note = (why: string) => out.push('<p class="cda-note">', escapeHtml(why), '</p>\n');
    let content: string | null = null;
    if (!text) {
      note('The document has a non-XML body with no content.');
    } else if (type.split(';')[0]!.trim() !== 'text/plain' || text.hasAttribute('compression')) {
      note(`The body of this document is ${displayText(type, 100)} content (a nonXMLBody): it is not shown on this page. Open the document itself with software you trust for that type.`);
    } else if (representation === 'B64') {
      const decoded = decodeBase64(text.textContent ?? '');
      if (decoded === null) note('The plain-text body of this document is not valid base64: it is not shown.');
      else content = new TextDecoder('utf-8').decode(decoded);
    } else {
      content = text.textContent ?? '';
    }
    if (content === null) return;
    if (content.trim() === '' && hl7Child(text!, 'reference')) note('The body of this document is a reference to a file elsewhere: hisp never fetches it.');
    else out.push('<pre class="cda-plain">', escapeHtml(content), '</pre>\n');
  }

  /** The output as one string, footnote marks numbered. */
  finish(): string {
    const out = this.out;
    for (let i = 0; i < out.length; i++) {
      const p = out[i]!;
      if (typeof p !== 'string') out[i] = this.footnoteMark(this.footnoteNumbers.get(p.idref), p.linked, '');
    }
    return (out as string[]).join('');
  }

  private children(out: Piece[], el: Element, kind: Kind): void {
    const allowed = CONTENT_MODEL[kind];
    const mixed = MIXED.has(kind);
    for (let n: Node | null = el.firstChild; n; n = n.nextSibling) {
      const type = n.nodeType;
      if (type === TEXT_NODE || type === CDATA_NODE) {
        if (mixed) out.push(escapeHtml((n as Text).data));
      } else if (type === ELEMENT_NODE) {
        const child = n as Element;
        const childKind = child.namespaceURI === HL7_NS ? allowed.get(child.localName!) : undefined;
        if (childKind === undefined) this.children(out, child, kind);
        else this.element(out, child, childKind);
      }
    }
  }

  private element(out: Piece[], el: Element, kind: Kind): void {
    switch (kind) {
      case 'content': {
        // revised (CDA R2 §4.3.5.1): receivers must show deleted and inserted narrative apart.
        const revised = el.getAttribute('revised');
        const tag = revised === 'delete' ? 'del' : revised === 'insert' ? 'ins' : 'span';
        return this.wrap(out, el, kind, tag, attributes(el, ''));
      }
      case 'titleContent':
        return this.wrap(out, el, kind, 'span', attributes(el, ''));
      case 'sub':
      case 'sup':
        return this.wrap(out, el, kind, kind, '');
      case 'br':
        out.push('<br>');
        return;
      case 'paragraph':
        return this.wrap(out, el, kind, 'p', attributes(el, ''));
      case 'item':
        return this.wrap(out, el, kind, 'li', attributes(el, ''));
      case 'caption':
        return this.wrap(out, el, kind, 'span', attributes(el, 'cda-caption'));
      case 'list':
        return this.list(out, el);
      case 'table':
        return this.table(out, el);
      case 'colgroup':
      case 'col': {
        const attrs = attributes(el, alignClasses(el)) + spanAttribute(el, 'span', COLSPAN_MAX);
        if (kind === 'col') return void out.push('<col', attrs, '>');
        return this.wrap(out, el, kind, 'colgroup', attrs);
      }
      case 'thead':
      case 'tbody':
      case 'tfoot':
      case 'tr':
        return this.wrap(out, el, kind, kind, attributes(el, alignClasses(el)));
      case 'th':
      case 'td':
        return this.wrap(out, el, kind, kind, attributes(el, alignClasses(el)) + cellAttributes(el));
      case 'linkHtml':
        return this.link(out, el);
      case 'footnote':
      case 'titleFootnote':
        return this.footnote(out, el, kind);
      case 'footnoteRef':
        out.push({ idref: el.getAttribute('IDREF') ?? '', linked: !this.inLink });
        return;
      case 'renderMultiMedia':
        return this.multimedia(out, el);
      case 'text':
      case 'title':
        return this.children(out, el, kind);
    }
  }

  private wrap(out: Piece[], el: Element, kind: Kind, tag: string, attrs: string): void {
    out.push('<', tag, attrs, '>');
    this.children(out, el, kind);
    out.push('</', tag, '>');
  }

  /** list (§4.3.5.8): its caption first, then ul or ol by listType (unordered by default). */
  private list(out: Piece[], el: Element): void {
    const caption = hl7Child(el, 'caption');
    if (caption) {
      out.push('<div', attributes(caption, 'cda-caption'), '>');
      this.children(out, caption, 'caption');
      out.push('</div>');
    }
    this.wrap(out, el, 'list', el.getAttribute('listType') === 'ordered' ? 'ol' : 'ul', attributes(el, ''));
  }

  /**
   * table (§4.3.5.9) in HTML's order: caption, column groups (loose cols gathered in one), then
   * head, bodies and foot as the document has them; rows straight under the table (not CDA, but
   * common) get a tbody. The table's presentational attributes (border, cellspacing, cellpadding,
   * frame, rules, width) are deprecated in CDA in favour of styleCode and are not passed on.
   */
  private table(out: Piece[], el: Element): void {
    const parts: Element[] = [];
    collectTableParts(el, parts);
    out.push('<div class="cda-table"><table', attributes(el, ''), '>');
    const caption = parts.find((p) => p.localName === 'caption');
    if (caption) this.wrap(out, caption, 'caption', 'caption', attributes(caption, ''));
    let looseCols = false;
    for (const p of parts) {
      if (p.localName === 'col') {
        if (!looseCols) out.push('<colgroup>');
        looseCols = true;
        this.element(out, p, 'col');
      } else if (p.localName === 'colgroup') {
        if (looseCols) out.push('</colgroup>');
        looseCols = false;
        this.element(out, p, 'colgroup');
      }
    }
    if (looseCols) out.push('</colgroup>');
    let looseRows = false;
    for (const p of parts) {
      const name = p.localName!;
      if (name === 'tr') {
        if (!looseRows) out.push('<tbody>');
        looseRows = true;
        this.element(out, p, 'tr');
      } else if (name === 'thead' || name === 'tbody' || name === 'tfoot') {
        if (looseRows) out.push('</tbody>');
        looseRows = false;
        this.element(out, p, name);
      }
    }
    if (looseRows) out.push('</tbody>');
    out.push('</table></div>');
  }

  /**
   * linkHtml (§4.3.5.2): a link to a place in the document (`#ID`) stays a link within the page;
   * an http(s) URL is shown as text beside the link's text, never as a live link (nothing leaves
   * the page, and a click cannot open a site the sender chose); any other target (javascript:,
   * data:, vbscript:, file:, relative) is dropped. CDA does not require rendering links at all.
   */
  private link(out: Piece[], el: Element): void {
    const href = (el.getAttribute('href') ?? '').trim();
    const fragment = href.startsWith('#') ? href.slice(1) : '';
    if (ID_SHAPE.test(fragment)) {
      out.push('<a href="#cda-', fragment, '"', attributes(el, ''), '>');
    } else {
      out.push('<span', attributes(el, 'cda-link'), '>');
    }
    const wasInLink = this.inLink;
    this.inLink = true;
    this.children(out, el, 'linkHtml');
    this.inLink = wasInLink;
    if (ID_SHAPE.test(fragment)) {
      out.push('</a>');
    } else {
      out.push('</span>');
      if (WEB_URL.test(href)) out.push(' <span class="cda-link-target">&lt;', escapeHtml(href), '&gt;</span>');
    }
  }

  /**
   * footnote (§4.3.5.5): a numbered mark where it stands, its text listed after the section's
   * narrative. A footnoteRef shows the number of the footnote it names (resolved at the end).
   */
  private footnote(out: Piece[], el: Element, kind: Kind): void {
    const n = ++this.footnoteCount;
    const id = el.getAttribute('ID');
    if (id && !this.footnoteNumbers.has(id)) this.footnoteNumbers.set(id, n);
    out.push(this.footnoteMark(n, !this.inLink, id && ID_SHAPE.test(id) ? ` id="cda-${id}"` : ''));
    const body: Piece[] = [`<li id="cda-fn-${n}" value="${n}"${langAttribute(el)}>`];
    this.pendingFootnotes.push(body);
    const wasInLink = this.inLink;
    this.inLink = false;
    this.children(body, el, kind);
    this.inLink = wasInLink;
    body.push('</li>');
  }

  private footnoteMark(n: number | undefined, linked: boolean, idAttribute: string): string {
    if (n === undefined) return '<sup class="cda-fnmark">[?]</sup>';
    return linked ? `<sup class="cda-fnmark"${idAttribute}><a href="#cda-fn-${n}">${n}</a></sup>` : `<sup class="cda-fnmark"${idAttribute}>${n}</sup>`;
  }

  private flushFootnotes(out: Piece[]): void {
    if (this.pendingFootnotes.length === 0) return;
    out.push('<ol class="cda-footnotes">');
    for (const body of this.pendingFootnotes) for (const p of body) out.push(p);
    out.push('</ol>\n');
    this.pendingFootnotes = [];
  }

  /**
   * renderMultiMedia (§4.3.5.6): the ObservationMedia it names, when it is an image embedded in the
   * document as base64 PNG, JPEG or GIF (checked by its first octets, not only its declared type),
   * as a data: URL; anything else (SVG, a URL to fetch, a RegionOfInterest, too large) is a note.
   */
  private multimedia(out: Piece[], el: Element): void {
    out.push('<span', attributes(el, 'cda-media'), '>');
    const caption = hl7Child(el, 'caption');
    const alt = escapeHtml(displayText(caption?.textContent ?? '', 200) || 'image');
    const refs = (el.getAttribute('referencedObject') ?? '').split(/\s+/).filter((r) => r !== '').slice(0, 16);
    if (refs.length === 0) out.push('<span class="cda-refused">[image not shown: no referencedObject]</span>');
    for (const ref of refs) {
      const target = this.idIndex().get(ref);
      if (!target) out.push('<span class="cda-refused">[image not shown: the document has no object ', escapeHtml(JSON.stringify(ref.slice(0, 64))), ']</span>');
      else out.push(this.image(target, alt));
    }
    this.children(out, el, 'renderMultiMedia');
    out.push('</span>');
  }

  private image(media: Element, alt: string): string {
    const refused = (why: string) => `<span class="cda-refused">[image not shown: ${escapeHtml(why)}]</span>`;
    if (media.localName !== 'observationMedia' || media.namespaceURI !== HL7_NS) return refused(`it is a ${displayText(media.localName ?? '', 40)}, not an embedded image (observationMedia)`);
    const value = hl7Child(media, 'value');
    const type = (value?.getAttribute('mediaType') ?? '').trim().toLowerCase();
    const signature = IMAGE_SIGNATURES.get(type);
    if (!value || !signature) return refused(`its type, ${JSON.stringify(displayText(type, 60))}, is not one this page shows (PNG, JPEG, GIF)`);
    const data = value.textContent ?? '';
    if ((value.getAttribute('representation') ?? '').trim().toUpperCase() !== 'B64' || value.hasAttribute('compression') || data.trim() === '') {
      return refused(hl7Child(value, 'reference') ? 'it is a reference to a file elsewhere, which hisp never fetches' : 'it is not embedded as uncompressed base64');
    }
    const compact = data.replace(/\s+/g, '');
    if (compact.length % 4 !== 0 || !BASE64.test(compact)) return refused('its base64 is not valid');
    if ((compact.length / 4) * 3 > this.maxImageBytes) return refused(`it is larger than ${this.maxImageBytes} octets`);
    const head = Buffer.from(compact.slice(0, 16), 'base64');
    if (!signature.every((b, i) => head[i] === b)) return refused(`its content is not ${type}`);
    return `<img src="data:${type};base64,${compact}" alt="${alt}">`;
  }

  /** Every XML ID of the document (the first element that has it), built once when first needed. */
  private idIndex(): Map<string, Element> {
    if (this.ids) return this.ids;
    const ids = new Map<string, Element>();
    const stack: Element[] = [this.doc.documentElement!];
    while (stack.length > 0) {
      const el = stack.pop()!;
      const id = el.getAttribute('ID');
      if (id && !ids.has(id)) ids.set(id, el);
      for (let n: Node | null = el.lastChild; n; n = n.previousSibling) if (n.nodeType === ELEMENT_NODE) stack.push(n as Element);
    }
    this.ids = ids;
    return ids;
  }
}

/** The parts of a table (caption, col, colgroup, thead, tbody, tfoot, stray tr), looking through elements that are not. */
function collectTableParts(el: Element, parts: Element[]): void {
  for (let n: Node | null = el.firstChild; n; n = n.nextSibling) {
    if (n.nodeType !== ELEMENT_NODE) continue;
    const child = n as Element;
    if (child.namespaceURI === HL7_NS && TABLE_PARTS.has(child.localName!)) parts.push(child);
    else collectTableParts(child, parts);
  }
}

/** class (own classes, then styleCode's), id and lang of an element: the attributes every NarrativeBlock element has. */
function attributes(el: Element, ownClasses: string): string {
  if (el.attributes.length === 0) return ownClasses === '' ? '' : ` class="${ownClasses}"`;
  let classes = ownClasses;
  const styleCode = el.getAttribute('styleCode');
  if (styleCode) {
    for (const code of styleCode.split(/\s+/)) {
      const cls = STYLE_CLASSES.get(code.toLowerCase());
      if (cls !== undefined) classes = classes === '' ? cls : `${classes} ${cls}`;
    }
  }
  let s = classes === '' ? '' : ` class="${classes}"`;
  const id = el.getAttribute('ID');
  if (id && ID_SHAPE.test(id)) s += ` id="cda-${id}"`;
  return s + langAttribute(el);
}

function langAttribute(el: Element): string {
  const language = el.getAttribute('language');
  return language && LANG_SHAPE.test(language) ? ` lang="${language}"` : '';
}

function alignClasses(el: Element): string {
  if (el.attributes.length === 0) return '';
  const align = ALIGN_CLASSES.get(el.getAttribute('align') ?? '');
  const valign = VALIGN_CLASSES.get(el.getAttribute('valign') ?? '');
  return align && valign ? `${align} ${valign}` : (align ?? valign ?? '');
}

/** colspan, rowspan, scope and headers of th and td (NarrativeBlock.xsd), each checked or dropped. */
function cellAttributes(el: Element): string {
  if (el.attributes.length === 0) return '';
  let s = spanAttribute(el, 'colspan', COLSPAN_MAX) + spanAttribute(el, 'rowspan', ROWSPAN_MAX);
  const scope = el.getAttribute('scope');
  if (scope && SCOPES.has(scope)) s += ` scope="${scope}"`;
  const headers = (el.getAttribute('headers') ?? '').split(/\s+/).filter((h) => ID_SHAPE.test(h)).slice(0, 32);
  if (headers.length > 0) s += ` headers="${headers.map((h) => `cda-${h}`).join(' ')}"`;
  return s;
}

/** A span-like count (1 by default in the schema): digits only, clamped to HTML's maximum; absent or 1 → nothing. */
function spanAttribute(el: Element, name: string, max: number): string {
  const raw = el.getAttribute(name);
  if (!raw || !/^\s*\d{1,9}\s*$/.test(raw)) return '';
  const n = Math.min(Math.max(Number(raw), 1), max);
  return n === 1 ? '' : ` ${name}="${n}"`;
}

/** Base64 (whitespace ignored) to octets; null when it is not base64. */
function decodeBase64(text: string): Buffer | null {
  const compact = text.replace(/\s+/g, '');
  if (compact.length % 4 !== 0 || !BASE64.test(compact)) return null;
  return Buffer.from(compact, 'base64');
}

const NEEDS_ESCAPE = /[&<>"\u202A-\u202E\u2066-\u2069]/;
const ESCAPE_ALL = /[&<>"\u202A-\u202E\u2066-\u2069]/g;
const ESCAPES: Readonly<Record<string, string>> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' };

/**
 * Text of the document as HTML text or attribute value (always double-quoted): `& < > "` escaped,
 * bidirectional controls replaced by U+FFFD (as ccda-summary.ts's BIDI_CONTROLS). Most text needs neither: one test.
 */
function escapeHtml(text: string): string {
  return NEEDS_ESCAPE.test(text) ? text.replace(ESCAPE_ALL, (c) => ESCAPES[c] ?? '\uFFFD') : text;
}
