/**
 * Installs the `kumo` module: one file per Lua module, each adding its part
 * to the `kumo` table (on the top of the stack while they run). The finished
 * table is `package.loaded.kumo` and the global `kumo`.
 */
import { lua } from 'fengari';
import type { LuaVM } from '../vm.js';
import { key } from '../lstr.js';
import { openKumoCore } from './kumo.js';
import { openKumoConfig } from './kumo-config.js';
import { openKumoHttp } from './kumo-http.js';
import { openKumoSerde } from './kumo-serde.js';
import { openKumoDigest } from './kumo-digest.js';
import { openKumoEncode } from './kumo-encode.js';
import { openKumoUuid } from './kumo-uuid.js';
import { openKumoSecrets } from './kumo-secrets.js';
import { openKumoRegex } from './kumo-regex.js';
import { openKumoString } from './kumo-string.js';
import { openMessage } from './message.js';
import { openSluice } from './sluice.js';

export function openModules(vm: LuaVM): void {
  const L = vm.L;
  lua.lua_createtable(L, 0, 64);
  openKumoCore(vm, L);
  openKumoConfig(vm, L);
  openKumoHttp(vm, L);
  openKumoSerde(vm, L);
  openKumoDigest(vm, L);
  openKumoEncode(vm, L);
  openKumoUuid(vm, L);
  openKumoSecrets(vm, L);
  openKumoRegex(vm, L);
  openKumoString(vm, L);
  openMessage(vm, L);
  lua.lua_getglobal(L, key('package'));
  lua.lua_getfield(L, -1, key('loaded'));
  lua.lua_pushvalue(L, -3);
  lua.lua_setfield(L, -2, key('kumo'));
  lua.lua_pop(L, 2);
  lua.lua_setglobal(L, key('kumo'));
  openSluice(vm, L);
}
