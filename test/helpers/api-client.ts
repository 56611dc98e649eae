// A client of hisp's HTTP API for tests that checks every response it receives against the API's
// own OpenAPI document (/openapi.json, issue 15): the status is declared for the route (or its
// 4XX/5XX range), the media type is one the response declares, and the body matches its schema.
// A response the document does not describe fails the test that received it, so every route test
// (in process with app.inject, or over a socket with fetch) checks the document for free.
//
//   const client = await ApiClient.forApp(app);                  // in process
//   const client = await ApiClient.forUrl('https://127.0.0.1:5580', { ca });  // a real listener
//   const r = await client.request('POST', '/v1/recipients/validate', { key, json: { addresses } });
//   expect(r.status).toBe(200);
import { createRequire } from 'node:module';
import { request as httpsRequest } from 'node:https';
import type { FastifyInstance } from 'fastify';

/** Ajv 8 as fastify itself validates with (the Ajv at the top of node_modules is eslint's Ajv 6). */
const requireFromFastify = createRequire(createRequire(import.meta.url).resolve('@fastify/ajv-compiler'));
type ValidateFunction = ((data: unknown) => boolean) & { errors?: { instancePath: string; message?: string }[] | null };
interface Ajv {
  addSchema(schema: object, key: string): Ajv;
  addFormat(name: string, format: (value: string) => boolean): Ajv;
  compile(schema: object): ValidateFunction;
}
const Ajv2020 = (requireFromFastify('ajv/dist/2020') as { default: new (options: object) => Ajv }).default;

export interface ApiRequestOptions {
  /** The API key, sent as `Authorization: Bearer <key>`. */
  key?: string;
  /** A JSON body (sent as application/json). */
  json?: unknown;
  /** A raw body, sent as it is (with `contentType`). */
  body?: string | Buffer;
  contentType?: string;
  headers?: Record<string, string>;
}

export interface ApiResponse {
  status: number;
  headers: Record<string, string>;
  /** The body parsed as JSON, when it is JSON; else undefined. */
  body: unknown;
  text: string;
}

/** How requests go out: app.inject, or a socket. */
type Transport = (method: string, path: string, headers: Record<string, string>, body: string | Buffer | undefined) => Promise<Omit<ApiResponse, 'body'>>;

interface OpenApiOperation {
  responses?: Record<string, { content?: Record<string, unknown> }>;
}
export interface OpenApiDocument {
  openapi: string;
  paths: Record<string, Record<string, OpenApiOperation>>;
  components?: { schemas?: Record<string, unknown> };
}

