// Errors as FHIR OperationOutcomes: the API's status (problem-mapping.ts), the FHIR issue type,
// one issue per broken rule with its expression, and nothing of hisp's insides for an internal error.
import { describe, expect, it } from 'vitest';
import { HispError } from '../core/errors.js';
import { HISP_CODE_SYSTEM, operationOutcomeForError } from './operation-outcome.js';

describe('operationOutcomeForError', () => {
  it('an invalid Bundle: 422, one issue per rule with its expression', () => {
    const err = new HispError('HISP_FHIR_INVALID', 'x', { details: { issues: [{ expression: 'Bundle.type', message: 'must be transaction' }, { expression: 'Bundle.entry[2].fullUrl', message: 'is required' }] } });
    const { status, outcome } = operationOutcomeForError(err, 't1');
    expect(status).toBe(422);
    expect(outcome.issue.map((i) => [i.severity, i.code, i.expression, i.diagnostics, i.details?.coding?.[0]])).toEqual([
      ['error', 'invalid', ['Bundle.type'], 'must be transaction', { system: HISP_CODE_SYSTEM, code: 'HISP_FHIR_INVALID' }],
      ['error', 'invalid', ['Bundle.entry[2].fullUrl'], 'is required', { system: HISP_CODE_SYSTEM, code: 'HISP_FHIR_INVALID' }],
    ]);
  });

  it('statuses and issue types of the API’s errors', () => {
    const cases: [HispError, number, string][] = [
      [new HispError('HISP_API_UNAUTHORIZED', 'no key'), 401, 'login'],
      [new HispError('HISP_API_FORBIDDEN', 'no'), 403, 'forbidden'],
      [new HispError('HISP_NOT_FOUND', 'none'), 404, 'not-found'],
      [new HispError('HISP_API_UNSUPPORTED_MEDIA_TYPE', 'type'), 415, 'not-supported'],
      [new HispError('HISP_API_PAYLOAD_TOO_LARGE', 'big'), 413, 'too-costly'],
      [new HispError('HISP_API_RATE_LIMITED', 'slow'), 429, 'throttled'],
      [new HispError('HISP_CDA_INVALID', 'not CDA'), 422, 'invalid'],
      [new HispError('HISP_DISCOVERY_TEMPORARY', 'later'), 503, 'transient'],
    ];
    for (const [err, status, code] of cases) {
      const r = operationOutcomeForError(err, 't');
      expect([r.status, r.outcome.issue[0]!.code, r.outcome.issue[0]!.diagnostics]).toEqual([status, code, err.message]);
    }
  });

  it('an internal failure: 500, fatal, its trace, nothing of the error', () => {
    const { status, outcome } = operationOutcomeForError(new Error('ENOENT /var/lib/hisp/secret'), 'trace-9');
    expect(status).toBe(500);
    expect(outcome.issue[0]).toMatchObject({ severity: 'fatal', code: 'exception' });
    expect(outcome.issue[0]!.diagnostics).toContain('trace-9');
    expect(JSON.stringify(outcome)).not.toContain('/var/lib');
  });
});
