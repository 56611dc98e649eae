// An oracle for the pages of gateway/documents/ccda-renderer.ts, independent of its code: a strict
// reader of the HTML subset the renderer promises (every `<` starts a tag of the form
// `<name attr="value">`, text carries no bare `<`, `>` or `&`, every element is closed in order),
// and a check of every element and attribute against the renderer's published vocabulary and
// against rules of its own (no on* handler, no style, links only within the page, images only
// data: PNG/JPEG/GIF). Anything outside that grammar is reported, never guessed: browsers read such
// a page exactly as this reader does (test/interop/ccda-render.chromium.test.ts checks it in one).
import { RENDERED_CCDA_CSP, RENDERED_CLASSES, RENDERED_HTML_VOCABULARY } from '../../gateway/documents/ccda-renderer.js';

export interface HtmlTag {
  name: string;
  attributes: ReadonlyMap<string, string>;
  /** Names of the open elements around it, outermost first. */
  ancestors: readonly string[];
}

const DOCTYPE = '<!DOCTYPE html>\n';
const VOID = new Set(['meta', 'br', 'col', 'img']);
const TAG = /<(\/?)([a-z][a-z0-9]*)((?:\s+[a-z-]+="[^"<>]*")*)\s*>/y;
const ATTRIBUTE = /\s+([a-z-]+)="([^"<>]*)"/g;
const BARE_AMPERSAND = /&(?!(?:amp|lt|gt|quot);)/;
const HTML_ID = /^cda-[A-Za-z0-9_.:-]+$/;

/** The tags of a rendered page and every way it departs from the promised grammar and vocabulary. */
export function readRenderedHtml(html: string): { tags: HtmlTag[]; violations: string[] } {
  const violations: string[] = [];
  const tags: HtmlTag[] = [];
  if (!html.startsWith(DOCTYPE)) violations.push('the page does not start with <!DOCTYPE html>');
  const stack: string[] = [];
  let pos = DOCTYPE.length;
  while (pos < html.length) {
    const lt = html.indexOf('<', pos);
    const text = html.slice(pos, lt < 0 ? html.length : lt);
    if (text.includes('>')) violations.push(`a bare > in text at ${pos}: ${JSON.stringify(text.slice(0, 60))}`);
    if (BARE_AMPERSAND.test(text)) violations.push(`a bare & in text at ${pos}: ${JSON.stringify(text.slice(0, 60))}`);
    if (lt < 0) break;
    TAG.lastIndex = lt;
    const m = TAG.exec(html);
    if (!m) {
      violations.push(`not a tag of the grammar at ${lt}: ${JSON.stringify(html.slice(lt, lt + 80))}`);
      break;
    }
    pos = TAG.lastIndex;
    const [, close, name, attributeText] = m as unknown as [string, string, string, string];
    if (close) {
      const open = stack.pop();
      if (open !== name) violations.push(`</${name}> closes <${open ?? 'nothing'}>`);
      continue;
    }
    const attributes = new Map<string, string>();
    for (const a of attributeText.matchAll(ATTRIBUTE)) {
      if (attributes.has(a[1]!)) violations.push(`<${name}> repeats ${a[1]}`);
      attributes.set(a[1]!, a[2]!);
    }
    const tag: HtmlTag = { name, attributes, ancestors: [...stack] };
    tags.push(tag);
    violations.push(...tagViolations(tag));
    if (!VOID.has(name)) stack.push(name);
  }
  if (stack.length > 0) violations.push(`unclosed at the end: ${stack.join(' > ')}`);
  const styles = tags.filter((t) => t.name === 'style').length;
  if (styles !== 1) violations.push(`${styles} <style> elements (the page has exactly its own)`);
  return { tags, violations };
}

/** The violations of a page ([] when it keeps every promise). */
export function vocabularyViolations(html: string): string[] {
  return readRenderedHtml(html).violations;
}

/** What one element breaks: the vocabulary table and the page's rules, each checked on its own. */
export function tagViolations(tag: HtmlTag): string[] {
  const v: string[] = [];
  const { name, attributes, ancestors } = tag;
  const allowed = RENDERED_HTML_VOCABULARY[name];
  if (!Object.hasOwn(RENDERED_HTML_VOCABULARY, name) || !allowed) return [`<${name}> is not in the vocabulary`];
  const inHead = ancestors.includes('head');
  if ((name === 'meta' || name === 'style' || name === 'title') !== inHead) v.push(`<${name}> ${inHead ? 'in' : 'outside'} the head`);
  for (const [attribute, value] of attributes) {
    if (!allowed.includes(attribute)) v.push(`<${name}> carries ${attribute}`);
    if (/^on/i.test(attribute) || attribute === 'style' || attribute === 'srcdoc' || attribute === 'formaction') v.push(`<${name}> carries the active attribute ${attribute}`);
    const bad = (why: string) => v.push(`<${name} ${attribute}="${value.slice(0, 80)}">: ${why}`);
    switch (attribute) {
      case 'href':
        if (!/^#cda-[A-Za-z0-9_.:-]+$/.test(value)) bad('a link leaves the page');
        break;
      case 'src':
        if (!/^data:image\/(png|jpeg|gif);base64,[A-Za-z0-9+/]+=*$/.test(value)) bad('an image that is not a data: PNG, JPEG or GIF');
        break;
      case 'class':
        for (const c of value.split(' ')) if (!RENDERED_CLASSES.has(c)) bad(`class ${JSON.stringify(c)} is not the page's`);
        break;
      case 'id':
        if (!HTML_ID.test(value)) bad('an id outside the cda- names');
        break;
      case 'headers':
        for (const h of value.split(' ')) if (!HTML_ID.test(h)) bad('headers name an id outside the cda- names');
        break;
      case 'lang':
        if (!/^[A-Za-z]{1,8}(-[A-Za-z0-9]{1,8})*$/.test(value)) bad('not a language tag');
        break;
      case 'colspan':
      case 'rowspan':
      case 'span':
      case 'value':
        if (!/^[1-9]\d{0,4}$/.test(value) || (attribute === 'colspan' && Number(value) > 1000)) bad('not a bounded count');
        break;
      case 'scope':
        if (!['row', 'col', 'rowgroup', 'colgroup'].includes(value)) bad('not a scope');
        break;
      case 'http-equiv':
        if (value !== 'Content-Security-Policy') bad('only the policy is a meta http-equiv');
        break;
      case 'content':
        if (attributes.get('http-equiv') === 'Content-Security-Policy' && value !== RENDERED_CCDA_CSP) bad('not the published policy');
        break;
    }
  }
  return v;
}

/** `<section class="cda-section">` elements of a page. */
export function renderedSectionCount(html: string): number {
  return readRenderedHtml(html).tags.filter((t) => t.name === 'section').length;
}
