// Rendered C-CDA pages in a real browser (Debian's Chromium through playwright-core; never a
// downloaded one): the hostile documents of test/helpers/ccda-documents.ts, opened as a saved
// file (file://, where only the page's own <meta> policy holds) and served over loopback HTTP with
// the policy as a header (as the API serves them). No script may run (a canary sets a window
// property, logs to the console and opens a dialog), no request may leave the page (the browser's
// request events, and a loopback canary server every hostile URL points at, which must count no
// hit), and the DOM the browser built must hold only the renderer's vocabulary.
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { chromium, type Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RENDERED_CCDA_CSP, renderCcda } from '../../gateway/documents/ccda-renderer.js';
import { cdaDocument, hostileCcdaDocuments, mediaEntry, PNG_1X1, section } from '../helpers/ccda-documents.js';
import { tagViolations } from '../helpers/rendered-html.js';
import { requirePeer } from '../helpers/require-peer.js';
import { vectorGroup } from '../helpers/vectors.js';

const CHROMIUM = '/usr/bin/chromium';
const gate = requirePeer(existsSync(CHROMIUM) ? undefined : `${CHROMIUM} is not installed (Debian: apt-get install chromium)`);
const ett = vectorGroup('ett', ['cda-samples/CCDA_Ambulatory.xml']);
const ARTIFACTS = resolve(import.meta.dirname, '..', 'artifacts');

/** What a visit saw. */
interface Visit {
  requests: string[];
  console: string[];
  dialogs: string[];
  errors: string[];
  canary: string;
  href: string;
  violations: string[];
  /** Computed styles that show the page's own stylesheet applied (it is allowed by hash only). */
  style: { bodyFont: string; thBackground: string | null };
}

/** Walks the DOM the browser built (a string: it runs in the page, whose types tsconfig does not know). */
const IN_PAGE = `(() => {
  const elements = [];
  const walk = (el, ancestors) => {
    elements.push({ name: el.namespaceURI === 'http://www.w3.org/1999/xhtml' ? el.localName : el.namespaceURI + ' ' + el.localName,
      attributes: [...el.attributes].map((a) => [a.name, a.value]), ancestors });
    const inner = [...ancestors, el.localName];
    for (const child of el.children) walk(child, inner);
  };
  walk(document.documentElement, []);
  const th = document.querySelector('th');
  return { canary: typeof window.__hispCanary, href: location.href, elements,
    style: { bodyFont: getComputedStyle(document.body).fontFamily, thBackground: th ? getComputedStyle(th).backgroundColor : null } };
})()`;

/** The centres of the first elements of the body in view, where a reader's pointer passes (onmouseover and the like). */
const HOVER_POINTS = `[...document.querySelectorAll('body *')].slice(0, 40).map((el) => el.getBoundingClientRect())
  .filter((r) => r.width > 0 && r.height > 0 && r.top < innerHeight).map((r) => [r.left + r.width / 2, r.top + r.height / 2])`;

