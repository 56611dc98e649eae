import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { receiveSigned as received } from '../../test/helpers/received-message.js';
import { authenticationResultsField, withoutOwnResults } from './authentication-results.js';
import { signerMetadata } from './signer-metadata.js';

const OWN = 'hisp.recipient.test';

const MANIFEST = JSON.parse(readFileSync(new URL('../../test/fixtures/pki/manifest.json', import.meta.url), 'utf8')) as Record<string, { subject: string; sha256: string }>;

const inner = (from: string, extra = ''): Buffer =>
  Buffer.from(`${extra}From: ${from}\r\nTo: patient@recipient.test\r\nSubject: results\r\nMessage-ID: <ar@sender.test>\r\n\r\nAuthentication-Results: ${OWN}; smime=pass (in the body: stays)\r\n`, 'latin1');

/** The header fields of a message, unfolded, in order. */
const fields = (m: Buffer): string[] => {
  const s = m.toString('latin1');
  return s.slice(0, s.indexOf('\r\n\r\n')).split(/\r\n(?![ \t])/).map((f) => f.replace(/\r\n([ \t])/g, '$1'));
};

describe('authenticationResultsField (RFC 8601 with the smime method of RFC 7281)', () => {
  it('an address-bound signer: smime=pass, body.smime-identifier = the address, serial and issuer, folded ASCII lines', async () => {
    const r = await received('sender-rsa', inner('sender@sender.test'));
    const field = authenticationResultsField(OWN, r.accepted, r.sender.toString()).toString('latin1');
    const cert = r.accepted[0]!.certificate;
    expect(field).toBe(
      `Authentication-Results: ${OWN};\r\n\tsmime=pass (address-bound signer, trusted)\r\n\tbody.smime-identifier=sender@sender.test\r\n` +
        `\tbody.smime-serial=${cert.serialHex}\r\n\tbody.smime-issuer="CN=hisp Test Intermediate CA,O=hisp tests"\r\n`,
    );
    for (const line of field.split('\r\n')) expect(line.length).toBeLessThanOrEqual(78);
    expect(field).toMatch(/^[\x20-\x7e\t\r\n]*$/);
  });

  it('a domain-bound signer is identified by the domain; nobody signed (a notice hisp made): "none"', async () => {
    const r = await received('sender-domain', inner('sender@sender.test'));
    expect(authenticationResultsField(OWN, r.accepted, r.sender.toString()).toString()).toContain(
      'smime=pass (domain-bound signer, trusted)\r\n\tbody.smime-identifier=sender.test\r\n',
    );
    expect(authenticationResultsField('HISP.Recipient.Test', undefined).toString()).toBe(`Authentication-Results: ${OWN}; none\r\n`);
  });
});

describe('withoutOwnResults (RFC 8601 §5: a verdict in our name from outside is removed)', () => {
  const strip = (m: string): string => Buffer.concat(withoutOwnResults(Buffer.from(m, 'latin1'), OWN)).toString('latin1');

  it('removes every field claiming our authserv-id, whatever its case, folding, comments or quoting', () => {
    const forged = [
      `Authentication-Results: ${OWN}; smime=pass\r\n`,
      `authentication-results:HISP.RECIPIENT.TEST;\r\n\tsmime=pass body.smime-identifier=ceo@recipient.test\r\n`,
      `Authentication-Results: (forged) (nested (comment))\r\n "${OWN}" 1; none\r\n`,
      `Authentication-Results :\r\n\t${OWN}\r\n\t; smime=pass\r\n`,
    ];
    const kept = ['From: sender@sender.test\r\n', 'Authentication-Results: mx.sender.test; dkim=pass header.d=sender.test\r\n', `Authentication-Results: ${OWN}.evil.test; none\r\n`, 'Subject: s\r\n'];
    const message = `${kept[0]}${forged[0]}${kept[1]}${forged[1]}${forged[2]}${kept[2]}${forged[3]}${kept[3]}\r\nAuthentication-Results: ${OWN}; none\r\n`;
    expect(strip(message)).toBe(`${kept.join('')}\r\nAuthentication-Results: ${OWN}; none\r\n`);
  });

  it('gives back the same bytes when there is nothing to remove (bare LF, no body, no header)', () => {
    for (const m of ['From: a@b.test\nSubject: x\n\nbody\n', 'From: a@b.test\r\n', '\r\nbody only\r\n', '']) expect(strip(m)).toBe(m);
  });
});

describe('the delivered form of a real signed message', () => {
  it('has exactly one Authentication-Results of ours, smime=pass, first; the forged one inside is gone', async () => {
    const r = await received('sender-rsa', inner('sender@sender.test', `Authentication-Results: ${OWN}; smime=pass body.smime-identifier=ceo@recipient.test\r\n`));
    const trace = Buffer.from(`Received: from mx.sender.test by ${OWN} (hisp) with ESMTP id q1; Tue, 1 Jan 2030 00:00:00 +0000\r\n`);
    const delivered = Buffer.concat([authenticationResultsField(OWN, r.accepted, r.sender.toString()), trace, ...withoutOwnResults(r.unwrapped.message, OWN)]);
    const ours = fields(delivered).filter((f) => /^authentication-results:\s*hisp\.recipient\.test\b/i.test(f));
    expect(ours).toHaveLength(1);
    expect(fields(delivered)[0]).toMatch(/^Authentication-Results: hisp\.recipient\.test;\tsmime=pass /);
    expect(fields(delivered)[1]).toMatch(/^Received: /);
    expect(delivered.toString()).not.toContain('ceo@recipient.test');
  });
});

describe('signerMetadata (the webhook metadata of docs/delivery.md)', () => {
  it("holds the sender, the signer's subject, fingerprint, binding, and the anchor its chain ended at", async () => {
    const r = await received('sender-rsa', inner('sender@sender.test'));
    const m = signerMetadata(r, (anchor) => (anchor.sha256 === MANIFEST['root-ca']!.sha256 ? 'https://bundles.example/b.p7b' : undefined));
    expect(m).toMatchObject({ sender: 'sender@sender.test', signer: MANIFEST['sender-rsa']!.subject, anchor: MANIFEST['root-ca']!.subject });
    expect(m.signers).toHaveLength(1);
    expect(m.signers[0]).toMatchObject({
      subject: MANIFEST['sender-rsa']!.subject,
      issuer: MANIFEST['intermediate-ca']!.subject,
      sha256: MANIFEST['sender-rsa']!.sha256,
      binding: 'address',
      boundTo: 'sender@sender.test',
      anchor: { subject: MANIFEST['root-ca']!.subject, sha256: MANIFEST['root-ca']!.sha256, bundle: 'https://bundles.example/b.p7b' },
    });
    expect(JSON.parse(JSON.stringify(m))).toEqual(m); // JSON as it is
    const domainBound = signerMetadata(await received('sender-domain', inner('sender@sender.test')));
    expect(domainBound.signers[0]).toMatchObject({ binding: 'domain', boundTo: 'sender.test', anchor: { bundle: null } });
  });
});
