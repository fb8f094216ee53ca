/**
 * `kumo.serde`: JSON in and out of Lua (kumomta-facts §9), plus the legacy
 * aliases `kumo.json_encode`, `kumo.json_encode_pretty`, `kumo.json_parse`
 * and `kumo.json_load`. TOML and YAML are not provided.
 *
 * Encoding is convert.ts's `encodeJson` (mlua's table rules). Parsing uses a
 * small JSON parser of its own rather than `JSON.parse`, for three reasons
 * that matter to KumoMTA compatibility:
 *   - comments (`//`, `/* *\/`, `#`) outside strings are whitespace, as
 *     KumoMTA's `json_comments::StripComments` makes them;
 *   - a number written with a fraction or exponent is a Lua float even when
 *     it is integral (`1.0` stays `1.0` through `json_encode`), and one
 *     without is an integer, as serde_json + mlua do;
 *   - errors name the line and column, like serde_json's.
 * Integers outside fengari's 32-bit range arrive as exact integral floats
 * (up to 2^53) and are written back as integers (see convert.ts).
 */
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { lua, lauxlib } from 'fengari';
import type { LuaVM } from '../vm.js';
import { awaitPromise } from '../async.js';
import { encodeJson, pushValue, type LuaPushable } from '../convert.js';
import { checkString, raise, setFunctions, pushFunctionTable, type HostFunction } from '../host.js';
import { key, pushString, type LuaState } from '../lstr.js';

/** serde_json's default nesting limit. */
const MAX_DEPTH = 128;

export function openKumoSerde(_vm: LuaVM, L: LuaState): void {
  const fns = serdeFunctions();
  pushFunctionTable(L, 'kumo.serde.', fns);
  lua.lua_setfield(L, -2, key('serde'));
  // The legacy aliases directly on `kumo` (KumoMTA has no yaml aliases).
  setFunctions(L, 'kumo.', fns);
}

function serdeFunctions(): Record<string, HostFunction> {
  return {
    json_encode: (L) => {
      pushString(L, encodeJson(L, 1, false));
      return 1;
    },
    json_encode_pretty: (L) => {
      pushString(L, encodeJson(L, 1, true));
      return 1;
    },
    json_parse: (L) => {
      const text = checkString(L, 1, 'json_parse');
      return pushParsed(L, text, null);
    },
    json_load: (L) => {
      const file = checkString(L, 1, 'json_load');
      const resolved = path.resolve(process.cwd(), file);
      const read = fsp.readFile(resolved).catch((err: NodeJS.ErrnoException) => {
        throw new Error(`json_load: reading file ${file}: ${err.code === 'ENOENT' ? 'no such file or directory' : err.message}`);
      });
      return awaitPromise(L, read, (L2, data) => pushParsed(L2, data.toString('utf8'), file));
    },
  };
}

/** Parse `text` and push the result; a parse error is raised at the Lua caller. */
function pushParsed(L: LuaState, text: string, file: string | null): number {
  let parsed: { value: unknown; depth: number };
  try {
    parsed = parseJson(text);
  } catch (err) {
    if (!(err instanceof JsonSyntaxError)) throw err;
    const what = file !== null ? `parsing ${file} as json` : `parsing ${describeText(text)} as json`;
    return raise(L, `${file !== null ? 'json_load' : 'json_parse'}: ${what}: ${err.message}`);
  }
  // pushValue recurses without growing the stack: make room for the nesting.
  lauxlib.luaL_checkstack(L, 2 * parsed.depth + 8, key('JSON nesting too deep'));
  pushValue(L, parsed.value);
  return 1;
}

function describeText(text: string): string {
  const short = text.length > 120 ? `${text.slice(0, 120)}...` : text;
  return JSON.stringify(short);
}

/** A JSON number written as a float that happens to be integral: stays a Lua float. */
class LuaFloat implements LuaPushable {
  constructor(readonly n: number) {}
  pushLua(L: LuaState): void {
    lua.lua_pushnumber(L, this.n);
  }
}

export class JsonSyntaxError extends Error {}

/**
 * Parse JSON text with comments. Objects become null-prototype records,
 * arrays JS arrays (null kept, so pushValue leaves holes), integral floats
 * `LuaFloat`s. `depth` is the deepest nesting seen.
 */
