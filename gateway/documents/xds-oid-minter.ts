import { randomBytes, randomUUID } from 'node:crypto';
import { HispError } from '../core/errors.js';

/**
 * XDS OIDs (SubmissionSet.uniqueId, sourceId, DocumentEntry.uniqueId) are at most 64 characters
 * (ITI TF-3 4.2.3.1.7, the OID data type, which follows HL7 v2's limit).
 */
export const MAX_OID_LENGTH = 64;

/** ISO/IEC 8824 dotted decimal: a first arc 0–2, then arcs without leading zeros. */
const OID_SYNTAX = /^[0-2](\.(0|[1-9][0-9]*))+$/;

/**
 * Mints the unique ids of one XDM package.
 *
 * - Under a root the operator owns (`oidRoot`), ids are `<root>.<batch>.<n>`: `batch` is a random
 *   64-bit number drawn once per package (two packages collide only if they draw the same one:
 *   about one chance in 2^32 after 2^32 packages), `n` counts from 1.
 * - Without a root, every id is an OID of ITU-T X.667 / ISO/IEC 9834-8 §6.3: the arc `2.25` followed
 *   by a fresh random UUID written as one decimal integer. Anyone may mint those, with no registration,
 *   and they are unique for the same reason UUIDs are.
 *
 * @example
 *   const ids = new XdsOidMinter('1.2.840.114350.1.13.252');
 *   ids.next(); // '1.2.840.114350.1.13.252.9170312771802347001.1'
 */
/** The longest root: `root.<20-digit batch>.<4-digit count>` within {@link MAX_OID_LENGTH}. */
const MAX_ROOT_LENGTH = MAX_OID_LENGTH - 1 - 20 - 1 - 4;

export class XdsOidMinter {
  private readonly batch: string;
  private count = 0;

  constructor(readonly root?: string) {
    if (root !== undefined) {
      assertOid(root, 'the OID root');
      // Decided by the root alone, never by the batch drawn: a random 64-bit batch has up to 20
      // digits, and a package's counter up to 4 (`root.batch.count` must fit in 64 characters).
      if (root.length > MAX_ROOT_LENGTH) {
        throw new HispError('HISP_USAGE', `the OID root ${root} is too long: at most ${MAX_ROOT_LENGTH} characters, so that the unique ids under it stay within the ${MAX_OID_LENGTH} characters XDS allows`);
      }
    }
    this.batch = randomBytes(8).readBigUInt64BE().toString();
  }

  next(): string {
    if (this.root === undefined) return uuidOid();
    const oid = `${this.root}.${this.batch}.${++this.count}`;
    if (oid.length > MAX_OID_LENGTH) {
      throw new HispError('HISP_USAGE', `the OID root ${this.root} is too long: the unique ids under it would pass the ${MAX_OID_LENGTH} characters XDS allows`);
    }
    return oid;
  }
}

/** `2.25.<UUID as a decimal integer>` (ITU-T X.667 §6.3), from `uuid` or a fresh random one. */
export function uuidOid(uuid: string = randomUUID()): string {
  return `2.25.${BigInt(`0x${uuid.replaceAll('-', '')}`).toString()}`;
}

/** Refuses what is not a dotted-decimal OID of at most 64 characters (HISP_USAGE, naming `what`). */
export function assertOid(value: string, what: string): void {
  if (!OID_SYNTAX.test(value) || value.length > MAX_OID_LENGTH) {
    throw new HispError('HISP_USAGE', `${what} must be an OID (dotted decimal, first arc 0, 1 or 2, at most ${MAX_OID_LENGTH} characters): ${JSON.stringify(value.slice(0, 80))}`);
  }
}
