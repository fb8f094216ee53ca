/**
 * Values between JavaScript and Lua.
 *
 * fengari's integers are 32-bit. A JS integer that fits in 32 bits becomes a
 * Lua integer; a larger one (unix-millisecond timestamps, log offsets) becomes
 * a Lua float holding the exact value (exact up to 2^53), and every way back
 * out of Lua (JSON, meta, host results) writes such an integral float as an
 * integer again, as KumoMTA's 64-bit Lua would. Integral floats inside the
 * 32-bit range are real floats and encode as `1.0`, as mlua does.
 *
 * Tables follow mlua's rules (kumomta-facts §9): a table with `#t > 0`, or one
 * carrying the array metatable, is an array (string keys dropped, holes null);
 * any other table is an object. JSON null becomes nil.
 */
import { lua, lauxlib } from 'fengari';
import { decodeString, key, pushString, type LuaState } from './lstr.js';
import { convertedValue, proxiedObject, proxyJson } from './json-proxy.js';

const INT32_MIN = -2147483648;
const INT32_MAX = 2147483647;
const ARRAY_MT = key('sluice.array_mt');

/** A JS object that knows how to put itself on a Lua stack (userdata handles). */
export interface LuaPushable {
  pushLua(L: LuaState): void;
}

export function isPushable(v: unknown): v is LuaPushable {
  return typeof v === 'object' && v !== null && typeof (v as LuaPushable).pushLua === 'function';
}

/** Bytes that must reach Lua as a raw string, not as an array of numbers. */
export function isBytes(v: unknown): v is Uint8Array {
  return v instanceof Uint8Array;
}

/** Create the shared array metatable in the registry; call once per state. */
export function installArrayMetatable(L: LuaState): void {
  lua.lua_createtable(L, 0, 1);
  pushString(L, 'array');
  lua.lua_setfield(L, -2, key('__name'));
  lua.lua_setfield(L, lua.LUA_REGISTRYINDEX, ARRAY_MT);
}

/** Mark the table at the top of the stack as an array. */
export function setArrayMetatable(L: LuaState): void {
  lua.lua_getfield(L, lua.LUA_REGISTRYINDEX, ARRAY_MT);
  lua.lua_setmetatable(L, -2);
}

export function pushNumber(L: LuaState, n: number): void {
  if (Number.isInteger(n) && n >= INT32_MIN && n <= INT32_MAX) lua.lua_pushinteger(L, n);
  else lua.lua_pushnumber(L, n);
}

/** Push any JSON-like JS value (plus bytes and pushable handles). */
export function pushValue(L: LuaState, v: unknown): void {
  switch (typeof v) {
    case 'undefined':
      lua.lua_pushnil(L);
      return;
    case 'boolean':
      lua.lua_pushboolean(L, v);
      return;
    case 'number':
      pushNumber(L, v);
      return;
    case 'bigint':
      pushNumber(L, Number(v));
      return;
    case 'string':
      pushString(L, v);
      return;
    case 'object':
      if (v === null) lua.lua_pushnil(L);
      else if (isPushable(v)) v.pushLua(L);
      else if (isBytes(v)) lua.lua_pushstring(L, v);
      else if (Array.isArray(v)) pushArray(L, v);
      else pushObject(L, v as Record<string, unknown>);
      return;
    default:
      throw new TypeError(`cannot convert a JS ${typeof v} to Lua`);
  }
}

/** Push a plain Lua sequence of strings (mlua's Vec<String>: no array metatable). */
export function pushStringList(L: LuaState, items: readonly string[]): void {
  lua.lua_createtable(L, items.length, 0);
  items.forEach((s, i) => {
    pushString(L, s);
    lua.lua_rawseti(L, -2, i + 1);
  });
}

function pushArray(L: LuaState, a: unknown[]): void {
  lua.lua_createtable(L, a.length, 0);
  for (let i = 0; i < a.length; i++) {
    const item = a[i];
    if (item === null || item === undefined) continue;
    pushValue(L, item);
    lua.lua_rawseti(L, -2, i + 1);
  }
  setArrayMetatable(L);
}

function pushObject(L: LuaState, o: Record<string, unknown>): void {
  const keys = Object.keys(o);
  lua.lua_createtable(L, 0, keys.length);
  for (const k of keys) {
    const item = o[k];
    if (item === null || item === undefined) continue;
    pushString(L, k);
    pushValue(L, item);
    lua.lua_rawset(L, -3);
  }
}

