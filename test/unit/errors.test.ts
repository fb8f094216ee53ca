import fs from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ERROR_CODES } from '../../src/errors.js';

describe('error catalogue', () => {
  it('lists every code in the README, once', () => {
    const readme = fs.readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
    for (const code of Object.keys(ERROR_CODES)) {
      expect(readme.match(new RegExp(`\\| \`${code}\` \\|`, 'g')), code).toHaveLength(1);
    }
    const listed = [...readme.matchAll(/\| `(SLUICE_ERR_[A-Z_]+)` \|/g)].map((m) => m[1]);
    expect(listed.sort()).toEqual(Object.keys(ERROR_CODES).sort());
  });

  it('codes are unique and spelled SLUICE_ERR_*', () => {
    for (const code of Object.keys(ERROR_CODES)) expect(code).toMatch(/^SLUICE_ERR_[A-Z_]+$/);
  });
});
