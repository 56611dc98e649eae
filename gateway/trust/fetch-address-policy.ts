import { BlockList, isIP } from 'node:net';

/**
 * Which IP addresses the trust layer's HTTP fetches (CRLs, AIA caIssuers, IPKIX CERT records, trust
 * bundles) may connect to. The URLs come from certificates and DNS records that anyone can write: an
 * unauthenticated inbound message signed by a certificate whose AIA points at
 * `http://127.0.0.1:8080/admin` would otherwise make hisp send requests into its own network (blind
 * request forgery, issue 14 item 4). So by default only globally reachable unicast addresses are
 * allowed: every special-purpose range of the IANA IPv4 and IPv6 Special-Purpose Address Registries
 * (RFC 6890) that is not global, plus multicast and the reserved space, is refused. An operator whose
 * PKI publishes CRLs or certificates on private addresses, and the tests' loopback servers, allow
 * them explicitly (`[fetch] allowAddresses`, `--allow-fetch`).
 *
 * The check is made on the addresses a name resolves to, and the connection then goes to those very
 * addresses (see createHttpFetcher), so a DNS answer cannot change between the check and the connect.
 */

/** A refused address and the range that refused it. */
export interface AddressVerdict {
  allowed: boolean;
  /** The address as given (an IPv4-mapped or NAT64 IPv6 address is judged by the IPv4 address it carries). */
  address: string;
  /** Why it is refused: the special-purpose range it falls in (undefined when allowed). */
  range?: string;
}

/** [CIDR, what it is] — IPv4 special-purpose ranges that are not globally reachable. */
const IPV4_REFUSED: readonly (readonly [string, string])[] = [
  ['0.0.0.0/8', '"this network" (RFC 791, RFC 1122 §3.2.1.3)'],
  ['10.0.0.0/8', 'private (RFC 1918)'],
  ['100.64.0.0/10', 'shared address space / CGNAT (RFC 6598)'],
  ['127.0.0.0/8', 'loopback (RFC 1122 §3.2.1.3)'],
  ['169.254.0.0/16', 'link-local (RFC 3927)'],
  ['172.16.0.0/12', 'private (RFC 1918)'],
  ['192.0.0.0/24', 'IETF protocol assignments (RFC 6890)'],
  ['192.0.2.0/24', 'documentation (RFC 5737)'],
  ['192.88.99.0/24', '6to4 relay anycast (RFC 7526)'],
  ['192.168.0.0/16', 'private (RFC 1918)'],
  ['198.18.0.0/15', 'benchmarking (RFC 2544)'],
  ['198.51.100.0/24', 'documentation (RFC 5737)'],
  ['203.0.113.0/24', 'documentation (RFC 5737)'],
  ['224.0.0.0/4', 'multicast (RFC 5771)'],
  ['240.0.0.0/4', 'reserved (RFC 1112 §4), broadcast'],
];

/** IPv6 prefixes whose last 32 bits are an IPv4 address, judged as that address. */
const IPV6_EMBEDDING_IPV4: readonly (readonly [string, number])[] = [
  ['::ffff:0:0', 96], // IPv4-mapped (RFC 4291 §2.5.5.2)
  ['64:ff9b::', 96], // IPv4/IPv6 translation, well-known prefix (RFC 6052 §2.1)
];

/** [CIDR, what it is] — IPv6 special-purpose ranges that are not globally reachable. */
const IPV6_REFUSED: readonly (readonly [string, string])[] = [
  ['::/96', 'unspecified, loopback or IPv4-compatible (RFC 4291 §2.5.2, §2.5.3, §2.5.5.1)'],
  ['64:ff9b:1::/48', 'local-use IPv4/IPv6 translation (RFC 8215)'],
  ['100::/64', 'discard-only (RFC 6666)'],
  ['2001::/23', 'IETF protocol assignments, Teredo (RFC 2928, RFC 4380)'],
  ['2001:db8::/32', 'documentation (RFC 3849)'],
  ['2002::/16', '6to4 (RFC 3056, RFC 7526)'],
  ['3fff::/20', 'documentation (RFC 9637)'],
  ['5f00::/16', 'SRv6 SIDs (RFC 9602)'],
  ['fc00::/7', 'unique local (RFC 4193)'],
  ['fe80::/10', 'link-local (RFC 4291 §2.5.6)'],
  ['fec0::/10', 'site-local (RFC 3879)'],
  ['ff00::/8', 'multicast (RFC 4291 §2.7)'],
];

/** Global unicast (RFC 4291 §2.4, IANA): the only IPv6 space allocated for the Internet. */
const IPV6_GLOBAL_UNICAST = ['2000::', 3] as const;

interface Cidr {
  address: string;
  prefix: number;
  family: 'ipv4' | 'ipv6';
}

/**
 * Reads `A.B.C.D/N`, `v6::/N` or a bare address (a /32 or /128). Returns the range, or a sentence
 * saying what is wrong (for configuration and command-line errors).
 */
