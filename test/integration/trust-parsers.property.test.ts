// Property tests of the trust layer's parsers of network bytes: trust bundles, CRLs and AIA answers.
// Random bytes and mutations (bit flips, truncations, insertions, deletions) of valid inputs may
// only ever yield a HispError of the parser's own codes, never a TypeError/RangeError or a hang;
// and whatever still verifies after a mutation says exactly what the original said (the signature
// covers it). The seed is fixed (FC_SEED overrides) so that a failure reproduces.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Certificate } from '../../gateway/core/certificate.js';
import { HispError, type HispErrorCode } from '../../gateway/core/errors.js';
import { parseCaIssuersAnswer } from '../../gateway/trust/aia.js';
import { checkAgainstCrl, parseCrl, RevocationChecker, verifyCrl } from '../../gateway/trust/revocation.js';
import { parseTrustBundle } from '../../gateway/trust/trust-bundle.js';
import { readTrustFile, trustCert } from '../fixtures/trust/trust-pki.js';
import { vectorGroup } from '../helpers/vectors.js';
import { NASTY_BER, applyMutation, mutationArbitrary } from '../helpers/mutations.js';

const SEED = Number(process.env.FC_SEED ?? 20261126);
const RUNS = 300;
const MAX_MS_PER_CALL = 3000;
const params = (numRuns = RUNS): fc.Parameters<unknown> => ({ seed: SEED, numRuns, endOnFailure: true });

/** Runs fn; a throw must be a HispError with one of `codes`; the call must not hang. */
function only<T>(codes: readonly HispErrorCode[], fn: () => T): T | undefined {
  const t0 = performance.now();
  let result: T | undefined;
  try {
    result = fn();
  } catch (err) {
    if (!(err instanceof HispError)) {
      const e = err as Error;
      throw new Error(`non-HispError escaped: ${e?.constructor?.name ?? typeof err}: ${e?.message ?? String(err)}`, { cause: err });
    }
    if (!codes.includes(err.code)) throw new Error(`unexpected code ${err.code}: ${err.message}`, { cause: err });
  }
  const ms = performance.now() - t0;
  if (ms > MAX_MS_PER_CALL) throw new Error(`call took ${ms.toFixed(0)} ms`);
  return result;
}

const mutationArb = mutationArbitrary(NASTY_BER);

const mutationsOf = (seed: Buffer): fc.Arbitrary<Buffer> =>
  fc.array(mutationArb, { minLength: 1, maxLength: 4 }).map((ms) => ms.reduce(applyMutation, seed));

const randomBytes = fc.uint8Array({ minLength: 0, maxLength: 2048 }).map((a) => Buffer.from(a));

const BUNDLE_CODES: HispErrorCode[] = ['HISP_BUNDLE_INVALID', 'HISP_BUNDLE_SIGNATURE'];
const CRL_CODES: HispErrorCode[] = ['HISP_TRUST_REVOCATION_UNAVAILABLE'];
const AT = new Date('2026-03-01T00:00:00Z');
const root = trustCert('root-ca');
const signer = trustCert('bundle-signer');
const intermediate = trustCert('intermediate-ca');
const revoked = trustCert('leaf-revoked');
const good = trustCert('leaf-good');

