/**
 * `kumo.reject(code, message)`: raises a table carrying the code and message
 * with a metatable the host recognises. A table keeps its identity through
 * `pcall` and re-raising with `error(err)`, and through any depth of nested
 * calls, so the reject reaches the delivery code however the policy got there.
 */
import { lua } from 'fengari';
import { decodeString, key, pushString, type LuaState } from '../lstr.js';
import { checkInteger, checkString, type HostFunction } from '../host.js';

const REJECT_MT = key('sluice.reject_mt');

export function installRejectMetatable(L: LuaState): void {
  lua.lua_createtable(L, 0, 2);
  pushString(L, 'Reject');
  lua.lua_setfield(L, -2, key('__name'));
  lua.lua_pushcfunction(L, (L2: LuaState) => {
    lua.lua_getfield(L2, 1, key('code'));
    lua.lua_getfield(L2, 1, key('message'));
    pushString(L2, `${lua.lua_tointeger(L2, -2)} ${decodeString(lua.lua_tolstring(L2, -1) ?? new Uint8Array())}`);
    return 1;
  });
  lua.lua_setfield(L, -2, key('__tostring'));
  lua.lua_setfield(L, lua.LUA_REGISTRYINDEX, REJECT_MT);
}

export const reject: HostFunction = (L) => {
  const code = checkInteger(L, 1, 'kumo.reject code');
  const message = checkString(L, 2, 'kumo.reject message');
  pushReject(L, code, message);
  return lua.lua_error(L);
};

export function pushReject(L: LuaState, code: number, message: string): void {
  lua.lua_createtable(L, 0, 3);
  pushString(L, 'reject');
  lua.lua_setfield(L, -2, key('kind'));
  lua.lua_pushinteger(L, code);
  lua.lua_setfield(L, -2, key('code'));
  pushString(L, message);
  lua.lua_setfield(L, -2, key('message'));
  lua.lua_getfield(L, lua.LUA_REGISTRYINDEX, REJECT_MT);
  lua.lua_setmetatable(L, -2);
}

/** If the value at `idx` is a reject, its code and message. */
export function readReject(L: LuaState, idx: number): { code: number; message: string } | null {
  if (lua.lua_type(L, idx) !== lua.LUA_TTABLE || !lua.lua_getmetatable(L, idx)) return null;
  lua.lua_getfield(L, lua.LUA_REGISTRYINDEX, REJECT_MT);
  const isReject = lua.lua_rawequal(L, -1, -2);
  lua.lua_pop(L, 2);
  if (!isReject) return null;
  lua.lua_getfield(L, idx, key('code'));
  lua.lua_getfield(L, idx, key('message'));
  const out = { code: lua.lua_tointeger(L, -2) as number, message: decodeString(lua.lua_tolstring(L, -1)) };
  lua.lua_pop(L, 2);
  return out;
}
