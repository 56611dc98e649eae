import { readFileSync } from 'node:fs';
import { X509Certificate } from 'node:crypto';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { credentialPaths } from '../../test/helpers/pki.js';
import { Certificate } from './certificate.js';

const cert = (name: Parameters<typeof credentialPaths>[0]) => Certificate.fromDer(readFileSync(credentialPaths(name).certDer));

describe('Certificate.isSignedBy', () => {
  afterEach(() => vi.restoreAllMocks());

  it('says whether the issuer key verifies the signature, and verifies each issuer once', () => {
    const leaf = cert('sender-rsa');
    const intermediate = cert('intermediate-ca');
    const root = cert('root-ca');
    const verify = vi.spyOn(X509Certificate.prototype, 'verify');
    expect(leaf.isSignedBy(intermediate)).toBe(true);
    expect(leaf.isSignedBy(root)).toBe(false);
    expect(intermediate.isSignedBy(root)).toBe(true);
    expect(verify).toHaveBeenCalledTimes(3);
    // The same questions again (a relay validates the same chain for every message): no RSA operation.
    for (let i = 0; i < 5; i++) {
      expect(leaf.isSignedBy(intermediate)).toBe(true);
      expect(leaf.isSignedBy(root)).toBe(false);
    }
    expect(verify).toHaveBeenCalledTimes(3);
  });
});
