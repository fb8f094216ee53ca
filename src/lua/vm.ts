/**
 * One fengari Lua state running a user's policy.
 *
 * `LuaVM.load` creates the state, puts sluice's `policy/` folder and the
 * policy's own folder on `package.path`, installs the `kumo` module (also as
 * the global `kumo`, as KumoMTA does) and runs the policy's top level in a
 * coroutine. `startup()` then fires `pre_init` and `init`, once per process.
 * A reload builds a new VM and runs only the top level, as a KumoMTA config
 * epoch does.
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { lua, lauxlib, lualib } from 'fengari';
import { LuaError, SluiceError } from '../errors.js';
import { runCoroutine, type CallContext } from './async.js';
import { installArrayMetatable, pushValue, toValue } from './convert.js';
import { installJsonProxy } from './json-proxy.js';
import { EventRegistry, isMultiple } from './events.js';
import { installNumberFormatting, patchProtectedCalls } from './fengari-patches.js';
import { installFastFormat, originalFormat } from './format.js';
import { decodeString, key, pushString, type LuaState } from './lstr.js';
import { openModules } from './modules/index.js';
import { readReject } from './modules/kumo-reject.js';
import { PolicySettings } from './policy-settings.js';
import type { LuaServices } from './modules/sluice.js';
import { createLogger, type Logger } from '../logging/logger.js';

/** sluice's shipped Lua: `policy/` at the package root. */
export const POLICY_DIR = fileURLToPath(new URL('../../policy/', import.meta.url));

/** Instructions a handler may run between two yields before it is stopped. */
export const DEFAULT_INSTRUCTION_LIMIT = 50_000_000;

export interface LuaVMOptions {
  /** The user's init.lua. */
  policyPath: string;
  /** Runaway guard; 0 turns it off. @defaultValue 50,000,000 */
  instructionLimit?: number;
  logger?: Logger;
  /** Where `configure_*` calls are recorded. @defaultValue a new PolicySettings */
  settings?: PolicySettings;
  /** Host services for `require 'sluice'` (event logs). */
  services?: LuaServices;
}

/** A Lua value kept alive in the registry: connection objects, handler functions. */
export class LuaRef {
  constructor(
    readonly vm: LuaVM,
    readonly ref: number,
  ) {}
  pushLua(L: LuaState): void {
    lua.lua_rawgeti(L, lua.LUA_REGISTRYINDEX, this.ref);
  }
  release(): void {
    lauxlib.luaL_unref(this.vm.L, lua.LUA_REGISTRYINDEX, this.ref);
  }
}

export type ResultMode = 'values' | 'refs';

export interface EventResult {
  /** Whether a handler returned a value (for Multiple events: which one ended the chain). */
  handled: boolean;
  values: unknown[];
}

export class LuaVM {
  readonly L: LuaState;
  readonly events = new EventRegistry();
  readonly settings: PolicySettings;
  readonly policyPath: string;
  readonly policyDir: string;
  readonly logger: Logger;
  readonly services: LuaServices;
  instructionLimit: number;
  /** Set by `kumo.validation_failed()`. */
  validationFailed = false;
  /** Called by `kumo.bump_config_epoch()`; the daemon wires it to a reload. */
  onBumpEpoch?: () => void;
  #closed = false;

  private constructor(opts: LuaVMOptions) {
    this.policyPath = path.resolve(opts.policyPath);
    this.policyDir = path.dirname(this.policyPath);
    this.instructionLimit = opts.instructionLimit ?? DEFAULT_INSTRUCTION_LIMIT;
    this.logger = opts.logger ?? createLogger();
    this.settings = opts.settings ?? new PolicySettings();
    this.services = opts.services ?? {};
    installNumberFormatting();
    this.L = lauxlib.luaL_newstate();
    lualib.luaL_openlibs(this.L);
    patchProtectedCalls(this.L, lua, key);
    lua.lua_atnativeerror(this.L, (L: LuaState) => {
      const e = lua.lua_touserdata(L, -1);
      pushString(L, e instanceof Error ? e.message : String(e));
      return 1;
    });
    installArrayMetatable(this.L);
    installJsonProxy(this.L);
    this.#setPackagePath();
    openModules(this);
    const format = originalFormat(this.L);
    this.#runPrelude();
    installFastFormat(this.L, format);
  }