describe.skipIf(gate.skip)(gate.title('rendered C-CDA pages in Chromium'), () => {
  let browser: Browser;
  let canary: Server;
  let canaryHits: string[] = [];
  let pages: Server;
  let pagesBase = '';
  const work = mkdtempSync(join(tmpdir(), 'hisp-render-chromium-'));
  const served = new Map<string, string>();

  beforeAll(async () => {
    canary = createServer((req, res) => {
      canaryHits.push(req.url ?? '');
      res.writeHead(200, { 'content-type': req.url?.endsWith('.js') ? 'text/javascript' : 'text/html' });
      res.end('<script>window.__hispCanary = 1</script>');
    });
    pages = createServer((req, res) => {
      const html = served.get(req.url ?? '');
      if (html === undefined) {
        res.writeHead(404).end();
        return;
      }
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'content-security-policy': RENDERED_CCDA_CSP, 'x-content-type-options': 'nosniff' });
      res.end(html);
    });
    await Promise.all([new Promise<void>((r) => canary.listen(0, '127.0.0.1', r)), new Promise<void>((r) => pages.listen(0, '127.0.0.1', r))]);
    pagesBase = `http://127.0.0.1:${(pages.address() as AddressInfo).port}`;
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      // A fresh profile each launch (playwright's own temporary user-data-dir), nothing in the background.
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
  }, 60_000);

  afterAll(async () => {
    await browser?.close();
    await Promise.all([new Promise((r) => canary?.close(r)), new Promise((r) => pages?.close(r))]);
    rmSync(work, { recursive: true, force: true });
  });

  const canaryBase = () => `http://127.0.0.1:${(canary.address() as AddressInfo).port}`;

  /** Writes the page as a file and serves it; returns both URLs. */
  function publish(name: string, html: string): { file: string; http: string } {
    const slug = name.replace(/[^a-z0-9]+/gi, '-').toLowerCase();
    const path = join(work, `${slug}.html`);
    writeFileSync(path, html);
    served.set(`/${slug}.html`, html);
    return { file: pathToFileURL(path).href, http: `${pagesBase}/${slug}.html` };
  }

  /** Opens a page in a fresh context, does what a reader does (hover, tab, click every link), and reports. */
  async function visit(url: string, screenshot?: string): Promise<Visit> {
    const context = await browser.newContext();
    const page = await context.newPage();
    const seen: Omit<Visit, 'canary' | 'href' | 'violations' | 'style'> = { requests: [], console: [], dialogs: [], errors: [] };
    page.on('request', (r) => seen.requests.push(r.url()));
    page.on('console', (m) => seen.console.push(`${m.type()}: ${m.text()}`));
    page.on('dialog', (d) => {
      seen.dialogs.push(d.message());
      void d.dismiss();
    });
    page.on('pageerror', (e) => seen.errors.push(e.message));
    try {
      await page.goto(url, { waitUntil: 'load' });
      const points = await page.evaluate<[number, number][]>(HOVER_POINTS);
      for (const [x, y] of points) await page.mouse.move(x, y);
      for (let i = 0; i < 5; i++) await page.keyboard.press('Tab');
      for (const link of (await page.$$('a')).slice(0, 40)) await link.click({ timeout: 1000 }).catch(() => undefined);
      await page.waitForTimeout(300); // a meta refresh, a timer or a late fetch would have started by now
      if (screenshot) await page.screenshot({ path: screenshot, fullPage: true });
      const state = await page.evaluate<{ canary: string; href: string; elements: { name: string; attributes: [string, string][]; ancestors: string[] }[]; style: Visit['style'] }>(IN_PAGE);
      const violations = state.elements.flatMap((e) => tagViolations({ name: e.name, attributes: new Map(e.attributes), ancestors: e.ancestors }));
      return { ...seen, canary: state.canary, href: state.href, violations, style: state.style };
    } finally {
      await context.close();
    }
  }

  /** Nothing ran, nothing left the page, the DOM holds only the vocabulary, the page's own style applied. */
  function expectInert(v: Visit, url: string, label: string): void {
    expect(v.canary, `${label}: a script ran`).toBe('undefined');
    expect(v.dialogs, `${label}: a dialog opened`).toEqual([]);
    expect(v.console, `${label}: console (a blocked load or a script would show here)`).toEqual([]);
    expect(v.errors, `${label}: page errors`).toEqual([]);
    expect(v.requests.map((r) => r.split('#')[0]), `${label}: requests`).toEqual([url]);
    expect(v.href.split('#')[0], `${label}: navigated away`).toBe(url);
    expect(v.violations, `${label}: the DOM`).toEqual([]);
    expect(v.style.bodyFont, `${label}: the page's stylesheet did not apply`).toMatch(/system-ui/);
  }

  const hostile = () => hostileCcdaDocuments(canaryBase()).map((d) => ({ name: d.name, ...publish(d.name, renderCcda(d.xml).html) }));

  it('no hostile document runs a script or makes a request when its page is opened as a saved file', async () => {
    canaryHits = [];
    for (const d of hostile()) expectInert(await visit(d.file), d.file, d.name);
    expect(canaryHits).toEqual([]);
  }, 180_000);

  it('nor when it is served over HTTP with the policy as a header', async () => {
    canaryHits = [];
    for (const d of hostile()) expectInert(await visit(d.http), d.http, d.name);
    expect(canaryHits).toEqual([]);
  }, 180_000);

  it('shows an embedded PNG (a data: image is no request) and keeps links within the page', async () => {
    const xml = cdaDocument({
      sections: [section('<content ID="top">Top</content><renderMultiMedia referencedObject="MM1"><caption>Pixel</caption></renderMultiMedia><linkHtml href="#top">back</linkHtml>', 'Image', mediaEntry('MM1', `<value mediaType="image/png" representation="B64">${PNG_1X1}</value>`))],
    });
    const { file } = publish('image', renderCcda(xml).html);
    const v = await visit(file);
    expectInert(v, file, 'image');
    const context = await browser.newContext();
    const page = await context.newPage();
    await page.goto(file);
    expect(await page.evaluate<number>('document.querySelector("img").naturalWidth')).toBe(1);
    await context.close();
  }, 60_000);

  it.skipIf(!ett.present)(ett.title('renders the ETT samples readable and inert, and keeps a screenshot in test/artifacts'), async () => {
    mkdirSync(ARTIFACTS, { recursive: true });
    const samples = readdirSync(ett.path('cda-samples')).filter((f) => f.endsWith('.xml') && !f.startsWith('CCR_'));
    expect(samples.length).toBeGreaterThanOrEqual(6);
    for (const sample of samples) {
      const urls = publish(sample, renderCcda(ett.read(`cda-samples/${sample}`)).html);
      const shot = sample === 'CCDA_Ambulatory.xml' ? join(ARTIFACTS, 'ccda-ambulatory.png') : undefined;
      for (const url of [urls.file, urls.http]) {
        const v = await visit(url, url === urls.file ? shot : undefined);
        expectInert(v, url, sample);
        // th{background:#e8eef4}: the stylesheet allowed by its hash styles the tables
        expect(v.style.thBackground, sample).toBe('rgb(232, 238, 244)');
      }
    }
    expect(existsSync(join(ARTIFACTS, 'ccda-ambulatory.png'))).toBe(true);
  }, 180_000);
});