/** Whether the table at `idx` carries the array metatable. */
export function hasArrayMetatable(L: LuaState, idx: number): boolean {
  if (!lua.lua_getmetatable(L, idx)) return false;
  lua.lua_getfield(L, lua.LUA_REGISTRYINDEX, ARRAY_MT);
  const same = lua.lua_rawequal(L, -1, -2);
  lua.lua_pop(L, 2);
  return same;
}

/** Host objects behind userdata may offer a plain value for serialisation. */
export interface LuaSerializable {
  toLuaJson(): unknown;
}

export class ConversionError extends Error {}

/**
 * Convert the Lua value at `idx` to a plain JS value. Functions, threads and
 * userdata without a serialisable form raise ConversionError, as mlua's
 * serializer does.
 */
export function toValue(L: LuaState, idx: number): unknown {
  return toValueAt(L, lua.lua_absindex(L, idx), new Set());
}

function toValueAt(L: LuaState, idx: number, seen: Set<unknown>): unknown {
  switch (lua.lua_type(L, idx)) {
    case lua.LUA_TNIL:
    case lua.LUA_TNONE:
      return null;
    case lua.LUA_TBOOLEAN:
      return lua.lua_toboolean(L, idx);
    case lua.LUA_TNUMBER:
      return lua.lua_tonumber(L, idx);
    case lua.LUA_TSTRING:
      return decodeString(lua.lua_tolstring(L, idx));
    case lua.LUA_TTABLE:
      return tableToValue(L, idx, seen);
    case lua.LUA_TUSERDATA: {
      const data = lua.lua_touserdata(L, idx);
      const obj = data?.obj as Partial<LuaSerializable> | undefined;
      if (obj && typeof obj.toLuaJson === 'function') return obj.toLuaJson();
      throw new ConversionError(`cannot serialize <userdata${data?.kind ? ` ${data.kind}` : ''}>`);
    }
    default:
      throw new ConversionError(`cannot serialize <${typeName(L, idx)}>`);
  }
}

function tableToValue(L: LuaState, idx: number, seen: Set<unknown>): unknown {
  const proxied = proxiedObject(L, idx);
  if (proxied) return convertedValue(proxied);
  const ptr = lua.lua_topointer(L, idx);
  if (seen.has(ptr)) throw new ConversionError('cannot serialize a recursive table');
  seen.add(ptr);
  lauxlib.luaL_checkstack(L, 3, null);
  try {
    const n = lua.lua_rawlen(L, idx);
    if (n > 0 || hasArrayMetatable(L, idx)) {
      const out: unknown[] = new Array(n);
      for (let i = 1; i <= n; i++) {
        lua.lua_rawgeti(L, idx, i);
        out[i - 1] = toValueAt(L, lua.lua_gettop(L), seen);
        lua.lua_pop(L, 1);
      }
      return out;
    }
    const out: Record<string, unknown> = {};
    lua.lua_pushnil(L);
    while (lua.lua_next(L, idx) !== 0) {
      const k = keyToString(L, -2);
      out[k] = toValueAt(L, lua.lua_gettop(L), seen);
      lua.lua_pop(L, 1);
    }
    return out;
  } finally {
    seen.delete(ptr);
  }
}

/** Object keys: strings as they are, numbers in their integer form. */
export function keyToString(L: LuaState, idx: number): string {
  const t = lua.lua_type(L, idx);
  if (t === lua.LUA_TSTRING) return decodeString(lua.lua_tolstring(L, idx));
  if (t === lua.LUA_TNUMBER) return formatNumberForJson(L, idx, true);
  throw new ConversionError(`cannot serialize a table key of type ${typeName(L, idx)}`);
}

export function typeName(L: LuaState, idx: number): string {
  return decodeString(lua.lua_typename(L, lua.lua_type(L, idx)));
}

/**
 * A Lua number as JSON text. Integers as integers; integral floats outside
 * the 32-bit range as integers (they stand for 64-bit integers); other
 * integral floats as `N.0`; NaN and infinities as null (serde_json does this).
 */
export function formatNumberForJson(L: LuaState, idx: number, asKey = false): string {
  const n = lua.lua_tonumber(L, idx);
  if (lua.lua_isinteger(L, idx)) return String(n);
  if (!Number.isFinite(n)) return asKey ? String(n) : 'null';
  if (Number.isInteger(n)) {
    if (n < INT32_MIN || n > INT32_MAX) return Math.abs(n) < 1e21 ? BigInt(n).toString() : String(n);
    return asKey ? String(n) : `${n}.0`;
  }
  return String(n);
}

