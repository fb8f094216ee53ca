/**
 * Small tools for writing Lua modules in TypeScript: argument checks with
 * KumoMTA-style messages, function tables, and userdata classes whose
 * instances wrap a JS object (`data.obj`) tagged with their class name
 * (`data.kind`). Lua code cannot create full userdata, so the tag is trusted.
 */
import { lua, lauxlib } from 'fengari';
import { formatNumberForJson, typeName } from './convert.js';
import { decodeString, key, pushString, toBytes, toJsString, type LuaState } from './lstr.js';

export type HostFunction = (L: LuaState) => number;

/** Raise `file:line: message` at the Lua caller. Never returns. */
export function raise(L: LuaState, message: string): never {
  lauxlib.luaL_where(L, 1);
  pushString(L, message);
  lua.lua_concat(L, 2);
  lua.lua_error(L);
  throw new Error('unreachable');
}

/** Wrap a host function so a thrown JS error becomes a located Lua error. */
export function hostFunction(name: string, fn: HostFunction): HostFunction {
  return function (L: LuaState): number {
    try {
      return fn(L);
    } catch (err) {
      if (isLuaThrow(err)) throw err;
      const message = err instanceof Error ? err.message : String(err);
      return raise(L, `${name}: ${message}`);
    }
  };
}

/** fengari unwinds Lua errors and yields with JS exceptions of its own; let those pass. */
function isLuaThrow(err: unknown): boolean {
  return typeof err === 'object' && err !== null && (err as { status?: unknown }).status !== undefined && !(err instanceof Error);
}

/** Set the functions of `fns` on the table at the top of the stack. */
export function setFunctions(L: LuaState, prefix: string, fns: Record<string, HostFunction>): void {
  for (const [name, fn] of Object.entries(fns)) {
    lua.lua_pushcfunction(L, hostFunction(`${prefix}${name}`, fn));
    lua.lua_setfield(L, -2, key(name));
  }
}

/** Push a new table holding `fns`. */
export function pushFunctionTable(L: LuaState, prefix: string, fns: Record<string, HostFunction>): void {
  lua.lua_createtable(L, 0, Object.keys(fns).length);
  setFunctions(L, prefix, fns);
}

/** Leave `kumo[name]` (created if missing) on the top of the stack. */
function subModule(L: LuaState, name: string): void {
  if (lua.lua_getfield(L, -1, key(name)) !== lua.LUA_TTABLE) {
    lua.lua_pop(L, 1);
    lua.lua_createtable(L, 0, 16);
    lua.lua_pushvalue(L, -1);
    lua.lua_setfield(L, -3, key(name));
  }
}

/** Add `fns` to `kumo[name]` (created if missing); `kumo` is on the top of the stack. */
export function addSubModule(L: LuaState, name: string, fns: Record<string, HostFunction>): void {
  subModule(L, name);
  setFunctions(L, `kumo.${name}.`, fns);
  lua.lua_pop(L, 1);
}

export function checkString(L: LuaState, arg: number, what: string): string {
  if (lua.lua_type(L, arg) !== lua.LUA_TSTRING && lua.lua_type(L, arg) !== lua.LUA_TNUMBER) {
    raise(L, `${what}: expected a string, got ${typeName(L, arg)}`);
  }
  return toJsString(L, arg) as string;
}

/** A Lua string argument as raw bytes (numbers are converted, as mlua does for strings). */
export function checkBytes(L: LuaState, arg: number, what: string): Uint8Array {
  const t = lua.lua_type(L, arg);
  if (t !== lua.LUA_TSTRING && t !== lua.LUA_TNUMBER) raise(L, `${what}: expected a string, got ${typeName(L, arg)}`);
  return toBytes(L, arg) as Uint8Array;
}

export function optString(L: LuaState, arg: number, what: string): string | undefined {
  return lua.lua_isnoneornil(L, arg) ? undefined : checkString(L, arg, what);
}

/** A Lua number as a JS number; integral floats count as integers (see convert.ts). */
export function checkNumber(L: LuaState, arg: number, what: string): number {
  if (lua.lua_type(L, arg) !== lua.LUA_TNUMBER) raise(L, `${what}: expected a number, got ${typeName(L, arg)}`);
  return lua.lua_tonumber(L, arg);
}

