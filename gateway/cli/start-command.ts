import { relative, resolve } from 'node:path';
import type { Command } from 'commander';
import { ensureDevelopmentDomain } from '../admin/development-domain.js';

interface StartFlags {
  dataDir?: string;
}

/**
 * `hisp start`. Today it prepares the embedded default (the data folder with a development Direct
 * domain, its CA and keys) and shows the security agent working on it; the SMTP listeners, the
 * queue and `--config` come with the gateway issue, which extends this verb.
 */
export function registerStart(program: Command): void {
  program
    .command('start')
    .summary('prepare the embedded default (data folder, development domain) and show a first message')
    .description(
      'Creates the data folder (./hisp-data, or --data-dir, or $HISP_DATA_DIR) with a development Direct ' +
        'domain (direct.localhost), its CA and its keys (mode 0600), reusing them when present, and prints ' +
        'a first message to wrap and unwrap with them. The SMTP gateway itself (listeners, queue, relay, ' +
        '--config) is not part of this release yet: see README.',
    )
    .option('--data-dir <dir>', 'data folder (default ./hisp-data or $HISP_DATA_DIR)')
    .action(async (flags: StartFlags) => {
      const dataDir = resolve(flags.dataDir ?? process.env.HISP_DATA_DIR ?? 'hisp-data');
      const d = await ensureDevelopmentDomain(dataDir);
      const rel = (p: string) => relative(process.cwd(), p) || '.';
      const q = (p: string) => JSON.stringify(rel(p));
      process.stdout.write(
        `hisp: data folder ${rel(dataDir)} ${d.created ? 'created' : 'ready'}: development domain ${d.domain}, ` +
          `anchor ${rel(d.anchor)}\n` +
          'hisp: the security agent is ready; the SMTP listeners are not part of this release yet (see README).\n' +
          'hisp: send a first message through it:\n\n' +
          `  printf 'From: provider@${d.domain}\\r\\nTo: patient@${d.domain}\\r\\nSubject: Hello Direct\\r\\n\\r\\nHello\\r\\n' \\\n` +
          `    | npx hisp wrap --sign-key ${q(d.key)} --sign-cert ${q(d.certificate)} --encrypt-cert ${q(d.certificate)} \\\n` +
          `    | npx hisp unwrap --decrypt-key ${q(d.key)} --decrypt-cert ${q(d.certificate)} --anchor ${q(d.anchor)} --json\n`,
      );
    });
}
