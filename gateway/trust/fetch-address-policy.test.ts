import { describe, expect, it } from 'vitest';
import { FetchAddressPolicy, parseAddressRange } from './fetch-address-policy.js';

describe('FetchAddressPolicy (issue 14 item 4: no fetch to non-global addresses unless allowed)', () => {
  const policy = new FetchAddressPolicy();

  it('refuses every special-purpose range that is not globally reachable, naming it', () => {
    const refused: [string, RegExp][] = [
      ['0.0.0.0', /this network/],
      ['0.1.2.3', /this network/],
      ['10.1.2.3', /private \(RFC 1918\)/],
      ['100.64.0.1', /CGNAT/],
      ['100.127.255.254', /CGNAT/],
      ['127.0.0.1', /loopback/],
      ['127.255.255.254', /loopback/],
      ['169.254.169.254', /link-local/],
      ['172.16.0.1', /private/],
      ['172.31.255.255', /private/],
      ['192.0.0.8', /IETF protocol assignments/],
      ['192.0.2.10', /documentation/],
      ['192.88.99.1', /6to4 relay/],
      ['192.168.1.1', /private/],
      ['198.18.0.1', /benchmarking/],
      ['198.19.255.255', /benchmarking/],
      ['198.51.100.7', /documentation/],
      ['203.0.113.9', /documentation/],
      ['224.0.0.251', /multicast/],
      ['239.255.255.250', /multicast/],
      ['240.0.0.1', /reserved/],
      ['255.255.255.255', /broadcast/],
      ['::', /unspecified/],
      ['::1', /loopback/],
      ['::127.0.0.1', /IPv4-compatible/],
      ['::ffff:127.0.0.1', /loopback .*as 127\.0\.0\.1 in an IPv6 address/],
      ['::ffff:7f00:1', /loopback/],
      ['::ffff:10.0.0.1', /private/],
      ['::ffff:a9fe:a9fe', /link-local/],
      ['64:ff9b::127.0.0.1', /loopback/],
      ['64:ff9b::c0a8:101', /private/],
      ['64:ff9b:1::1', /local-use/],
      ['100::1', /discard-only/],
      ['2001::1', /Teredo/],
      ['2001:db8::1', /documentation/],
      ['2002:7f00:1::1', /6to4/],
      ['3fff::1', /documentation/],
      ['5f00::1', /SRv6/],
      ['fc00::1', /unique local/],
      ['fd12:3456::1', /unique local/],
      ['fe80::1', /link-local/],
      ['fe80::1%eth0', /link-local/],
      ['febf::1', /link-local/],
      ['fec0::1', /site-local/],
      ['ff02::1', /multicast/],
      ['4000::1', /outside the global unicast space/],
      ['not-an-ip', /not an IP address/],
    ];
    for (const [address, range] of refused) {
      const v = policy.check(address);
      expect({ address, allowed: v.allowed }).toEqual({ address, allowed: false });
      expect(v.range, address).toMatch(range);
    }
  });

  it('allows globally reachable unicast addresses (boundaries of the refused ranges included)', () => {
    for (const address of [
      '1.1.1.1',
      '9.255.255.255',
      '11.0.0.0',
      '100.63.255.255',
      '100.128.0.0',
      '126.255.255.255',
      '128.0.0.0',
      '172.15.255.255',
      '172.32.0.0',
      '192.0.1.1',
      '192.169.0.0',
      '198.17.255.255',
      '198.20.0.0',
      '223.255.255.255',
      '2001:4860:4860::8888',
      '2606:4700::1111',
      '2a00:1450:4001::1',
      '::ffff:8.8.8.8',
      '64:ff9b::8.8.8.8',
    ]) {
      expect(policy.check(address)).toEqual({ address, allowed: true });
    }
  });

  it('the allow-list takes precedence: CIDRs or single addresses, IPv4 (mapped forms too) and IPv6', () => {
    const p = new FetchAddressPolicy(['127.0.0.1/32', '10.0.0.0/8', 'fd00::/8', '::1']);
    for (const a of ['127.0.0.1', '::ffff:127.0.0.1', '10.200.1.1', 'fd00::5', '::1']) expect(p.check(a).allowed, a).toBe(true);
    for (const a of ['127.0.0.2', '192.168.1.1', 'fc00::1', '169.254.169.254']) expect(p.check(a).allowed, a).toBe(false);
    expect(p.allowList).toEqual(['127.0.0.1/32', '10.0.0.0/8', 'fd00::/8', '::1']);
    expect(() => new FetchAddressPolicy(['10.0.0.0/33'])).toThrow(/prefix length must be 0 to 32/);
  });

  it('parseAddressRange reads CIDRs and bare addresses, and says what is wrong with anything else', () => {
    expect(parseAddressRange('10.0.0.0/8')).toEqual({ address: '10.0.0.0', prefix: 8, family: 'ipv4' });
    expect(parseAddressRange('127.0.0.1')).toEqual({ address: '127.0.0.1', prefix: 32, family: 'ipv4' });
    expect(parseAddressRange('fd00::/8')).toEqual({ address: 'fd00::', prefix: 8, family: 'ipv6' });
    expect(parseAddressRange('::1')).toEqual({ address: '::1', prefix: 128, family: 'ipv6' });
    expect(parseAddressRange('localhost')).toMatch(/is not an IP address or CIDR range/);
    expect(parseAddressRange('10.0.0.0/')).toMatch(/prefix length/);
    expect(parseAddressRange('10.0.0.0/x')).toMatch(/prefix length/);
    expect(parseAddressRange('::/129')).toMatch(/0 to 128/);
  });
});