export function parseJson(text: string): { value: unknown; depth: number } {
  const p = new Parser(text);
  p.skipWs();
  const value = p.value(1);
  p.skipWs();
  if (p.pos < text.length) p.fail('trailing characters', p.pos);
  return { value, depth: p.maxDepth };
}

class Parser {
  pos = 0;
  maxDepth = 0;
  constructor(readonly text: string) {}

  fail(message: string, at: number): never {
    let line = 1;
    let lineStart = 0;
    for (let i = 0; i < at && i < this.text.length; i++) {
      if (this.text.charCodeAt(i) === 10) {
        line++;
        lineStart = i + 1;
      }
    }
    throw new JsonSyntaxError(`${message} at line ${line} column ${at - lineStart + (at >= this.text.length ? 0 : 1)}`);
  }

  /** Whitespace and comments. */
  skipWs(): void {
    const t = this.text;
    for (;;) {
      const c = t.charCodeAt(this.pos);
      if (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) {
        this.pos++;
      } else if (c === 0x23 /* # */) {
        this.skipLine();
      } else if (c === 0x2f /* / */ && t.charCodeAt(this.pos + 1) === 0x2f) {
        this.skipLine();
      } else if (c === 0x2f && t.charCodeAt(this.pos + 1) === 0x2a /* * */) {
        const end = t.indexOf('*/', this.pos + 2);
        if (end < 0) this.fail('EOF while parsing a comment', t.length);
        this.pos = end + 2;
      } else {
        return;
      }
    }
  }

  skipLine(): void {
    const nl = this.text.indexOf('\n', this.pos);
    this.pos = nl < 0 ? this.text.length : nl + 1;
  }

  value(depth: number): unknown {
    const t = this.text;
    if (this.pos >= t.length) this.fail('EOF while parsing a value', t.length);
    const c = t.charCodeAt(this.pos);
    switch (c) {
      case 0x7b /* { */:
        return this.object(depth);
      case 0x5b /* [ */:
        return this.array(depth);
      case 0x22 /* " */:
        return this.string();
      case 0x74 /* t */:
        return this.literal('true', true);
      case 0x66 /* f */:
        return this.literal('false', false);
      case 0x6e /* n */:
        return this.literal('null', null);
      default:
        if (c === 0x2d || (c >= 0x30 && c <= 0x39)) return this.number();
        return this.fail('expected value', this.pos);
    }
  }

  literal(word: string, v: unknown): unknown {
    if (this.text.startsWith(word, this.pos)) {
      this.pos += word.length;
      return v;
    }
    for (let i = 0; i < word.length; i++) {
      if (this.pos + i >= this.text.length) this.fail('EOF while parsing a value', this.text.length);
      if (this.text[this.pos + i] !== word[i]) this.fail(i === 0 ? 'expected value' : 'expected ident', this.pos + i);
    }
    return this.fail('expected value', this.pos);
  }

  enter(depth: number): void {
    if (depth > MAX_DEPTH) this.fail('recursion limit exceeded', this.pos);
    if (depth > this.maxDepth) this.maxDepth = depth;
  }

  object(depth: number): Record<string, unknown> {
    this.enter(depth);
    const t = this.text;
    const out: Record<string, unknown> = Object.create(null);
    this.pos++;
    this.skipWs();
    if (t.charCodeAt(this.pos) === 0x7d /* } */) {
      this.pos++;
      return out;
    }
    for (;;) {
      if (this.pos >= t.length) this.fail('EOF while parsing an object', t.length);
      if (t.charCodeAt(this.pos) !== 0x22) this.fail(t.charCodeAt(this.pos) === 0x7d ? 'trailing comma' : 'key must be a string', this.pos);
      const k = this.string();
      this.skipWs();
      if (this.pos >= t.length) this.fail('EOF while parsing an object', t.length);
      if (t.charCodeAt(this.pos) !== 0x3a /* : */) this.fail('expected `:`', this.pos);
      this.pos++;
      this.skipWs();
      out[k] = this.value(depth + 1);
      this.skipWs();
      if (this.pos >= t.length) this.fail('EOF while parsing an object', t.length);
      const c = t.charCodeAt(this.pos);
      this.pos++;
      if (c === 0x7d) return out;
      if (c !== 0x2c /* , */) this.fail('expected `,` or `}`', this.pos - 1);
      this.skipWs();
    }
  }

