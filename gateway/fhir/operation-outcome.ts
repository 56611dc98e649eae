import type { OperationOutcome, OperationOutcomeIssue } from '@medplum/fhirtypes';
import { isHispError, type HispErrorCode } from '../core/errors.js';
import { problemForError } from '../api/problem-mapping.js';
import type { MhdIssue } from './mhd-bundle.js';

/** The media type of every /fhir response (FHIR R4 http.html §3.1.0.1.10: application/fhir+json). */
export const FHIR_MEDIA_TYPE = 'application/fhir+json';

/** The system of the HISP_… code an issue carries in `details` (the problems' tag URI, RFC 4151). */
export const HISP_CODE_SYSTEM = 'tag:hisp.dev,2026:error-code';

type IssueType = OperationOutcomeIssue['code'];

/**
 * FHIR R4 IssueType (valueset issue-type) by HTTP status: the status stays api/problem-mapping.ts's
 * (one table for the whole API), the issue type says the same in FHIR's words.
 */
function issueTypeForStatus(status: number, code: HispErrorCode | 'HISP_INTERNAL'): IssueType {
  if (code === 'HISP_FHIR_INVALID' || code === 'HISP_API_INVALID_REQUEST' || code === 'HISP_XML_MALFORMED' || code === 'HISP_CDA_INVALID') return 'invalid';
  if (code === 'HISP_API_IDEMPOTENCY_CONFLICT') return 'conflict';
  switch (status) {
    case 401:
      return 'login';
    case 403:
      return 'forbidden';
    case 404:
      return 'not-found';
    case 405:
    case 415:
      return 'not-supported';
    case 413:
      return 'too-costly';
    case 429:
      return 'throttled';
    case 503:
      return 'transient';
    default:
      return status >= 500 ? 'exception' : status === 422 ? 'processing' : 'invalid';
  }
}

/**
 * An error as FHIR's answer (FHIR R4 http.html §3.1.0.4: errors are OperationOutcomes): the
 * status and detail of the API's problem (never a hisp internal named: the same rule as
 * problem-mapping.ts), one issue per rule broken for HISP_FHIR_INVALID, each with its expression
 * (the entry and element), and the HISP_… code in `details`.
 */
export function operationOutcomeForError(err: unknown, trace: string): { status: number; outcome: OperationOutcome } {
  const problem = problemForError(err, trace);
  const type = issueTypeForStatus(problem.status, problem.code);
  const details = { coding: [{ system: HISP_CODE_SYSTEM, code: problem.code }], text: problem.title };
  const severity = problem.status >= 500 ? 'fatal' : 'error';
  const listed = isHispError(err) && Array.isArray(err.details?.issues) ? (err.details.issues as MhdIssue[]) : [];
  const issue: OperationOutcomeIssue[] =
    listed.length > 0
      ? listed.map((i) => ({ severity, code: type, details, diagnostics: i.message, expression: [i.expression] }))
      : [{ severity, code: type, details, diagnostics: problem.detail }];
  const schemaErrors = isHispError(err) && Array.isArray(err.details?.errors) ? (err.details.errors as { in: string; path: string; message: string }[]) : [];
  if (listed.length === 0 && schemaErrors.length > 0) issue[0]!.expression = schemaErrors.slice(0, 10).map((e) => `${e.in}${e.path}`);
  return { status: problem.status, outcome: { resourceType: 'OperationOutcome', issue } };
}
