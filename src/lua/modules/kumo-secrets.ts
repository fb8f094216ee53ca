/**
 * KeySource and `kumo.secrets.load(keysource)` (kumomta-facts §10). A
 * KeySource is also how `kumo.digest.hmac_*` takes its key (kumo-digest.ts).
 *
 * Difference from KumoMTA: Vault key sources raise an error; sluice has no
 * Vault client.
 */
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { lua } from 'fengari';
import type { LuaVM } from '../vm.js';
import { awaitPromise } from '../async.js';
import { toValue, typeName } from '../convert.js';
import { addSubModule, raise } from '../host.js';
import { key, pushString, toBytes, toJsString, type LuaState } from '../lstr.js';

/**
 * Resolve the KeySource at `idx`: a string is a file path (read
 * asynchronously, relative to the working directory); `{key_data=...}` is the
 * bytes themselves (a string, or an array of byte values);
 * `{event_name=..., event_args={...}}` fires that event and uses the string it
 * returns; a Vault spec is an error. Returns bytes, or a promise of them.
 */
export function loadKeySource(vm: LuaVM, L: LuaState, idx: number, what: string): Uint8Array | Promise<Uint8Array> {
  const t = lua.lua_type(L, idx);
  if (t === lua.LUA_TSTRING) {
    const file = toJsString(L, idx) as string;
    return fsp.readFile(path.resolve(process.cwd(), file)).then(
      (buf) => new Uint8Array(buf),
      (err: NodeJS.ErrnoException) => {
        throw new Error(`${what}: KeySource failed to load data from file \`${file}\`: ${err.code === 'ENOENT' ? 'no such file or directory' : err.message}`);
      },
    );
  }
  if (t !== lua.LUA_TTABLE) {
    return raise(L, `${what}: expected a KeySource (a file path, {key_data=...} or a vault spec), got ${typeName(L, idx)}`);
  }
  const abs = lua.lua_absindex(L, idx);
  if (lua.lua_getfield(L, abs, key('key_data')) !== lua.LUA_TNIL) {
    const bytes = keyDataBytes(L, lua.lua_gettop(L), what);
    lua.lua_pop(L, 1);
    return bytes;
  }
  lua.lua_pop(L, 1);
  const has = (field: string): boolean => {
    const present = lua.lua_getfield(L, abs, key(field)) !== lua.LUA_TNIL;
    lua.lua_pop(L, 1);
    return present;
  };
  if (has('vault_mount') || has('vault_path')) {
    return raise(L, `${what}: HashiCorp Vault key sources are not supported by sluice; use {key_data=...} or a file path`);
  }
  if (has('event_name')) {
    lua.lua_getfield(L, abs, key('event_name'));
    const eventName = lua.lua_type(L, -1) === lua.LUA_TSTRING ? (toJsString(L, -1) as string) : null;
    lua.lua_pop(L, 1);
    if (eventName === null) return raise(L, `${what}: KeySource event_name must be a string`);
    lua.lua_getfield(L, abs, key('event_args'));
    const rawArgs = lua.lua_type(L, -1) === lua.LUA_TTABLE ? toValue(L, -1) : [];
    const args = Array.isArray(rawArgs) ? rawArgs : [];
    lua.lua_pop(L, 1);
    // Start the event only after this coroutine has yielded.
    return Promise.resolve()
      .then(() => vm.fire(eventName, args))
      .then((r) => {
        const v = r.values[0];
        if (!r.handled) throw new Error(`${what}: no handler is registered for KeySource event '${eventName}'`);
        if (typeof v !== 'string') throw new Error(`${what}: KeySource event '${eventName}' must return a string`);
        return new Uint8Array(Buffer.from(v, 'utf8'));
      });
  }
  return raise(L, `${what}: data did not match any variant of KeySource (a file path, {key_data=...}, a vault spec or {event_name=..., event_args=...})`);
}

function keyDataBytes(L: LuaState, idx: number, what: string): Uint8Array {
  const t = lua.lua_type(L, idx);
  if (t === lua.LUA_TSTRING) return new Uint8Array(toBytes(L, idx) as Uint8Array);
  if (t === lua.LUA_TTABLE) {
    const n = lua.lua_rawlen(L, idx);
    const out = new Uint8Array(n);
    for (let i = 1; i <= n; i++) {
      lua.lua_rawgeti(L, idx, i);
      const b = lua.lua_tonumber(L, -1);
      lua.lua_pop(L, 1);
      if (!Number.isInteger(b) || b < 0 || b > 255) raise(L, `${what}: key_data[${i}] is not a byte value`);
      out[i - 1] = b;
    }
    return out;
  }
  return raise(L, `${what}: key_data must be a string, got ${typeName(L, idx)}`);
}

export function openKumoSecrets(vm: LuaVM, L: LuaState): void {
  addSubModule(L, 'secrets', {
    load: (L2) => {
      const bytes = loadKeySource(vm, L2, 1, 'kumo.secrets.load');
      if (bytes instanceof Uint8Array) {
        pushString(L2, bytes);
        return 1;
      }
      return awaitPromise(L2, bytes, (L3, b) => {
        pushString(L3, b);
        return 1;
      });
    },
  });
}
