import { createHash } from 'node:crypto';
import { readdirSync } from 'node:fs';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { hispError } from '../../test/helpers/hisp-error.js';
import { cdaDocument, hostileCcdaDocuments, mediaEntry, PNG_1X1, section, XHTML_NS } from '../../test/helpers/ccda-documents.js';
import { readRenderedHtml, renderedSectionCount, vocabularyViolations } from '../../test/helpers/rendered-html.js';
import { vectorGroup } from '../../test/helpers/vectors.js';
import { RENDERED_CCDA_CSP, renderCcda } from './ccda-renderer.js';
import { HL7_NS } from './hl7-dom.js';
import { readXml } from './xml-reader.js';

/** The narrative of the first section of a document holding `text` (between `<div class="cda-text">` and its end). */
function narrative(text: string, after = ''): string {
  const html = render(cdaDocument({ sections: [section(text, 'A section', after)] }));
  const start = html.indexOf('<div class="cda-text">') + '<div class="cda-text">'.length;
  return html.slice(start, html.indexOf('</div>\n', start));
}

/** Renders, and fails the test when the page breaks its vocabulary. */
function render(xml: string, options: Parameters<typeof renderCcda>[1] = {}): string {
  const { html } = renderCcda(xml, options);
  expect(vocabularyViolations(html)).toEqual([]);
  return html;
}

/** Attribute values of every tag in the body of a page (the head holds only the page's own). */
function attributeValues(html: string): string[] {
  return readRenderedHtml(html)
    .tags.filter((t) => t.ancestors.includes('body'))
    .flatMap((t) => [...t.attributes.values()]);
}

describe('renderCcda: the page', () => {
  it('carries its policy in a meta element of its head, before any content, and only its own stylesheet', () => {
    const html = render(cdaDocument({ sections: [section('hello')] }));
    const head = html.slice(0, html.indexOf('</head>'));
    expect(head).toContain(`<meta http-equiv="Content-Security-Policy" content="${RENDERED_CCDA_CSP}">`);
    expect(head.indexOf('Content-Security-Policy')).toBeLessThan(head.indexOf('<title>'));
    expect(RENDERED_CCDA_CSP).toMatch(/default-src 'none'/);
    expect(RENDERED_CCDA_CSP).toMatch(/img-src data:(;|$)/);
    expect(RENDERED_CCDA_CSP).not.toMatch(/unsafe-inline|unsafe-eval|\*/);
    const style = /<style>([^<]*)<\/style>/.exec(html)![1]!;
    expect(RENDERED_CCDA_CSP).toContain(`'sha256-${createHash('sha256').update(style).digest('base64')}'`);
  });

  it('shows a header of patient, title, author, organization and date, and every section in order, nested ones too', () => {
    const html = render(
      cdaDocument({
        title: 'Discharge summary',
        sections: [
          section('first text', 'First'),
          section('second text', 'Second', '<component><section><title>Inner</title><text>inner text</text><component><section><title>Innermost</title></section></component></section></component>'),
        ],
      }),
    );
    expect(html).toContain('<title>Discharge summary</title>');
    expect(html).toContain('<h1>Discharge summary</h1>');
    expect(html).toContain('<dt>Patient</dt><dd>Ms. Ada K. Lovelace</dd>');
    expect(html).toContain('<dt>Born</dt><dd>1915-12-10</dd>');
    expect(html).toContain('<dt>Patient IDs</dt><dd>12345 (2.16.840.1.113883.19.5)<br>000-00-0000 (2.16.840.1.113883.4.1)</dd>');
    expect(html).toContain('<dt>Author</dt><dd>Charles Babbage</dd>');
    expect(html).toContain('<dt>Organization</dt><dd>Engine Health</dd>');
    expect(html).toContain('<dt>Date</dt><dd>2024-01-02T09:30:00-05:00</dd>');
    const order = ['First', 'first text', 'Second', 'second text', 'Inner', 'inner text', 'Innermost'].map((t) => html.indexOf(`>${t}<`));
    expect(order.every((at, i) => at > 0 && (i === 0 || at > order[i - 1]!))).toBe(true);
    expect(html).toContain('<h3 class="cda-title">Inner</h3>');
    expect(html).toContain('<h4 class="cda-title">Innermost</h4>');
    expect(renderedSectionCount(html)).toBe(4);
  });

  it('does not show entries, and names an untitled section by its code', () => {
    const html = render(
      cdaDocument({
        sections: [
          '<section><code code="10160-0" displayName="History of medication use"/><text>meds</text>' +
            '<entry><observation classCode="OBS" moodCode="EVN"><text>entry text</text><value xsi:type="ST">SECRET-ENTRY-VALUE</value></observation></entry></section>',
          '<section><text>no code either</text></section>',
        ],
      }),
    );
    expect(html).not.toContain('SECRET-ENTRY-VALUE');
    expect(html).toContain('<h2 class="cda-title cda-untitled">History of medication use</h2>');
    expect(html).toContain('<h2 class="cda-title cda-untitled">Untitled section</h2>');
  });

  it('returns the header summary beside the page', () => {
    const { summary } = renderCcda(cdaDocument({ sections: [section('x')] }));
    expect(summary).toEqual({
      title: 'Test summary',
      patient: {
        name: 'Ms. Ada K. Lovelace',
        birthTime: '1915-12-10',
        gender: 'Female',
        ids: [
          { root: '2.16.840.1.113883.19.5', extension: '12345' },
          { root: '2.16.840.1.113883.4.1', extension: '000-00-0000' },
        ],
      },
      author: 'Charles Babbage',
      organization: 'Engine Health',
      date: '2024-01-02T09:30:00-05:00',
    });
  });
});