  /** Create a VM and run the policy's top level. Errors name the file and line. */
  static async load(opts: LuaVMOptions): Promise<LuaVM> {
    const vm = new LuaVM(opts);
    const L = vm.L;
    const status = lauxlib.luaL_loadfilex(L, key(chunkPath(vm.policyPath)), null);
    if (status !== lua.LUA_OK) {
      const message = decodeString(lua.lua_tolstring(L, -1));
      lua.lua_pop(L, 1);
      const code = status === lua.LUA_ERRSYNTAX ? 'SLUICE_ERR_LUA_SYNTAX' : 'SLUICE_ERR_POLICY_LOAD';
      throw new SluiceError(code, message.startsWith('cannot open') ? `${message} (check the --policy path)` : message);
    }
    const ref = lauxlib.luaL_ref(L, lua.LUA_REGISTRYINDEX);
    await vm.#run({ label: `top level of ${chunkPath(vm.policyPath)}`, event: null }, (co) => {
      lua.lua_rawgeti(co, lua.LUA_REGISTRYINDEX, ref);
      return 0;
    }, () => undefined);
    lauxlib.luaL_unref(L, lua.LUA_REGISTRYINDEX, ref);
    return vm;
  }

  /** Fire `pre_init` then `init` (and `validate_config` when validating), as at daemon start. */
  async startup(opts: { validate?: boolean } = {}): Promise<void> {
    await this.fireAll('pre_init', []);
    await this.fire('init', []);
    if (opts.validate) await this.fireAll('validate_config', []);
  }

  /** Whether any handler is registered for `name`. */
  hasHandler(name: string): boolean {
    return this.events.has(name);
  }

  /**
   * Fire an event. Single: the one handler's results. Multiple: handlers in
   * order until one returns a non-nil value. No handler: `handled` false.
   */
  async fire(name: string, args: readonly unknown[], mode: ResultMode = 'values'): Promise<EventResult> {
    const handlers = this.events.get(name);
    for (const h of handlers) {
      const values = await this.call({ label: `event '${name}'`, event: name }, h.ref, args, mode);
      if (!isMultiple(name) || values.some((v) => v !== null && v !== undefined)) return { handled: true, values };
    }
    return { handled: false, values: [] };
  }

  /** Fire every handler of a Multiple event, ignoring results (pre_init, validate_config). */
  async fireAll(name: string, args: readonly unknown[]): Promise<void> {
    for (const h of this.events.get(name)) {
      await this.call({ label: `event '${name}'`, event: name }, h.ref, args, 'values');
    }
  }

  /** Call the function behind registry `ref` in its own coroutine. */
  call(ctx: CallContext, ref: number, args: readonly unknown[], mode: ResultMode): Promise<unknown[]> {
    return this.#run(ctx, (co) => {
      lua.lua_rawgeti(co, lua.LUA_REGISTRYINDEX, ref);
      for (const a of args) pushValue(co, a);
      return args.length;
    }, (co, n) => this.#collect(co, n, mode));
  }

  /**
   * Call `obj:method(...)` on a Lua table held by `obj`. A missing method is
   * a LuaError `<label>: method not found`.
   */
  callMethod(ctx: CallContext, obj: LuaRef, method: string, args: readonly unknown[], mode: ResultMode = 'values'): Promise<unknown[]> {
    return this.#run(ctx, (co) => {
      obj.pushLua(co);
      lua.lua_getfield(co, -1, key(method));
      if (lua.lua_type(co, -1) !== lua.LUA_TFUNCTION) throw new LuaError(`${ctx.label}: method not found`, '');
      lua.lua_insert(co, -2);
      for (const a of args) pushValue(co, a);
      return args.length + 1;
    }, (co, n) => this.#collect(co, n, mode));
  }

  /** Whether the table behind `obj` has a function field `name`. */
  hasMethod(obj: LuaRef, name: string): boolean {
    const L = this.L;
    const top = lua.lua_gettop(L);
    obj.pushLua(L);
    const found = lua.lua_type(L, -1) === lua.LUA_TTABLE && lua.lua_getfield(L, -1, key(name)) === lua.LUA_TFUNCTION;
    lua.lua_settop(L, top);
    return found;
  }

  /** Whether `ref` holds a table. */
  isTable(ref: LuaRef): boolean {
    const L = this.L;
    ref.pushLua(L);
    const t = lua.lua_type(L, -1);
    lua.lua_pop(L, 1);
    return t === lua.LUA_TTABLE;
  }

  close(): void {
    this.#closed = true;
  }

  get closed(): boolean {
    return this.#closed;
  }

  #run<T>(ctx: CallContext, push: (co: LuaState) => number, collect: (co: LuaState, n: number) => T): Promise<T> {
    return runCoroutine(this.L, ctx, { push, collect, instructionLimit: this.instructionLimit, readReject });
  }

  #collect(co: LuaState, n: number, mode: ResultMode): unknown[] {
    const out: unknown[] = [];
    for (let i = 1; i <= n; i++) out.push(mode === 'refs' ? this.#toRefOrValue(co, i) : toValue(co, i));
    return out;
  }

  #toRefOrValue(co: LuaState, i: number): unknown {
    const t = lua.lua_type(co, i);
    if (t === lua.LUA_TUSERDATA) {
      const data = lua.lua_touserdata(co, i);
      if (data && data.obj !== undefined) return data.obj;
    }
    if (t === lua.LUA_TTABLE || t === lua.LUA_TFUNCTION || t === lua.LUA_TUSERDATA) {
      lua.lua_pushvalue(co, i);
      return new LuaRef(this, lauxlib.luaL_ref(co, lua.LUA_REGISTRYINDEX));
    }
    return toValue(co, i);
  }

  #setPackagePath(): void {
    const L = this.L;
    const dirs = [POLICY_DIR, this.policyDir];
    const entries = dirs.flatMap((d) => [path.join(d, '?.lua'), path.join(d, '?', 'init.lua')]);
    lua.lua_getglobal(L, key('package'));
    lua.lua_getfield(L, -1, key('path'));
    const existing = decodeString(lua.lua_tolstring(L, -1));
    lua.lua_pop(L, 1);
    pushString(L, [...entries, existing].join(';'));
    lua.lua_setfield(L, -2, key('path'));
    lua.lua_pop(L, 1);
  }

  #runPrelude(): void {
    const L = this.L;
    const file = path.join(POLICY_DIR, 'sluice', 'prelude.lua');
    if (lauxlib.luaL_loadfilex(L, key(file), null) !== lua.LUA_OK || lua.lua_pcall(L, 0, 0, 0) !== lua.LUA_OK) {
      const message = decodeString(lua.lua_tolstring(L, -1));
      lua.lua_pop(L, 1);
      throw new LuaError(`sluice prelude failed: ${message}`, '');
    }
  }
}

/** A policy path as Lua shows it: relative to the working directory when that is shorter. */
export function chunkPath(p: string): string {
  const rel = path.relative(process.cwd(), p);
  return rel && !rel.startsWith('..') && rel.length < p.length ? rel : p;
}