/**
 * Encode the Lua value at `idx` as JSON text directly from the stack.
 * `pretty` indents by two spaces and sorts object keys (json_encode_pretty).
 */
export function encodeJson(L: LuaState, idx: number, pretty = false): string {
  const parts: string[] = [];
  encodeAt(L, lua.lua_absindex(L, idx), pretty ? '\n' : '', pretty, parts, new Set());
  return parts.join('');
}

function encodeAt(L: LuaState, idx: number, nl: string, pretty: boolean, out: string[], seen: Set<unknown>): void {
  switch (lua.lua_type(L, idx)) {
    case lua.LUA_TNIL:
    case lua.LUA_TNONE:
      out.push('null');
      return;
    case lua.LUA_TBOOLEAN:
      out.push(lua.lua_toboolean(L, idx) ? 'true' : 'false');
      return;
    case lua.LUA_TNUMBER:
      out.push(formatNumberForJson(L, idx));
      return;
    case lua.LUA_TSTRING:
      out.push(JSON.stringify(decodeString(lua.lua_tolstring(L, idx))));
      return;
    case lua.LUA_TTABLE:
      encodeTable(L, idx, nl, pretty, out, seen);
      return;
    case lua.LUA_TUSERDATA: {
      const data = lua.lua_touserdata(L, idx);
      const obj = data?.obj as Partial<LuaSerializable> | undefined;
      if (obj && typeof obj.toLuaJson === 'function') {
        out.push(pretty ? stringifyPretty(obj.toLuaJson(), nl) : JSON.stringify(obj.toLuaJson()));
        return;
      }
      throw new ConversionError(`cannot serialize <userdata${data?.kind ? ` ${data.kind}` : ''}>`);
    }
    default:
      throw new ConversionError(`cannot serialize <${typeName(L, idx)}>`);
  }
}

function encodeTable(L: LuaState, idx: number, nl: string, pretty: boolean, out: string[], seen: Set<unknown>): void {
  const proxied = proxiedObject(L, idx);
  if (proxied) {
    out.push(pretty ? stringifyPretty(convertedValue(proxied), nl) : proxyJson(proxied));
    return;
  }
  const ptr = lua.lua_topointer(L, idx);
  if (seen.has(ptr)) throw new ConversionError('cannot serialize a recursive table');
  seen.add(ptr);
  lauxlib.luaL_checkstack(L, 3, null);
  const inner = pretty ? `${nl}  ` : '';
  const n = lua.lua_rawlen(L, idx);
  if (n > 0) {
    out.push('[');
    for (let i = 1; i <= n; i++) {
      if (i > 1) out.push(',');
      out.push(inner);
      lua.lua_rawgeti(L, idx, i);
      encodeAt(L, lua.lua_gettop(L), inner, pretty, out, seen);
      lua.lua_pop(L, 1);
    }
    out.push(pretty ? `${nl}]` : ']');
  } else {
    const entries: Array<[string, string]> = [];
    lua.lua_pushnil(L);
    while (lua.lua_next(L, idx) !== 0) {
      const k = keyToString(L, -2);
      const v: string[] = [];
      encodeAt(L, lua.lua_gettop(L), inner, pretty, v, seen);
      entries.push([k, v.join('')]);
      lua.lua_pop(L, 1);
    }
    if (entries.length === 0) out.push('{}');
    else {
      if (pretty) entries.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
      out.push('{');
      const sep = pretty ? ': ' : ':';
      entries.forEach(([k, v], i) => {
        if (i > 0) out.push(',');
        out.push(inner, JSON.stringify(k), sep, v);
      });
      out.push(pretty ? `${nl}}` : '}');
    }
  }
  seen.delete(ptr);
}

function stringifyPretty(v: unknown, nl: string): string {
  const text = JSON.stringify(sortKeys(v), null, 2) ?? 'null';
  return text.split('\n').join(nl);
}

function sortKeys(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(sortKeys);
  if (v && typeof v === 'object') {
    const out: Record<string, unknown> = {};
    for (const k of Object.keys(v).sort()) out[k] = sortKeys((v as Record<string, unknown>)[k]);
    return out;
  }
  return v;
}
