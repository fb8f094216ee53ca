/**
 * Byte-level helpers of the `kumo` module (kumomta-facts §10):
 *
 *   - `kumo.digest.*`   hashes, HMACs and crc32, returning BinaryResult
 *   - `kumo.encode.*`   base64 / base64url / base32 / base32hex / hex
 *   - `kumo.uuid.*`     UUID v1/v4/v6/v7 and parsing, returning Uuid
 *   - `kumo.secrets.load(keysource)`
 *   - `kumo.regex.*`    compiled regular expressions, returning Regex
 *   - `kumo.string.*`   plain-string splitting, replacing and trimming
 *
 * Everything works on raw Lua string bytes where KumoMTA does (digest input,
 * encoder input, decoder output, `.bytes`), so binary data survives.
 *
 * Differences from KumoMTA, on purpose or by necessity:
 *   - `kumo.digest.md5` is a sluice extension (KumoMTA has none).
 *   - Vault key sources raise an error: sluice has no Vault client.
 *   - Regex patterns use Rust/fancy_regex syntax translated to JavaScript's
 *     (named groups `(?P<n>..)`, `(?P=n)`, leading `(?ims)` flags, `\A`,
 *     `\z`, `\x{..}`, POSIX `[[:alpha:]]` classes, Rust's extra escapes such
 *     as `\#` `\&` `\~` `\-` that `kumo.regex.escape` produces). Inline flag
 *     groups inside the pattern (`a(?i)b`, `(?i:..)`) and verbose mode `(?x)`
 *     are rejected. `\d`, `\w` and `\b` are ASCII in JavaScript, Unicode in
 *     Rust.
 *   - `kumo.string` has no `wrap`, `psl_domain`, `psl_suffix`,
 *     `eval_template` or `normalize_smtp_response`.
 */
