import { Option, type Command } from 'commander';
import { HispError } from '../core/errors.js';
import {
  DEFAULT_CIPHER,
  DEFAULT_DIGEST,
  DEFAULT_KEY_TRANSPORT,
  KEY_TRANSPORTS,
  SEND_CIPHERS,
  SIGNING_DIGESTS,
  type KeyTransportName,
  type SendCipher,
  type SigningDigest,
} from '../agent/algorithms.js';
import { wrapMessage } from '../agent/wrap-message.js';
import { readInput, writeOutput } from './cli-io.js';
import { collect, pairCredentials, parseAt, readCertificateFiles, readRecipientFiles } from './credential-options.js';
import { TrustValidator } from '../trust/trust-validator.js';

interface WrapFlags {
  signKey?: string[];
  signCert?: string[];
  encryptCert?: string[];
  password?: string;
  digest: SigningDigest;
  cipher: SendCipher;
  keyTransport: KeyTransportName;
  recipientId: 'issuer-serial' | 'ski';
  genericSubject?: string | true;
  in?: string;
  out?: string;
  anchor?: string[];
  at?: string;
  allowSha1?: boolean;
}

export function registerWrap(program: Command): void {
  program
    .command('wrap')
    .summary('wrap, sign and encrypt an RFC 5322 message into a Direct message')
    .description(
      'Reads an RFC 5322 message (stdin by default), wraps it as message/rfc822, signs it (detached CMS in ' +
        'multipart/signed) and encrypts it to the first certificate of every --encrypt-cert file; writes the Direct message (stdout by ' +
        'default) with From/To/Cc/Subject/Date/Message-ID copied to the outer headers and Bcc removed.',
    )
    .option('--sign-key <file>', 'signing key: PEM/DER (PKCS#8, PKCS#1, SEC1) or PKCS#12 (.p12/.pfx); repeat for several signers', collect)
    .option('--sign-cert <file>', 'certificate of the preceding non-PKCS#12 --sign-key, optionally followed by its chain (PEM, signer first)', collect)
    .option(
      '--encrypt-cert <file>',
      "recipient certificate to encrypt to (PEM or DER), optionally followed by its chain (never recipients); repeatable, one file per recipient",
      collect,
    )
    .option('--password <password>', 'password of PKCS#12 or encrypted PKCS#8 key files')
    .addOption(new Option('--digest <alg>', 'signature digest').choices(SIGNING_DIGESTS).default(DEFAULT_DIGEST))
    .addOption(new Option('--cipher <alg>', 'content encryption').choices(SEND_CIPHERS).default(DEFAULT_CIPHER))
    .addOption(new Option('--key-transport <alg>', 'RSA key transport').choices(KEY_TRANSPORTS).default(DEFAULT_KEY_TRANSPORT))
    .addOption(
      new Option('--recipient-id <form>', 'how RecipientInfos name the certificate').choices(['issuer-serial', 'ski']).default('issuer-serial'),
    )
    .option('--generic-subject [text]', 'replace the outer (clear-text) Subject, default text "Direct message"')
    .option('--anchor <file>', 'validate every --encrypt-cert against these outgoing anchors first (path, validity, keyEncipherment, CRL, AIA); repeatable', collect)
    .option('--at <iso8601>', 'validation time for --anchor (default now)')
    .option('--allow-sha1', 'with --anchor: accept SHA-1 certificate signatures (never MD5)')
    .option('--in <file>', 'input message (default stdin)')
    .option('--out <file>', 'output Direct message (default stdout)')
    .action(async (flags: WrapFlags) => {
      const signers = pairCredentials(flags.signKey ?? [], flags.signCert ?? [], flags.password, { key: '--sign-key', cert: '--sign-cert' }, false);
      if (!flags.encryptCert?.length) throw new HispError('HISP_USAGE', '--encrypt-cert is required');
      const recipients = readRecipientFiles(flags.encryptCert);
      if (flags.anchor?.length) {
        // The trust layer decides on recipients as the gateway will (R-TRU-5): refuse before encrypting.
        const anchors = readCertificateFiles(flags.anchor, 'anchor');
        const validator = new TrustValidator();
        const at = parseAt(flags.at);
        for (const r of recipients) {
          await validator.validate(r.certificate, {
            anchors,
            intermediates: r.chain,
            purpose: 'encryption',
            allowSha1: flags.allowSha1 ?? false,
            ...(at ? { at } : {}),
          });
        }
      }
      const input = readInput(flags.in);
      const result = wrapMessage(input, {
        signers,
        recipients: recipients.map((r) => r.certificate),
        digest: flags.digest,
        cipher: flags.cipher,
        keyTransport: flags.keyTransport,
        recipientIdentifier: flags.recipientId === 'ski' ? 'subjectKeyIdentifier' : 'issuerAndSerialNumber',
        ...(flags.genericSubject !== undefined
          ? { genericSubject: flags.genericSubject === true ? 'Direct message' : flags.genericSubject }
          : {}),
      });
      await writeOutput(flags.out, result.message);
    });
}
