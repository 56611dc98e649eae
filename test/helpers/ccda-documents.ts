// CDA documents for the tests of the C-CDA renderer: a builder of small well-formed documents and
// the hostile ones (each reaching for a script, an event, a style or a request), shared by the unit
// tests (gateway/documents/ccda-renderer.test.ts) and the browser test
// (test/interop/ccda-render.chromium.test.ts), which points their URLs at a loopback canary.

export const XHTML_NS = 'http://www.w3.org/1999/xhtml';

/** A 1×1 PNG (a red pixel), base64. */
export const PNG_1X1 = 'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==';

export interface CdaParts {
  /** Before the root element, after the XML declaration (processing instructions, comments). */
  prolog?: string;
  title?: string;
  /** The header between title and component (recordTarget, author, custodian); a plain one by default. */
  header?: string;
  /** Each a `<section>…</section>`, one structuredBody component each. */
  sections?: readonly string[];
  /** The body itself (`<nonXMLBody>…`), instead of sections. */
  body?: string;
  /** Attributes of the root element (namespaces). */
  rootAttributes?: string;
}

export const DEFAULT_HEADER =
  '<effectiveTime value="20240102093000-0500"/><languageCode code="en-US"/>' +
  '<recordTarget><patientRole><id root="2.16.840.1.113883.19.5" extension="12345"/><id root="2.16.840.1.113883.4.1" extension="000-00-0000"/>' +
  '<patient><name use="L"><prefix>Ms.</prefix><given>Ada</given><given>K.</given><family>Lovelace</family></name>' +
  '<administrativeGenderCode code="F" codeSystem="2.16.840.1.113883.5.1"/><birthTime value="19151210"/></patient></patientRole></recordTarget>' +
  '<author><time value="20240102"/><assignedAuthor><id root="2.16.840.1.113883.4.6" extension="999"/>' +
  '<assignedPerson><name><given>Charles</given><family>Babbage</family></name></assignedPerson>' +
  '<representedOrganization><name>Analytical Clinic</name></representedOrganization></assignedAuthor></author>' +
  '<custodian><assignedCustodian><representedCustodianOrganization><id root="2.16.840.1.113883.19.5"/><name>Engine Health</name>' +
  '</representedCustodianOrganization></assignedCustodian></custodian>';

/** A ClinicalDocument of urn:hl7-org:v3 around the given parts. */
export function cdaDocument(parts: CdaParts = {}): string {
  const body = parts.body ?? `<structuredBody>${(parts.sections ?? []).map((s) => `<component>${s}</component>`).join('')}</structuredBody>`;
  return (
    `<?xml version="1.0" encoding="UTF-8"?>\n${parts.prolog ?? ''}` +
    `<ClinicalDocument xmlns="urn:hl7-org:v3" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"${parts.rootAttributes ?? ''}>` +
    '<typeId root="2.16.840.1.113883.1.3" extension="POCD_HD000040"/>' +
    `<title>${parts.title ?? 'Test summary'}</title>${parts.header ?? DEFAULT_HEADER}<component>${body}</component></ClinicalDocument>`
  );
}

/** A section with a title and narrative (`text`), and optionally entries or subsections after it. */
export function section(text: string, title = 'A section', after = ''): string {
  return `<section><title>${title}</title><text>${text}</text>${after}</section>`;
}

/** An entry holding an ObservationMedia with ID `id` and the given value element. */
export function mediaEntry(id: string, value: string): string {
  return `<entry><observationMedia classCode="OBS" moodCode="EVN" ID="${id}"><id root="2.16.840.1.113883.19.6"/>${value}</observationMedia></entry>`;
}

export interface HostileDocument {
  name: string;
  xml: string;
}

/**
 * Documents that try every way into a page that we know of: scripts, frames, objects and SVG in the
 * narrative, event handlers, javascript:/data:/vbscript: links, style attributes and elements,
 * markup in styleCode and ID, HTML bodies, SVG and remote images, a huge table, bidirectional
 * overrides, markup in the header. `canary` is a base URL (a loopback server that counts hits in the
 * browser test); `JS` sets `window.__hispCanary`, logs and opens a dialog, so that any run shows.
 */
