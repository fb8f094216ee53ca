/**
 * The `kumo` calls that configure the engine: log hooks, local logs,
 * disposition hooks, queue and egress-path configs, the HTTP listener. Each
 * validates its options strictly (unknown keys and wrong types are errors
 * that name the field) and records the result in the VM's PolicySettings.
 */
import { lua } from 'fengari';
import type { LuaVM } from '../vm.js';
import { ConversionError, pushValue, toValue } from '../convert.js';
import { UserdataClass, raise, setFunctions, whereAt, type HostFunction } from '../host.js';
import { decodeString, key, type LuaState } from '../lstr.js';
import { OptionError, markLuaFloat, parseRecord, string, stringList, unsigned } from '../../config/schema.js';
import { formatDuration } from '../../config/duration.js';
import { parseEgressPathConfig, parseQueueConfig, type EgressPathConfig, type QueueConfig } from '../../queue/config.js';
import { parseDispositionHookParams, parseLocalLogsParams, parseLogHookParams } from '../../logging/hook-config.js';
import { compilePerRecordTemplates } from '../../logging/template.js';

/** The value behind `kumo.make_queue_config{...}`. */
export class QueueConfigHandle {
  constructor(readonly config: Readonly<QueueConfig>) {}
  toLuaJson(): unknown {
    return serialize(this.config);
  }
}

/** The value behind `kumo.make_egress_path{...}`. */
export class EgressPathHandle {
  constructor(readonly config: Readonly<EgressPathConfig>) {}
  toLuaJson(): unknown {
    return serialize(this.config);
  }
}

const DURATION_FIELDS = new Set([
  'retry_interval', 'max_retry_interval', 'max_age', 'reap_interval', 'refresh_interval', 'timerwheel_tick_interval',
  'max_batch_latency', 'idle_timeout', 'system_shutdown_timeout', 'dispatcher_progress_watchdog_timeout',
]);

/** The config as KumoMTA shows it back to Lua: durations as humantime strings, protocol in its tagged form. */
function serialize(cfg: object): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(cfg)) {
    if (v === undefined) continue;
    if (DURATION_FIELDS.has(k) && typeof v === 'number') out[k] = formatDuration(v);
    else if (k === 'protocol' && v && typeof v === 'object') {
      const { kind, ...rest } = v as { kind: string } & Record<string, unknown>;
      if (kind === 'custom_lua') out[k] = { custom_lua: serialize(rest) };
      else if (kind === 'maildir') out[k] = rest;
      else out[k] = { smtp: (rest as { options: unknown }).options };
    } else out[k] = v;
  }
  return out;
}

/**
 * Walk the Lua table at `idx` beside its converted form `value` and mark the
 * string keys whose Lua value is an integral float within the 32-bit range
 * (`batch_size = 20/2`), so that integer fields refuse it as mlua does.
 * Larger integral floats stand for 64-bit integers in fengari and pass.
 */
function markFloats(L: LuaState, idx: number, value: unknown, depth: number): void {
  if (depth > 16 || value === null || typeof value !== 'object' || Array.isArray(value)) return;
  if (lua.lua_type(L, idx) !== lua.LUA_TTABLE) return;
  const t = lua.lua_absindex(L, idx);
  lua.lua_pushnil(L);
  while (lua.lua_next(L, t) !== 0) {
    if (lua.lua_type(L, -2) === lua.LUA_TSTRING) {
      const k = decodeString(lua.lua_tolstring(L, -2));
      const type = lua.lua_type(L, -1);
      if (type === lua.LUA_TNUMBER && !lua.lua_isinteger(L, -1)) {
        const n = lua.lua_tonumber(L, -1);
        if (Number.isInteger(n) && n >= -2147483648 && n <= 2147483647) markLuaFloat(value, k);
      } else if (type === lua.LUA_TTABLE) {
        markFloats(L, -1, (value as Record<string, unknown>)[k], depth + 1);
      }
    }
    lua.lua_pop(L, 1);
  }
}

/** Compile every per_record template now, so a bad one fails the configure call, not the first record. */
function checkTemplates(L: LuaState, fn: string, perRecord: Parameters<typeof compilePerRecordTemplates>[0]): void {
  try {
    compilePerRecordTemplates(perRecord);
  } catch (err) {
    raise(L, `${fn}: per_record template: ${(err as Error).message}`);
  }
}