describe('trust bundles: random bytes and mutations only ever yield HISP_BUNDLE_INVALID / HISP_BUNDLE_SIGNATURE', () => {
  it('random bytes', () => {
    fc.assert(
      fc.property(randomBytes, (bytes) => {
        only(BUNDLE_CODES, () => parseTrustBundle(bytes));
        only(BUNDLE_CODES, () => parseTrustBundle(bytes, { signers: [signer], at: AT }));
      }),
      params(),
    );
  });

  for (const file of ['bundle.p7b', 'bundle.pem.p7b', 'bundle-two-metadata.p7b']) {
    it(`mutations of ${file}`, () => {
      const seed = readTrustFile(file);
      fc.assert(
        fc.property(mutationsOf(seed), (bytes) => {
          only(BUNDLE_CODES, () => parseTrustBundle(bytes));
        }),
        params(),
      );
    });
  }

  for (const file of ['bundle-signed.p7m', 'bundle-signed-pem.p7m', 'bundle-signed-nocert.p7m']) {
    it(`mutations of ${file}: refused, or verified with exactly the original anchor`, () => {
      const seed = readTrustFile(file);
      fc.assert(
        fc.property(mutationsOf(seed), (bytes) => {
          const b = only(BUNDLE_CODES, () => parseTrustBundle(bytes, { signers: [signer], at: AT }));
          if (b) expect(b.anchors.map((c) => c.sha256)).toEqual([root.sha256]);
          only(BUNDLE_CODES, () => parseTrustBundle(bytes)); // unverified reading too
        }),
        params(),
      );
    });
  }

  const java = vectorGroup('java-ri', ['bundles/signedbundle.p7m', 'bundles/bundleSigner.der']);
  it.skipIf(!java.present)(java.title('mutations of the Java RI signedbundle.p7m (SHA-1, PEM eContent)'), () => {
    const seed = java.read('bundles/signedbundle.p7m');
    const javaSigner = Certificate.fromDer(java.read('bundles/bundleSigner.der'));
    const options = { signers: [javaSigner], allowSha1: true, at: new Date('2020-06-01T00:00:00Z') };
    const anchors = parseTrustBundle(seed, options).anchors.map((c) => c.sha256);
    expect(anchors).toHaveLength(1);
    fc.assert(
      fc.property(mutationsOf(seed), (bytes) => {
        const b = only(BUNDLE_CODES, () => parseTrustBundle(bytes, options));
        if (b) expect(b.anchors.map((c) => c.sha256)).toEqual(anchors);
      }),
      params(150),
    );
  });
});

describe('CRLs: random bytes and mutations only ever yield HISP_TRUST_REVOCATION_UNAVAILABLE (or HISP_TRUST_REVOKED for the listed serial)', () => {
  const seed = readTrustFile('intermediate-ca.crl');
  const original = parseCrl(seed);

  it('random bytes', () => {
    fc.assert(
      fc.property(randomBytes, (bytes) => {
        only(CRL_CODES, () => parseCrl(bytes));
      }),
      params(),
    );
  });

  it('mutations of a valid CRL: parse, verify, check; what verifies lists exactly the original entries', () => {
    fc.assert(
      fc.property(mutationsOf(seed), (bytes) => {
        const crl = only(CRL_CODES, () => parseCrl(bytes));
        if (!crl) return;
        const verified = only(CRL_CODES, () => {
          verifyCrl(crl, intermediate, { now: AT, allowSha1: true });
          return true;
        });
        if (!verified) return;
        expect([...crl.revoked.keys()]).toEqual([...original.revoked.keys()]);
        expect(crl.nextUpdate?.getTime()).toBe(original.nextUpdate?.getTime());
        only(['HISP_TRUST_REVOKED'], () => checkAgainstCrl(revoked, crl));
        expect(() => checkAgainstCrl(good, crl)).not.toThrow();
      }),
      params(),
    );
  });

  it('mutated CRLs served to the RevocationChecker: good / unavailable / revoked, nothing else', async () => {
    await fc.assert(
      fc.asyncProperty(mutationsOf(seed), async (bytes) => {
        const checker = new RevocationChecker({ fetcher: () => Promise.resolve(bytes), clock: () => AT });
        try {
          const r = await checker.checkCertificate(good, intermediate);
          expect(['good', 'unavailable']).toContain(r.status);
        } catch (err) {
          expect(err).toBeInstanceOf(HispError);
          // only a CRL that still verifies can revoke, and the original does not list good@trust.test
          throw new Error(`unexpected rejection ${(err as HispError).code}`, { cause: err });
        }
      }),
      params(150),
    );
  });
});

describe('AIA answers: random bytes and mutations only ever yield HISP_TRUST_AIA_FAILED', () => {
  it('random bytes, and mutations of a DER certificate and of a .p7c', () => {
    const arb = fc.oneof(randomBytes, mutationsOf(readTrustFile('intermediate-ca.p7c')), mutationsOf(readTrustFile('intermediate-ca.cert.der')));
    fc.assert(
      fc.property(arb, (bytes) => {
        only(['HISP_TRUST_AIA_FAILED'], () => parseCaIssuersAnswer(bytes));
      }),
      params(),
    );
  });
});
