/**
 * string.format: the fast path (%s, %d, %i, %%) and the full implementation
 * behind it give what Lua 5.3 gives, plus KumoMTA's 64-bit view of
 * integral floats beyond 32 bits. Each case is checked against fengari's own
 * string.format in a bare state, where that one is right.
 */
import { lua, lauxlib, lualib, to_luastring } from 'fengari';
import { describe, expect, it } from 'vitest';
import { LuaError } from '../../../src/errors.js';
import { call, loadPolicy } from '../../helpers/policy.js';

/** string.format in a bare fengari state (no sluice prelude): the reference. */
function bareFormat(expr: string): { ok: boolean; value: string } {
  const L = lauxlib.luaL_newstate();
  lualib.luaL_openlibs(L);
  const status = lauxlib.luaL_dostring(L, to_luastring(`return string.format(${expr})`));
  const s = lua.lua_tojsstring(L, -1) as string;
  return { ok: status === lua.LUA_OK, value: s };
}

async function formats(exprs: string[]): Promise<Array<{ ok: boolean; value: string }>> {
  const body = exprs.map((e) => `do local ok, v = pcall(string.format, ${e}); out[#out + 1] = { ok = ok, value = tostring(v) } end`).join('\n');
  const { vm } = await loadPolicy(`kumo.on('test', function()\nlocal out = {}\n${body}\nreturn kumo.json_encode(out)\nend)`);
  const [json] = await call(vm, 'test');
  return JSON.parse(json as string) as Array<{ ok: boolean; value: string }>;
}

const SAME_AS_LUA = [
  `'%d %s: %s', 200, 'OK', 'body text'`,
  `'plain text'`,
  `''`,
  `'%%'`,
  `'100%% of %s', 'it'`,
  `'%s|%s|%s|%s', nil, true, false, 1.5`,
  `'%s', 42`,
  `'%s', -0.0`,
  `'%d', 3.0`,
  `'%d', -7`,
  `'%i and %d', 2147483647, -2147483648`,
  `'%s', 'with\\0zero'`,
  `'%s %s', 'extra', 'args', 'ignored'`,
  `'%5d|%-5s|%05.1f', 42, 'ab', 3.14159`,
  `'%x %X %o', 255, 255, 8`,
  `'%q', 'a "quoted"\\n string'`,
  `'%c%c', 72, 105`,
  `'%g %e', 1e20, 12345.678`,
  `'%.3s', 'abcdef'`,
  `'%d', '12'`,
  `'%s', setmetatable({}, { __tostring = function() return 'custom' end })`,
  // errors, with Lua's messages
  `'%d', 1.5`,
  `'%d', 'x'`,
  `'%s %s', 'only one'`,
  `'%y', 1`,
  `'trailing %'`,
  `'%s', setmetatable({}, { __tostring = function() return 1 end })`,
];

describe('string.format', () => {
  it('gives what Lua 5.3 gives, values and errors', async () => {
    const got = await formats(SAME_AS_LUA);
    SAME_AS_LUA.forEach((expr, i) => {
      const want = bareFormat(expr);
      const g = got[i]!;
      expect({ expr, ok: g.ok }).toEqual({ expr, ok: want.ok });
      if (want.ok) expect({ expr, value: g.value }).toEqual({ expr, value: want.value });
      else expect(g.value, expr).toContain(want.value.replace(/^\[string "[^"]*"\]:\d+: /, '').replace(/^bad argument #\d+ to '\w+' /, ''));
    });
    expect(got[0]!.value).toBe('200 OK: body text');
  });

  it('prints integral floats beyond 32 bits as integers under %d, %i and %s, with or without flags', async () => {
    const got = await formats([
      `'%d', 1700000000123`,
      `'%i|%s', -1700000000123, 9007199254740991`,
      `'ts=%d id=%s n=%d', 1700000000123, 'x', 5`,
      `'%15d|%-15d|', 1700000000123, 1700000000123`,
      `'%d', 2^60`,
    ]);
    expect(got.map((g) => g.value)).toEqual([
      '1700000000123',
      '-1700000000123|9007199254740991',
      'ts=1700000000123 id=x n=5',
      '  1700000000123|1700000000123  |',
      got[4]!.value, // beyond 2^53: not exact, left to fengari (an error)
    ]);
    expect(got[4]!.ok).toBe(false);
  });

  it("reports a bad argument at the policy's line, naming format, as a Lua error pcall can catch", async () => {
    const { vm, policyPath } = await loadPolicy(`kumo.on('test', function()\n  return string.format('%d', 'nope')\nend)`);
    const err = await call(vm, 'test').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(LuaError);
    expect((err as LuaError).message).toBe(`${policyPath}:2: bad argument #2 to 'format' (number expected, got string)`);
    const [ok, msg] = await formats([`'%d', 1.5`]).then((r) => [r[0]!.ok, r[0]!.value]);
    expect(ok).toBe(false);
    expect(msg).toMatch(/bad argument #2 to '(string\.)?format' \(number has no integer representation\)$/);
  });
});
