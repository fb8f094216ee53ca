/**
 * `kumo.encode.*` (kumomta-facts §10): base64 / base64url / base32 / base32hex
 * / hex, each with an `_encode` and a `_decode` function.
 *
 * Text encodings (data_encoding's BASE32, BASE32HEX, BASE64, BASE64URL,
 * HEXLOWER and their _NOPAD forms). Decoding is strict: wrong symbols, wrong
 * length, wrong padding and non-zero trailing bits are errors.
 *
 * Encoder input and decoder output are raw Lua string bytes, as in KumoMTA,
 * so binary data survives. The encoders also give kumo.digest's BinaryResult
 * its fields (kumo-digest.ts).
 */
import { lua } from 'fengari';
import type { LuaVM } from '../vm.js';
import { addSubModule, checkString, raise, type HostFunction } from '../host.js';
import { pushString, toBytes, type LuaState } from '../lstr.js';

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

export function openKumoEncode(_vm: LuaVM, L: LuaState): void {
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