export function openKumoConfig(vm: LuaVM, L: LuaState): void {
  const makeConfigClass = <T extends { toLuaJson(): unknown }>(name: string) => {
    const cls: UserdataClass<T> = new UserdataClass<T>(L, name, {}, {
      __pairs: (L2) => {
        const obj = cls.check(L2, 1, 'pairs');
        lua.lua_getglobal(L2, key('next'));
        pushValue(L2, obj.toLuaJson());
        lua.lua_pushnil(L2);
        return 3;
      },
      __len: (L2) => {
        lua.lua_pushinteger(L2, Object.keys(cls.check(L2, 1, 'len').toLuaJson() as object).length);
        return 1;
      },
    });
    cls.setIndex(L, (L2) => {
      const obj = cls.check(L2, 1, name);
      const field = lua.lua_tojsstring(L2, 2);
      pushValue(L2, (obj.toLuaJson() as Record<string, unknown>)[field]);
      return 1;
    });
    return cls;
  };
  const queueConfigClass = makeConfigClass<QueueConfigHandle>('QueueConfig');
  const egressPathClass = makeConfigClass<EgressPathHandle>('EgressPathConfig');

  /** Convert the options table at arg 1, then parse; errors in serde's form. */
  const options = <T>(L2: LuaState, fn: string, what: string, parse: (v: unknown) => T): T => {
    let input: unknown;
    try {
      input = lua.lua_isnoneornil(L2, 1) ? {} : toValue(L2, 1);
      markFloats(L2, 1, input, 0);
    } catch (err) {
      if (err instanceof ConversionError) raise(L2, `${fn}: ${err.message}`);
      throw err;
    }
    try {
      return parse(input);
    } catch (err) {
      if (err instanceof OptionError) {
        const detail = err.message.replace(/^[A-Za-z_.]+: /, '');
        raise(L2, `${fn}: deserialize error: ${detail}, while processing ${what}`);
      }
      throw err;
    }
  };

  const fns: Record<string, HostFunction> = {
    make_queue_config: (L2) => {
      queueConfigClass.push(L2, new QueueConfigHandle(options(L2, 'make_queue_config', 'QueueConfig', parseQueueConfig)));
      return 1;
    },
    make_egress_path: (L2) => {
      egressPathClass.push(L2, new EgressPathHandle(options(L2, 'make_egress_path', 'EgressPathConfig', parseEgressPathConfig)));
      return 1;
    },
    configure_log_hook: (L2) => {
      const params = options(L2, 'configure_log_hook', 'LogHookParams', parseLogHookParams);
      checkTemplates(L2, 'configure_log_hook', params.per_record);
      if (vm.settings.logHooks.has(params.name)) {
        raise(L2, `configure_log_hook: A logging hook with name \`${params.name}\` has already been registered`);
      }
      vm.settings.logHooks.set(params.name, { ...params, where: whereAt(L2, 1) ?? '?' });
      return 0;
    },
    configure_log_disposition_hook: (L2) => {
      const params = options(L2, 'configure_log_disposition_hook', 'DispositionHookParams', parseDispositionHookParams);
      if (vm.settings.dispositionHooks.has(params.name)) {
        raise(L2, `configure_log_disposition_hook: A disposition hook with name \`${params.name}\` has already been registered`);
      }
      vm.settings.dispositionHooks.set(params.name, { ...params, where: whereAt(L2, 1) ?? '?' });
      return 0;
    },
    configure_local_logs: (L2) => {
      const params = options(L2, 'configure_local_logs', 'LocalLogsParams', parseLocalLogsParams);
      checkTemplates(L2, 'configure_local_logs', params.per_record);
      vm.settings.localLogs.push({ ...params, where: whereAt(L2, 1) ?? '?' });
      return 0;
    },
    start_http_listener: (L2) => {
      const params = options(L2, 'start_http_listener', 'HttpListenerParams', (v) => parseRecord('HttpListenerParams', {
        listen: { parse: string, default: () => '127.0.0.1:8000' },
        hostname: { parse: string, optional: true },
        use_tls: { parse: (x) => x, optional: true },
        tls_certificate: { parse: (x) => x, optional: true },
        tls_private_key: { parse: (x) => x, optional: true },
        trusted_hosts: { parse: stringList(), default: () => ['127.0.0.1', '::1'] },
        request_body_limit: { parse: unsigned(), default: () => 2 * 1024 * 1024 },
      }, v));
      if (params.use_tls) raise(L2, 'start_http_listener: use_tls is not supported by sluice; terminate TLS in front of it');
      vm.settings.httpListeners.push({
        listen: params.listen,
        trusted_hosts: params.trusted_hosts,
        request_body_limit: params.request_body_limit,
        where: whereAt(L2, 1) ?? '?',
      });
      return 0;
    },
  };
  fns.make_egress_path_config = fns.make_egress_path as HostFunction;
  setFunctions(L, 'kumo.', fns);
}
