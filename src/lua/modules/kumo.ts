/**
 * The core of the `kumo` module: `kumo.on`, `kumo.reject`, logging, sleep,
 * introspection (`traceback`, `get_event_registrars`), and the MTA-only
 * calls that sluice accepts with one warning each so that a full KumoMTA
 * `init.lua` still loads.
 */
import { lua, lauxlib } from 'fengari';
import type { LuaVM } from '../vm.js';
import { awaitPromise, currentContext, isAwaitToken } from '../async.js';
import { pushValue } from '../convert.js';
import { DECLARED_EVENTS } from '../events.js';
import { checkFunction, checkNumber, checkString, pushFunctionTable, raise, setFunctions, whereAt, type HostFunction } from '../host.js';
import { decodeString, key, pushString, type LuaState } from '../lstr.js';
import { installRejectMetatable, reject } from './kumo-reject.js';
import { parseDuration } from '../../config/duration.js';

/** KumoMTA calls that configure SMTP, the spool or tuning: accepted, warned about once, no effect. */
export const MTA_ONLY_CALLS = [
  'start_esmtp_listener', 'start_lmtp_listener', 'define_spool', 'configure_accounting_db_path',
  'configure_bounce_classifier', 'configure_redis_throttles', 'set_max_lua_context_age',
  'set_max_lua_context_use_count', 'set_max_spare_lua_contexts', 'set_lua_gc_on_put',
  'set_lruttl_cache_capacity', 'set_spoolin_threads', 'set_httpinject_threads', 'set_qmaint_threads',
  'set_smtp_server_threads', 'set_readyq_threads', 'set_logging_threads', 'set_memory_hard_limit',
  'set_memory_low_thresh', 'set_memory_soft_limit', 'set_diagnostic_log_filter', 'enable_memory_callstack_tracking',
  'set_config_monitor_globs', 'set_prometheus_metrics_prefix', 'configure_smtp_server_rate_limits',
  'use_tokio_runtime', 'set_mailparsing_threads', 'spawn_thread_pool', 'set_dns_resolver',
];

/** Calls that return their options so that later code can keep using the value. */
const MTA_ONLY_ECHO = ['make_egress_source', 'make_egress_pool', 'make_listener_domain'];

