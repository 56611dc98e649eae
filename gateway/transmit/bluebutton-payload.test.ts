// The Direct Context of a transmission: what the authorization lets it say, and nothing the
// metadata part could not carry as it is.
import { describe, expect, it } from 'vitest';
import { formatDirectContext } from '../documents/direct-context.js';
import { transmissionContext } from './bluebutton-payload.js';

describe('transmissionContext', () => {
  it('the patient id under an OID authority, the date of birth, the type by trigger', () => {
    expect(transmissionContext({ patientRef: 'MRN-7', assigningAuthority: '2.16.840.1.113883.19.5', birthDate: '1970-05-01' }, 'new-result')).toEqual({
      type: { category: 'laboratory', action: 'result' },
      patientId: [{ authority: '2.16.840.1.113883.19.5', id: 'MRN-7' }],
      patient: { dateOfBirth: '1970-05-01' },
    });
    expect(transmissionContext({ patientRef: 'MRN-7', assigningAuthority: null, birthDate: null }, 'discharge')).toEqual({ type: { category: 'general', action: 'report' } });
  });

  it('leaves out what the metadata part cannot carry: an authority that is no OID, a value with its separators', () => {
    const c = transmissionContext({ patientRef: 'a;b=c', assigningAuthority: 'Hospital', birthDate: '1970=05' }, 'manual');
    expect(c).toEqual({ type: { category: 'general', action: 'report' } });
    expect(() => formatDirectContext({ version: '1.1', id: 'x', ...transmissionContext({ patientRef: 'MRN;7', assigningAuthority: '1.2.3', birthDate: null }, 'claim') })).not.toThrow();
  });
});
