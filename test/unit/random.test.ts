import { describe, expect, it } from 'vitest';
import { randomHex } from '../../src/random.js';

describe('randomHex', () => {
  it('gives 2 x bytes lowercase hex digits, different each time, across pool refills', () => {
    const seen = new Set<string>();
    for (let i = 0; i < 2000; i++) {
      const h = randomHex(10); // 20 kB in all: the 4 KiB pool refills several times
      expect(h).toMatch(/^[0-9a-f]{20}$/);
      seen.add(h);
    }
    expect(seen.size).toBe(2000);
    expect(randomHex(1)).toMatch(/^[0-9a-f]{2}$/);
    expect(randomHex(64)).toMatch(/^[0-9a-f]{128}$/);
  });

  it('uses every byte value (the pool is not stuck on zeros)', () => {
    const counts = new Array(256).fill(0);
    for (let i = 0; i < 4000; i++) {
      const h = randomHex(16);
      for (let j = 0; j < h.length; j += 2) counts[parseInt(h.slice(j, j + 2), 16)]++;
    }
    // 64,000 bytes: each value expected 250 times; a stuck or biased pool would leave some near 0.
    expect(Math.min(...counts)).toBeGreaterThan(150);
  });

  it('rejects a bad size, naming it', () => {
    expect(() => randomHex(0)).toThrow(/bytes must be an integer from 1 to 64, got 0/);
    expect(() => randomHex(65)).toThrow(/got 65/);
    expect(() => randomHex(1.5)).toThrow(/got 1.5/);
  });
});
