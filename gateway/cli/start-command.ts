import { relative, resolve } from 'node:path';
import type { Command } from 'commander';
import { embeddedDefault } from '../admin/embedded-default.js';
import { inspectConfig } from '../config/load-config.js';
import type { HispConfig } from '../config/schema.js';
import { createLogger, logFormatFor } from '../core/logger.js';
import { HispError } from '../core/errors.js';
import { EXIT } from './exit-codes.js';
import { tuneHeapForThroughput } from './heap-tuning.js';
import { startedByNpm, watchParent, type ParentWatch } from './parent-watch.js';

/** Where the banner shows the submission port and the API's URL, known only once listening (--…-port 0). */
const SUBMISSION_PORT = '{submission-port}';
const API_URL = '{api-url}';

interface StartFlags {
  dataDir?: string;
  config?: string;
  submissionPort?: string;
  inboundPort?: string;
  apiPort?: string;
}

function portFlag(value: string | undefined, flag: string): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new HispError('HISP_USAGE', `${flag} must be a port number (0-65535; 0: any free port)`);
  return n;
}

/**
 * `hisp start`: runs the gateway. With `--config FILE` (or $HISP_CONFIG) a real deployment, the
 * configuration validated first (exit 1 with every problem listed); without, the embedded default
 * (a development domain on loopback ports, see embedded-default.ts) with a printed first message to
 * send. SIGTERM and SIGINT drain: no new sessions, open transactions and work in hand finish.
 */
