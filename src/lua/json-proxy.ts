/**
 * A JSON object from message meta (a log record, typically) as Lua sees it,
 * without converting it field by field.
 *
 * `msg:get_meta(k)` for an object value returns an empty table whose
 * metatable reads fields from the JS object on demand. Reading a scalar
 * field (`log_record.type`, `log_record.reception_protocol`) costs one
 * lookup. Anything that could change the table or expose a nested one — an
 * assignment, reading a field that holds a table, `pairs`, `#` — first
 * turns the proxy into an ordinary table holding every field (exactly what
 * a full conversion gives), so from then on it behaves as any table would.
 *
 * While it is still a proxy, `kumo.serde.json_encode` writes it from the
 * JS object directly (with what a conversion would have dropped: null
 * fields, and empty arrays written as `{}` as KumoMTA does), cached per
 * object. That is the `send_batch` path: `msg:get_meta 'log_record'` for
 * each message, then one `json_encode` of the array.
 *
 * Known difference from an ordinary table: raw access (`rawget`, `next`
 * without `pairs`) sees an empty table until the proxy has been turned into
 * an ordinary one.
 */
import { lua } from 'fengari';
import { key, pushString, type LuaState } from './lstr.js';
import { pushValue } from './convert.js';

const PROXY_MT = key('sluice.json_proxy_mt');

/** Live proxies: the fengari Table object → the JS object it shows. */
const proxies = new WeakMap<object, Record<string, unknown>>();
/** Compact JSON of an object as json_encode of its conversion would write it, computed once. */
const encoded = new WeakMap<object, string>();

export function installJsonProxy(L: LuaState): void {
  lua.lua_createtable(L, 0, 5);
  lua.lua_pushcfunction(L, (L2: LuaState) => {
    const obj = proxies.get(lua.lua_topointer(L2, 1));
    if (!obj) {
      lua.lua_pushvalue(L2, 2);
      lua.lua_rawget(L2, 1);
      return 1;
    }
    if (lua.lua_type(L2, 2) !== lua.LUA_TSTRING) {
      lua.lua_pushnil(L2);
      return 1;
    }
    const v = obj[lua.lua_tojsstring(L2, 2)];
    if (v !== null && typeof v === 'object') {
      materialize(L2, 1);
      lua.lua_pushvalue(L2, 2);
      lua.lua_rawget(L2, 1);
      return 1;
    }
    pushValue(L2, v);
    return 1;
  });
  lua.lua_setfield(L, -2, key('__index'));
  lua.lua_pushcfunction(L, (L2: LuaState) => {
    materialize(L2, 1);
    lua.lua_settop(L2, 3);
    lua.lua_rawset(L2, 1);
    return 0;
  });
  lua.lua_setfield(L, -2, key('__newindex'));
  lua.lua_pushcfunction(L, (L2: LuaState) => {
    materialize(L2, 1);
    lua.lua_getglobal(L2, key('next'));
    lua.lua_pushvalue(L2, 1);
    lua.lua_pushnil(L2);
    return 3;
  });
  lua.lua_setfield(L, -2, key('__pairs'));
  lua.lua_pushcfunction(L, (L2: LuaState) => {
    materialize(L2, 1);
    lua.lua_pushinteger(L2, lua.lua_rawlen(L2, 1));
    return 1;
  });
  lua.lua_setfield(L, -2, key('__len'));
  lua.lua_setfield(L, lua.LUA_REGISTRYINDEX, PROXY_MT);
}

/** Push `obj` as a proxy table. */
export function pushJsonProxy(L: LuaState, obj: Record<string, unknown>): void {
  lua.lua_createtable(L, 0, 0);
  proxies.set(lua.lua_topointer(L, -1), obj);
  lua.lua_getfield(L, lua.LUA_REGISTRYINDEX, PROXY_MT);
  lua.lua_setmetatable(L, -2);
}

/** The JS object behind the table at `idx`, if it is still a proxy. */
export function proxiedObject(L: LuaState, idx: number): Record<string, unknown> | undefined {
  return proxies.get(lua.lua_topointer(L, idx));
}

/** The value a full conversion to Lua and back would give: nulls dropped, empty arrays as objects. */
export function convertedValue(v: unknown): unknown {
  if (Array.isArray(v)) return v.length === 0 ? {} : v.map((x) => (x === null ? null : convertedValue(x)));
  if (v !== null && typeof v === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) if (x !== null && x !== undefined) out[k] = convertedValue(x);
    return out;
  }
  return v;
}

/** Compact JSON of the proxied object, as json_encode of the converted table writes it. */
export function proxyJson(obj: Record<string, unknown>): string {
  let s = encoded.get(obj);
  if (s === undefined) {
    s = JSON.stringify(convertedValue(obj));
    encoded.set(obj, s);
  }
  return s;
}

/** Turn the proxy at `idx` into an ordinary table holding every field. */
function materialize(L: LuaState, idx: number): void {
  const ptr = lua.lua_topointer(L, idx);
  const obj = proxies.get(ptr);
  if (!obj) return;
  proxies.delete(ptr);
  lua.lua_pushnil(L);
  lua.lua_setmetatable(L, idx);
  for (const [k, v] of Object.entries(obj)) {
    if (v === null || v === undefined) continue;
    pushString(L, k);
    pushValue(L, v);
    lua.lua_rawset(L, idx);
  }
}
