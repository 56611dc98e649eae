import type { Certificate } from '../core/certificate.js';
import { HispError } from '../core/errors.js';
import { isPkcs12, loadCredential, loadCredentials, readCertificates, type PrivateCredential } from '../agent/key-material.js';
import { parseAddressRange } from '../trust/fetch-address-policy.js';
import { readFile } from './cli-io.js';

/** Collects a repeatable option into an array (commander's variadic-by-repetition idiom). */
export function collect(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value];
}

/**
 * Pairs `--xxx-key` files with `--xxx-cert` files in command-line order: a PKCS#12 key file carries
 * its own certificate and chain and takes no cert file; any other key file takes the next cert file.
 * `all` keeps every key of a multi-key PKCS#12 (decryption); otherwise the first one is used.
 */
export function pairCredentials(
  keyFiles: readonly string[],
  certFiles: readonly string[],
  password: string | undefined,
  flags: { key: string; cert: string },
  all: boolean,
): PrivateCredential[] {
  if (keyFiles.length === 0) throw new HispError('HISP_USAGE', `${flags.key} is required`);
  const out: PrivateCredential[] = [];
  let next = 0;
  for (const keyFile of keyFiles) {
    if (isPkcs12(readFile(keyFile, 'key file'), keyFile)) {
      const creds = loadCredentials(keyFile, undefined, password ?? '');
      out.push(...(all ? creds : creds.slice(0, 1)));
      continue;
    }
    const certFile = certFiles[next++];
    if (certFile === undefined) {
      throw new HispError('HISP_USAGE', `${flags.key} ${keyFile} needs a matching ${flags.cert} (or use a PKCS#12 file)`);
    }
    out.push(loadCredential(keyFile, certFile, password));
  }
  if (next < certFiles.length) {
    throw new HispError('HISP_USAGE', `more ${flags.cert} than ${flags.key} files that need one`);
  }
  return out;
}

/** Reads every certificate of every file (PEM bundles or DER). */
export function readCertificateFiles(files: readonly string[], what: string): Certificate[] {
  return files.flatMap((f) => readCertificates(readFile(f, what), f));
}

export function parseAt(value: string | undefined): Date | undefined {
  if (value === undefined) return undefined;
  const d = new Date(value);
  if (Number.isNaN(d.getTime())) throw new HispError('HISP_USAGE', `--at ${value} is not an ISO-8601 time`);
  return d;
}

/** Help of `--allow-fetch` (discover, unwrap): the CLI's `[fetch] allowAddresses`. */
export const ALLOW_FETCH_HELP =
  'let CRL, AIA and IPKIX fetches reach this non-global address or CIDR range (loopback, private…, refused by default: ' +
  'certificates and DNS records are anyone\'s to write); repeatable, e.g. --allow-fetch 127.0.0.1/32 for a loopback PKI';

/** The `--allow-fetch` values, each checked (HISP_USAGE naming the bad one). */
export function parseAllowFetch(values: readonly string[] | undefined): string[] {
  for (const v of values ?? []) {
    const range = parseAddressRange(v);
    if (typeof range === 'string') throw new HispError('HISP_USAGE', `--allow-fetch ${range}`);
  }
  return [...(values ?? [])];
}