describe('renderCcda: NarrativeBlock to HTML', () => {
  it('maps a table: caption first, colgroup and col, head, body, foot, cell attributes checked', () => {
    const html = narrative(
      '<table ID="t1" border="1" cellpadding="9" width="100%" summary="s"><tbody><tr><td>b1</td></tr></tbody><caption>Vitals</caption>' +
        '<col span="2" align="right"/><colgroup span="3" valign="top"><col/></colgroup><thead><tr><th ID="h1" scope="col" align="center" valign="middle">Name</th></tr></thead>' +
        '<tfoot><tr><td>foot</td></tr></tfoot><tbody styleCode="Botrule"><tr><td headers="h1 bad&lt;id" colspan="2" rowspan="3" abbr="x" axis="y" char="." charoff="2">v</td></tr></tbody></table>',
    );
    expect(html).toBe(
      '<div class="cda-table"><table id="cda-t1"><caption>Vitals</caption><colgroup><col class="cda-al-right" span="2"></colgroup>' +
        '<colgroup class="cda-va-top" span="3"><col></colgroup><tbody><tr><td>b1</td></tr></tbody>' +
        '<thead><tr><th class="cda-al-center cda-va-middle" id="cda-h1" scope="col">Name</th></tr></thead><tfoot><tr><td>foot</td></tr></tfoot>' +
        '<tbody class="cda-botrule"><tr><td colspan="2" rowspan="3" headers="cda-h1">v</td></tr></tbody></table></div>',
    );
  });

  it('gives rows straight under a table a tbody, and clamps spans to what HTML allows', () => {
    expect(narrative('<table><tr><td colspan="99999999" rowspan="0">a</td><td colspan="-2" rowspan="x">b</td></tr></table>')).toBe(
      '<div class="cda-table"><table><tbody><tr><td colspan="1000">a</td><td>b</td></tr></tbody></table></div>',
    );
  });

  it('maps lists: unordered by default, ordered by listType, captions first, list styles as classes, nested', () => {
    expect(
      narrative(
        '<list><item>a</item><caption>Problems</caption><item><caption>Item</caption>b<list listType="ordered" styleCode="LittleRoman"><item>i</item></list></item></list>' +
          '<list listType="ordered" styleCode="BigAlpha"><item>A</item></list><list styleCode="Square"><item>s</item></list>',
      ),
    ).toBe(
      '<div class="cda-caption">Problems</div><ul><li>a</li><li><span class="cda-caption">Item</span>b<ol class="cda-littleroman"><li>i</li></ol></li></ul>' +
        '<ol class="cda-bigalpha"><li>A</li></ol><ul class="cda-square"><li>s</li></ul>',
    );
  });

  it('maps paragraphs with their caption, and content with styleCode to classes (additive, unknown codes dropped)', () => {
    expect(
      narrative(
        '<paragraph><caption>Note</caption>See <content styleCode="Bold">bold <content styleCode="Italics underline xLocal">both</content></content>.</paragraph>' +
          '<paragraph styleCode="Emphasis" language="es-MX">hola</paragraph>',
      ),
    ).toBe(
      '<p><span class="cda-caption">Note</span>See <span class="cda-bold">bold <span class="cda-italics cda-underline">both</span></span>.</p>' +
        '<p class="cda-emphasis" lang="es-MX">hola</p>',
    );
  });

  it('shows revised content as inserted or deleted text (CDA R2 §4.3.5.1)', () => {
    expect(narrative('<content revised="insert">new</content><content revised="delete">old</content>')).toBe('<ins>new</ins><del>old</del>');
  });

  it('maps sub, sup and br', () => {
    expect(narrative('H<sub>2</sub>O, m<sup>2</sup><br/>next')).toBe('H<sub>2</sub>O, m<sup>2</sup><br>next');
  });

  it('numbers footnotes, lists them after the section text, and resolves footnoteRef, forward ones too', () => {
    const html = render(
      cdaDocument({
        sections: [
          section('Early ref<footnoteRef IDREF="fn2"/>. Text<footnote ID="fn1">first note</footnote> and<footnote ID="fn2">second <content styleCode="Bold">note</content></footnote>. Again<footnoteRef IDREF="fn1"/>, unknown<footnoteRef IDREF="nope"/>'),
          section('Other section<footnoteRef IDREF="fn1"/><footnote>third</footnote>'),
        ],
      }),
    );
    expect(html).toContain(
      '<div class="cda-text">Early ref<sup class="cda-fnmark"><a href="#cda-fn-2">2</a></sup>. Text<sup class="cda-fnmark" id="cda-fn1"><a href="#cda-fn-1">1</a></sup> and' +
        '<sup class="cda-fnmark" id="cda-fn2"><a href="#cda-fn-2">2</a></sup>. Again<sup class="cda-fnmark"><a href="#cda-fn-1">1</a></sup>, unknown<sup class="cda-fnmark">[?]</sup></div>\n' +
        '<ol class="cda-footnotes"><li id="cda-fn-1" value="1">first note</li><li id="cda-fn-2" value="2">second <span class="cda-bold">note</span></li></ol>',
    );
    expect(html).toContain('<ol class="cda-footnotes"><li id="cda-fn-3" value="3">third</li></ol>');
  });

  it('keeps a link to a place in the document, shows a web link as text, drops any other target', () => {
    expect(
      narrative(
        '<content ID="a1">Asthma</content> see <linkHtml href="#a1">above</linkHtml>, <linkHtml href="https://example.org/leaflet?a=1&amp;b=2" title="t">leaflet</linkHtml>, ' +
          '<linkHtml href="javascript:alert(1)">js</linkHtml>, <linkHtml href="mailto:a@b.c">mail</linkHtml><linkHtml href="#x">n<footnote>in a link</footnote></linkHtml>',
      ),
    ).toBe(
      '<span id="cda-a1">Asthma</span> see <a href="#cda-a1">above</a>, <span class="cda-link">leaflet</span> <span class="cda-link-target">&lt;https://example.org/leaflet?a=1&amp;b=2&gt;</span>, ' +
        '<span class="cda-link">js</span>, <span class="cda-link">mail</span><a href="#cda-x">n<sup class="cda-fnmark">1</sup></a>',
    );
  });

  it('shows an embedded PNG of an ObservationMedia as a data: image, with its caption', () => {
    const html = narrative(
      'Rash<renderMultiMedia referencedObject="MM1"><caption>Left hand</caption></renderMultiMedia>',
      mediaEntry('MM1', `<value xsi:type="ED" mediaType="image/png" representation="B64">\n${PNG_1X1.slice(0, 40)}\n  ${PNG_1X1.slice(40)}\n</value>`),
    );
    expect(html).toBe(`Rash<span class="cda-media"><img src="data:image/png;base64,${PNG_1X1}" alt="Left hand"><span class="cda-caption">Left hand</span></span>`);
  });

  it('refuses SVG, remote, disguised, unknown and oversized images with a note', () => {
    const svg = Buffer.from('<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>').toString('base64');
    const media = (id: string, type: string, data: string) => mediaEntry(id, `<value xsi:type="ED" mediaType="${type}" representation="B64">${data}</value>`);
    const html = narrative(
      '<renderMultiMedia referencedObject="SVG"/><renderMultiMedia referencedObject="FAKE"/><renderMultiMedia referencedObject="REMOTE"/><renderMultiMedia referencedObject="GONE"/>' +
        '<renderMultiMedia referencedObject="BAD64"/>',
      media('SVG', 'image/svg+xml', svg) + media('FAKE', 'image/png', svg) + media('BAD64', 'image/gif', 'R0lG*') +
        mediaEntry('REMOTE', '<value xsi:type="ED" mediaType="image/jpeg"><reference value="https://example.org/x.jpg"/></value>'),
    );
    expect(html).not.toContain('<img');
    expect(html).toContain('[image not shown: its type, &quot;image/svg+xml&quot;, is not one this page shows (PNG, JPEG, GIF)]');
    expect(html).toContain('[image not shown: its content is not image/png]');
    expect(html).toContain('[image not shown: it is a reference to a file elsewhere, which hisp never fetches]');
    expect(html).toContain('[image not shown: the document has no object &quot;GONE&quot;]');
    expect(html).toContain('[image not shown: its base64 is not valid]');
    const big = cdaDocument({ sections: [section('<renderMultiMedia referencedObject="MM1"/>', 'x', mediaEntry('MM1', `<value mediaType="image/png" representation="B64">${PNG_1X1}</value>`))] });
    expect(render(big)).toContain('<img');
    expect(render(big, { maxImageBytes: 32 })).toContain('[image not shown: it is larger than 32 octets]');
  });

  it('keeps the text of elements that are not NarrativeBlock (or not in place), never their markup', () => {
    expect(narrative(`<h:b xmlns:h="${XHTML_NS}">bold?</h:b><sub><table><tbody><tr><td>in sub</td></tr></tbody></table></sub><list>stray text<item>i</item></list>`)).toBe(
      'bold?<sub>in sub</sub><ul><li>i</li></ul>',
    );
  });

  it('is not confused by element names that are properties of an object', () => {
    expect(narrative('<constructor>a</constructor><__proto__>b</__proto__><toString>c</toString><hasOwnProperty><paragraph>d</paragraph></hasOwnProperty>')).toBe('abc<p>d</p>');
  });
});