export function openKumoCore(vm: LuaVM, L: LuaState): void {
  installRejectMetatable(L);
  const warnOnce = (name: string, where: string | null) => {
    if (vm.settings.ignoredCalls.has(name)) return;
    vm.settings.ignoredCalls.add(name);
    vm.logger.warn({ call: `kumo.${name}`, where }, `kumo.${name} is an MTA setting that sluice accepts and ignores`);
  };

  const log = (level: 'error' | 'warn' | 'info' | 'debug'): HostFunction => (L2) => {
    const n = lua.lua_gettop(L2);
    const parts: string[] = [];
    for (let i = 1; i <= n; i++) {
      parts.push(decodeString(lauxlib.luaL_tolstring(L2, i)));
      lua.lua_pop(L2, 1);
    }
    const where = whereAt(L2, 1);
    vm.logger[level]({ target: 'lua' }, `${where ? `${where}: ` : ''}${parts.join(' ')}`);
    return 0;
  };

  const sleep: HostFunction = (L2) => {
    const seconds = checkNumber(L2, 1, 'sleep seconds');
    if (seconds < 0) raise(L2, `sleep: seconds must not be negative, got ${seconds}`);
    return awaitPromise(L2, new Promise<void>((resolve) => setTimeout(resolve, seconds * 1000)), () => 0);
  };

  const fns: Record<string, HostFunction> = {
    on: (L2) => {
      const name = checkString(L2, 1, 'kumo.on event name');
      checkFunction(L2, 2, `kumo.on('${name}') handler`);
      const ctx = currentContext();
      if (ctx && ctx.event !== null && ctx.event !== 'main') {
        raise(L2,
          `Attempting to register an event handler via \`kumo.on('${name}', ...)\` from within the event handler '${ctx.event}'. ` +
            'You must move your event handler registration so that it is setup directly when the policy is loaded ' +
            'in order for it to consistently trigger and handle events.');
      }
      const registrant: string[] = [];
      for (let level = 1; level < 20; level++) {
        const w = whereAt(L2, level);
        if (w === null) break;
        registrant.push(w);
      }
      lua.lua_pushvalue(L2, 2);
      const ref = lauxlib.luaL_ref(L2, lua.LUA_REGISTRYINDEX);
      const clash = vm.events.add(name, { ref, registrant });
      if (clash) {
        lauxlib.luaL_unref(L2, lua.LUA_REGISTRYINDEX, ref);
        raise(L2, `${name} event already has a handler defined at ${clash.conflict.registrant[0] ?? '?'}`);
      }
      return 0;
    },
    reject,
    get_event_registrars: (L2) => {
      const name = checkString(L2, 1, 'event name');
      pushValue(L2, vm.events.get(name).map((h) => h.registrant));
      return 1;
    },
    traceback: (L2) => {
      // As mlua's inspect_stack: level 0 is kumo.traceback itself, 1 its Lua caller.
      const level = lua.lua_isnoneornil(L2, 1) ? 0 : checkNumber(L2, 1, 'traceback level');
      pushTraceback(L2, level);
      return 1;
    },
    validation_failed: () => {
      vm.validationFailed = true;
      return 0;
    },
    log_error: log('error'),
    log_warn: log('warn'),
    log_info: log('info'),
    log_debug: log('debug'),
    sleep,
    eval_config_monitor_globs: (L2) => {
      pushValue(L2, [vm.policyPath]);
      return 1;
    },
    bump_config_epoch: () => {
      vm.onBumpEpoch?.();
      return 0;
    },
    _is_await_token: (L2) => {
      lua.lua_pushboolean(L2, lua.lua_type(L2, 1) === lua.LUA_TLIGHTUSERDATA && isAwaitToken(lua.lua_touserdata(L2, 1)));
      return 1;
    },
    available_parallelism: (L2) => {
      lua.lua_pushinteger(L2, 2);
      return 1;
    },
  };
  for (const name of MTA_ONLY_CALLS) {
    fns[name] = (L2) => {
      warnOnce(name, whereAt(L2, 1));
      return 0;
    };
  }
  for (const name of MTA_ONLY_ECHO) {
    fns[name] = (L2) => {
      warnOnce(name, whereAt(L2, 1));
      lua.lua_settop(L2, 1);
      return 1;
    };
  }
  setFunctions(L, 'kumo.', fns);

  pushString(L, `sluice ${process.env.npm_package_version ?? ''}`.trim());
  lua.lua_setfield(L, -2, key('version'));

  pushFunctionTable(L, 'kumo.time.', {
    sleep,
    now: (L2) => {
      lua.lua_pushnumber(L2, Date.now() / 1000);
      return 1;
    },
    parse_duration: (L2) => {
      // checkString raises a Lua error of its own: keep it out of the try.
      const value = lua.lua_type(L2, 1) === lua.LUA_TNUMBER ? lua.lua_tonumber(L2, 1) : checkString(L2, 1, 'duration');
      let ms: number;
      try {
        ms = parseDuration(value);
      } catch (err) {
        raise(L2, (err as Error).message);
      }
      lua.lua_pushnumber(L2, ms / 1000);
      return 1;
    },
  });
  lua.lua_setfield(L, -2, key('time'));

  // The names of the events sluice fires, for introspection from Lua.
  pushValue(L, Object.keys(DECLARED_EVENTS));
  lua.lua_setfield(L, -2, key('_declared_events'));
}

/** fengari names host functions `J` / `[JS]`; policies (typing.lua) look for C Lua's `C` / `[C]`. */
function jsAsC(s: string): string {
  return s === 'J' ? 'C' : s === '[JS]' ? '[C]' : s === '=[JS]' ? '=[C]' : s;
}

/** Push KumoMTA's traceback frames, starting at stack `level` of L. */
function pushTraceback(L: LuaState, level: number): void {
  lua.lua_newtable(L);
  const ar = new lua.lua_Debug();
  let i = 1;
  for (let lv = level; lua.lua_getstack(L, lv, ar); lv++) {
    lua.lua_getinfo(L, 'Slnt', ar);
    // Field values as mlua's Debug reports them: event `Call`, an empty
    // name_what and negative line numbers (C functions) as nil.
    const frame: Record<string, unknown> = {
      event: 'Call',
      name: ar.name ? decodeString(ar.name) : null,
      name_what: ar.namewhat && ar.namewhat.length > 0 ? decodeString(ar.namewhat) : null,
      source: ar.source ? jsAsC(decodeString(ar.source)) : null,
      short_src: ar.short_src ? jsAsC(decodeString(ar.short_src)) : null,
      line_defined: ar.linedefined >= 0 ? ar.linedefined : null,
      last_line_defined: ar.lastlinedefined >= 0 ? ar.lastlinedefined : null,
      what: ar.what ? jsAsC(decodeString(ar.what)) : null,
      curr_line: ar.currentline,
      is_tail_call: !!ar.istailcall,
    };
    pushValue(L, frame);
    lua.lua_rawseti(L, -2, i++);
  }
}