export function hostileCcdaDocuments(canary: string): HostileDocument[] {
  const js = `window.__hispCanary=1;console.log('HISP-CANARY');alert('HISP-CANARY');fetch('${canary}/fetch')`;
  const h = `xmlns:h="${XHTML_NS}"`;
  const svg = Buffer.from(`<svg xmlns="http://www.w3.org/2000/svg" onload="${js}"><script>${js}</script><image href="${canary}/svg-in-png"/></svg>`).toString('base64');
  const htmlBody = `<html><body onload="${js}"><script>${js}</script><img src="${canary}/nonxml-b64"></body></html>`;
  const rows = Array.from({ length: 2000 }, (_, i) => `<tr><td>${i}</td><td colspan="99999999">wide</td><td rowspan="-5">r</td><td>${'x'.repeat(20)}</td></tr>`).join('');
  return [
    {
      name: 'script elements in the narrative',
      xml: cdaDocument({
        sections: [
          section(
            `<script>${js}</script><script src="${canary}/script.js"/><h:script ${h}>${js}</h:script>` +
              `<content><script>${js}</script>after the script</content><![CDATA[</div><script>${js}</script>]]>` +
              `<paragraph><h:noscript ${h}><h:img src="${canary}/noscript"/></h:noscript>text</paragraph>`,
          ),
        ],
      }),
    },
    {
      name: 'frames, objects, forms and head elements in the narrative',
      xml: cdaDocument({
        sections: [
          section(
            `<iframe src="${canary}/iframe"/><h:iframe ${h} srcdoc="&lt;script&gt;${js}&lt;/script&gt;" src="${canary}/iframe2"/>` +
              `<object data="${canary}/object"/><embed src="${canary}/embed"/><h:img ${h} src="${canary}/img" onerror="${js}"/>` +
              `<h:link ${h} rel="stylesheet" href="${canary}/link.css"/><h:link ${h} rel="prefetch" href="${canary}/prefetch"/>` +
              `<h:meta ${h} http-equiv="refresh" content="0;url=${canary}/refresh"/><h:base ${h} href="${canary}/"/>` +
              `<h:form ${h} action="${canary}/form"><h:input type="image" src="${canary}/input"/><h:button formaction="${canary}/button">go</h:button></h:form>` +
              `<h:video ${h} poster="${canary}/poster" src="${canary}/video"/><h:audio ${h} src="${canary}/audio" autoplay="autoplay"/>`,
          ),
        ],
      }),
    },
    {
      name: 'SVG in the narrative',
      xml: cdaDocument({
        sections: [
          section(
            `<svg xmlns="http://www.w3.org/2000/svg" onload="${js}"><script>${js}</script><image href="${canary}/svg-image"/>` +
              `<foreignObject><h:iframe ${h} src="${canary}/foreign"/></foreignObject><animate onbegin="${js}" attributeName="x" dur="1s"/></svg>` +
              `<h:svg ${h}><h:script>${js}</h:script></h:svg><math><maction actiontype="statusline" xlink:href="javascript:${js}" xmlns:xlink="http://www.w3.org/1999/xlink">m</maction></math>`,
          ),
        ],
      }),
    },
    {
      name: 'event handler attributes',
      xml: cdaDocument({
        sections: [
          section(
            `<paragraph onclick="${js}" onmouseover="${js}">paragraph</paragraph>` +
              `<content ${h} onmouseover="${js}" h:onfocus="${js}" tabindex="1" autofocus="autofocus" styleCode="Bold">content</content>` +
              `<table onmouseover="${js}" border="1" background="${canary}/table-background"><tbody onload="${js}"><tr onclick="${js}"><td onmouseenter="${js}" background="${canary}/td-background">cell</td></tr></tbody></table>` +
              `<list onfocus="${js}"><item onclick="${js}">item</item></list><renderMultiMedia referencedObject="MM1" onerror="${js}"/>` +
              `<linkHtml href="#MM1" onclick="${js}">to the image</linkHtml>`,
            'Events',
            mediaEntry('MM1', `<value xsi:type="ED" mediaType="image/png" representation="B64" onload="${js}">${PNG_1X1}</value>`),
          ),
        ],
      }),
    },
    {
      name: 'javascript:, data: and vbscript: links',
      xml: cdaDocument({
        sections: [
          section(
            `<content ID="target">the target</content>` +
              `<linkHtml href="javascript:${js}">js</linkHtml><linkHtml href=" JaVaScRiPt:${js}">mixed case</linkHtml>` +
              `<linkHtml href="java&#9;script:${js}">tab</linkHtml><linkHtml href="data:text/html;base64,${Buffer.from(`<script>${js}</script>`).toString('base64')}">data b64</linkHtml>` +
              `<linkHtml href="data:text/html,&lt;script&gt;${js}&lt;/script&gt;">data</linkHtml><linkHtml href="vbscript:msgbox(1)">vbs</linkHtml>` +
              `<linkHtml href="${canary}/link">a web link</linkHtml><linkHtml href="//${canary.replace(/^https?:\/\//, '')}/protocol-relative">protocol-relative</linkHtml>` +
              `<linkHtml href="#target&quot; onclick=&quot;${js}">quote in a fragment</linkHtml><linkHtml href="file:///etc/passwd">file</linkHtml>` +
              `<linkHtml href="${canary}/prefetch" rel="prefetch" name="n">prefetch</linkHtml><linkHtml href="#target">a good link</linkHtml>`,
          ),
        ],
      }),
    },
    {
      name: 'style attributes and elements',
      xml: cdaDocument({
        sections: [
          section(
            `<content style="background:url(${canary}/style-attribute)">styled</content>` +
              `<table style="background-image:url(${canary}/table-style)"><tbody><tr><td style="background:url(${canary}/td-style)">x</td></tr></tbody></table>` +
              `<style>@import url(${canary}/import.css); body{background:url(${canary}/style-element)}</style>` +
              `<h:style ${h}>body{background:url(${canary}/xhtml-style)}</h:style>`,
          ),
        ],
      }),
    },
    {
      name: 'styleCode with quotes and spaces',
      xml: cdaDocument({
        sections: [
          section(
            `<content styleCode='Bold" style="background:url(${canary}/stylecode)" x="'>quoted</content>` +
              `<content styleCode="Bold  Italics   xFoo expression(alert(1)) url(${canary}/stylecode2)">spaced</content>` +
              `<content styleCode="&quot; onmouseover=&quot;${js}">handler</content>`,
          ),
        ],
      }),
    },
    {
      name: 'CSS and markup in ID attributes',
      xml: cdaDocument({
        sections: [
          section(
            `<content ID='x" style="background:url(${canary}/id)'>a</content><content ID="a;}body{background:url(${canary}/id-css)}">b</content>` +
              `<content ID="&lt;/style&gt;&lt;script&gt;${js}&lt;/script&gt;">c</content><footnote ID="f&quot;1">note</footnote><footnoteRef IDREF="f&quot;1"/>` +
              `<linkHtml href="#a;}body{background:url(${canary}/fragment)}">l</linkHtml>`,
          ),
        ],
      }),
    },
    {
      name: 'a nonXMLBody of text/html',
      xml: cdaDocument({
        body: `<nonXMLBody><text mediaType="text/html">&lt;html&gt;&lt;body onload="${js}"&gt;&lt;script&gt;${js}&lt;/script&gt;&lt;img src="${canary}/nonxml"&gt;&lt;/body&gt;&lt;/html&gt;</text></nonXMLBody>`,
      }),
    },
    {
      name: 'a nonXMLBody of base64 HTML',
      xml: cdaDocument({ body: `<nonXMLBody><text mediaType="text/html" representation="B64">${Buffer.from(htmlBody).toString('base64')}</text></nonXMLBody>` }),
    },
    {
      name: 'a nonXMLBody that is a reference',
      xml: cdaDocument({ body: `<nonXMLBody><text mediaType="application/pdf"><reference value="${canary}/body.pdf"/></text></nonXMLBody>` }),
    },
    {
      name: 'a nonXMLBody of text/plain holding markup',
      xml: cdaDocument({ body: `<nonXMLBody><text mediaType="text/plain">&lt;script&gt;${js}&lt;/script&gt;&lt;img src="${canary}/plain"&gt;</text></nonXMLBody>` }),
    },
    {
      name: 'SVG, remote and disguised images',
      xml: cdaDocument({
        sections: [
          section(
            '<renderMultiMedia referencedObject="SVG"/><renderMultiMedia referencedObject="DISGUISED"/><renderMultiMedia referencedObject="REMOTE"/>' +
              '<renderMultiMedia referencedObject="ROI"/><renderMultiMedia referencedObject="MISSING"/><renderMultiMedia referencedObject="TXT"/>',
            'Images',
            mediaEntry('SVG', `<value xsi:type="ED" mediaType="image/svg+xml" representation="B64">${svg}</value>`) +
              mediaEntry('DISGUISED', `<value xsi:type="ED" mediaType="image/png" representation="B64">${svg}</value>`) +
              mediaEntry('REMOTE', `<value xsi:type="ED" mediaType="image/png"><reference value="${canary}/remote.png"/></value>`) +
              `<entry><regionOfInterest ID="ROI" classCode="ROIOVL" moodCode="EVN"><id root="1.2.3"/><code code="CIRCLE"/><value value="1"/></regionOfInterest></entry>` +
              mediaEntry('TXT', `<value xsi:type="ED" mediaType="image/png">data:image/svg+xml,&lt;svg onload="${js}"/&gt;</value>`),
          ),
        ],
      }),
    },
    {
      name: 'a huge table',
      xml: cdaDocument({ sections: [section(`<table><thead><tr><th colspan="100000">h</th></tr></thead><tbody>${rows}</tbody></table>`, 'Huge')] }),
    },
    {
      name: 'unicode bidirectional overrides',
      xml: cdaDocument({
        header: DEFAULT_HEADER.replace('<given>Ada</given>', '<given>Ada\u202Eecila</given>'),
        sections: [section('Dose: \u202E01 mg\u202C daily; file \u2067txt.exe\u2069; \u202Dforced\u202C', 'Dose \u202Bembedded\u202C')],
      }),
    },
    {
      name: 'markup in the header, a remote stylesheet instruction',
      xml: cdaDocument({
        prolog: `<?xml-stylesheet type="text/xsl" href="${canary}/cda.xsl"?>\n<?xml-stylesheet type="text/css" href="${canary}/cda.css"?>\n`,
        rootAttributes: ` ${h}`,
        title: `&lt;/title&gt;&lt;script&gt;${js}&lt;/script&gt;<h:script>${js}</h:script>`,
        header: DEFAULT_HEADER.replace('<given>Ada</given>', `<given>&lt;img src=${canary}/name onerror=${js}&gt;</given>`).replace(
          '<languageCode code="en-US"/>',
          `<languageCode code='en" onload="window.__hispCanary=1'/>`,
        ),
        sections: [section('plain', `&lt;style&gt;body{background:url(${canary}/title-style)}&lt;/style&gt;`)],
      }),
    },
  ];
}