export function checkInteger(L: LuaState, arg: number, what: string): number {
  const n = checkNumber(L, arg, what);
  if (!Number.isInteger(n)) raise(L, `${what}: expected an integer, got ${formatNumberForJson(L, arg)}`);
  return n;
}

export function checkCount(L: LuaState, arg: number, what: string): number {
  const n = checkInteger(L, arg, what);
  if (n < 0) raise(L, `${what}: expected a non-negative integer, got ${n}`);
  return n;
}

export function checkTable(L: LuaState, arg: number, what: string): void {
  if (lua.lua_type(L, arg) !== lua.LUA_TTABLE) raise(L, `${what}: expected a table, got ${typeName(L, arg)}`);
}

export function checkFunction(L: LuaState, arg: number, what: string): void {
  if (lua.lua_type(L, arg) !== lua.LUA_TFUNCTION) raise(L, `${what}: expected a function, got ${typeName(L, arg)}`);
}

/** A userdata class: a metatable in the registry with methods and metamethods. */
export class UserdataClass<T> {
  readonly #ref: number;
  constructor(
    L: LuaState,
    readonly name: string,
    methods: Record<string, (L: LuaState, self: T) => number>,
    meta: Record<string, HostFunction> = {},
  ) {
    lua.lua_createtable(L, 0, 4);
    pushString(L, name);
    lua.lua_setfield(L, -2, key('__name'));
    lua.lua_createtable(L, 0, Object.keys(methods).length);
    for (const [m, fn] of Object.entries(methods)) {
      const label = `${name}:${m}`;
      lua.lua_pushcfunction(
        L,
        hostFunction(label, (L2) => fn(L2, this.check(L2, 1, label))),
      );
      lua.lua_setfield(L, -2, key(m));
    }
    lua.lua_setfield(L, -2, key('__index'));
    for (const [m, fn] of Object.entries(meta)) {
      lua.lua_pushcfunction(L, hostFunction(`${name} ${m}`, fn));
      lua.lua_setfield(L, -2, key(m));
    }
    if (!meta.__tostring) {
      lua.lua_pushcfunction(L, (L2: LuaState) => {
        pushString(L2, name);
        return 1;
      });
      lua.lua_setfield(L, -2, key('__tostring'));
    }
    this.#ref = lauxlib.luaL_ref(L, lua.LUA_REGISTRYINDEX);
  }

  /** Push a new userdata wrapping `obj`. */
  push(L: LuaState, obj: T): void {
    const data = lua.lua_newuserdata(L, 0);
    data.obj = obj;
    data.kind = this.name;
    lua.lua_rawgeti(L, lua.LUA_REGISTRYINDEX, this.#ref);
    lua.lua_setmetatable(L, -2);
  }

  /** The JS object behind the userdata at `arg`, or null. */
  test(L: LuaState, arg: number): T | null {
    if (lua.lua_type(L, arg) !== lua.LUA_TUSERDATA) return null;
    const data = lua.lua_touserdata(L, arg);
    return data && data.kind === this.name ? (data.obj as T) : null;
  }

  check(L: LuaState, arg: number, what: string): T {
    const obj = this.test(L, arg);
    if (obj === null) raise(L, `${what}: expected ${this.name}, got ${typeName(L, arg)} (call it with ':' not '.')`);
    return obj;
  }

  /** Replace the `__index` of this class with a host function (for field access). */
  setIndex(L: LuaState, fn: HostFunction): void {
    lua.lua_rawgeti(L, lua.LUA_REGISTRYINDEX, this.#ref);
    lua.lua_pushcfunction(L, fn);
    lua.lua_setfield(L, -2, key('__index'));
    lua.lua_pop(L, 1);
  }
}

/** Read `short_src:line` for stack level `level` (1 = the caller of the host function). */
export function whereAt(L: LuaState, level: number): string | null {
  const ar = new lua.lua_Debug();
  if (!lua.lua_getstack(L, level, ar)) return null;
  lua.lua_getinfo(L, 'Sl', ar);
  return `${decodeString(ar.short_src)}:${ar.currentline}`;
}
