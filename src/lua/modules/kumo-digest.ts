/**
 * `kumo.digest.*` (kumomta-facts §10): hashes, HMACs and crc32, returning
 * BinaryResult. Digest input is raw Lua string bytes, as in KumoMTA, so
 * binary data survives; so is a result's `.bytes`.
 *
 * Difference from KumoMTA: `kumo.digest.md5` is a sluice extension (KumoMTA
 * has none).
 */
import { createHash, createHmac } from 'node:crypto';
import zlib from 'node:zlib';
import { lua } from 'fengari';
import type { LuaVM } from '../vm.js';
import { awaitPromise } from '../async.js';
import { encodeJson } from '../convert.js';
import { addSubModule, checkBytes, UserdataClass, type HostFunction } from '../host.js';
import { pushString, toBytes, toJsString, type LuaState } from '../lstr.js';
import { encodeAs } from './kumo-encode.js';
import { loadKeySource } from './kumo-secrets.js';

// BinaryResult: what digests return.

const BINARY_FIELDS = ['hex', 'base32', 'base32_nopad', 'base32hex', 'base32hex_nopad', 'base64', 'base64_nopad', 'base64url', 'base64url_nopad'];

function makeBinaryResultClass(L: LuaState): UserdataClass<Uint8Array> {
  const cls: UserdataClass<Uint8Array> = new UserdataClass<Uint8Array>(L, 'BinaryResult', {}, {
    __tostring: (L2) => {
      pushString(L2, encodeAs('hex', cls.check(L2, 1, 'BinaryResult')));
      return 1;
    },
  });
  cls.setIndex(L, (L2) => {
    const bytes = cls.check(L2, 1, 'BinaryResult');
    const field = toJsString(L2, 2);
    if (field === 'bytes') pushString(L2, bytes);
    else if (field !== null && BINARY_FIELDS.includes(field)) pushString(L2, encodeAs(field, bytes));
    else lua.lua_pushnil(L2);
    return 1;
  });
  return cls;
}

const DIGESTS: Record<string, string> = {
  sha1: 'sha1',
  sha224: 'sha224',
  sha256: 'sha256',
  sha384: 'sha384',
  sha512: 'sha512',
  sha512_256: 'sha512-256',
  sha3_256: 'sha3-256',
  sha3_384: 'sha3-384',
  sha3_512: 'sha3-512',
  md5: 'md5', // sluice extension
};

const HMACS: Record<string, string> = {
  sha1: 'sha1',
  sha224: 'sha224',
  sha256: 'sha256',
  sha384: 'sha384',
  sha512: 'sha512',
};

/** Each argument's bytes: strings as they are, anything else as its JSON text (as KumoMTA does). */
function digestParts(L: LuaState): Uint8Array[] {
  const parts: Uint8Array[] = [];
  const n = lua.lua_gettop(L);
  for (let i = 1; i <= n; i++) {
    if (lua.lua_type(L, i) === lua.LUA_TSTRING) parts.push(toBytes(L, i) as Uint8Array);
    else parts.push(Buffer.from(encodeJson(L, i, false), 'utf8'));
  }
  return parts;
}

export function openKumoDigest(vm: LuaVM, L: LuaState): void {
  const result = makeBinaryResultClass(L);
  const fns: Record<string, HostFunction> = {};
  for (const [name, algo] of Object.entries(DIGESTS)) {
    fns[name] = (L2) => {
      const h = createHash(algo);
      for (const part of digestParts(L2)) h.update(part);
      result.push(L2, new Uint8Array(h.digest()));
      return 1;
    };
  }
  for (const [name, algo] of Object.entries(HMACS)) {
    const label = `kumo.digest.hmac_${name}`;
    fns[`hmac_${name}`] = (L2) => {
      const data = Buffer.from(checkBytes(L2, 2, `${label} data`));
      const sign = (k: Uint8Array): Uint8Array => new Uint8Array(createHmac(algo, k).update(data).digest());
      const keyBytes = loadKeySource(vm, L2, 1, `${label} key`);
      if (keyBytes instanceof Uint8Array) {
        result.push(L2, sign(keyBytes));
        return 1;
      }
      return awaitPromise(L2, keyBytes, (L3, k) => {
        result.push(L3, sign(k));
        return 1;
      });
    };
  }
  fns.crc32 = (L2) => {
    let crc = 0;
    for (const part of digestParts(L2)) crc = zlib.crc32(part, crc);
    const out = new Uint8Array(4);
    new DataView(out.buffer).setUint32(0, crc >>> 0, false);
    result.push(L2, out);
    return 1;
  };
  addSubModule(L, 'digest', fns);
}
