import { describe, expect, it } from 'vitest';
import { hispError } from '../../test/helpers/hisp-error.js';
import { readXdmMetadata } from './xdm-metadata-reader.js';

const doc = (body: string, root = '<lcm:SubmitObjectsRequest xmlns:lcm="urn:oasis:names:tc:ebxml-regrep:xsd:lcm:3.0" xmlns:rim="urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0">') =>
  Buffer.from(`${root}<rim:RegistryObjectList>${body}</rim:RegistryObjectList></lcm:SubmitObjectsRequest>`);

describe('readXdmMetadata', () => {
  it('counts a classification or identifier for the object it names, whether nested in it or beside it', () => {
    const m = readXdmMetadata(
      doc(`<rim:ExtrinsicObject id="d1" mimeType="text/xml"/>
        <rim:Classification classifiedObject="d1" classificationScheme="urn:uuid:f0306f51-975f-434e-a61c-c59651d33983" nodeRepresentation="34133-9">
          <rim:Slot name="codingScheme"><rim:ValueList><rim:Value>2.16.840.1.113883.6.1</rim:Value></rim:ValueList></rim:Slot>
          <rim:Name><rim:LocalizedString value="Summary of episode note"/></rim:Name></rim:Classification>
        <rim:ExternalIdentifier registryObject="d1" identificationScheme="urn:uuid:2e82c1f6-a085-4c72-9da3-8640a32e42ab" value=" 1.2.3.4 "/>
        <rim:Classification classifiedObject="d1" classificationNode="urn:uuid:ab9b591b-83ab-4d03-8f5d-f93b1fb92e85"/>`),
    );
    expect(m.documentEntries[0]).toMatchObject({
      entryUUID: 'd1',
      uniqueId: '1.2.3.4',
      typeCode: { code: '34133-9', codingScheme: '2.16.840.1.113883.6.1', displayName: 'Summary of episode note' },
      limitedMetadata: true,
      hash: null,
      size: null,
      uri: null,
    });
  });

  it('puts back together a URI split over values `1|…`, `2|…` (XDS.a), and takes a size only when it is a number', () => {
    const m = readXdmMetadata(
      doc(`<rim:ExtrinsicObject id="d1">
        <rim:Slot name="URI"><rim:ValueList><rim:Value>2|DOC.XML</rim:Value><rim:Value>1|FOLDER/</rim:Value></rim:ValueList></rim:Slot>
        <rim:Slot name="size"><rim:ValueList><rim:Value>12 octets</rim:Value></rim:ValueList></rim:Slot>
        <rim:Slot name="hash"><rim:ValueList><rim:Value>ABCDEF</rim:Value></rim:ValueList></rim:Slot></rim:ExtrinsicObject>`),
    );
    expect(m.documentEntries[0]).toMatchObject({ uri: 'FOLDER/DOC.XML', size: null, hash: 'abcdef' });
  });

  it('finds the SubmissionSet by its uniqueId when no classification names it, and never takes a Folder for it', () => {
    const folder = `<rim:RegistryPackage id="f"><rim:Classification classifiedObject="f" classificationNode="urn:uuid:d9d542f3-6cc4-48b6-8870-ea235fbc94c2"/></rim:RegistryPackage>`;
    const set = `<rim:RegistryPackage id="s"><rim:ExternalIdentifier identificationScheme="urn:uuid:96fdda7c-d067-4183-912e-bf5ee74998a8" value="2.25.7"/></rim:RegistryPackage>`;
    expect(readXdmMetadata(doc(folder + set)).submissionSet).toMatchObject({ entryUUID: 's', uniqueId: '2.25.7' });
    expect(readXdmMetadata(doc(folder)).submissionSet).toBeNull();
  });

  it('reads elements in any namespace or none', () => {
    const bare = Buffer.from('<SubmitObjectsRequest><RegistryObjectList><ExtrinsicObject id="x" mimeType="application/pdf"/></RegistryObjectList></SubmitObjectsRequest>');
    expect(readXdmMetadata(bare).documentEntries.map((e) => [e.entryUUID, e.mimeType])).toEqual([['x', 'application/pdf']]);
  });

  it('refuses what readXml refuses, and XML that is not an ebRS request, as HISP_XDM_MALFORMED', () => {
    expect(hispError(() => readXdmMetadata(Buffer.from('<a>'))).code).toBe('HISP_XDM_MALFORMED');
    expect(hispError(() => readXdmMetadata(Buffer.from('<ClinicalDocument xmlns="urn:hl7-org:v3"/>'))).message).toMatch(/no RegistryObjectList \(its root is ClinicalDocument\)/);
  });
});