/** `/v1/mailboxes/{address}/messages` as a matcher of concrete paths. */
function templateMatcher(template: string): RegExp {
  const source = template
    .split('/')
    .map((s) => (/^\{[^}]+\}$/.test(s) ? '[^/]+' : s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')))
    .join('/');
  return new RegExp(`^${source}$`);
}

/** `#/paths/~1v1~1me/get`: a JSON Pointer (RFC 6901) into the document. */
const pointer = (...parts: string[]) => `#/${parts.map((p) => p.replace(/~/g, '~0').replace(/\//g, '~1')).join('/')}`;

export class ApiClient {
  private readonly ajv: Ajv;
  private readonly validators = new Map<string, ValidateFunction>();
  /** Every (method, path template, status) a response was checked for: what the tests exercised. */
  readonly seen = new Set<string>();

  private constructor(
    private readonly transport: Transport,
    readonly document: OpenApiDocument,
  ) {
    this.ajv = new Ajv2020({ strict: false, allErrors: true, validateFormats: true });
    // The formats the API's schemas use (RFC 3339 date-time; TypeBox writes `format` as given).
    this.ajv.addFormat('date-time', (v) => /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/i.test(v) && !Number.isNaN(Date.parse(v)));
    this.ajv.addSchema(document, 'openapi.json');
  }

  /** A client of an app built by buildApiServer, through app.inject (no socket). */
  static async forApp(app: FastifyInstance): Promise<ApiClient> {
    const transport: Transport = async (method, path, headers, body) => {
      const r = await app.inject({ method: method as 'GET', url: path, headers, ...(body !== undefined ? { payload: body } : {}) });
      return { status: r.statusCode, headers: flatten(r.headers), text: r.body };
    };
    return ApiClient.withDocument(transport);
  }

  /**
   * A client of a listening API: fetch for http:, and node:https with `ca` for a server whose
   * certificate only a test CA vouches for (Node's fetch takes no CA of its own without the undici package).
   */
  static async forUrl(base: string, options: { ca?: Buffer } = {}): Promise<ApiClient> {
    const transport: Transport = async (method, path, headers, body) => {
      const url = new URL(path, base);
      if (url.protocol === 'https:' && options.ca) return httpsExchange(url, method, headers, body, options.ca);
      const res = await fetch(url, { method, headers, ...(body !== undefined ? { body } : {}) });
      return { status: res.status, headers: Object.fromEntries(res.headers.entries()), text: await res.text() };
    };
    return ApiClient.withDocument(transport);
  }

  private static async withDocument(transport: Transport): Promise<ApiClient> {
    const r = await transport('GET', '/openapi.json', {}, undefined);
    if (r.status !== 200) throw new Error(`GET /openapi.json answered ${r.status}: ${r.text.slice(0, 500)}`);
    const client = new ApiClient(transport, JSON.parse(r.text) as OpenApiDocument);
    client.check('GET', '/openapi.json', { ...r, body: JSON.parse(r.text) as unknown });
    return client;
  }

  /** Sends a request and checks its response against the document (throws when it does not match). */
  async request(method: string, path: string, options: ApiRequestOptions = {}): Promise<ApiResponse> {
    const headers: Record<string, string> = { ...(options.headers ?? {}) };
    if (options.key !== undefined) headers.authorization = `Bearer ${options.key}`;
    let body: string | Buffer | undefined = options.body;
    if (options.json !== undefined) {
      body = JSON.stringify(options.json);
      headers['content-type'] = 'application/json';
    }
    if (options.contentType !== undefined) headers['content-type'] = options.contentType;
    const raw = await this.transport(method, path, headers, body);
    let parsed: unknown;
    try {
      parsed = raw.text === '' ? undefined : (JSON.parse(raw.text) as unknown);
    } catch {
      parsed = undefined;
    }
    const response = { ...raw, body: parsed };
    this.check(method, path, response);
    return response;
  }

  /** The path template of the document that `path` falls under, if any. */
  templateOf(path: string): string | undefined {
    const bare = path.split('?')[0] ?? '';
    return Object.keys(this.document.paths).find((t) => templateMatcher(t).test(bare));
  }

  /** Throws unless the document declares this response: status, media type, body schema. */
  check(method: string, path: string, r: ApiResponse): void {
    const where = `${method} ${path} → ${r.status}`;
    const template = this.templateOf(path);
    const operation = template ? this.document.paths[template]?.[method.toLowerCase()] : undefined;
    if (!template || !operation) {
      // Not a route of the document: "no such route" (404), "not this method" (405), or the refusals
      // that come before routing (429: rate limited; 503: stopping), as problems.
      if (![404, 405, 429, 503].includes(r.status)) throw new Error(`${where}: not a route of /openapi.json, yet not answered 404, 405, 429 or 503`);
      this.expectBody(where, r, 'application/problem+json', { $ref: 'openapi.json#/components/schemas/Problem' });
      return;
    }
    const responses = operation.responses ?? {};
    const key = [String(r.status), `${String(r.status)[0]}XX`, 'default'].find((k) => k in responses);
    if (key === undefined) throw new Error(`${where}: status not declared for ${method} ${template} (declared: ${Object.keys(responses).join(', ')})`);
    this.seen.add(`${method.toUpperCase()} ${template} ${key}`);
    const content = responses[key]?.content;
    if (!content) {
      if (r.text !== '') throw new Error(`${where}: the document declares no body, got ${r.text.slice(0, 200)}`);
      return;
    }
    const type = (r.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
    const declared = type in content ? type : '*/*' in content ? '*/*' : undefined;
    if (!declared) throw new Error(`${where}: Content-Type ${type || '(none)'} not declared (declared: ${Object.keys(content).join(', ')})`);
    // A body that is not JSON (a part's octets, a rendered page) is declared as a string: its media
    // type is what the document says, its content is not JSON to validate.
    if (!isJson(type)) {
      if (type === '') throw new Error(`${where}: no Content-Type`);
      return;
    }
    this.expectBody(where, r, type, { $ref: `openapi.json${pointer('paths', template, method.toLowerCase(), 'responses', key, 'content', type, 'schema')}` });
  }

  private expectBody(where: string, r: ApiResponse, type: string, schema: { $ref: string }): void {
    const actual = (r.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
    if (actual !== type) throw new Error(`${where}: Content-Type ${actual || '(none)'}, expected ${type}`);
    let validate = this.validators.get(schema.$ref);
    if (!validate) {
      validate = this.ajv.compile(schema);
      this.validators.set(schema.$ref, validate);
    }
    if (r.body === undefined) throw new Error(`${where}: the body is not JSON: ${r.text.slice(0, 200)}`);
    if (!validate(r.body)) {
      const errors = (validate.errors ?? []).map((e) => `${e.instancePath || '/'} ${e.message ?? ''}`).join('; ');
      throw new Error(`${where}: the body does not match ${schema.$ref}: ${errors}\n${r.text.slice(0, 1000)}`);
    }
  }
}

function flatten(headers: Record<string, string | string[] | number | undefined>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(headers)) if (v !== undefined) out[k.toLowerCase()] = Array.isArray(v) ? v.join(', ') : String(v);
  return out;
}

function httpsExchange(url: URL, method: string, headers: Record<string, string>, body: string | Buffer | undefined, ca: Buffer): Promise<Omit<ApiResponse, 'body'>> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(url, { method, headers, ca }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: flatten(res.headers), text: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** application/json and the +json media types (RFC 6839 §3.1). */
function isJson(type: string): boolean {
  return type === 'application/json' || type.endsWith('+json');
}
