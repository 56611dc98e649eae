import { Option, type Command } from 'commander';
import { DnsClient } from '../discovery/dns-client.js';
import { TrustValidator } from '../trust/trust-validator.js';
import { HispError, isHispError } from '../core/errors.js';
import { processIncoming } from '../flows/process-incoming.js';
import { readInput, writeOutput } from './cli-io.js';
import { ALLOW_FETCH_HELP, collect, pairCredentials, parseAllowFetch, parseAt, readCertificateFiles } from './credential-options.js';
import { EXIT, ReportedFailure } from './exit-codes.js';

/** The `--json` success report on stderr: a contract scripts rely on (fields may be added, never renamed). */
export interface UnwrapReport {
  signers: { subject: string; sha256: string; binding: 'address' | 'domain' }[];
  digest: string;
  cipher: string;
  keyTransport: string;
  wrapped: boolean;
  sender: string;
  recipient: { subject: string; sha256: string };
  rejected: { subject: string | undefined; sha256: string | undefined; code: string; reason: string }[];
  warnings: string[];
}

/** The `--json` failure report on stderr. */
export interface UnwrapFailureReport {
  code: string;
  reason: string;
}

interface UnwrapFlags {
  decryptKey?: string[];
  decryptCert?: string[];
  anchor?: string[];
  password?: string;
  at?: string;
  allowSha1?: boolean;
  json?: boolean;
  in?: string;
  out?: string;
  dns?: string;
  revocation: 'soft-fail' | 'hard-fail' | 'off';
  allowFetch?: string[];
}

export function registerUnwrap(program: Command): void {
  program
    .command('unwrap')
    .summary('decrypt, verify and unwrap a Direct message, checking its signer against anchors')
    .description(
      'Decrypts a Direct message (stdin by default), verifies its signature over the received bytes, ' +
        'validates each signer chain to one of the --anchor certificates at --at (validity, ' +
        'basicConstraints, keyUsage, RSA >= 2048, no MD5, SHA-1 only with --allow-sha1, revocation by ' +
        'CRL, missing intermediates from AIA), checks that the ' +
        'signer is bound to the inner From address (rfc822Name) or its domain (dNSName), and writes the ' +
        'inner message (stdout by default). On failure nothing is written, the exit code is 1 and stderr ' +
        'carries "CODE: reason" (with --json: {"code","reason"}). With --json a success report goes to stderr.',
    )
    .option('--decrypt-key <file>', 'decryption key: PEM/DER or PKCS#12; repeat for several keys', collect)
    .option('--decrypt-cert <file>', 'certificate of the preceding non-PKCS#12 --decrypt-key', collect)
    .option('--anchor <file>', 'trust anchor(s), PEM (several per file) or DER; repeatable', collect)
    .option('--password <password>', 'password of PKCS#12 or encrypted PKCS#8 key files')
    .option('--at <iso8601>', 'validation time (default now)')
    .option('--allow-sha1', 'legacy switch: accept SHA-1 message digests and certificate signatures (never MD5)')
    .option('--json', 'JSON report on stderr')
    .option('--dns <host:port>', 'DNS server for the CRL and AIA host names (default: /etc/resolv.conf)')
    .addOption(new Option('--revocation <mode>', 'when a CRL cannot be fetched').choices(['soft-fail', 'hard-fail', 'off']).default('soft-fail'))
    .option('--allow-fetch <cidr>', ALLOW_FETCH_HELP, collect)
    .option('--in <file>', 'input Direct message (default stdin)')
    .option('--out <file>', 'output inner message (default stdout)')
    .action(async (flags: UnwrapFlags) => {
      try {
        const credentials = pairCredentials(
          flags.decryptKey ?? [],
          flags.decryptCert ?? [],
          flags.password,
          { key: '--decrypt-key', cert: '--decrypt-cert' },
          true,
        );
        if (!flags.anchor?.length) throw new HispError('HISP_USAGE', '--anchor is required');
        const anchors = readCertificateFiles(flags.anchor, 'anchor');
        const at = parseAt(flags.at);
        const input = readInput(flags.in);
        const dns = flags.dns ? new DnsClient({ servers: [DnsClient.parseServer(flags.dns)] }) : undefined;
        const validator = new TrustValidator({ ...(dns ? { lookup: dns.lookupFunction() } : {}), allowAddresses: parseAllowFetch(flags.allowFetch) });
        const result = await processIncoming(input, {
          credentials,
          anchors,
          ...(at ? { at } : {}),
          allowSha1: flags.allowSha1 ?? false,
          revocation: flags.revocation,
          validator,
        });
        const u = result.unwrapped;
        await writeOutput(flags.out, u.message);
        if (flags.json) {
          const report: UnwrapReport = {
            signers: result.accepted.map((s) => ({
              subject: s.certificate.subject,
              sha256: s.certificate.sha256,
              binding: s.binding,
            })),
            digest: u.digest,
            cipher: u.cipher,
            keyTransport: u.keyTransport,
            wrapped: u.wrapped,
            sender: result.sender.toString(),
            recipient: { subject: u.recipient.certificate.subject, sha256: u.recipient.certificate.sha256 },
            rejected: result.rejected.map((r) => ({
              subject: r.certificate?.subject,
              sha256: r.certificate?.sha256,
              code: r.code,
              reason: r.reason,
            })),
            warnings: u.warnings,
          };
          process.stderr.write(`${JSON.stringify(report)}\n`);
        } else {
          for (const w of u.warnings) process.stderr.write(`hisp: warning: ${w}\n`);
        }
      } catch (err) {
        if (!flags.json) throw err;
        // --json: the failure report is the only thing on stderr.
        const code = isHispError(err) ? err.code : 'HISP_INTERNAL';
        const reason = err instanceof Error ? err.message : String(err);
        const failure: UnwrapFailureReport = { code, reason };
        process.stderr.write(`${JSON.stringify(failure)}\n`);
        throw new ReportedFailure(
          isHispError(err) ? (err.code === 'HISP_USAGE' ? EXIT.usage : EXIT.failed) : EXIT.internal,
        );
      }
    });
}
