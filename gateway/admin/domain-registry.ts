import type { Logger } from 'pino';
import type { DecryptionCredential } from '../agent/open-envelope.js';
import type { SigningCredential } from '../agent/sign-detached.js';
import { loadCredentials, readCertificates } from '../agent/key-material.js';
import type { Certificate } from '../core/certificate.js';
import { DirectAddress } from '../core/direct-address.js';
import { HispError } from '../core/errors.js';
import { findDomain, type DomainConfig, type HispConfig } from '../config/schema.js';
import { resolvePolicy, type CertificatePolicy } from '../policy/cert-policy.js';
import { AnchorStore, type TrustDirection } from '../trust/anchor-store.js';
import type { LookupFunction } from 'node:net';
import { readFileSync } from 'node:fs';
import type { Fetcher } from '../trust/http-fetch.js';
import { TrustBundleSource } from '../trust/trust-bundle.js';

/** Whether the receive side takes mail for an address (RFC 5321 §3.3 RCPT). */
export type RecipientAcceptance = 'accept' | 'unknown-address' | 'not-local';

interface LocalDomain {
  config: DomainConfig;
  /** Active signing credentials (use sign/both, not retired). */
  signers: SigningCredential[];
  /** Every decryption key, retired ones too (certificate roll-over). */
  decryptors: DecryptionCredential[];
  /** The certificates others encrypt to (active decryption credentials). */
  encryptionCertificates: Certificate[];
  policy: CertificatePolicy;
}

export interface DomainRegistryOptions {
  logger?: Logger;
  /** DNS resolution for the bundle fetcher (hisp's resolver). */
  lookup?: LookupFunction;
  /** How trust bundles are fetched; default HTTPS under [fetch] (tests give one that serves files). */
  bundleFetcher?: Fetcher;
}

/**
 * The local Direct domains as the running gateway uses them: credentials loaded once, anchors and
 * trust bundles per domain and direction (R-TRU-5, R-TB-3), the certificate policy of each domain.
 * Built from the validated configuration at start; a key that cannot be read stops the start.
 */
export class DomainRegistry {
  readonly anchors = new AnchorStore();
  /** The anchors of the patient bundles (R-BB-5): patient-directed sends only (anchorsFor). */
  private readonly patientAnchors = new AnchorStore();
  private readonly domains = new Map<string, LocalDomain>();
  private readonly bundles: TrustBundleSource[] = [];

  private constructor(
    private readonly config: HispConfig,
    private readonly options: DomainRegistryOptions,
  ) {}

  static load(config: HispConfig, options: DomainRegistryOptions = {}): DomainRegistry {
    const registry = new DomainRegistry(config, options);
    for (const d of config.domains) registry.addDomain(d);
    return registry;
  }

  private addDomain(d: DomainConfig): void {
    const signers: SigningCredential[] = [];
    const decryptors: DecryptionCredential[] = [];
    const encryptionCertificates: Certificate[] = [];
    for (const c of d.credentials) {
      for (const cred of loadCredentials(c.key, c.cert, c.password)) {
        if (c.use !== 'decrypt' && !c.retired) signers.push(cred);
        if (c.use !== 'sign' && cred.key.asymmetricKeyType === 'rsa') {
          decryptors.push({ key: cred.key, certificate: cred.certificate });
          if (!c.retired) encryptionCertificates.push(cred.certificate);
        }
      }
    }
    if (signers.length === 0) throw new HispError('HISP_CONFIG_INVALID', `domain ${d.name}: no active signing credential`);
    if (decryptors.length === 0) throw new HispError('HISP_CONFIG_INVALID', `domain ${d.name}: no RSA decryption credential`);
    for (const [direction, files] of [
      ['incoming', d.anchors.incoming],
      ['outgoing', d.anchors.outgoing],
    ] as const) {
      for (const f of files) this.anchors.addFile(d.name, direction, f);
    }
    const policy = resolvePolicy({
      minRsaBits: d.policy.minRsaBits,
      allowSha1: d.policy.allowSha1,
      revocation: d.policy.revocation,
      requiredKeyUsage: d.policy.requiredKeyUsage,
      allowedSignatureAlgorithms: d.policy.allowedSignatureAlgorithms,
      blueButtonPlus: d.policy.blueButtonPlus,
    });
    for (const b of d.bundles) {
      const directions: TrustDirection[] = b.direction === 'both' ? ['incoming', 'outgoing'] : [b.direction];
      const source = new TrustBundleSource({
        url: b.url,
        ...(b.signer ? { signers: readCertificates(readFileSync(b.signer), b.signer), requireSignature: true } : {}),
        refreshIntervalMs: b.refreshHours * 3_600_000,
        allowSha1: policy.allowSha1,
        scopes: [{ scope: d.name, directions }],
        ...(this.options.lookup ? { lookup: this.options.lookup } : {}),
        ...(this.options.bundleFetcher ? { fetcher: this.options.bundleFetcher } : {}),
        ...(this.options.logger ? { logger: this.options.logger } : {}),
        // A bundle URL is the operator's, but its redirects are not: the same address policy (issue 14 item 4).
        allowAddresses: this.config.fetch.allowAddresses,
      });
      // A patient bundle's anchors (R-BB-5) are kept apart: only patient-directed sends use them.
      (b.patient ? this.patientAnchors : this.anchors).addSource(source);
      this.bundles.push(source);
    }
    this.domains.set(d.name, { config: d, signers, decryptors, encryptionCertificates, policy });
  }