describe('renderCcda: bodies that are not XML', () => {
  it('shows a text/plain body as escaped text, base64 or not', () => {
    const plain = render(cdaDocument({ body: '<nonXMLBody><text mediaType="text/plain">Line 1 &lt;b&gt;\nLine 2</text></nonXMLBody>' }));
    expect(plain).toContain('<pre class="cda-plain">Line 1 &lt;b&gt;\nLine 2</pre>');
    const b64 = render(cdaDocument({ body: `<nonXMLBody><text mediaType="text/plain" representation="B64">${Buffer.from('Résumé <i>').toString('base64')}</text></nonXMLBody>` }));
    expect(b64).toContain('<pre class="cda-plain">Résumé &lt;i&gt;</pre>');
    expect(render(cdaDocument({ body: '<nonXMLBody><text representation="B64">!!!</text></nonXMLBody>' }))).toContain('not valid base64');
  });

  it('never renders an HTML body, nor any other type: a note says it is not shown', () => {
    for (const type of ['text/html', 'application/xhtml+xml', 'application/pdf', 'image/svg+xml', 'TEXT/HTML; charset=utf-8']) {
      const html = render(cdaDocument({ body: `<nonXMLBody><text mediaType="${type}">&lt;b onclick="x"&gt;bold&lt;/b&gt;</text></nonXMLBody>` }));
      expect(html).toContain('it is not shown on this page');
      expect(html.slice(html.indexOf('<body>'))).not.toContain('bold');
    }
  });
});