export function parseAddressRange(text: string): Cidr | string {
  const slash = text.indexOf('/');
  const address = (slash < 0 ? text : text.slice(0, slash)).trim();
  const version = isIP(address);
  if (version === 0) return `${JSON.stringify(text.slice(0, 80))} is not an IP address or CIDR range (e.g. "10.0.0.0/8", "127.0.0.1", "fd00::/8")`;
  const max = version === 4 ? 32 : 128;
  const prefixText = slash < 0 ? String(max) : text.slice(slash + 1).trim();
  const prefix = Number(prefixText);
  if (!/^\d{1,3}$/.test(prefixText) || prefix > max) return `${JSON.stringify(text.slice(0, 80))}: the prefix length must be 0 to ${max}`;
  return { address, prefix, family: version === 4 ? 'ipv4' : 'ipv6' };
}

function blockListOf(ranges: readonly (readonly [string, string])[], family: 'ipv4' | 'ipv6'): [BlockList, string][] {
  return ranges.map(([cidr, what]) => {
    const [address, prefix] = cidr.split('/') as [string, string];
    const list = new BlockList();
    list.addSubnet(address, Number(prefix), family);
    return [list, what];
  });
}

const REFUSED_V4 = blockListOf(IPV4_REFUSED, 'ipv4');
const REFUSED_V6 = blockListOf(IPV6_REFUSED, 'ipv6');
const EMBEDDING = IPV6_EMBEDDING_IPV4.map(([address, prefix]) => {
  const list = new BlockList();
  list.addSubnet(address, prefix, 'ipv6');
  return list;
});
const GLOBAL_UNICAST = new BlockList();
GLOBAL_UNICAST.addSubnet(IPV6_GLOBAL_UNICAST[0], IPV6_GLOBAL_UNICAST[1], 'ipv6');

/** The 16 bytes of an IPv6 address (valid per net.isIP, without a zone index). */
function ipv6Bytes(text: string): Buffer {
  let s = text;
  const tail: number[] = [];
  const dotted = /(\d+\.\d+\.\d+\.\d+)$/.exec(s);
  if (dotted) {
    const v4 = dotted[1]!.split('.').map(Number);
    tail.push((v4[0]! << 8) | v4[1]!, (v4[2]! << 8) | v4[3]!);
    s = s.slice(0, -dotted[1]!.length);
    if (s.endsWith(':') && !s.endsWith('::')) s = s.slice(0, -1);
  }
  const [head, rest] = s.includes('::') ? (s.split('::') as [string, string]) : [s, undefined];
  const words = (x: string) => (x === '' ? [] : x.split(':').map((h) => parseInt(h, 16)));
  const left = words(head);
  const right = rest === undefined ? [] : words(rest);
  const fill = 8 - left.length - right.length - tail.length;
  const all = [...left, ...Array<number>(rest === undefined ? 0 : fill).fill(0), ...right, ...tail];
  const out = Buffer.alloc(16);
  all.forEach((w, i) => out.writeUInt16BE(w, i * 2));
  return out;
}

/**
 * The policy: a fixed refusal of non-global addresses, with the operator's allow-list taking
 * precedence (an explicitly allowed range is allowed even when it is loopback or private).
 */
export class FetchAddressPolicy {
  private readonly allowed = new BlockList();
  /** The allow-list as given (for messages). */
  readonly allowList: readonly string[];

  /**
   * @param allowAddresses CIDR ranges or single addresses fetches may reach although they are not
   *   global (`127.0.0.1/32`, `10.0.0.0/8`, `fd00::/8`). Throws a TypeError naming a bad entry;
   *   the configuration and the CLI check entries first with {@link parseAddressRange}.
   */
  constructor(allowAddresses: readonly string[] = []) {
    for (const entry of allowAddresses) {
      const range = parseAddressRange(entry);
      if (typeof range === 'string') throw new TypeError(range);
      this.allowed.addSubnet(range.address, range.prefix, range.family);
    }
    this.allowList = Object.freeze([...allowAddresses]);
  }

  /** Whether a connection to `address` (an IP address, as a resolver returns it) may be made. */
  check(input: string): AddressVerdict {
    // A zone index (fe80::1%eth0) only scopes a link-local address: judge the address itself.
    const address = input.includes('%') ? input.slice(0, input.indexOf('%')) : input;
    const version = isIP(address);
    if (version === 0) return { allowed: false, address: input, range: 'not an IP address' };
    if (version === 6) {
      // IPv4-mapped and NAT64 addresses reach the IPv4 address they carry: judge that one.
      if (EMBEDDING.some((list) => list.check(address, 'ipv6'))) {
        const b = ipv6Bytes(address);
        const v4 = `${b[12]}.${b[13]}.${b[14]}.${b[15]}`;
        const verdict = this.check(v4);
        return verdict.allowed ? { allowed: true, address: input } : { allowed: false, address: input, range: `${verdict.range ?? ''}, as ${v4} in an IPv6 address` };
      }
      if (this.allowed.check(address, 'ipv6')) return { allowed: true, address: input };
      const hit = REFUSED_V6.find(([list]) => list.check(address, 'ipv6'));
      if (hit) return { allowed: false, address: input, range: hit[1] };
      if (!GLOBAL_UNICAST.check(address, 'ipv6')) return { allowed: false, address: input, range: 'reserved (outside the global unicast space 2000::/3)' };
      return { allowed: true, address: input };
    }
    if (this.allowed.check(address, 'ipv4')) return { allowed: true, address: input };
    const hit = REFUSED_V4.find(([list]) => list.check(address, 'ipv4'));
    return hit ? { allowed: false, address: input, range: hit[1] } : { allowed: true, address: input };
  }
}