  /** Fetches every trust bundle once (a failure is logged; the bundle then has no anchors until a refresh works) and starts their timers. */
  async startBundles(): Promise<void> {
    await Promise.all(
      this.bundles.map(async (b) => {
        const outcome = await b.start();
        if (outcome.status === 'failed') this.options.logger?.warn({ bundle: b.name, err: outcome.error?.message }, 'trust bundle not loaded');
      }),
    );
  }

  stopBundles(): void {
    for (const b of this.bundles) b.stop();
  }

  /** The trust bundles of every domain, each with its scopes and the outcome of its last fetch (`hisp discover --config`). */
  get bundleSources(): readonly TrustBundleSource[] {
    return this.bundles;
  }

  get names(): string[] {
    return [...this.domains.keys()];
  }

  isLocalDomain(domain: string): boolean {
    return this.domains.has(normalize(domain));
  }

  /** RCPT TO on the receive side: a local domain, and an address it knows (or catch-all). */
  acceptance(address: string): RecipientAcceptance {
    let a: DirectAddress;
    try {
      a = DirectAddress.parse(address);
    } catch {
      return 'not-local';
    }
    const d = findDomain(this.config, a.domain);
    if (!d) return 'not-local';
    if (d.catchAll) return 'accept';
    const lower = a.toString().toLowerCase();
    return d.addresses.some((x) => x.address.toLowerCase() === lower) ? 'accept' : 'unknown-address';
  }

  domainConfig(domain: string): DomainConfig {
    return this.local(domain).config;
  }

  signers(domain: string): readonly SigningCredential[] {
    return this.local(domain).signers;
  }

  decryptors(domain: string): readonly DecryptionCredential[] {
    return this.local(domain).decryptors;
  }

  encryptionCertificates(domain: string): readonly Certificate[] {
    return this.local(domain).encryptionCertificates;
  }

  policy(domain: string): CertificatePolicy {
    return this.local(domain).policy;
  }

  /**
   * The anchors of a local address or domain for `direction`. A patient-directed send (a patient's
   * authorization, issue 16) also trusts the domain's patient bundles (R-BB-5); nothing else does.
   */
  anchorsFor(address: string | DirectAddress, direction: TrustDirection, options: { patientDirected?: boolean } = {}): Certificate[] {
    const anchors = this.anchors.anchorsFor(address, direction);
    if (!options.patientDirected || direction !== 'outgoing') return anchors;
    const seen = new Set(anchors.map((c) => c.sha256));
    return [...anchors, ...this.patientAnchors.anchorsFor(address, direction).filter((c) => !seen.has(c.sha256))];
  }

  /**
   * The trust bundle (its name: the URL) of `domain` that now holds `anchor` for `direction`;
   * undefined when the anchor came from an anchor file. For the receive side's report of what a
   * signer's chain ended at (webhook metadata).
   */
  bundleOf(anchor: Certificate, domain: string, direction: TrustDirection): string | undefined {
    const d = normalize(domain);
    const bundle = this.bundles.find(
      (b) => b.scopes.some((s) => s.scope === d && s.directions.includes(direction)) && b.anchors.some((c) => c.sha256 === anchor.sha256),
    );
    return bundle?.name;
  }

  private local(domain: string): LocalDomain {
    const d = this.domains.get(normalize(domain));
    if (!d) throw new HispError('HISP_CONFIG_INVALID', `${domain} is not a local domain`);
    return d;
  }
}

function normalize(domain: string): string {
  return domain.toLowerCase().replace(/\.$/, '');
}