export function registerStart(program: Command): void {
  program
    .command('start')
    .summary('run the gateway (embedded development default, or --config FILE)')
    .description(
      'Runs the HISP: submission and inbound SMTP listeners, relay and receive workers, MDN/DSN tracking. ' +
        'Without --config (and without $HISP_CONFIG), runs the embedded default: a data folder (./hisp-data, or ' +
        '--data-dir, or $HISP_DATA_DIR) with a development Direct domain (direct.localhost), its CA and keys (mode ' +
        '0600), submission on 127.0.0.1:5587 (STARTTLS, AUTH as "dev"), inbound on 127.0.0.1:5525 and the HTTP API ' +
        'on 127.0.0.1:5580 (its key in the data folder), and prints how to send a first message. SIGTERM/SIGINT stop it cleanly.',
    )
    .option('--config <file>', 'configuration file (TOML; see config/hisp.example.toml); default $HISP_CONFIG')
    .option('--data-dir <dir>', 'data folder of the embedded default (default ./hisp-data or $HISP_DATA_DIR)')
    .option('--submission-port <port>', 'embedded default: submission port (default 5587; 0: any free port)')
    .option('--inbound-port <port>', 'embedded default: inbound port (default 5525; 0: any free port)')
    .option('--api-port <port>', 'embedded default: HTTP API port (default 5580; 0: any free port)')
    .action(async (flags: StartFlags) => {
      // Taken first: the parent pid hisp was started under (see parent-watch.ts).
      const initialParent = process.ppid;
      // Every file and folder hisp creates is its own (0600/0700), whatever umask it was started
      // with: SQLite creates hisp.sqlite with 0644 & ~umask, and a library or a later change that
      // forgets an explicit mode is covered too. The stores also set their modes explicitly, for
      // programs that use them without this CLI (a library must not change its host's umask).
      process.umask(0o077);
      // Installed before anything starts, so that a stop asked for during the start is not lost
      // (it takes effect once the gateway runs) and never kills the process half-started.
      const stop = stopRequests(initialParent);
      const configFile = flags.config ?? (process.env.HISP_CONFIG || undefined);
      let config: HispConfig;
      let banner: string;
      const ports = {
        submission: portFlag(flags.submissionPort, '--submission-port'),
        inbound: portFlag(flags.inboundPort, '--inbound-port'),
        api: portFlag(flags.apiPort, '--api-port'),
      };
      if (configFile !== undefined) {
        if (ports.submission !== undefined || ports.inbound !== undefined || ports.api !== undefined) throw new HispError('HISP_USAGE', 'with --config, set the ports in the configuration file');
        const report = inspectConfig(configFile);
        for (const w of report.warnings) process.stderr.write(`hisp: warning: ${w.path}: ${w.message}\n`);
        config = report.config;
        banner = `hisp: configuration ${configFile}: domains ${config.domains.map((d) => d.name).join(', ')}\n`;
      } else {
        const dataDir = resolve(flags.dataDir ?? process.env.HISP_DATA_DIR ?? 'hisp-data');
        const dev = await embeddedDefault(dataDir, {
          ...(ports.submission !== undefined ? { submission: ports.submission } : {}),
          ...(ports.inbound !== undefined ? { inbound: ports.inbound } : {}),
          ...(ports.api !== undefined ? { api: ports.api } : {}),
        });
        config = dev.config;
        const rel = (p: string) => relative(process.cwd(), p) || '.';
        const d = dev.domain.domain;
        // The password itself is never printed (it would sit in terminal scroll-back, CI logs and
        // the journal): the banner says where it is kept, and the command reads it from there.
        banner =
          `hisp: embedded default in ${rel(dataDir)} (${dev.domain.created ? 'created' : 'reused'}): development domain ${d}, ` +
          `anchor ${rel(dev.domain.anchor)}; submission account ${dev.username}, its password in ${rel(dev.passwordFile)} (mode 0600)\n` +
          'hisp: send a first message (it is signed, encrypted, decrypted, verified and delivered to a Maildir, with an MDN back):\n\n' +
          `  swaks --server 127.0.0.1:${SUBMISSION_PORT} --tls --auth-user ${dev.username} --auth-password "$(cat ${shellQuote(rel(dev.passwordFile))})" \\\n` +
          `    --from provider@${d} --to patient@${d} --header 'Subject: Hello Direct'\n\n` +
          `hisp: then look in ${rel(dataDir)}/maildir/patient@${d}/new (the message) and ${rel(dataDir)}/maildir/provider@${d}/new (the MDN)\n` +
          // The key itself is never printed either: the command reads it from its file.
          `hisp: HTTP API at ${API_URL}, its development key (id ${dev.apiKeyId}) in ${rel(dev.apiKeyFile)} (mode 0600):\n\n` +
          `  curl -s -H "Authorization: Bearer $(cat ${shellQuote(rel(dev.apiKeyFile))})" ${API_URL}/v1/me\n\n`;
      }
      if (configFile !== undefined && config.api.enabled) banner += `hisp: HTTP API at ${API_URL} (keys: hisp api-key create --config ${shellQuote(configFile)})\n`;
      // Logs on stdout, one JSON object per line (journald, a log shipper, `| jq`), readable lines
      // when stdout is a terminal; the banner and every other message for a person on stderr, so
      // that the log stream is never mixed with them (README.md, "Output").
      const logger = createLogger({ level: config.log.level, format: logFormatFor(process.stdout) });
      // Before the gateway allocates: V8 heap sizing for a long-running server (heap-tuning.ts).
      tuneHeapForThroughput();
      // Loaded here, not at the top: the whole gateway (servers, stores, agent) is most of what the
      // CLI would load, and every other verb (api-key, status, queue…) would pay for it at each call.
      const { HispGateway } = await import('../flows/hisp-gateway.js');
      const gateway = await HispGateway.start({ config, logger });
      process.stderr.write(banner.replace(SUBMISSION_PORT, String(gateway.submissionPort ?? config.submission.port)).replaceAll(API_URL, gateway.apiUrl ?? ''));
      process.stderr.write(
        `hisp: listening: submission ${gateway.submissionPort ?? 'off'}, inbound ${gateway.inboundPort ?? 'off'}, api ${gateway.apiPort ?? 'off'} (SIGTERM or Ctrl-C to stop)\n`,
      );
      await new Promise<void>((resolveStop) => {
        void stop.then((why) => {
          logger.info({ reason: why }, 'draining and stopping');
          gateway.stop().then(resolveStop, (err: unknown) => {
            logger.error({ err: err instanceof Error ? err.message : String(err) }, 'stop failed');
            resolveStop();
          });
        });
        // The gateway stops itself when its database cannot make the log durable (fail-stop).
        void gateway.stopped.then(resolveStop);
      });
      if (gateway.fatalError) {
        process.stderr.write(`hisp: stopped: the store could not make its writes durable (${gateway.fatalError.message}); nothing was acknowledged after it. Restart hisp.\n`);
        process.exitCode = EXIT.storeFailed;
      }
    });
}

/**
 * Resolves with the reason of the first stop request: SIGTERM, SIGINT, or (under npm) the parent
 * process gone, which is how npm's SIGTERM arrives (parent-watch.ts). A second SIGTERM or SIGINT
 * gets Node's default: the process ends at once (what a user pressing Ctrl-C twice means).
 */
function stopRequests(initialParent: number): Promise<string> {
  return new Promise((resolveStop) => {
    let watch: ParentWatch | undefined;
    const request = (why: string) => {
      watch?.stop();
      resolveStop(why);
    };
    process.once('SIGTERM', () => request('SIGTERM'));
    process.once('SIGINT', () => request('SIGINT'));
    if (startedByNpm()) watch = watchParent(() => request('the parent process (npm) exited'), { initialParent });
  });
}

/** A path as one word of a POSIX shell command line (single quotes when it needs any). */
function shellQuote(text: string): string {
  return /^[\w@%+=:,./-]+$/.test(text) ? text : `'${text.replace(/'/g, `'\\''`)}'`;
}
