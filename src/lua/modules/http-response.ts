/**
 * What `send()` returns (kumo-http.ts): HttpResponse, holding the status, the
 * reply headers (HeaderMap in Lua) and the body, which arrives whole (see
 * http-exchange.ts), so `text()` and `bytes()` return at once.
 */
import { isUtf8 } from 'node:buffer';
import { STATUS_CODES } from 'node:http';
import { lua } from 'fengari';
import { pushNumber } from '../convert.js';
import { raise, UserdataClass } from '../host.js';
import { decodeString, key, pushString, type LuaState } from '../lstr.js';

export type ReplyHeaders = Record<string, string | string[] | undefined>;
export const NO_HEADERS: ReplyHeaders = Object.freeze({}) as ReplyHeaders;

export class HttpResponse {
  #body: Buffer | null;

  constructor(
    readonly status: number,
    readonly headers: ReplyHeaders,
    body: Buffer,
  ) {
    this.#body = body;
  }

  get consumed(): boolean {
    return this.#body === null;
  }

  /** The body, once; null when it was taken already. */
  take(): Buffer | null {
    const b = this.#body;
    this.#body = null;
    return b;
  }
}

function firstValue(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}

/** The reply text, decoded as reqwest does: BOM first, then the charset, else UTF-8 (lossy). */
function decodeBody(body: Buffer, contentType: string | undefined): Uint8Array | string {
  if (body.length >= 2) {
    const b0 = body[0];
    const b1 = body[1];
    if (b0 === 0xef && b1 === 0xbb && body[2] === 0xbf) return utf8(body.subarray(3));
    if (b0 === 0xff && b1 === 0xfe) return new TextDecoder('utf-16le').decode(body.subarray(2));
    if (b0 === 0xfe && b1 === 0xff) return new TextDecoder('utf-16be').decode(body.subarray(2));
  }
  const label = contentType ? charsetOf(contentType) : null;
  if (label === null || label === 'utf-8' || label === 'utf8') return utf8(body);
  try {
    return new TextDecoder(label).decode(body);
  } catch {
    return utf8(body); // unknown label: UTF-8, as encoding_rs does
  }
}

/** Valid UTF-8 goes to Lua as the bytes themselves; anything else with U+FFFD substitutions. */
function utf8(body: Buffer): Uint8Array | string {
  return isUtf8(body) ? body : body.toString('utf8');
}

function charsetOf(contentType: string): string | null {
  const i = contentType.toLowerCase().indexOf('charset=');
  if (i < 0) return null;
  let v = contentType.slice(i + 8).trim();
  const semi = v.indexOf(';');
  if (semi >= 0) v = v.slice(0, semi).trim();
  if (v.startsWith('"') && v.endsWith('"') && v.length >= 2) v = v.slice(1, -1);
  return v.toLowerCase();
}

/** The Lua classes HttpResponse and HeaderMap (what `headers()` returns); returns HttpResponse's. */
export function makeResponseClass(L: LuaState): UserdataClass<HttpResponse> {
  const headerMapClass = new UserdataClass<ReplyHeaders>(L, 'HeaderMap', {}, {
    __index: (L2) => {
      const headers = headerMapClass.test(L2, 1);
      const t = lua.lua_type(L2, 2);
      if (headers === null || (t !== lua.LUA_TSTRING && t !== lua.LUA_TNUMBER)) {
        lua.lua_pushnil(L2);
        return 1;
      }
      const name = decodeString(lua.lua_tolstring(L2, 2)).toLowerCase();
      const v = Object.hasOwn(headers, name) ? firstValue(headers[name]) : undefined;
      if (v === undefined) lua.lua_pushnil(L2);
      else lua.lua_pushstring(L2, Buffer.from(v, 'latin1'));
      return 1;
    },
    __pairs: (L2) => {
      const headers = headerMapClass.check(L2, 1, 'HeaderMap __pairs');
      const flat: string[] = [];
      for (const name of Object.keys(headers)) {
        const v = headers[name];
        if (Array.isArray(v)) for (const item of v) flat.push(name, item);
        else if (v !== undefined) flat.push(name, v);
      }
      let i = 0;
      lua.lua_pushcfunction(L2, (L3: LuaState) => {
        if (i >= flat.length) {
          lua.lua_pushnil(L3);
          return 1;
        }
        pushString(L3, flat[i] as string);
        lua.lua_pushstring(L3, Buffer.from(flat[i + 1] as string, 'latin1'));
        i += 2;
        return 2;
      });
      lua.lua_pushvalue(L2, 1);
      lua.lua_pushnil(L2);
      return 3;
    },
  });

  const brokenResponse = (L2: LuaState): never => raise(L2, 'broken response wrapper');
  const pushBool = (L2: LuaState, b: boolean): number => {
    lua.lua_pushboolean(L2, b);
    return 1;
  };

  const responseClass = new UserdataClass<HttpResponse>(L, 'HttpResponse', {
    status_code: (L2, r) => {
      lua.lua_pushinteger(L2, r.status);
      return 1;
    },
    status_reason: (L2, r) => {
      const reason = STATUS_CODES[r.status];
      // key() converts each phrase once and caches it.
      if (reason === undefined) lua.lua_pushnil(L2);
      else lua.lua_pushstring(L2, key(reason));
      return 1;
    },
    status_is_informational: (L2, r) => pushBool(L2, r.status >= 100 && r.status < 200),
    status_is_success: (L2, r) => pushBool(L2, r.status >= 200 && r.status < 300),
    status_is_redirection: (L2, r) => pushBool(L2, r.status >= 300 && r.status < 400),
    status_is_client_error: (L2, r) => pushBool(L2, r.status >= 400 && r.status < 500),
    status_is_server_error: (L2, r) => pushBool(L2, r.status >= 500 && r.status < 600),
    headers: (L2, r) => {
      if (r.consumed) brokenResponse(L2);
      headerMapClass.push(L2, r.headers);
      return 1;
    },
    content_length: (L2, r) => {
      if (r.consumed) brokenResponse(L2);
      const v = firstValue(r.headers['content-length']);
      const n = v !== undefined && /^\d+$/.test(v) ? Number(v) : NaN;
      if (Number.isSafeInteger(n)) pushNumber(L2, n);
      else lua.lua_pushnil(L2);
      return 1;
    },
    text: (L2, r) => {
      const body = r.take();
      if (body === null) return brokenResponse(L2);
      const text = decodeBody(body, firstValue(r.headers['content-type']));
      if (typeof text === 'string') pushString(L2, text);
      else lua.lua_pushstring(L2, text);
      return 1;
    },
    bytes: (L2, r) => {
      const body = r.take();
      if (body === null) return brokenResponse(L2);
      lua.lua_pushstring(L2, body);
      return 1;
    },
  });
  return responseClass;
}
