import { describe, expect, it } from 'vitest';
import { orderSrvTargets, type SrvRecord } from './srv-order.js';

const srv = (target: string, priority: number, weight: number): SrvRecord => ({ target, priority, weight, port: 389 });

/** A repeatable random source (mulberry32). */
function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe('SRV target order (RFC 2782, R-DIS-7)', () => {
  it('tries the lowest priority first, whatever the weights', () => {
    const order = orderSrvTargets([srv('b', 1, 100), srv('a', 0, 0), srv('c', 2, 5)], seeded(1));
    expect(order.map((r) => r.target)).toEqual(['a', 'b', 'c']);
  });

  it('puts weight-0 targets after the weighted ones of the same priority, every time (DCDT D16)', () => {
    const random = seeded(16);
    for (let i = 0; i < 1000; i++) {
      const order = orderSrvTargets([srv('ldap1', 0, 0), srv('ldap3', 0, 100)], random);
      expect(order.map((r) => r.target)).toEqual(['ldap3', 'ldap1']);
    }
  });

  it('picks among weighted targets in proportion to their weights', () => {
    const random = seeded(7);
    let heavyFirst = 0;
    const runs = 4000;
    for (let i = 0; i < runs; i++) {
      if (orderSrvTargets([srv('light', 0, 10), srv('heavy', 0, 30)], random)[0]!.target === 'heavy') heavyFirst++;
    }
    expect(heavyFirst / runs).toBeGreaterThan(0.7);
    expect(heavyFirst / runs).toBeLessThan(0.8);
  });

  it('keeps every target exactly once and drops the "." no-service target', () => {
    const records = [srv('a', 0, 1), srv('b', 0, 2), srv('c', 0, 0), srv('.', 0, 5), srv('d', 1, 3)];
    const order = orderSrvTargets(records, seeded(3));
    expect(order.map((r) => r.target).sort()).toEqual(['a', 'b', 'c', 'd']);
  });

  it('uses the same order for the same random source', () => {
    const records = [srv('a', 0, 1), srv('b', 0, 2), srv('c', 0, 3)];
    expect(orderSrvTargets(records, seeded(9))).toEqual(orderSrvTargets(records, seeded(9)));
  });
});
