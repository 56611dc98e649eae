import { describe, expect, it } from 'vitest';
import { cdaDocument, DEFAULT_HEADER, section } from '../../test/helpers/ccda-documents.js';
import { summarizeCcda, SUMMARY_MAX_IDS, SUMMARY_TEXT_MAX } from './ccda-summary.js';
import { readXml } from './xml-reader.js';

const summary = (parts: Parameters<typeof cdaDocument>[0]) => summarizeCcda(readXml(cdaDocument({ sections: [section('x')], ...parts })));

describe('summarizeCcda', () => {
  it('reads dates as ISO 8601 at the precision the document gives (HL7 v3 TS)', () => {
    const dated = (value: string) => summary({ header: `<effectiveTime value="${value}"/>` }).date;
    expect(dated('2012')).toBe('2012');
    expect(dated('201208')).toBe('2012-08');
    expect(dated('20120806')).toBe('2012-08-06');
    expect(dated('20120806-0500')).toBe('2012-08-06');
    expect(dated('201208061015')).toBe('2012-08-06T10:15');
    expect(dated('20130802101010.123+0130')).toBe('2013-08-02T10:10:10.123+01:30');
    for (const bad of ['', 'yesterday', '20121306', '20120832', '2012080625', '20120806101', '2012-08-06']) expect(dated(bad), bad).toBeNull();
    expect(summary({ header: '<effectiveTime nullFlavor="UNK"/>' }).date).toBeNull();
  });

  it('names the patient by the legal name, its parts in display order, or its text when it has no parts', () => {
    const patient = (names: string) => summary({ header: `<recordTarget><patientRole><patient>${names}</patient></patientRole></recordTarget>` }).patient.name;
    expect(patient('<name use="P"><given>Nick</given></name><name use="L"><family>Doe</family><given>Jane</given><suffix>Jr.</suffix><prefix>Dr</prefix></name>')).toBe('Dr Jane Doe Jr.');
    expect(patient('<name>  Jane\n   Q.   Public </name>')).toBe('Jane Q. Public');
    expect(patient('<name/>')).toBeNull();
    expect(patient('')).toBeNull();
  });

  it('reads the gender from displayName, else from the AdministrativeGender code', () => {
    const gender = (code: string) => summary({ header: `<recordTarget><patientRole><patient>${code}</patient></patientRole></recordTarget>` }).patient.gender;
    expect(gender('<administrativeGenderCode code="M"/>')).toBe('Male');
    expect(gender('<administrativeGenderCode code="UN"/>')).toBe('Undifferentiated');
    expect(gender('<administrativeGenderCode code="F" displayName="Femme"/>')).toBe('Femme');
    expect(gender('<administrativeGenderCode code="X"/>')).toBe('X');
    expect(gender('<administrativeGenderCode nullFlavor="UNK"/>')).toBeNull();
  });

  it('names a device author by model and software, and falls back to the author organization without a custodian', () => {
    const s = summary({
      header:
        '<author><assignedAuthor><assignedAuthoringDevice><manufacturerModelName>EHR 9</manufacturerModelName><softwareName>Charts</softwareName></assignedAuthoringDevice>' +
        '<representedOrganization><name>Clinic B</name></representedOrganization></assignedAuthor></author>',
    });
    expect(s.author).toBe('EHR 9, Charts');
    expect(s.organization).toBe('Clinic B');
  });

  it('reads the document author, never the author of an entry', () => {
    const s = summary({
      header: '',
      sections: [section('x', 'y', '<entry><act><author><assignedAuthor><assignedPerson><name>Entry Author</name></assignedPerson></assignedAuthor></author></act></entry>')],
    });
    expect(s).toEqual({ title: 'Test summary', patient: { name: null, birthTime: null, gender: null, ids: [] }, author: null, organization: null, date: null });
  });

  it('keeps identifiers with a root, at most SUMMARY_MAX_IDS, and cuts long text', () => {
    const ids = Array.from({ length: 30 }, (_, i) => `<id root="1.2.${i}" extension="e${i}"/>`).join('') + '<id nullFlavor="NI"/><id root="9.9"/>';
    const s = summary({ title: 'T'.repeat(2000), header: `<recordTarget><patientRole>${ids}</patientRole></recordTarget>` });
    expect(s.patient.ids).toHaveLength(SUMMARY_MAX_IDS);
    expect(s.patient.ids[0]).toEqual({ root: '1.2.0', extension: 'e0' });
    expect(summary({ header: '<recordTarget><patientRole><id root="9.9"/></patientRole></recordTarget>' }).patient.ids).toEqual([{ root: '9.9', extension: null }]);
    expect(s.title).toHaveLength(SUMMARY_TEXT_MAX);
    expect(s.title!.endsWith('…')).toBe(true);
  });

  it('replaces bidirectional controls in what it returns', () => {
    const s = summary({ title: 'Lab \u202Estluser\u202C', header: DEFAULT_HEADER.replace('<family>Lovelace</family>', '<family>\u2067Lovelace\u2069</family>') });
    expect(s.title).toBe('Lab \uFFFDstluser\uFFFD');
    expect(s.patient.name).toBe('Ms. Ada K. \uFFFDLovelace\uFFFD');
  });
});