  array(depth: number): unknown[] {
    this.enter(depth);
    const t = this.text;
    const out: unknown[] = [];
    this.pos++;
    this.skipWs();
    if (t.charCodeAt(this.pos) === 0x5d /* ] */) {
      this.pos++;
      return out;
    }
    for (;;) {
      if (this.pos >= t.length) this.fail('EOF while parsing a list', t.length);
      if (t.charCodeAt(this.pos) === 0x5d) this.fail('trailing comma', this.pos);
      out.push(this.value(depth + 1));
      this.skipWs();
      if (this.pos >= t.length) this.fail('EOF while parsing a list', t.length);
      const c = t.charCodeAt(this.pos);
      this.pos++;
      if (c === 0x5d) return out;
      if (c !== 0x2c) this.fail('expected `,` or `]`', this.pos - 1);
      this.skipWs();
    }
  }

  string(): string {
    const t = this.text;
    this.pos++; // opening quote
    let out = '';
    let chunk = this.pos;
    for (;;) {
      if (this.pos >= t.length) this.fail('EOF while parsing a string', t.length);
      const c = t.charCodeAt(this.pos);
      if (c === 0x22) {
        out += t.slice(chunk, this.pos);
        this.pos++;
        return out;
      }
      if (c < 0x20) this.fail('control character (\\u0000-\\u001F) found while parsing a string', this.pos);
      if (c !== 0x5c /* \ */) {
        this.pos++;
        continue;
      }
      out += t.slice(chunk, this.pos);
      this.pos++;
      if (this.pos >= t.length) this.fail('EOF while parsing a string', t.length);
      const e = t[this.pos++];
      switch (e) {
        case '"':
          out += '"';
          break;
        case '\\':
          out += '\\';
          break;
        case '/':
          out += '/';
          break;
        case 'b':
          out += '\b';
          break;
        case 'f':
          out += '\f';
          break;
        case 'n':
          out += '\n';
          break;
        case 'r':
          out += '\r';
          break;
        case 't':
          out += '\t';
          break;
        case 'u': {
          const hi = this.hex4();
          if (hi >= 0xd800 && hi <= 0xdbff) {
            if (t[this.pos] !== '\\' || t[this.pos + 1] !== 'u') this.fail('unexpected end of hex escape', this.pos);
            this.pos += 2;
            const lo = this.hex4();
            if (lo < 0xdc00 || lo > 0xdfff) this.fail('lone leading surrogate in hex escape', this.pos);
            out += String.fromCharCode(hi, lo);
          } else if (hi >= 0xdc00 && hi <= 0xdfff) {
            this.fail('lone leading surrogate in hex escape', this.pos);
          } else {
            out += String.fromCharCode(hi);
          }
          break;
        }
        default:
          this.fail('invalid escape', this.pos - 1);
      }
      chunk = this.pos;
    }
  }

  hex4(): number {
    const s = this.text.slice(this.pos, this.pos + 4);
    if (s.length < 4) this.fail('EOF while parsing a string', this.text.length);
    if (!/^[0-9a-fA-F]{4}$/.test(s)) this.fail('invalid escape', this.pos);
    this.pos += 4;
    return parseInt(s, 16);
  }

  number(): unknown {
    const t = this.text;
    const start = this.pos;
    const m = /-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?/y;
    m.lastIndex = start;
    const r = m.exec(t);
    if (!r || r[0] === '-' || r[0].length === 0) return this.fail('invalid number', start);
    const after = t.charCodeAt(start + r[0].length);
    // `1.`, `1e`, `-x`: the regex stopped on a malformed part.
    if (after === 0x2e /* . */ || after === 0x65 || after === 0x45 || (after >= 0x30 && after <= 0x39)) {
      return this.fail('invalid number', start + r[0].length);
    }
    this.pos = start + r[0].length;
    const n = Number(r[0]);
    if (r[1] === undefined && r[2] === undefined) return n === 0 ? 0 : n; // an integer; no -0
    if (!Number.isFinite(n)) return this.fail('number out of range', start);
    // A float: keep it a float in Lua even when integral (pushValue would make it an integer).
    return Number.isInteger(n) && n >= -2147483648 && n <= 2147483647 ? new LuaFloat(n) : n;
  }
}
