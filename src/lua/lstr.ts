/**
 * Strings across the fengari boundary. fengari stores Lua strings as
 * Uint8Array; its own helpers encode UTF-8 in JavaScript, which is slow for
 * message bodies, so these go through Buffer (native) instead.
 */
import { lua, to_luastring } from 'fengari';

export type LuaState = any;

/** Push a JS string or raw bytes as a Lua string. */
export function pushString(L: LuaState, s: string | Uint8Array): void {
  lua.lua_pushstring(L, typeof s === 'string' ? Buffer.from(s, 'utf8') : s);
}

/** Decode Lua string bytes as UTF-8. */
export function decodeString(u8: Uint8Array): string {
  return Buffer.from(u8.buffer, u8.byteOffset, u8.byteLength).toString('utf8');
}

/** The string at `idx` (numbers are converted, as Lua does), or null. */
export function toJsString(L: LuaState, idx: number): string | null {
  const u8 = lua.lua_tolstring(L, idx);
  return u8 === null || u8 === undefined ? null : decodeString(u8);
}

/** The raw bytes of the string at `idx`, or null. */
export function toBytes(L: LuaState, idx: number): Uint8Array | null {
  const u8 = lua.lua_tolstring(L, idx);
  return u8 === null || u8 === undefined ? null : u8;
}

/** A Lua string for a constant key, converted once and cached. */
export function key(s: string): Uint8Array {
  return to_luastring(s, true);
}