describe('renderCcda: refusals', () => {
  it('refuses what is not a ClinicalDocument of urn:hl7-org:v3: HISP_CDA_INVALID', () => {
    for (const xml of ['<ContinuityOfCareRecord xmlns="urn:astm-org:CCR"/>', '<ClinicalDocument/>', '<ClinicalDocument xmlns="urn:hl7-org:v2"/>', '<x:ClinicalDocument xmlns:x="urn:other"/>']) {
      const err = hispError(() => renderCcda(xml));
      expect(err.code).toBe('HISP_CDA_INVALID');
      expect(err.message).toMatch(/not ClinicalDocument in urn:hl7-org:v3/);
    }
  });

  it('refuses a ClinicalDocument without a body: HISP_CDA_INVALID', () => {
    const err = hispError(() => renderCcda(`<ClinicalDocument xmlns="${HL7_NS}"><title>t</title><component/></ClinicalDocument>`));
    expect(err.code).toBe('HISP_CDA_INVALID');
    expect(err.message).toMatch(/no body/);
  });

  it('passes on the reader refusals: a DTD, too many octets (maxBytes)', () => {
    expect(hispError(() => renderCcda(`<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>${cdaDocument().replace(/^<\?xml[^>]*>/, '')}`)).code).toBe('HISP_XML_MALFORMED');
    const doc = cdaDocument({ sections: [section('x'.repeat(5000))] });
    expect(render(doc)).toContain('x'.repeat(5000));
    expect(hispError(() => renderCcda(doc, { maxBytes: 4096 })).message).toMatch(/octets/);
  });
});

