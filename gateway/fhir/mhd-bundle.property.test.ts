// Hostile Bundles for the ITI-65 reader: any JSON value, and valid Bundles with one or more values
// anywhere replaced by anything (or removed). The reader answers a submission or HISP_FHIR_INVALID
// naming at least one issue, never another error; and what it accepts is still bounded.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { isHispError } from '../core/errors.js';
import { CCDA_FORMAT, mhdBundle } from '../../test/helpers/mhd-bundles.js';
import { MHD_LIMITS, readMhdBundle } from './mhd-bundle.js';

/** Every path (keys and indexes) of a JSON value. */
function paths(value: unknown, at: (string | number)[] = [], out: (string | number)[][] = []): (string | number)[][] {
  out.push(at);
  if (Array.isArray(value)) value.forEach((v, i) => paths(v, [...at, i], out));
  else if (value !== null && typeof value === 'object') for (const [k, v] of Object.entries(value)) paths(v, [...at, k], out);
  return out;
}

function setAt(root: unknown, path: (string | number)[], value: unknown, remove: boolean): unknown {
  if (path.length === 0) return value;
  let node = root as Record<string | number, unknown>;
  for (const p of path.slice(0, -1)) node = node[p] as Record<string | number, unknown>;
  const last = path.at(-1)!;
  if (remove) delete node[last];
  else node[last] = value;
  return root;
}

function expectReadOrRefused(body: unknown): void {
  try {
    const s = readMhdBundle(body);
    expect(s.recipients.length).toBeGreaterThan(0);
    expect(s.recipients.length).toBeLessThanOrEqual(MHD_LIMITS.recipients);
    expect(s.documents.length).toBeLessThanOrEqual(MHD_LIMITS.documents);
  } catch (err) {
    if (!isHispError(err)) throw err;
    expect(err.code).toBe('HISP_FHIR_INVALID');
    expect((err.details?.issues as unknown[]).length).toBeGreaterThan(0);
  }
}

const base = mhdBundle({
  recipients: ['patient@phr.example', 'nurse@clinic.example'],
  documents: [
    { content: Buffer.from('<ClinicalDocument xmlns="urn:hl7-org:v3"/>'), format: CCDA_FORMAT, title: 'ccda.xml' },
    { content: Buffer.from('plain'), contentType: 'text/plain' },
  ],
  patientResource: { identifier: [{ system: 'urn:oid:1.2.3', value: 'MRN-1' }], name: [{ use: 'official', family: 'Jones', given: ['Ada', 'B'] }], birthDate: '1970-01-31', gender: 'female' },
});
const basePaths = paths(base);

describe('readMhdBundle with hostile input', () => {
  it('any JSON value: a submission or HISP_FHIR_INVALID', () => {
    fc.assert(fc.property(fc.jsonValue({ maxDepth: 6 }), (v) => expectReadOrRefused(v)), { numRuns: 300 });
  });

  it('a valid Bundle with values replaced by anything, or removed: a submission or HISP_FHIR_INVALID', () => {
    const edit = fc.record({ at: fc.nat(basePaths.length - 1), value: fc.anything({ maxDepth: 3 }), remove: fc.boolean() });
    fc.assert(
      fc.property(fc.array(edit, { minLength: 1, maxLength: 4 }), (edits) => {
        let body: unknown = structuredClone(base);
        for (const e of edits) {
          const path = basePaths[e.at]!;
          try {
            body = setAt(body, path, e.value, e.remove);
          } catch {
            // The path is gone after an earlier edit: that edit stands alone.
          }
        }
        expectReadOrRefused(body);
      }),
      { numRuns: 600 },
    );
  });
});
