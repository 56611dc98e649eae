import { extname } from 'node:path';

/**
 * The media type a document's file name suggests, for an XDM DocumentEntry's mimeType when the caller
 * gives none, and for a document a package's metadata does not describe. XML is `text/xml`: the type
 * IHE's content profiles give CDA documents in XDS metadata (ETT's limited-metadata samples use it);
 * anything not in the table is `application/octet-stream`, never a guess from the bytes.
 */
const BY_EXTENSION: Readonly<Record<string, string>> = {
  '.xml': 'text/xml',
  '.pdf': 'application/pdf',
  '.txt': 'text/plain',
  '.htm': 'text/html',
  '.html': 'text/html',
  '.json': 'application/json',
  '.rtf': 'text/rtf',
  '.jpg': 'image/jpeg',
  '.jpeg': 'image/jpeg',
  '.png': 'image/png',
  '.gif': 'image/gif',
  '.tif': 'image/tiff',
  '.tiff': 'image/tiff',
  '.dcm': 'application/dicom',
  '.zip': 'application/zip',
};

export function mediaTypeOf(fileName: string): string {
  return BY_EXTENSION[extname(fileName).toLowerCase()] ?? 'application/octet-stream';
}
