import type { SecureContextOptions } from 'node:tls';

/**
 * The TLS profile of every listener and client of hisp (issue 14, item 11): Mozilla's
 * "intermediate" server-side TLS configuration (version 5). TLS 1.2 and 1.3 only; for TLS 1.2, only
 * forward-secret key exchanges (ECDHE, DHE) with AEAD ciphers (AES-GCM, ChaCha20-Poly1305): no RSA
 * key exchange, no CBC, no SHA-1 MACs. TLS 1.3's suites are all AEAD and forward-secret, and Node's
 * defaults for them are kept. DHE is listed as Mozilla lists it; OpenSSL offers it only to a server
 * given Diffie-Hellman parameters, which hisp never sets, so in practice ECDHE.
 *
 * The order matters for a server (`honorCipherOrder`): AES-128-GCM first (as fast and as strong in
 * practice), ECDSA certificates before RSA ones, ChaCha20 for clients without AES instructions.
 */
export const TLS_CIPHERS = [
  'ECDHE-ECDSA-AES128-GCM-SHA256',
  'ECDHE-RSA-AES128-GCM-SHA256',
  'ECDHE-ECDSA-AES256-GCM-SHA384',
  'ECDHE-RSA-AES256-GCM-SHA384',
  'ECDHE-ECDSA-CHACHA20-POLY1305',
  'ECDHE-RSA-CHACHA20-POLY1305',
  'DHE-RSA-AES128-GCM-SHA256',
  'DHE-RSA-AES256-GCM-SHA384',
  'DHE-RSA-CHACHA20-POLY1305',
].join(':');

/** Spread into the options of tls.createServer, tls.connect, https.request or a secure context. */
export const TLS_PROFILE: Readonly<Pick<SecureContextOptions, 'minVersion' | 'ciphers' | 'honorCipherOrder'>> = Object.freeze({
  minVersion: 'TLSv1.2',
  ciphers: TLS_CIPHERS,
  honorCipherOrder: true,
});
