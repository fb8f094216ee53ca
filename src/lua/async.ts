/**
 * The one async bridge between fengari and JavaScript promises.
 *
 * Every event handler and connection method runs in a coroutine of its own.
 * A host function that does I/O calls `awaitPromise`, which yields the
 * coroutine with a token; `runCoroutine` awaits the token's promise and
 * resumes the coroutine with the outcome, and the continuation either pushes
 * the result or raises the error inside Lua (so `pcall` sees it). Only that
 * coroutine waits: any number of others may be suspended at the same time.
 *
 * Limits, as in C Lua 5.3: no yield across a C boundary such as a
 * `table.sort` comparator. Coroutines that a policy creates itself forward the
 * token outward (see the prelude's `coroutine.resume` wrapper).
 */
import { lua, lauxlib } from 'fengari';
import { LuaError, RejectError } from '../errors.js';
import { decodeString, key, pushString, type LuaState } from './lstr.js';

const AWAIT = Symbol('sluice.await');

interface AwaitToken {
  [AWAIT]: true;
  promise: Promise<unknown>;
  push: (L: LuaState, value: any) => number;
  ok?: boolean;
  value?: unknown;
}

/** What one call is doing: named in errors, and consulted by kumo.on. */
export interface CallContext {
  /** Shown in errors: `event 'init'`, `method 'send' of make.webhook.log_hook`. */
  label: string;
  /** The event being handled, or null while the policy's top level runs. */
  event: string | null;
  /** Set by the instruction guard when it stopped this call. */
  runaway?: string;
}

let running: CallContext | null = null;

/** The context of the coroutine that is executing right now, if any. */
export function currentContext(): CallContext | null {
  return running;
}

/**
 * From a host function: suspend the calling coroutine until `promise`
 * settles. On success `push` puts the results on the stack and returns how
 * many; on failure the rejection becomes a Lua error at the caller's line.
 * Must be the host function's `return` expression.
 */
export function awaitPromise<T>(L: LuaState, promise: Promise<T>, push: (L: LuaState, value: T) => number): number {
  const token: AwaitToken = { [AWAIT]: true, promise, push };
  lua.lua_pushlightuserdata(L, token);
  return lua.lua_yieldk(L, 1, 0, continueAfterAwait);
}

function continueAfterAwait(L: LuaState): number {
  const token = lua.lua_touserdata(L, -1) as AwaitToken;
  lua.lua_pop(L, 1);
  if (token.ok) return token.push(L, token.value);
  return raiseHostError(L, token.value);
}

/** Raise a JS error inside Lua as `file:line: message` (or the value itself for Lua values). */
export function raiseHostError(L: LuaState, err: unknown): number {
  if (err instanceof LuaValueError) {
    err.push(L);
    return lua.lua_error(L);
  }
  const message = err instanceof Error ? err.message : String(err);
  lauxlib.luaL_where(L, 1);
  pushString(L, message);
  lua.lua_concat(L, 2);
  return lua.lua_error(L);
}

/** An error whose Lua form is a value (a table) rather than a located string. */
export class LuaValueError extends Error {
  constructor(message: string, readonly push: (L: LuaState) => void) {
    super(message);
  }
}

export function isAwaitToken(v: unknown): boolean {
  return typeof v === 'object' && v !== null && (v as AwaitToken)[AWAIT] === true;
}

export interface RunOptions<T> {
  /** Push the function, then its arguments, onto `co`; return the argument count. */
  push: (co: LuaState) => number;
  /** Read the `n` results from `co` (synchronously, before they go away). */
  collect: (co: LuaState, n: number) => T;
  /** Instructions allowed between two yields; 0 for no limit. */
  instructionLimit: number;
  /** Recognises a kumo.reject value at the top of the stack and returns it. */
  readReject: (L: LuaState, idx: number) => { code: number; message: string } | null;
}

