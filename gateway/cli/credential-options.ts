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

/** A recipient certificate as `--encrypt-cert FILE` gives it: the first certificate, then its chain. */
export interface RecipientFile {
  file: string;
  certificate: Certificate;
  /** The other certificates of the file: intermediates for path building, never recipients. */
  chain: Certificate[];
}

/**
 * Reads `--encrypt-cert` files as `--sign-cert` files are read: the first certificate of a file is
 * the recipient, the rest its chain (the domain certificate file `hisp start` writes holds the
 * certificate and its CA). Only an end entity that may encrypt keys is a recipient: a CA
 * certificate (basicConstraints cA, RFC 5280 §4.2.1.9) or one whose keyUsage lacks
 * keyEncipherment (RFC 5280 §4.2.1.3; R-CRT-4: what RSA key transport needs, RFC 8551 §2.2)
 * first in a file stops the command, naming the file: encrypting to it would hand the message to
 * whoever holds that key instead of the recipient. A certificate without the keyUsage extension is
 * unrestricted (RFC 5280), as the trust layer judges it.
 */
export function readRecipientFiles(files: readonly string[]): RecipientFile[] {
  return files.map((file) => {
    const [certificate, ...chain] = readCertificates(readFile(file, 'recipient certificate'), file);
    if (certificate === undefined) throw new HispError('HISP_KEY_UNREADABLE', `${file}: no certificate`);
    if (certificate.basicConstraints?.ca) {
      throw new HispError(
        'HISP_TRUST_BASIC_CONSTRAINTS',
        `--encrypt-cert ${file}: its first certificate (${certificate.subject}) is a CA certificate, not a recipient; the file must start with the recipient's own certificate (its chain may follow)`,
        { details: { file } },
      );
    }
    if (certificate.keyUsage && !certificate.keyUsage.has('keyEncipherment')) {
      throw new HispError(
        'HISP_TRUST_KEY_USAGE',
        `--encrypt-cert ${file}: ${certificate.subject} may not be encrypted to: its keyUsage (${[...certificate.keyUsage].join(', ')}) lacks keyEncipherment`,
        { details: { file } },
      );
    }
    return { file, certificate, chain };
  });
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
