import { createInterface } from 'node:readline';
import { Writable } from 'node:stream';
import type { Command } from 'commander';
import { Option } from 'commander';
import { HispError, isHispError } from '../core/errors.js';
import { formatIssue, inspectConfig, type ConfigIssue, type ConfigReport } from '../config/load-config.js';
import { hashPassword } from '../config/password-hash.js';
import { formatConfig } from '../config/print-config.js';
import type { HispConfig } from '../config/schema.js';
import { EXIT, ReportedFailure } from './exit-codes.js';

interface ConfigFlags {
  config?: string;
  json?: boolean;
}

interface PrintFlags {
  config?: string;
  format: 'toml' | 'json';
}

/** The `--json` report of `hisp config check`: a contract scripts rely on (fields may be added, never renamed). */
export interface ConfigCheckReport {
  valid: boolean;
  file?: string;
  summary?: ConfigSummary;
  warnings?: ConfigIssue[];
  code?: string;
  reason?: string;
  errors?: ConfigIssue[];
}

export interface ConfigSummary {
  dataDir: string;
  domains: { name: string; credentials: number; addresses: number; bundles: number; anchors: { incoming: number; outgoing: number } }[];
  addresses: number;
  users: number;
  listeners: { submission: string | null; inbound: string | null; api: string | null };
}

/** The minimum length `hisp config hash-password` accepts. */
const MIN_PASSWORD_LENGTH = 12;

export function registerConfig(program: Command): void {
  const config = program
    .command('config')
    .summary('check or print a configuration file, hash a submission password')
    .description(
      'The configuration of a deployment (`hisp start --config FILE`) is a TOML file; every key and its ' +
        'default is documented in config/hisp.example.toml. The file may also be given by $HISP_CONFIG.',
    );

  config
    .command('check')
    .summary('validate a configuration file without starting anything')
    .description(
      'Reads the file, applies the defaults and checks every value, every file it names (keys, ' +
        'certificates, anchors) and that each private key belongs to its certificate. Exit 0 with a ' +
        'summary when valid; exit 1 with every error, one per line as `key.path: problem`, when not.',
    )
    .option('--config <file>', 'the configuration file (default $HISP_CONFIG)')
    .option('--json', 'JSON report on stdout')
    .action((flags: ConfigFlags) => {
      let report: ConfigReport;
      try {
        report = inspectConfig(flags.config);
      } catch (err) {
        if (!flags.json || !isHispError(err) || err.code === 'HISP_USAGE') throw err;
        const failed: ConfigCheckReport = {
          valid: false,
          code: err.code,
          reason: err.message,
          errors: (err.details?.errors as ConfigIssue[] | undefined) ?? [],
        };
        if (typeof err.details?.file === 'string') failed.file = err.details.file;
        process.stdout.write(`${JSON.stringify(failed)}\n`);
        throw new ReportedFailure(EXIT.failed);
      }
      const summary = summarize(report.config);
      if (flags.json) {
        const ok: ConfigCheckReport = { valid: true, ...(report.file ? { file: report.file } : {}), summary, warnings: report.warnings };
        process.stdout.write(`${JSON.stringify(ok)}\n`);
        return;
      }
      process.stdout.write(readable(report, summary));
    });

  config
    .command('print')
    .summary('print the effective configuration: defaults applied, paths absolute, secrets redacted')
    .description('Validates the file as `hisp config check` does, then prints every key with its effective value.')
    .option('--config <file>', 'the configuration file (default $HISP_CONFIG)')
    .addOption(new Option('--format <format>', 'output format').choices(['toml', 'json']).default('toml'))
    .action((flags: PrintFlags) => {
      const report = inspectConfig(flags.config);
      process.stdout.write(formatConfig(report.config, flags.format, report.file));
    });

  config
    .command('hash-password')
    .summary('read a password (hidden on a terminal, else the first line of stdin) and print its passwordHash')
    .description(
      'Prints the scrypt hash to put in `passwordHash` of a [[submission.users]] entry. On a terminal the ' +
        `password is asked for twice without echo; otherwise the first line of stdin is read. At least ${MIN_PASSWORD_LENGTH} characters.`,
    )
    .action(async () => {
      const password = await readPassword();
      if (password.length < MIN_PASSWORD_LENGTH) throw new HispError('HISP_USAGE', `the password must have at least ${MIN_PASSWORD_LENGTH} characters`);
      process.stdout.write(`${await hashPassword(password)}\n`);
    });

  for (const c of config.commands) c.exitOverride().showHelpAfterError('(add --help for usage)');
}

function listenerText(l: { enabled: boolean; host: string; port: number }, tls?: string): string | null {
  return l.enabled ? `${l.host}:${l.port}${tls ? ` (${tls})` : ''}` : null;
}

function summarize(config: HispConfig): ConfigSummary {
  const s = config.submission;
  const i = config.inbound;
  return {
    dataDir: config.dataDir,
    domains: config.domains.map((d) => ({
      name: d.name,
      credentials: d.credentials.length,
      addresses: d.addresses.length,
      bundles: d.bundles.length,
      anchors: { incoming: d.anchors.incoming.length, outgoing: d.anchors.outgoing.length },
    })),
    addresses: config.domains.reduce((n, d) => n + d.addresses.length, 0),
    users: s.users.length,
    listeners: {
      submission: listenerText(s, s.requireTls ? 'STARTTLS required' : s.tlsCert ? 'STARTTLS offered' : 'no TLS'),
      inbound: listenerText(i, i.requireTls ? 'STARTTLS required' : i.tlsCert ? 'STARTTLS offered' : 'no TLS'),
      api: listenerText(config.api, config.api.tlsCert ? 'HTTPS' : 'plain HTTP, loopback'),
    },
  };
}

function readable(report: ConfigReport, s: ConfigSummary): string {
  const lines = [`hisp: configuration ${report.file ?? ''} is valid`];
  lines.push(`  data folder  ${s.dataDir}`);
  for (const d of s.domains) {
    lines.push(
      `  domain       ${d.name}: ${d.credentials} credential(s), ${d.addresses} address(es), ` +
        `${d.anchors.incoming} incoming / ${d.anchors.outgoing} outgoing anchor file(s), ${d.bundles} bundle(s)`,
    );
  }
  lines.push(`  addresses    ${s.addresses}`);
  lines.push(`  users        ${s.users}`);
  lines.push(
    `  listeners    submission ${s.listeners.submission ?? 'off'}, inbound ${s.listeners.inbound ?? 'off'}, api ${s.listeners.api ?? 'off'}`,
  );
  for (const w of report.warnings) lines.push(`warning: ${formatIssue(w)}`);
  return `${lines.join('\n')}\n`;
}

/** The password: asked twice without echo on a terminal, else the first line of stdin. */
async function readPassword(): Promise<string> {
  if (!process.stdin.isTTY) {
    const chunks: Buffer[] = [];
    for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
    return (Buffer.concat(chunks).toString('utf8').split(/\r?\n/)[0] ?? '');
  }
  const first = await askHidden('password: ');
  const again = await askHidden('again: ');
  if (first !== again) throw new HispError('HISP_USAGE', 'the two passwords differ');
  return first;
}

function askHidden(prompt: string): Promise<string> {
  process.stderr.write(prompt);
  const muted = new Writable({ write: (_chunk, _encoding, done) => done() });
  const rl = createInterface({ input: process.stdin, output: muted, terminal: true });
  return new Promise((resolve) => {
    rl.question('', (answer) => {
      rl.close();
      process.stderr.write('\n');
      resolve(answer);
    });
  });
}
