import type { Command } from 'commander';
import { packXdm } from '../documents/xdm-pack.js';
import { unpackXdm, type XdmPackage } from '../documents/xdm-unpack.js';
import { writeJson } from './data-options.js';

interface PackFlags {
  out: string;
  patientId?: string;
  oidRoot?: string;
}

interface UnpackFlags {
  json?: boolean;
  outDir?: string;
}

/**
 * `hisp xdm pack` and `hisp xdm unpack`: the integration engineer's tools for the XDM packages Direct
 * carries (IHE ITI XDM, issue 15). Contracts: `hisp xdm pack --out FILE.zip [--patient-id ID] DOC…`
 * and `hisp xdm unpack FILE.zip [--json] [--out-dir DIR]`; bad input exits 1 with `HISP_…: reason`.
 */
export function registerXdm(program: Command): void {
  const xdm = program.command('xdm').summary('pack documents into an XDM zip, or unpack and check one (IHE ITI XDM as Direct uses it)');

  xdm
    .command('pack')
    .summary('pack documents into an XDM zip')
    .description(
      'Writes an IHE XDM package: README.TXT, INDEX.HTM and IHE_XDM/SUBSET01/ with the documents (named as ETT names them: ' +
        'CCDA_AMB.XML) and METADATA.XML (a SubmissionSet and one DocumentEntry per document: type, SHA-1, size, URI, ' +
        'creation time, patient id, unique ids). Documents are streamed; the zip appears only once whole.',
    )
    .argument('<doc...>', 'documents to pack (files)')
    .requiredOption('--out <file>', 'the zip to write')
    .option('--patient-id <cx>', 'the patient, as HL7 CX id^^^&OID&ISO (e.g. 1234^^^&2.16.840.1.113883.4.6&ISO)')
    .option('--oid-root <oid>', 'mint the unique ids under this OID (default: 2.25.<UUID> OIDs, ITU-T X.667, which need no registration)')
    .action(async (docs: string[], flags: PackFlags) => {
      const result = await packXdm({
        documents: docs.map((path) => ({ path })),
        out: flags.out,
        ...(flags.patientId !== undefined ? { patientId: flags.patientId } : {}),
        ...(flags.oidRoot !== undefined ? { oidRoot: flags.oidRoot } : {}),
      });
      const lines = [`${flags.out}: ${result.documents.length} document(s), ${result.size} octets, submission set ${result.submissionSet.uniqueId}`];
      for (const d of result.documents) lines.push(`  ${d.path}  ${d.mimeType}  ${d.size} octets  sha1 ${d.sha1}  uniqueId ${d.uniqueId}`);
      process.stdout.write(`${lines.join('\n')}\n`);
    });

  xdm
    .command('unpack')
    .summary('list, check and extract the documents of an XDM zip')
    .description(
      'Reads an XDM package as hisp reads a received one: finds each METADATA.XML, matches every document to its DocumentEntry ' +
        '(by SHA-1, then URI) and says whether hash and size match. Refuses unsafe names, links, duplicates and zip bombs. ' +
        '--out-dir writes the documents and METADATA.XML there, at their paths in the package, never over a file.',
    )
    .argument('<file>', 'the XDM zip')
    .option('--json', 'print {"documents": [{"path", "mimeType", "size", "sha1", "hashMatches", …}], "submissionSet": {…}, …}')
    .option('--out-dir <dir>', 'write the documents and METADATA.XML under this folder')
    .action(async (file: string, flags: UnpackFlags) => {
      const pkg = await unpackXdm(file, flags.outDir !== undefined ? { outDir: flags.outDir } : {});
      if (flags.json) writeJson(pkg);
      else process.stdout.write(describe(file, pkg));
    });
  for (const c of xdm.commands) c.exitOverride().showHelpAfterError('(add --help for usage)');
}

/** The readable report of `hisp xdm unpack`. */
function describe(file: string, pkg: XdmPackage): string {
  const ss = pkg.submissionSet;
  const lines = [`${file}: ${pkg.documents.length} document(s) in ${pkg.subsets.length} submission set(s)`];
  if (ss) lines.push(`submission set ${ss.uniqueId ?? '(no uniqueId)'}, source ${ss.sourceId ?? '?'}, patient ${ss.patientId ?? '(none)'}, submitted ${ss.submissionTime ?? '?'}`);
  for (const d of pkg.documents) {
    const check = d.entry === null ? 'no DocumentEntry' : d.hashMatches ? 'hash matches' : 'HASH DOES NOT MATCH';
    lines.push(`  ${d.path}  ${d.mimeType}  ${d.size} octets  sha1 ${d.sha1}  ${check}${d.file !== undefined ? `  -> ${d.file}` : ''}`);
  }
  for (const w of pkg.warnings) lines.push(`warning: ${w}`);
  return `${lines.join('\n')}\n`;
}
