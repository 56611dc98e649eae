import { Command, CommanderError } from 'commander';
import { isHispError } from '../core/errors.js';
import { EXIT, ReportedFailure } from './exit-codes.js';
import { registerApiKey } from './api-key-command.js';
import { registerAudit } from './audit-command.js';
import { registerConfig } from './config-command.js';
import { registerDiscover } from './discover-command.js';
import { registerQuarantine } from './quarantine-command.js';
import { registerQueue } from './queue-command.js';
import { registerRender } from './render-command.js';
import { registerStart } from './start-command.js';
import { registerSend } from './send-command.js';
import { registerStatus } from './status-command.js';
import { registerUnwrap } from './unwrap-command.js';
import { registerWrap } from './wrap-command.js';
import { registerXdm } from './xdm-command.js';

export function buildProgram(): Command {
  const program = new Command('hisp')
    .description('hisp: a Direct Project HISP (S/MIME security agent, trust, SMTP gateway)')
    .version(process.env.npm_package_version ?? '0.1.0')
    .showHelpAfterError('(add --help for usage)')
    .exitOverride();
  registerStart(program);
  registerWrap(program);
  registerUnwrap(program);
  registerDiscover(program);
  registerConfig(program);
  registerSend(program);
  registerStatus(program);
  registerQueue(program);
  registerQuarantine(program);
  registerRender(program);
  registerXdm(program);
  registerApiKey(program);
  registerAudit(program);
  for (const c of program.commands) c.exitOverride().showHelpAfterError('(add --help for usage)');
  return program;
}

/** Entry point of bin/hisp.js. Never throws: prints the error and sets the exit code. */
export async function main(argv: string[]): Promise<void> {
  const program = buildProgram();
  try {
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
