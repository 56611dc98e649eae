import { Writable } from 'node:stream';
import { isHispError } from '../core/errors.js';
import type { DocumentTools, XdmEntryDescription } from '../flows/send-message.js';
import type { ReceivedDocumentTools } from '../mailbox/mailbox-message.js';
import { renderCcda } from './ccda-renderer.js';
import { packXdm } from './xdm-pack.js';
import { unpackXdm } from './xdm-unpack.js';

export interface DocumentToolOptions {
  /** The OID root the XDM unique ids are minted under; default `2.25.<UUID>` OIDs (xdm-pack.ts). */
  oidRoot?: string | undefined;
}

/**
 * The documents room as the send service and the API mailboxes use it: a C-CDA rendered for
 * people (R-BB-6), documents packed as XDM (R-XDM-1), and on the receiving side the header facts
 * of a C-CDA part and the contents of an XDM part. A part that is not what it looks like (an XML
 * file that is no C-CDA, a zip that is no XDM package) is simply not described: the message is
 * still the PHR's to read, part by part.
 */
export function documentTools(options: DocumentToolOptions = {}): DocumentTools & ReceivedDocumentTools {
  return {
    renderCcda: (document) => renderCcda(document).html,
    packXdm: async (documents, file, submission = {}) => {
      await packXdm({
        ...(submission.patientId !== undefined ? { patientId: submission.patientId } : {}),
        ...(submission.title !== undefined ? { title: submission.title } : {}),
        ...(submission.intendedRecipients !== undefined ? { intendedRecipients: submission.intendedRecipients } : {}),
        ...(submission.patient !== undefined ? { patient: submission.patient } : {}),
        documents: documents.map((d) => ({
          filename: d.filename,
          mimeType: d.kind === 'ccda' ? 'text/xml' : d.contentType,
          ...(Buffer.isBuffer(d.content) ? { content: d.content } : { path: d.content.path }),
          ...entryFields(d.entry),
        })),
        out: file,
        ...(options.oidRoot !== undefined ? { oidRoot: options.oidRoot } : {}),
      });
    },
    summarizeCcda: (bytes) => {
      try {
        return { ...renderCcda(bytes).summary };
      } catch (err) {
        if (isHispError(err)) return undefined;
        throw err;
      }
    },
    describeXdm: async (bytes) => {
      try {
        const pkg = await unpackXdm(bytes, { onDocument: () => discard() });
        return {
          submissionSet: { ...(pkg.submissionSet ?? {}) },
          documents: pkg.documents.map((d) => ({ path: d.path, mimeType: d.mimeType, size: d.size, sha1: d.sha1, hashMatches: d.hashMatches, ...(d.entry ? { entry: d.entry } : {}) })),
        };
      } catch (err) {
        if (isHispError(err)) return undefined;
        throw err;
      }
    },
  };
}

/** The DocumentEntry a send describes, field by field: nothing else of the object reaches the package. */
function entryFields(entry: XdmEntryDescription | undefined): XdmEntryDescription {
  if (!entry) return {};
  const { title, comments, creationTime, languageCode, codes } = entry;
  return {
    ...(title !== undefined ? { title } : {}),
    ...(comments !== undefined ? { comments } : {}),
    ...(creationTime !== undefined ? { creationTime } : {}),
    ...(languageCode !== undefined ? { languageCode } : {}),
    ...(codes !== undefined ? { codes } : {}),
  };
}

/** A sink for document bytes the description does not keep (it needs their hashes only). */
function discard(): Writable {
  return new Writable({
    write(_chunk, _encoding, done) {
      done();
    },
  });
}
