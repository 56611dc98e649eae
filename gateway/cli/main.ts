import { Command, CommanderError } from 'commander';
import { isHispError } from '../core/errors.js';
import { EXIT, ReportedFailure } from './exit-codes.js';

type Register = (program: Command) => void;

/**
 * The verbs, in the order `hisp --help` lists them, each loaded only when asked for: a verb's
 * module loads what its work needs (the whole gateway for `start`, the stores for `api-key`…), and
 * loading them all took a second at every call (CI runs the CLI hundreds of times).
 */
const VERBS: readonly (readonly [string, () => Promise<Register>])[] = [
  ['start', async () => (await import('./start-command.js')).registerStart],
  ['wrap', async () => (await import('./wrap-command.js')).registerWrap],
  ['unwrap', async () => (await import('./unwrap-command.js')).registerUnwrap],
  ['discover', async () => (await import('./discover-command.js')).registerDiscover],
  ['config', async () => (await import('./config-command.js')).registerConfig],
  ['send', async () => (await import('./send-command.js')).registerSend],
  ['status', async () => (await import('./status-command.js')).registerStatus],
  ['queue', async () => (await import('./queue-command.js')).registerQueue],
  ['quarantine', async () => (await import('./quarantine-command.js')).registerQuarantine],
  ['render', async () => (await import('./render-command.js')).registerRender],
  ['xdm', async () => (await import('./xdm-command.js')).registerXdm],
  ['api-key', async () => (await import('./api-key-command.js')).registerApiKey],
  ['audit', async () => (await import('./audit-command.js')).registerAudit],
];

/** The program with every verb, or with `verb` alone when it is one (an unknown one: all, for commander's list and suggestions). */
export async function buildProgram(verb?: string): Promise<Command> {
  const program = new Command('hisp')
    .description('hisp: a Direct Project HISP (S/MIME security agent, trust, SMTP gateway)')
    .version(process.env.npm_package_version ?? '0.1.0')
    .showHelpAfterError('(add --help for usage)')
    .exitOverride();
  const one = VERBS.filter(([name]) => name === verb);
  for (const [, load] of one.length > 0 ? one : VERBS) (await load())(program);
  for (const c of program.commands) c.exitOverride().showHelpAfterError('(add --help for usage)');
  return program;
}

/** Entry point of bin/hisp.js. Never throws: prints the error and sets the exit code. */
export async function main(argv: string[]): Promise<void> {
  try {
    // argv: node, the script, then the verb (or an option such as --help: every verb).
    const program = await buildProgram(argv[2]);
    await program.parseAsync(argv);
  } catch (err) {
    process.exitCode = exitCodeFor(err);
  }
}

function exitCodeFor(err: unknown): number {
  if (err instanceof ReportedFailure) return err.exitCode;
  if (err instanceof CommanderError) {
    // --help and --version end through exitOverride too, with exit code 0.
    return err.exitCode === 0 ? EXIT.ok : EXIT.usage;
  }
  if (isHispError(err)) {
    process.stderr.write(`hisp: ${err.code}: ${err.message}\n`);
    return err.code === 'HISP_USAGE' ? EXIT.usage : EXIT.failed;
  }
  process.stderr.write(`hisp: internal error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  return EXIT.internal;
}
