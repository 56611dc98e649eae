import { statSync } from 'node:fs';
import type { Command } from 'commander';
import { HispError } from '../core/errors.js';
import { renderCcda } from '../documents/ccda-renderer.js';
import { DEFAULT_XML_LIMITS } from '../documents/xml-reader.js';
import { readInput, writeOutput } from './cli-io.js';

interface RenderFlags {
  out?: string;
  summary?: boolean;
}

export function registerRender(program: Command): void {
  program
    .command('render')
    .summary('render a C-CDA (CDA R2) document as a safe, self-contained HTML page')
    .description(
      'Reads a CDA R2 document (FILE, or - for stdin) and writes one HTML page (stdout by default): a header ' +
        '(patient, title, author, organization, date) and every section with its title and narrative. ' +
        'Nothing of the document becomes markup: the narrative is mapped to a fixed vocabulary, links to other ' +
        'sites are shown as text, only embedded PNG, JPEG and GIF images are shown, and the page carries a ' +
        'Content-Security-Policy that forbids scripts and every request (docs/documents.md).',
    )
    .argument('<file>', 'the CDA document (XML)')
    .option('--out <file>', 'output HTML file (default stdout)')
    .option('--summary', 'also print the header summary as JSON on stderr (the `ccda` object of the API)')
    .action(async (file: string, flags: RenderFlags) => {
      // A file too large for the reader is refused before it is read into memory.
      if (file !== '-') {
        const size = statSafe(file);
        if (size !== null && size > DEFAULT_XML_LIMITS.maxBytes) {
          throw new HispError('HISP_XML_MALFORMED', `${file} is ${size} octets, more than the ${DEFAULT_XML_LIMITS.maxBytes} the XML reader takes: not read`);
        }
      }
      const { html, summary } = renderCcda(readInput(file));
      await writeOutput(flags.out, Buffer.from(html, 'utf8'));
      if (flags.summary) process.stderr.write(`${JSON.stringify(summary)}\n`);
    });
}

/** The size of a regular file, or null (not there, or not a regular file: readInput reports why). */
function statSafe(path: string): number | null {
  try {
    const st = statSync(path);
    return st.isFile() ? st.size : null;
  } catch {
    return null;
  }
}
