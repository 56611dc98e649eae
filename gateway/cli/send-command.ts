import { readFile } from 'node:fs/promises';
import { basename, extname } from 'node:path';
import type { Command } from 'commander';
import { ERROR_CODES, HispError, type HispErrorCode } from '../core/errors.js';

interface SendFlags {
  api: string;
  key: string;
  from: string;
  to: string[];
  cc: string[];
  subject: string;
  text: string;
  ccda: string[];
  attach: string[];
  xdm?: boolean;
  humanReadable: boolean;
  finalDelivery?: boolean;
  idempotencyKey?: string;
  clientRef?: string;
  json?: boolean;
}

const collect = (value: string, previous: string[]): string[] => [...previous, value];

/** Media types of attachments by extension; anything else is application/octet-stream. */
const TYPES: Readonly<Record<string, string>> = {
  '.xml': 'application/xml',
  '.pdf': 'application/pdf',
  '.zip': 'application/zip',
  '.txt': 'text/plain',
  '.json': 'application/fhir+json',
  '.html': 'text/html',
};

/**
 * `hisp send --api URL --key FILE --from A --to B [--ccda FILE] [--attach FILE] [--xdm]` (issue 15,
 * a contract): an integration engineer's way to send through a running hisp's HTTP API exactly as
 * an EHR would, `POST /v1/messages` with the documents in base64. Prints the message id (the one
 * `hisp status` takes); `--json` prints the whole 202 body. An API problem exits 1 with its code.
 */
export function registerSend(program: Command): void {
  program
    .command('send')
    .description('send a message through the HTTP API of a running hisp (POST /v1/messages)')
    .requiredOption('--api <url>', 'the API base URL, e.g. http://127.0.0.1:5580')
    .requiredOption('--key <file>', 'a file holding the API key (hisp api-key create prints it)')
    .requiredOption('--from <address>', 'the sender: an address the key may send as')
    .requiredOption('--to <address>', 'a recipient (repeat for more)', collect, [])
    .option('--cc <address>', 'a recipient in Cc (repeat for more)', collect, [])
    .option('--subject <text>', 'the Subject', 'Health record')
    .option('--text <text>', 'the body text', 'Please find the attached health record.')
    .option('--ccda <file>', 'a C-CDA document (sent as application/xml, with its rendering for people)', collect, [])
    .option('--attach <file>', 'any other document (repeat for more)', collect, [])
    .option('--xdm', 'send the documents as an XDM package (XDM/1.0/DDM) as well as MIME attachments')
    .option('--no-human-readable', 'do not add the rendering of the C-CDA')
    .option('--final-delivery', 'ask for the dispatched MDN (default: the sending domain’s setting)')
    .option('--idempotency-key <key>', 'sent as Idempotency-Key: a repeat returns the first response')
    .option('--client-ref <ref>', 'your own reference, returned in the status')
    .option('--json', 'print the whole response')
    .action(async (flags: SendFlags) => {
      const key = (await readFile(flags.key, 'utf8').catch((err: unknown) => {
        throw new HispError('HISP_IO', `cannot read the key file ${flags.key}: ${(err as Error).message}`);
      })).trim();
      const documents = [];
      for (const [file, kind] of [...flags.ccda.map((f) => [f, 'ccda'] as const), ...flags.attach.map((f) => [f, 'other'] as const)]) {
        const bytes = await readFile(file).catch((err: unknown) => {
          throw new HispError('HISP_IO', `cannot read ${file}: ${(err as Error).message}`);
        });
        const type = TYPES[extname(file).toLowerCase()] ?? 'application/octet-stream';
        documents.push({ filename: basename(file), contentType: type, kind: kind === 'ccda' ? 'ccda' : type === 'application/pdf' ? 'pdf' : type === 'application/zip' ? 'xdm' : 'other', content: bytes.toString('base64') });
      }
      const body = {
        from: flags.from,
        to: flags.to,
        ...(flags.cc.length > 0 ? { cc: flags.cc } : {}),
        subject: flags.subject,
        text: flags.text,
        documents,
        ...(flags.xdm ? { package: 'both' } : {}),
        ...(flags.ccda.length > 0 ? { humanReadable: flags.humanReadable } : {}),
        ...(flags.finalDelivery ? { finalDelivery: true } : {}),
        ...(flags.clientRef !== undefined ? { clientRef: flags.clientRef } : {}),
      };
      let url: URL;
      try {
        url = new URL('v1/messages', flags.api.endsWith('/') ? flags.api : `${flags.api}/`);
      } catch {
        throw new HispError('HISP_USAGE', `--api is not a URL: ${flags.api}`);
      }
      const response = await fetch(url, {
        method: 'POST',
        headers: {
          authorization: `Bearer ${key}`,
          'content-type': 'application/json',
          ...(flags.idempotencyKey !== undefined ? { 'idempotency-key': flags.idempotencyKey } : {}),
        },
        body: JSON.stringify(body),
      }).catch((err: unknown) => {
        throw new HispError('HISP_IO', `cannot reach ${url.origin}: ${(err as Error).message}`, { transient: true });
      });
      const text = await response.text();
      if (response.status !== 202) throw problemError(response.status, text);
      const result = JSON.parse(text) as { id: string };
      process.stdout.write(flags.json ? `${JSON.stringify(result, null, 2)}\n` : `${result.id}\n`);
    });
}

/** An API problem (RFC 9457) as the CLI reports it: its HISP_… code and detail. */
function problemError(status: number, text: string): HispError {
  try {
    const p = JSON.parse(text) as { code?: string; detail?: string };
    const code = (p.code && p.code in ERROR_CODES ? p.code : 'HISP_IO') as HispErrorCode;
    return new HispError(code, `HTTP ${status}: ${p.detail ?? 'no detail'}`);
  } catch {
    return new HispError('HISP_IO', `HTTP ${status}: ${text.slice(0, 200)}`);
  }
}