describe('renderCcda: hostile documents', () => {
  const canary = 'http://127.0.0.1:9';
  const documents = hostileCcdaDocuments(canary);

  it.each(documents.map((d) => [d.name, d.xml] as const))('%s: only the vocabulary, no attribute reaching out or running anything', (_name, xml) => {
    const html = render(xml);
    for (const value of attributeValues(html)) {
      expect(value).not.toContain('127.0.0.1');
      expect(value).not.toMatch(/script|alert|expression|url\(/i);
    }
    expect(html).not.toMatch(/<(script|iframe|object|embed|svg|math|link|base|form|input|video|audio|noscript)\b/i);
    // inside tags (the text of the page shows hostile markup, escaped)
    expect(html).not.toMatch(/<[^>]*\son[a-z]+=/i);
    expect(html).not.toMatch(/<[^>]*\sstyle=/i);
    expect(html).not.toContain('xml-stylesheet');
  });

  it('shows the text of hostile markup as text', () => {
    const html = render(documents.find((d) => d.name === 'script elements in the narrative')!.xml);
    expect(html).toContain('after the script');
    expect(html).toContain('&lt;/div&gt;&lt;script&gt;window.__hispCanary=1');
    const header = render(documents.find((d) => d.name.startsWith('markup in the header'))!.xml);
    expect(header).toContain('<h1>&lt;/title&gt;&lt;script&gt;');
    expect(header).toContain('<dd>Ms. &lt;img src=http://127.0.0.1:9/name onerror=');
    expect(header).toContain('<html lang="en">');
  });

  it('replaces bidirectional overrides, embeddings and isolates (never reorders a dose)', () => {
    const html = render(documents.find((d) => d.name === 'unicode bidirectional overrides')!.xml);
    expect(html).not.toMatch(/[\u202A-\u202E\u2066-\u2069]/);
    expect(html).toContain('Dose: \uFFFD01 mg\uFFFD daily');
    expect(html).toContain('<dd>Ms. Ada\uFFFDecila K. Lovelace</dd>');
  });

  it('renders a huge table whole, its spans clamped', () => {
    const html = render(documents.find((d) => d.name === 'a huge table')!.xml);
    expect(html.match(/<tr>/g)).toHaveLength(2001);
    expect(html).toContain('<th colspan="1000">h</th>');
    expect(html).not.toMatch(/colspan="(99999999|100000)"|rowspan="-5"/);
  });
});

describe('renderCcda: the ETT samples', () => {
  const ett = vectorGroup('ett', ['cda-samples/CCDA_Ambulatory.xml']);
  const files = ett.present ? readdirSync(ett.path('cda-samples')).filter((f) => f.endsWith('.xml')) : [];

  it.skipIf(!ett.present)(ett.title('renders every CDA sample with as many sections as the document has, and refuses the CCR ones'), () => {
    expect(files.length).toBeGreaterThanOrEqual(8);
    let rendered = 0;
    for (const file of files) {
      const bytes = ett.read(`cda-samples/${file}`);
      const root = readXml(bytes).documentElement!;
      if (root.localName !== 'ClinicalDocument') {
        expect(hispError(() => renderCcda(bytes)).code, file).toBe('HISP_CDA_INVALID');
        continue;
      }
      const { html, summary } = renderCcda(bytes);
      expect(vocabularyViolations(html), file).toEqual([]);
      expect(renderedSectionCount(html), file).toBe(readXml(bytes).getElementsByTagNameNS(HL7_NS, 'section').length);
      expect(summary.patient.name, file).not.toBeNull();
      expect(summary.title, file).not.toBeNull();
      rendered++;
    }
    expect(rendered).toBe(6);
  });

  it.skipIf(!ett.present)(ett.title('shows the narrative of CCDA_Ambulatory: its allergy table and problem list'), () => {
    const { html, summary } = renderCcda(ett.read('cda-samples/CCDA_Ambulatory.xml'));
    expect(summary).toMatchObject({ title: 'Get Well Clinic: Health Summary', patient: { name: 'Isabella Isa Jones', birthTime: '1947-05-01', gender: 'Female' }, author: 'Henry Seven', organization: 'Get Well Clinic', date: '2012-08-06' });
    expect(html).toContain('<h2 class="cda-title">ALLERGIES, ADVERSE REACTIONS, ALERTS</h2>');
    expect(html).toMatch(/<th>Substance<\/th><th>Reaction<\/th><th>Severity<\/th><th>Status<\/th>/);
    expect(html).toContain('<span id="cda-product1">Penicillin G benzathine</span>');
  });
});

describe('renderCcda: properties', () => {
  // Random NarrativeBlock-like trees: NarrativeBlock names in and out of place, foreign and HTML
  // names, XHTML-namespaced ones, the schema's attributes and hostile ones, hostile values and text.
  const NAMES = ['content', 'linkHtml', 'sub', 'sup', 'br', 'footnote', 'footnoteRef', 'renderMultiMedia', 'paragraph', 'list', 'item', 'caption', 'table',
    'thead', 'tbody', 'tfoot', 'tr', 'th', 'td', 'col', 'colgroup', 'text', 'title', 'section', 'script', 'iframe', 'style', 'img', 'a', 'svg', 'object', 'meta', 'constructor'];
  const ATTRIBUTES = ['ID', 'IDREF', 'language', 'styleCode', 'listType', 'revised', 'href', 'referencedObject', 'colspan', 'rowspan', 'span', 'scope', 'headers',
    'align', 'valign', 'onclick', 'onload', 'style', 'src', 'srcdoc', 'class', 'id', 'lang', 'h:onmouseover', 'h:style'];
  const VALUES = ['Bold', 'Bold Italics', 'x" onclick="alert(1)', 'javascript:alert(1)', '#a', '#a b', 'MM1', 'a', 'fn', 'http://127.0.0.1:9/x', 'data:text/html,<script>alert(1)</script>',
    'ordered', 'insert', 'delete', '99999999', '-1', '2', 'col', 'left', "<&>\"'", '\u202Ebidi', 'url(http://127.0.0.1:9/c)', 'en-US', ''];
  const TEXTS = ['text', ' ', '<script>alert(1)</script>', '&', '"quoted"', '\u202E10', 'é', ']]>', '\n'];
  const xmlEscape = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
  const { tree } = fc.letrec<{ tree: string; element: string }>((tie) => ({
    tree: fc.oneof({ depthSize: 'small', withCrossShrink: true }, fc.constantFrom(...TEXTS).map(xmlEscape), tie('element')),
    element: fc
      .record({
        prefix: fc.constantFrom('', '', '', 'h:'),
        name: fc.constantFrom(...NAMES),
        attributes: fc.uniqueArray(fc.tuple(fc.constantFrom(...ATTRIBUTES), fc.constantFrom(...VALUES)), { maxLength: 4, selector: ([a]) => a }),
        children: fc.array(tie('tree'), { maxLength: 5 }),
      })
      .map(({ prefix, name, attributes, children }) => `<${prefix}${name}${attributes.map(([a, v]) => ` ${a}="${xmlEscape(v)}"`).join('')}>${children.join('')}</${prefix}${name}>`),
  }));

  it('any NarrativeBlock-like tree renders, and the page holds nothing outside the vocabulary', () => {
    fc.assert(
      fc.property(fc.array(tree, { maxLength: 4 }), tree, (texts, title) => {
        const xml = cdaDocument({
          rootAttributes: ` xmlns:h="${XHTML_NS}"`,
          title: title.replace(/<\/?(h:)?title[^>]*>/g, ''),
          sections: texts.map((t, i) => section(t, `S${i}`, i === 0 ? mediaEntry('MM1', `<value mediaType="image/png" representation="B64">${PNG_1X1}</value>`) : '')),
        });
        const { html } = renderCcda(xml);
        expect(vocabularyViolations(html)).toEqual([]);
        for (const value of attributeValues(html)) expect(value).not.toMatch(/127\.0\.0\.1|javascript|script|url\(/);
        expect(renderedSectionCount(html)).toBe(texts.length);
      }),
      { numRuns: 400 },
    );
  });

  it('any bytes: a page, or HISP_XML_MALFORMED or HISP_CDA_INVALID, never another error', () => {
    const pieces = fc.constantFrom(`<ClinicalDocument xmlns="${HL7_NS}">`, '</ClinicalDocument>', '<component>', '</component>', '<structuredBody>', '</structuredBody>',
      '<nonXMLBody>', '<text mediaType="text/plain" representation="B64">', '</text>', '<section>', '</section>', '<title>', '</title>', '<renderMultiMedia referencedObject="x"/>',
      '<![CDATA[', ']]>', '&amp;', '&#x202E;', '<', '>', 'text', '\u0000');
    fc.assert(
      fc.property(fc.oneof(fc.array(pieces, { maxLength: 30 }).map((p) => p.join('')), fc.uint8Array({ maxLength: 200 }).map((b) => Buffer.from(b))), (input) => {
        try {
          expect(vocabularyViolations(renderCcda(input).html)).toEqual([]);
        } catch (err) {
          expect(err).toMatchObject({ name: 'HispError' });
          expect(['HISP_XML_MALFORMED', 'HISP_CDA_INVALID']).toContain((err as { code: string }).code);
        }
      }),
      { numRuns: 1500 },
    );
  });
});
