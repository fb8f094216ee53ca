/**
 * `require 'sluice'`: what sluice offers a policy beyond KumoMTA's API.
 *
 *   sluice.publish(log_id, { key = 'k', value = 'v' })  → next_offset
 *
 * appends one message to an event log (so egress webhooks on that log
 * deliver it), waiting until it is durable. Only under `sluice serve`.
 */
import { lua } from 'fengari';
import type { LuaVM } from '../vm.js';
import { awaitPromise } from '../async.js';
import { checkString, checkTable, pushFunctionTable, raise } from '../host.js';
import { key, toBytes, type LuaState } from '../lstr.js';

/** Host services a VM may be given. */
export interface LuaServices {
  publishEvent?: (logId: string, key: Buffer | null, value: Buffer | null) => Promise<number>;
}

export function openSluice(vm: LuaVM, L: LuaState): void {
  lua.lua_getglobal(L, key('package'));
  lua.lua_getfield(L, -1, key('loaded'));
  pushFunctionTable(L, 'sluice.', {
    publish: (L2) => {
      const logId = checkString(L2, 1, 'sluice.publish log_id');
      checkTable(L2, 2, 'sluice.publish message');
      const field = (name: string): Buffer | null => {
        lua.lua_getfield(L2, 2, key(name));
        const t = lua.lua_type(L2, -1);
        const b = t === lua.LUA_TNIL ? null : t === lua.LUA_TSTRING || t === lua.LUA_TNUMBER ? Buffer.from(toBytes(L2, -1) as Uint8Array) : raise(L2, `sluice.publish: ${name} must be a string`);
        lua.lua_pop(L2, 1);
        return b;
      };
      const k = field('key');
      const v = field('value');
      const publish = vm.services.publishEvent;
      if (!publish) raise(L2, 'sluice.publish: event logs are only available under `sluice serve`');
      return awaitPromise(L2, publish(logId, k, v), (L3, next) => {
        lua.lua_pushnumber(L3, next);
        return 1;
      });
    },
  });
  lua.lua_setfield(L, -2, key('sluice'));
  lua.lua_pop(L, 2);
}