import { createHash, createHmac, randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import { lua } from 'fengari';
import type { LuaVM } from '../vm.js';
import { awaitPromise } from '../async.js';
import { encodeJson, toValue, typeName } from '../convert.js';
import { checkInteger, checkString, raise, setFunctions, UserdataClass, type HostFunction } from '../host.js';
import { key, pushString, toBytes, toJsString, type LuaState } from '../lstr.js';

export function openKumoCodec(vm: LuaVM, L: LuaState): void {
  openDigest(vm, L);
  openEncode(L);
  openUuid(L);
  openSecrets(vm, L);
  openRegex(L);
  openString(L);
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

function addSubModule(L: LuaState, name: string, fns: Record<string, HostFunction>): void {
  subModule(L, name);
  setFunctions(L, `kumo.${name}.`, fns);
  lua.lua_pop(L, 1);
}

/** Push a plain Lua sequence of strings (mlua's Vec<String>: no array metatable). */
function pushStringList(L: LuaState, items: readonly string[]): void {
  lua.lua_createtable(L, items.length, 0);
  items.forEach((s, i) => {
    pushString(L, s);
    lua.lua_rawseti(L, -2, i + 1);
  });
}

/** A Lua string argument as raw bytes (numbers are converted, as mlua does for strings). */
function checkBytes(L: LuaState, arg: number, what: string): Uint8Array {
  const t = lua.lua_type(L, arg);
  if (t !== lua.LUA_TSTRING && t !== lua.LUA_TNUMBER) raise(L, `${what}: expected a string, got ${typeName(L, arg)}`);
  return toBytes(L, arg) as Uint8Array;
}

function checkCount(L: LuaState, arg: number, what: string): number {
  const n = checkInteger(L, arg, what);
  if (n < 0) raise(L, `${what}: expected a non-negative integer, got ${n}`);
  return n;
}

// ---------------------------------------------------------------------------
// Text encodings (data_encoding's BASE32, BASE32HEX, BASE64, BASE64URL,
// HEXLOWER and their _NOPAD forms). Decoding is strict: wrong symbols, wrong
// length, wrong padding and non-zero trailing bits are errors.

const BASE32_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
const BASE32HEX_ALPHABET = '0123456789ABCDEFGHIJKLMNOPQRSTUV';

function base32Encode(data: Uint8Array, alphabet: string, pad: boolean): string {
  let out = '';
  let bits = 0;
  let value = 0;
  for (const byte of data) {
    value = ((value << 8) | byte) & 0xffff;
    bits += 8;
    while (bits >= 5) {
      out += alphabet[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) out += alphabet[(value << (5 - bits)) & 31];
  if (pad) while (out.length % 8 !== 0) out += '=';
  return out;
}

function base32Decode(text: string, alphabet: string): Buffer {
  const body = text.replace(/=+$/, '');
  const out: number[] = [];
  let bits = 0;
  let value = 0;
  for (const ch of body) {
    const v = alphabet.indexOf(ch);
    if (v < 0) return Buffer.alloc(0); // the caller's symbol check reports it
    value = ((value << 5) | v) & 0xffff;
    bits += 5;
    if (bits >= 8) {
      out.push((value >>> (bits - 8)) & 0xff);
      bits -= 8;
    }
  }
  return Buffer.from(out);
}

interface Encoding {
  encode(data: Uint8Array): string;
  decode(text: string): Buffer;
  /** Characters allowed in encoded text, padding included. */
  symbols: RegExp;
}

function padBase64(s: string): string {
  return s + '='.repeat((4 - (s.length % 4)) % 4);
}

const ENCODINGS: Record<string, Encoding> = {
  base64: {
    encode: (d) => Buffer.from(d.buffer, d.byteOffset, d.byteLength).toString('base64'),
    decode: (t) => Buffer.from(t, 'base64'),
    symbols: /[^A-Za-z0-9+/=]/,
  },
  base64_nopad: {
    encode: (d) => Buffer.from(d.buffer, d.byteOffset, d.byteLength).toString('base64').replace(/=+$/, ''),
    decode: (t) => Buffer.from(t, 'base64'),
    symbols: /[^A-Za-z0-9+/]/,
  },
  base64url: {
    encode: (d) => padBase64(Buffer.from(d.buffer, d.byteOffset, d.byteLength).toString('base64url')),
    decode: (t) => Buffer.from(t.replace(/=+$/, ''), 'base64url'),
    symbols: /[^A-Za-z0-9_=-]/,
  },
  base64url_nopad: {
    encode: (d) => Buffer.from(d.buffer, d.byteOffset, d.byteLength).toString('base64url'),
    decode: (t) => Buffer.from(t, 'base64url'),
    symbols: /[^A-Za-z0-9_-]/,
  },
  base32: {
    encode: (d) => base32Encode(d, BASE32_ALPHABET, true),
    decode: (t) => base32Decode(t, BASE32_ALPHABET),
    symbols: /[^A-Z2-7=]/,
  },
  base32_nopad: {
    encode: (d) => base32Encode(d, BASE32_ALPHABET, false),
    decode: (t) => base32Decode(t, BASE32_ALPHABET),
    symbols: /[^A-Z2-7]/,
  },
  base32hex: {
    encode: (d) => base32Encode(d, BASE32HEX_ALPHABET, true),
    decode: (t) => base32Decode(t, BASE32HEX_ALPHABET),
    symbols: /[^0-9A-V=]/,
  },
  base32hex_nopad: {
    encode: (d) => base32Encode(d, BASE32HEX_ALPHABET, false),
    decode: (t) => base32Decode(t, BASE32HEX_ALPHABET),
    symbols: /[^0-9A-V]/,
  },
  hex: {
    encode: (d) => Buffer.from(d.buffer, d.byteOffset, d.byteLength).toString('hex'),
    decode: (t) => Buffer.from(t, 'hex'),
    symbols: /[^0-9a-f]/,
  },
};

/** Decode strictly: the result must encode back to exactly the input. */
export function decodeStrict(name: string, text: string): Buffer {
  const enc = ENCODINGS[name];
  if (!enc) throw new Error(`unknown encoding ${name}`);
  const bad = text.search(enc.symbols);
  if (bad >= 0) {
    const hint = name === 'hex' && /[A-F]/.test(text[bad] ?? '') ? ' (hex input must be lower case)' : '';
    throw new Error(`invalid ${name} input: invalid symbol ${JSON.stringify(text[bad])} at ${bad}${hint}`);
  }
  const out = enc.decode(text);
  if (enc.encode(out) !== text) {
    throw new Error(`invalid ${name} input: invalid length, padding or trailing bits`);
  }
  return out;
}

export function encodeAs(name: string, data: Uint8Array): string {
  const enc = ENCODINGS[name];
  if (!enc) throw new Error(`unknown encoding ${name}`);
  return enc.encode(data);
}

function openEncode(L: LuaState): void {
  const fns: Record<string, HostFunction> = {};
  for (const name of Object.keys(ENCODINGS)) {
    fns[`${name}_encode`] = (L2) => {
      if (lua.lua_type(L2, 1) !== lua.LUA_TSTRING) raise(L2, `kumo.encode.${name}_encode: parameter must be a string`);
      pushString(L2, encodeAs(name, toBytes(L2, 1) as Uint8Array));
      return 1;
    };
    fns[`${name}_decode`] = (L2) => {
      const text = checkString(L2, 1, `kumo.encode.${name}_decode`);
      pushString(L2, decodeStrict(name, text));
      return 1;
    };
  }
  addSubModule(L, 'encode', fns);
}

// ---------------------------------------------------------------------------
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

// ---------------------------------------------------------------------------
// kumo.digest

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

function openDigest(vm: LuaVM, L: LuaState): void {
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

// ---------------------------------------------------------------------------
// KeySource and kumo.secrets

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

function openSecrets(vm: LuaVM, L: LuaState): void {
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

// ---------------------------------------------------------------------------
// kumo.uuid

/** 100 ns intervals between 1582-10-15 and 1970-01-01. */
const GREGORIAN_OFFSET = 0x01b21dd213814000n;
const NODE_ID = (() => {
  const b = randomBytes(6);
  b[0] = (b[0] as number) | 0x01; // multicast bit: a random node id, not a MAC (RFC 9562 §6.10)
  return b;
})();
const CLOCK_SEQ = randomBytes(2).readUInt16BE(0) & 0x3fff;
let lastGregorian = 0n;
let lastV7Ms = 0;
let v7Counter = 0;

/** A strictly increasing 60-bit Gregorian timestamp for v1 and v6. */
function gregorianNow(): bigint {
  let t = BigInt(Date.now()) * 10000n + GREGORIAN_OFFSET;
  if (t <= lastGregorian) t = lastGregorian + 1n;
  lastGregorian = t;
  return t;
}

function clockSeqAndNode(b: Buffer): void {
  b.writeUInt16BE(0x8000 | CLOCK_SEQ, 8);
  NODE_ID.copy(b, 10);
}

export function uuidV1(): Buffer {
  const t = gregorianNow();
  const b = Buffer.alloc(16);
  b.writeUInt32BE(Number(t & 0xffffffffn), 0);
  b.writeUInt16BE(Number((t >> 32n) & 0xffffn), 4);
  b.writeUInt16BE(0x1000 | Number((t >> 48n) & 0x0fffn), 6);
  clockSeqAndNode(b);
  return b;
}

export function uuidV6(): Buffer {
  const t = gregorianNow();
  const b = Buffer.alloc(16);
  b.writeUInt32BE(Number((t >> 28n) & 0xffffffffn), 0);
  b.writeUInt16BE(Number((t >> 12n) & 0xffffn), 4);
  b.writeUInt16BE(0x6000 | Number(t & 0x0fffn), 6);
  clockSeqAndNode(b);
  return b;
}

export function uuidV4(): Buffer {
  const b = randomBytes(16);
  b[6] = ((b[6] as number) & 0x0f) | 0x40;
  b[8] = ((b[8] as number) & 0x3f) | 0x80;
  return b;
}

/** Unix milliseconds, then a 12-bit counter so that ids made in one millisecond still sort (RFC 9562 method 1). */
export function uuidV7(): Buffer {
  let ms = Date.now();
  if (ms > lastV7Ms) {
    lastV7Ms = ms;
    v7Counter = randomBytes(2).readUInt16BE(0) & 0x7ff; // leave room to count up
  } else {
    ms = lastV7Ms;
    if (++v7Counter > 0xfff) {
      ms = ++lastV7Ms;
      v7Counter = 0;
    }
  }
  const b = randomBytes(16);
  b.writeUIntBE(ms, 0, 6);
  b.writeUInt16BE(0x7000 | v7Counter, 6);
  b[8] = ((b[8] as number) & 0x3f) | 0x80;
  return b;
}

/** Parse the hyphenated, simple, braced and urn forms (hex digits in either case). */
export function parseUuid(s: string): Buffer {
  let body = s;
  if (body.startsWith('urn:uuid:')) body = body.slice(9);
  else if (body.startsWith('{') && body.endsWith('}')) body = body.slice(1, -1);
  let hex: string | null = null;
  if (/^[0-9a-fA-F]{32}$/.test(body)) hex = body;
  else if (/^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/.test(body)) hex = body.replace(/-/g, '');
  if (hex === null) {
    throw new Error(`invalid UUID ${JSON.stringify(s)}: expected 32 hex digits, optionally as 8-4-4-4-12 groups, in braces or after urn:uuid:`);
  }
  return Buffer.from(hex, 'hex');
}

export function uuidHyphenated(b: Uint8Array): string {
  const h = Buffer.from(b).toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

function openUuid(L: LuaState): void {
  const cls: UserdataClass<Buffer> = new UserdataClass<Buffer>(L, 'Uuid', {}, {
    __tostring: (L2) => {
      pushString(L2, uuidHyphenated(cls.check(L2, 1, 'Uuid')));
      return 1;
    },
  });
  cls.setIndex(L, (L2) => {
    const b = cls.check(L2, 1, 'Uuid');
    switch (toJsString(L2, 2)) {
      case 'bytes':
        pushString(L2, new Uint8Array(b));
        break;
      case 'hyphenated':
        pushString(L2, uuidHyphenated(b));
        break;
      case 'simple':
        pushString(L2, b.toString('hex'));
        break;
      case 'braced':
        pushString(L2, `{${uuidHyphenated(b)}}`);
        break;
      case 'urn':
        pushString(L2, `urn:uuid:${uuidHyphenated(b)}`);
        break;
      default:
        lua.lua_pushnil(L2);
    }
    return 1;
  });
  const make = (gen: () => Buffer): HostFunction => (L2) => {
    cls.push(L2, gen());
    return 1;
  };
  addSubModule(L, 'uuid', {
    new_v1: make(uuidV1),
    new_v4: make(uuidV4),
    new_v6: make(uuidV6),
    new_v7: make(uuidV7),
    parse: (L2) => {
      cls.push(L2, parseUuid(checkString(L2, 1, 'kumo.uuid.parse')));
      return 1;
    },
  });
}

// ---------------------------------------------------------------------------
// kumo.regex

interface CompiledRegex {
  pattern: string;
  /** For is_match, captures and find (no state). */
  once: RegExp;
  /** For the iterating methods (global; lastIndex is reset before each use). */
  all: RegExp;
}

const POSIX_CLASSES: Record<string, string> = {
  alnum: '0-9A-Za-z',
  alpha: 'A-Za-z',
  ascii: '\\x00-\\x7F',
  blank: '\\t ',
  cntrl: '\\x00-\\x1F\\x7F',
  digit: '0-9',
  graph: '!-~',
  lower: 'a-z',
  print: ' -~',
  punct: '!-\\/:-@\\[-\\x60{-~',
  space: '\\t\\n\\v\\f\\r ',
  upper: 'A-Z',
  word: '0-9A-Za-z_',
  xdigit: '0-9A-Fa-f',
};

/** Characters JavaScript accepts after a backslash in Unicode mode. */
const JS_SYNTAX = new Set('^$\\.*+?()[]{}|/'.split(''));

/**
 * Translate a Rust regex pattern to a JavaScript source and flags (always
 * Unicode mode). Throws with a readable message for what cannot be translated.
 */
export function translateRegex(pattern: string): { source: string; flags: string } {
  const flags = new Set(['u']);
  let i = 0;
  // Leading flag groups: (?i), (?ms), (?-u) ...
  for (;;) {
    const m = /^\(\?([a-zA-Z-]+)\)/.exec(pattern.slice(i));
    if (!m) break;
    let on = true;
    for (const f of m[1] as string) {
      if (f === '-') on = false;
      else if (f === 'i' || f === 'm' || f === 's') {
        if (on) flags.add(f);
        else flags.delete(f);
      } else if (f !== 'u') {
        throw new Error(`regex flag '${f}' is not supported by sluice`);
      }
    }
    i += m[0].length;
  }
  let out = '';
  let inClass = false;
  while (i < pattern.length) {
    const c = pattern[i] as string;
    if (c === '\\') {
      const d = pattern[i + 1];
      if (d === undefined) throw new Error('pattern ends with a lone backslash');
      i += 2;
      if (d === 'A' && !inClass) out += '(?<![\\s\\S])';
      else if (d === '<' && !inClass) out += '\\b(?=\\w)';
      else if (d === '>' && !inClass) out += '\\b(?<=\\w)';
      else if (d === 'z' && !inClass) out += '(?![\\s\\S])';
      else if (d === 'x' && pattern[i] === '{') {
        const end = pattern.indexOf('}', i);
        if (end < 0) throw new Error('unterminated \\x{...} escape');
        out += `\\u{${pattern.slice(i + 1, end)}}`;
        i = end + 1;
      } else if ((d === 'p' || d === 'P') && pattern[i] !== '{' && pattern[i] !== undefined) {
        out += `\\${d}{${pattern[i]}}`;
        i++;
      } else if (/[0-9A-Za-z]/.test(d) || JS_SYNTAX.has(d) || (d === '-' && inClass)) {
        out += `\\${d}`;
      } else {
        // Rust allows escaping any punctuation (regex::escape writes \# \& \~ \-);
        // in JavaScript's Unicode mode those are errors, and they are literals anyway.
        out += d;
      }
      continue;
    }
    if (inClass) {
      if (c === '[' && pattern[i + 1] === ':') {
        const end = pattern.indexOf(':]', i + 2);
        const name = end > 0 ? pattern.slice(i + 2, end) : '';
        const cls = POSIX_CLASSES[name];
        if (cls === undefined) throw new Error(`unsupported character class [:${name}:]`);
        out += cls;
        i = end + 2;
        continue;
      }
      if (c === '[') throw new Error('nested character classes and class set operations are not supported by sluice');
      if (c === ']') inClass = false;
      out += c;
      i++;
      continue;
    }
    if (c === '[') {
      inClass = true;
      out += '[';
      i++;
      if (pattern[i] === '^') {
        out += '^';
        i++;
      }
      if (pattern[i] === ']') {
        // Rust: a ']' first in a class is a literal; in JavaScript `[]` is the empty class.
        out += '\\]';
        i++;
      }
      continue;
    }
    if (pattern.startsWith('(?P<', i)) {
      out += '(?<';
      i += 4;
      continue;
    }
    if (pattern.startsWith('(?P=', i)) {
      const end = pattern.indexOf(')', i);
      if (end < 0) throw new Error('unterminated (?P=name) group');
      out += `\\k<${pattern.slice(i + 4, end)}>`;
      i = end + 1;
      continue;
    }
    if (/^\(\?[a-zA-Z-]*[:)]/.test(pattern.slice(i, i + 12)) && !pattern.startsWith('(?:', i)) {
      throw new Error('inline flag groups are only supported at the start of the pattern');
    }
    out += c;
    i++;
  }
  return { source: out, flags: [...flags].sort().join('') };
}

export function compileRegex(pattern: string): CompiledRegex {
  const { source, flags } = translateRegex(pattern);
  try {
    return { pattern, once: new RegExp(source, flags), all: new RegExp(source, `${flags}g`) };
  } catch (err) {
    throw new Error(`invalid regex ${JSON.stringify(pattern)}: ${(err as Error).message.replace(/^Invalid regular expression: /, '')}`);
  }
}

/** regex::escape: backslash before every meta character. */
export function escapeRegex(s: string): string {
  return s.replace(/[\\.+*?()|[\]{}^$#&\-~]/g, '\\$&');
}

/**
 * Every match, as Rust's find_iter reports them: after an empty match the
 * search steps one character on, and an empty match right where the previous
 * match ended is skipped.
 */
function* matches(re: CompiledRegex, hay: string): Generator<RegExpExecArray> {
  const g = re.all;
  g.lastIndex = 0;
  let lastEnd = -1;
  for (;;) {
    const m = g.exec(hay);
    if (m === null) return;
    const empty = m[0].length === 0;
    if (empty) {
      const cp = hay.codePointAt(g.lastIndex);
      g.lastIndex += cp !== undefined && cp > 0xffff ? 2 : 1;
      if (m.index === lastEnd) continue;
    }
    lastEnd = m.index + m[0].length;
    const next = g.lastIndex;
    yield m;
    g.lastIndex = next;
  }
}

/** Rust's replacement syntax: `$1`, `$name`, `${name}`, `$$`. */
export function expandReplacement(rep: string, m: RegExpExecArray): string {
  if (!rep.includes('$')) return rep;
  let out = '';
  let i = 0;
  while (i < rep.length) {
    const c = rep[i] as string;
    if (c !== '$') {
      out += c;
      i++;
      continue;
    }
    if (rep[i + 1] === '$') {
      out += '$';
      i += 2;
      continue;
    }
    let name: string | null = null;
    if (rep[i + 1] === '{') {
      const end = rep.indexOf('}', i + 2);
      if (end > i + 2) {
        name = rep.slice(i + 2, end);
        i = end + 1;
      }
    } else {
      const nm = /^[_0-9A-Za-z]+/.exec(rep.slice(i + 1));
      if (nm) {
        name = nm[0];
        i += 1 + name.length;
      }
    }
    if (name === null) {
      out += '$';
      i++;
      continue;
    }
    const value = /^[0-9]+$/.test(name) ? m[Number(name)] : m.groups?.[name];
    out += value ?? '';
  }
  return out;
}

function replaceMatches(re: CompiledRegex, hay: string, rep: string, limit: number): string {
  let out = '';
  let last = 0;
  let count = 0;
  for (const m of matches(re, hay)) {
    out += hay.slice(last, m.index) + expandReplacement(rep, m);
    last = m.index + m[0].length;
    if (limit > 0 && ++count >= limit) break;
  }
  return out + hay.slice(last);
}

function openRegex(L: LuaState): void {
  const str = (L2: LuaState, arg: number, what: string): string => checkString(L2, arg, `Regex:${what}`);
  const cls = new UserdataClass<CompiledRegex>(
    L,
    'Regex',
    {
      is_match: (L2, re) => {
        lua.lua_pushboolean(L2, re.once.test(str(L2, 2, 'is_match')));
        return 1;
      },
      captures: (L2, re) => {
        const m = re.once.exec(str(L2, 2, 'captures'));
        if (m === null) {
          lua.lua_pushnil(L2);
          return 1;
        }
        lua.lua_createtable(L2, m.length, 0);
        m.forEach((cap, idx) => {
          if (cap === undefined) return;
          pushString(L2, cap);
          lua.lua_rawseti(L2, -2, idx);
        });
        for (const [name, cap] of Object.entries(m.groups ?? {})) {
          if (cap === undefined) continue;
          pushString(L2, cap);
          lua.lua_setfield(L2, -2, key(name));
        }
        return 1;
      },
      find: (L2, re) => {
        const m = re.once.exec(str(L2, 2, 'find'));
        if (m === null) lua.lua_pushnil(L2);
        else pushString(L2, m[0]);
        return 1;
      },
      find_all: (L2, re) => {
        pushStringList(L2, [...matches(re, str(L2, 2, 'find_all'))].map((m) => m[0]));
        return 1;
      },
      replace: (L2, re) => {
        pushString(L2, replaceMatches(re, str(L2, 2, 'replace'), str(L2, 3, 'replace'), 1));
        return 1;
      },
      replace_all: (L2, re) => {
        pushString(L2, replaceMatches(re, str(L2, 2, 'replace_all'), str(L2, 3, 'replace_all'), 0));
        return 1;
      },
      replacen: (L2, re) => {
        const hay = str(L2, 2, 'replacen');
        const limit = checkCount(L2, 3, 'Regex:replacen');
        pushString(L2, replaceMatches(re, hay, str(L2, 4, 'replacen'), limit));
        return 1;
      },
      split: (L2, re) => {
        const hay = str(L2, 2, 'split');
        const parts: string[] = [];
        let last = 0;
        for (const m of matches(re, hay)) {
          parts.push(hay.slice(last, m.index));
          last = m.index + m[0].length;
        }
        parts.push(hay.slice(last));
        pushStringList(L2, parts);
        return 1;
      },
    },
    {
      __tostring: (L2) => {
        const re = cls.test(L2, 1);
        pushString(L2, re ? `Regex(${re.pattern})` : 'Regex');
        return 1;
      },
    },
  );
  addSubModule(L, 'regex', {
    compile: (L2) => {
      cls.push(L2, compileRegex(checkString(L2, 1, 'kumo.regex.compile')));
      return 1;
    },
    escape: (L2) => {
      pushString(L2, escapeRegex(checkString(L2, 1, 'kumo.regex.escape')));
      return 1;
    },
  });
}

// ---------------------------------------------------------------------------
// kumo.string (Rust's str methods)

/** Start offsets of the non-overlapping occurrences of `pat`; an empty `pat` matches at every character boundary. */
function occurrences(s: string, pat: string, limit = Infinity): number[] {
  const out: number[] = [];
  if (pat === '') {
    for (let i = 0; i <= s.length && out.length < limit; ) {
      out.push(i);
      const cp = s.codePointAt(i);
      i += cp !== undefined && cp > 0xffff ? 2 : 1;
    }
    return out;
  }
  for (let i = s.indexOf(pat); i >= 0 && out.length < limit; i = s.indexOf(pat, i + pat.length)) out.push(i);
  return out;
}

/** Rust's `str::splitn` (`limit` pieces at most; Infinity for `split`). */
export function splitStr(s: string, pat: string, limit = Infinity): string[] {
  if (limit === 0) return [];
  const parts: string[] = [];
  let last = 0;
  for (const at of occurrences(s, pat, limit - 1)) {
    parts.push(s.slice(last, at));
    last = at + pat.length;
  }
  parts.push(s.slice(last));
  return parts;
}

/** Start offsets of the non-overlapping occurrences of `pat`, searched from the right. */
function* occurrencesFromRight(s: string, pat: string): Generator<number> {
  if (pat === '') {
    yield* occurrences(s, '').reverse();
    return;
  }
  let end = s.length;
  while (end - pat.length >= 0) {
    const at = s.lastIndexOf(pat, end - pat.length);
    if (at < 0) return;
    yield at;
    end = at;
  }
}

/** Rust's `str::rsplitn` (`limit` pieces at most, from the right; Infinity for `rsplit`). */
export function rsplitStr(s: string, pat: string, limit = Infinity): string[] {
  if (limit === 0) return [];
  const parts: string[] = [];
  let end = s.length;
  if (limit > 1) {
    for (const at of occurrencesFromRight(s, pat)) {
      parts.push(s.slice(at + pat.length, end));
      end = at;
      if (parts.length >= limit - 1) break;
    }
  }
  parts.push(s.slice(0, end));
  return parts;
}

const WS_START = /^\p{White_Space}+/u;
const WS_END = /\p{White_Space}+$/u;

function openString(L: LuaState): void {
  const s = (L2: LuaState, arg: number, fn: string): string => checkString(L2, arg, `kumo.string.${fn}`);
  const list = (fn: (L2: LuaState) => string[]): HostFunction => (L2) => {
    pushStringList(L2, fn(L2));
    return 1;
  };
  const text = (fn: (L2: LuaState) => string): HostFunction => (L2) => {
    pushString(L2, fn(L2));
    return 1;
  };
  const bytesEq = (a: Uint8Array, b: Uint8Array, at: number): boolean => {
    if (at < 0) return false;
    for (let i = 0; i < b.length; i++) if (a[at + i] !== b[i]) return false;
    return true;
  };
  addSubModule(L, 'string', {
    split: list((L2) => splitStr(s(L2, 1, 'split'), s(L2, 2, 'split'))),
    splitn: list((L2) => splitStr(s(L2, 1, 'splitn'), s(L2, 3, 'splitn'), checkCount(L2, 2, 'kumo.string.splitn limit'))),
    rsplit: list((L2) => rsplitStr(s(L2, 1, 'rsplit'), s(L2, 2, 'rsplit'))),
    rsplitn: list((L2) => rsplitStr(s(L2, 1, 'rsplitn'), s(L2, 3, 'rsplitn'), checkCount(L2, 2, 'kumo.string.rsplitn limit'))),
    split_whitespace: list((L2) => s(L2, 1, 'split_whitespace').split(/\p{White_Space}+/u).filter((p) => p !== '')),
    split_ascii_whitespace: list((L2) => s(L2, 1, 'split_ascii_whitespace').split(/[ \t\n\f\r]+/).filter((p) => p !== '')),
    replace: text((L2) => splitStr(s(L2, 1, 'replace'), s(L2, 2, 'replace')).join(s(L2, 3, 'replace'))),
    replacen: text((L2) => {
      const count = checkCount(L2, 4, 'kumo.string.replacen count');
      return splitStr(s(L2, 1, 'replacen'), s(L2, 2, 'replacen'), count + 1).join(s(L2, 3, 'replacen'));
    }),
    trim: text((L2) => s(L2, 1, 'trim').replace(WS_START, '').replace(WS_END, '')),
    trim_start: text((L2) => s(L2, 1, 'trim_start').replace(WS_START, '')),
    trim_end: text((L2) => s(L2, 1, 'trim_end').replace(WS_END, '')),
    starts_with: (L2) => {
      const a = checkBytes(L2, 1, 'kumo.string.starts_with');
      const b = checkBytes(L2, 2, 'kumo.string.starts_with');
      lua.lua_pushboolean(L2, b.length <= a.length && bytesEq(a, b, 0));
      return 1;
    },
    ends_with: (L2) => {
      const a = checkBytes(L2, 1, 'kumo.string.ends_with');
      const b = checkBytes(L2, 2, 'kumo.string.ends_with');
      lua.lua_pushboolean(L2, b.length <= a.length && bytesEq(a, b, a.length - b.length));
      return 1;
    },
  });
}
