/**
 * One compatibility patch to fengari, applied once per process.
 *
 * fengari's integers are 32-bit, so a value such as a unix-millisecond
 * timestamp lives in Lua as a float. Lua would print it as `1.7e+12`; on
 * KumoMTA's 64-bit Lua it is an integer and prints as `1700000000000`. The
 * patch makes `tostring`, `..` and `%s` print integral floats outside the
 * 32-bit range (up to 2^53) as integers, so policies that build URLs or keys
 * from such values behave as they do on KumoMTA.
 */
import lobject from 'fengari/src/lobject.js';
import lstring from 'fengari/src/lstring.js';
import lapi from 'fengari/src/lapi.js';
import { to_luastring } from 'fengari';

const INT32_MIN = -2147483648;
const INT32_MAX = 2147483647;
let installed = false;

export function installNumberFormatting(): void {
  if (installed) return;
  installed = true;
  const original = lobject.luaO_tostring;
  lobject.luaO_tostring = function (L: unknown, obj: any): void {
    if (!obj.ttisinteger()) {
      const n = obj.value as number;
      if (Number.isInteger(n) && (n < INT32_MIN || n > INT32_MAX) && Math.abs(n) <= Number.MAX_SAFE_INTEGER) {
        obj.setsvalue(lstring.luaS_bless(L, to_luastring(String(n))));
        return;
      }
    }
    original(L, obj);
  };
  // `tostring`, `print` and `%s` format numbers through lua_pushfstring('%f'),
  // which calls fengari's own private luaO_tostring: intercept that format.
  const pushvfstring = lobject.luaO_pushvfstring;
  lobject.luaO_pushvfstring = function (L: any, fmt: Uint8Array, argp: unknown[]): unknown {
    if (fmt.length === 2 && fmt[0] === 37 && fmt[1] === 102) {
      const n = argp[0] as number;
      if (Number.isInteger(n) && (n < INT32_MIN || n > INT32_MAX) && Math.abs(n) <= Number.MAX_SAFE_INTEGER) {
        lapi.lua_pushstring(L, to_luastring(String(n)));
        return lapi.lua_tolstring(L, -1);
      }
    }
    return pushvfstring(L, fmt, argp);
  };
}


/**
 * A second patch, per state: fengari's `lua_pcallk` never records that hooks
 * were allowed when a yieldable `pcall` started (it clears the CIST_OAH bit
 * instead of setting it), so after the first error a `pcall` catches inside
 * a coroutine, every hook on that coroutine is off for good — and with it
 * the runaway guard. Setting the bit on the caller's CallInfo before the
 * original `pcall`/`xpcall` runs makes fengari's own line keep it.
 */
const CIST_OAH = 1;

export function patchProtectedCalls(L: any, lua: any, key: (s: string) => Uint8Array): void {
  for (const name of ['pcall', 'xpcall']) {
    lua.lua_getglobal(L, key(name));
    const original = lua.lua_tocfunction(L, -1) as (L: any) => number;
    lua.lua_pop(L, 1);
    lua.lua_pushcfunction(L, (L2: any) => {
      if (L2.allowhook) L2.ci.callstatus |= CIST_OAH;
      return original(L2);
    });
    lua.lua_setglobal(L, key(name));
  }
}
