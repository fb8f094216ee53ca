import { describe, expect, it } from 'vitest';
import { isKsuid, isPrefixedId, ksuidTime, newKsuid, prefixedId } from '../../../src/egress/ksuid.js';

const BASE62 = /^[0-9A-Za-z]{27}$/;

describe('KSUID', () => {
  it('is 27 base62 characters', () => {
    for (let i = 0; i < 200; i++) {
      const id = newKsuid();
      expect(id).toMatch(BASE62);
      expect(isKsuid(id)).toBe(true);
    }
  });

  it('left-pads with 0: the earliest second still gives 27 characters', () => {
    const id = newKsuid(1_400_000_000_000);
    expect(id).toMatch(BASE62);
    expect(ksuidTime(id)).toBe(1_400_000_000_000);
  });

  it('round-trips the creation time to the second', () => {
    const now = Date.UTC(2023, 8, 23, 17, 42, 7, 248);
    expect(ksuidTime(newKsuid(now))).toBe(Date.UTC(2023, 8, 23, 17, 42, 7));
    const t = Date.now();
    expect(ksuidTime(newKsuid())).toBeGreaterThanOrEqual(Math.floor(t / 1000) * 1000);
  });

  it('decodes segmentio and klev ids', () => {
    // segmentio/ksuid README: timestamp 107608047 (+ epoch 1 400 000 000)
    expect(ksuidTime('0ujtsYcgvSTl8PAuAdqWYSMnLOv')).toBe((107_608_047 + 1_400_000_000) * 1000);
    // the egress walkthrough's ids were made on the day of the post
    expect(new Date(ksuidTime('2VnwJdcym3NLEaA6MUkrPWzKWkQ')).toISOString().slice(0, 10)).toBe('2023-09-23');
    expect(new Date(ksuidTime('2VnvpTOoNFQRf0G9peK1zKlfhlf')).toISOString().slice(0, 10)).toBe('2023-09-23');
  });

  it('sorts by creation second as plain strings', () => {
    const base = Date.UTC(2024, 0, 1);
    const ids = Array.from({ length: 50 }, (_, i) => newKsuid(base + i * 1000));
    expect([...ids].sort()).toEqual(ids);
    // and across a wide range
    const wide = [Date.UTC(2014, 5, 1), Date.UTC(2020, 0, 1), Date.UTC(2030, 0, 1), Date.UTC(2100, 0, 1)].map((t) => newKsuid(t));
    expect([...wide].sort()).toEqual(wide);
  });

  it('is random within a second', () => {
    const now = Date.now();
    const ids = new Set(Array.from({ length: 1000 }, () => newKsuid(now)));
    expect(ids.size).toBe(1000);
  });

  it('refuses times outside the 32-bit range and malformed ids', () => {
    expect(() => newKsuid(1_399_999_999_000)).toThrow(RangeError);
    expect(() => newKsuid((1_400_000_000 + 2 ** 32) * 1000)).toThrow(RangeError);
    expect(() => ksuidTime('short')).toThrow(TypeError);
    expect(() => ksuidTime('2VnwJdcym3NLEaA6MUkrPWzKW-Q')).toThrow(TypeError);
    expect(isKsuid('aWgEPTl1tmebfsQzFP4bxwgy80V')).toBe(true); // 2^160 − 1
    expect(isKsuid('aWgEPTl1tmebfsQzFP4bxwgy80W')).toBe(false);
    expect(isKsuid('zzzzzzzzzzzzzzzzzzzzzzzzzzz')).toBe(false);
  });
});

describe('prefixed ids', () => {
  it('are <prefix>_<ksuid>', () => {
    const id = prefixedId('ewh', Date.UTC(2023, 8, 23));
    expect(id).toMatch(/^ewh_[0-9A-Za-z]{27}$/);
    expect(ksuidTime(id.slice(4))).toBe(Date.UTC(2023, 8, 23));
    expect(isPrefixedId(id, 'ewh')).toBe(true);
    expect(isPrefixedId(prefixedId('log'), 'log')).toBe(true);
  });

  it('validation wants the prefix and exactly 27 alphanumerics', () => {
    expect(isPrefixedId('log_2VnvpTOoNFQRf0G9peK1zKlfhlf', 'log')).toBe(true);
    expect(isPrefixedId('log_2VnvpTOoNFQRf0G9peK1zKlfhlf', 'ewh')).toBe(false);
    expect(isPrefixedId('log_2VnvpTOoNFQRf0G9peK1zKlfhl', 'log')).toBe(false);
    expect(isPrefixedId('log_2VnvpTOoNFQRf0G9peK1zKlfhlfX', 'log')).toBe(false);
    expect(isPrefixedId('log_2VnvpTOoNFQRf0G9peK1zKlfh-f', 'log')).toBe(false);
    expect(isPrefixedId('log2VnvpTOoNFQRf0G9peK1zKlfhlf', 'log')).toBe(false);
    expect(isPrefixedId('2VnvpTOoNFQRf0G9peK1zKlfhlf', 'log')).toBe(false);
  });
});