/** Run a function in a fresh coroutine of `L`, awaiting every host promise it yields. */
export async function runCoroutine<T>(L: LuaState, ctx: CallContext, opts: RunOptions<T>): Promise<T> {
  const co = lua.lua_newthread(L);
  lua.lua_pop(L, 1); // fengari objects live as long as JS references them
  let nargs = opts.push(co);
  for (;;) {
    if (opts.instructionLimit > 0) lua.lua_sethook(co, instructionGuard(opts.instructionLimit), lua.LUA_MASKCOUNT, opts.instructionLimit);
    const previous = running;
    running = ctx;
    let status: number;
    try {
      status = lua.lua_resume(co, L, nargs);
    } finally {
      running = previous;
    }
    if (status === lua.LUA_OK) return opts.collect(co, lua.lua_gettop(co));
    if (status !== lua.LUA_YIELD) throw readError(L, co, ctx, opts);
    const n = lua.lua_gettop(co);
    const token = n > 0 ? (lua.lua_touserdata(co, -1) as AwaitToken | null) : null;
    lua.lua_pop(co, n);
    if (!token || token[AWAIT] !== true) {
      throw new LuaError(`${ctx.label}: coroutine.yield was called outside a coroutine the policy created`, '');
    }
    try {
      token.value = await token.promise;
      token.ok = true;
    } catch (err) {
      token.value = err;
      token.ok = false;
    }
    lua.lua_pushlightuserdata(co, token);
    nargs = 1;
  }
}

function readError<T>(L: LuaState, co: LuaState, ctx: CallContext, opts: RunOptions<T>): Error {
  // The dead coroutine's stack is full: move the error value to the main state first.
  lua.lua_xmove(co, L, 1);
  const tbIdx = lua.lua_gettop(L);
  lauxlib.luaL_traceback(L, co, null, 0);
  const traceback = decodeString(lua.lua_tolstring(L, -1));
  lua.lua_pop(L, 1);
  try {
    const reject = opts.readReject(L, tbIdx);
    if (reject) return new RejectError(reject.code, reject.message, traceback);
    const message = errorText(L, tbIdx);
    if (ctx.runaway) return new LuaError(message, traceback, 'SLUICE_ERR_LUA_RUNAWAY');
    return new LuaError(message, traceback);
  } finally {
    lua.lua_settop(L, tbIdx - 1);
  }
}

/** A readable message for any Lua error value. */
export function errorText(L: LuaState, idx: number): string {
  if (lua.lua_type(L, idx) === lua.LUA_TSTRING || lua.lua_type(L, idx) === lua.LUA_TNUMBER) {
    return decodeString(lua.lua_tolstring(L, idx));
  }
  try {
    if (lauxlib.luaL_callmeta(L, idx, key('__tostring'))) {
      const s = lua.lua_type(L, -1) === lua.LUA_TSTRING ? decodeString(lua.lua_tolstring(L, -1)) : null;
      lua.lua_pop(L, 1);
      if (s !== null) return s;
    }
  } catch {
    // a failing __tostring leaves the generic description below
  }
  return `(error object is a ${decodeString(lua.lua_typename(L, lua.lua_type(L, idx)))} value)`;
}

/**
 * The runaway guard: a count hook that fires after `limit` instructions
 * without a yield (the count restarts at every resume). Once it fires it keeps
 * firing on every instruction, so a `pcall` in the policy cannot swallow it.
 */
function instructionGuard(limit: number) {
  return function guard(L: LuaState, ar: any): void {
    lua.lua_getinfo(L, 'Sl', ar);
    const src = ar.short_src ? decodeString(ar.short_src) : '?';
    const where = `${src}:${ar.currentline}`;
    const ctx = running;
    if (ctx && !ctx.runaway) ctx.runaway = where;
    lua.lua_sethook(L, guard, lua.LUA_MASKCOUNT, 1);
    pushString(
      L,
      `${where}: ${ctx?.label ?? 'Lua code'} ran more than ${limit} instructions without yielding ` +
        `and was stopped (raise the limit with --lua-instruction-limit if this is expected)`,
    );
    lua.lua_error(L);
  };
}
