/**
 * A `kumo.http` request: where it goes (Target, parsed from the URL once per
 * client), the HttpRequest that the Lua builder methods fill in, and the
 * builder itself, whose `send()` hands the request to an Exchange
 * (http-exchange.ts). The argument checks here are shared with
 * `build_client` and `build_url` (kumo-http.ts).
 */
import { isUtf8 } from 'node:buffer';
import { lua } from 'fengari';
import type { LuaVM } from '../vm.js';
import { awaitPromise } from '../async.js';
import { typeName } from '../convert.js';
import { checkBytes, checkString, raise, UserdataClass } from '../host.js';
import { decodeString, key, toBytes, type LuaState } from '../lstr.js';
import { parseDuration } from '../../config/duration.js';
import type { HttpClient } from './kumo-http.js';
import { Exchange } from './http-exchange.js';
import type { HttpResponse } from './http-response.js';

/** Where a URL string points, parsed once. `error` is set for URLs that cannot be sent to. */
export interface Target {
  /** The URL as error messages show it (normalised, credentials removed). */
  readonly href: string;
  readonly origin: string;
  /** Path and query. */
  readonly path: string;
  /** `Basic ...` from `user:pass@` in the URL, or null. */
  readonly auth: string | null;
  readonly error: string | null;
}

export function parseTarget(raw: string): Target {
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    return { href: raw, origin: '', path: '', auth: null, error: /^[a-zA-Z][a-zA-Z0-9+.-]*:/.test(raw) ? 'invalid URL' : 'relative URL without a base' };
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') {
    return { href: u.href, origin: '', path: '', auth: null, error: 'URL scheme is not allowed' };
  }
  let auth: string | null = null;
  if (u.username !== '' || u.password !== '') {
    auth = basicAuth(Buffer.from(decodeURIComponent(u.username)), Buffer.from(decodeURIComponent(u.password)));
    u.username = '';
    u.password = '';
  }
  return { href: u.href, origin: u.origin, path: u.pathname + u.search, auth, error: null };
}

function basicAuth(user: Uint8Array, password: Uint8Array | null): string {
  const colon = user.length;
  const raw = Buffer.allocUnsafe(colon + 1 + (password?.length ?? 0));
  raw.set(user, 0);
  raw[colon] = 0x3a;
  if (password) raw.set(password, colon + 1);
  return `Basic ${raw.toString('base64')}`;
}

export class HttpRequest {
  /** Flat `[name, value, ...]`, values as latin1 strings holding the raw bytes (undici writes latin1). */
  readonly headers: string[] = [];
  body: Buffer | null = null;
  timeoutMs: number;
  sent = false;

  constructor(
    readonly client: HttpClient,
    readonly method: 'GET' | 'POST' | 'PUT',
    readonly target: Target,
  ) {
    this.timeoutMs = client.options.timeoutMs;
    if (target.auth) this.headers.push('authorization', target.auth);
  }

  has(lowerName: string): boolean {
    const h = this.headers;
    for (let i = 0; i < h.length; i += 2) {
      const n = h[i] as string;
      if (n.length === lowerName.length && n.toLowerCase() === lowerName) return true;
    }
    return false;
  }

  remove(lowerName: string): void {
    const h = this.headers;
    for (let i = h.length - 2; i >= 0; i -= 2) {
      const n = h[i] as string;
      if (n.length === lowerName.length && n.toLowerCase() === lowerName) h.splice(i, 2);
    }
  }
}

/** Raw bytes of the string (or number) argument, as a latin1 string: what undici writes byte for byte. */
export function checkHeaderString(L: LuaState, arg: number, what: string): string {
  const t = lua.lua_type(L, arg);
  if (t !== lua.LUA_TSTRING && t !== lua.LUA_TNUMBER) raise(L, `${what}: expected a string, got ${typeName(L, arg)}`);
  return latin1(toBytes(L, arg) as Uint8Array);
}

function latin1(u8: Uint8Array): string {
  return Buffer.from(u8.buffer, u8.byteOffset, u8.byteLength).toString('latin1');
}

/** A Lua string as a Buffer sharing its bytes (Lua strings are immutable). */
function asBuffer(u8: Uint8Array): Buffer {
  return Buffer.from(u8.buffer, u8.byteOffset, u8.byteLength);
}

/**
 * Visit the pairs of the table at `idx` (absolute), whose keys and values must
 * be strings (numbers are converted, as mlua does for `HashMap<String, _>`).
 * `visit` receives the key's bytes; the value is on the top of the stack.
 */
export function forEachPair(L: LuaState, idx: number, what: string, visit: (k: Uint8Array) => void): void {
  if (lua.lua_type(L, idx) !== lua.LUA_TTABLE) raise(L, `${what}: expected a table, got ${typeName(L, idx)}`);
  lua.lua_pushnil(L);
  while (lua.lua_next(L, idx) !== 0) {
    const kt = lua.lua_type(L, -2);
    if (kt !== lua.LUA_TSTRING && kt !== lua.LUA_TNUMBER) raise(L, `${what}: expected string keys, got ${typeName(L, -2)}`);
    let k: Uint8Array;
    if (kt === lua.LUA_TSTRING) k = lua.lua_tolstring(L, -2);
    else {
      // lua_tolstring would turn the key into a string in place and derail lua_next.
      lua.lua_pushvalue(L, -2);
      k = lua.lua_tolstring(L, -1);
      lua.lua_pop(L, 1);
    }
    visit(k);
    lua.lua_pop(L, 1);
  }
}

export function checkStringValue(L: LuaState, what: string, k: Uint8Array): Uint8Array {
  const t = lua.lua_type(L, -1);
  if (t !== lua.LUA_TSTRING && t !== lua.LUA_TNUMBER) {
    raise(L, `${what}: the value of '${decodeString(k)}' must be a string, got ${typeName(L, -1)}`);
  }
  return lua.lua_tolstring(L, -1);
}

export function checkDuration(L: LuaState, idx: number, what: string): number {
  const t = lua.lua_type(L, idx);
  if (t !== lua.LUA_TNUMBER && t !== lua.LUA_TSTRING) raise(L, `${what}: invalid timeout duration: expected a number of seconds or a string such as '10s', got ${typeName(L, idx)}`);
  try {
    return parseDuration(t === lua.LUA_TNUMBER ? lua.lua_tonumber(L, idx) : decodeString(lua.lua_tolstring(L, idx)));
  } catch (err) {
    return raise(L, `${what}: ${err instanceof Error ? err.message : String(err)}`);
  }
}

/** Quote a form-data field or file name as browsers do (WHATWG multipart/form-data). */
function formName(s: string): string {
  return s.replace(/\r\n?|\n/g, '\r\n').replace(/[\r\n"]/g, (c) => (c === '"' ? '%22' : c === '\r' ? '%0D' : '%0A'));
}

let boundarySeq = 0;
function newBoundary(): string {
  boundarySeq = (boundarySeq + 1) >>> 0;
  return `sluice-${Math.random().toString(36).slice(2, 12)}${boundarySeq.toString(36)}`;
}

const CRLF = Buffer.from('\r\n', 'latin1');

/** The Lua class HttpRequest: the builder methods and `send()`, which pushes its reply as `responseClass`. */
export function makeRequestClass(vm: LuaVM, L: LuaState, responseClass: UserdataClass<HttpResponse>): UserdataClass<HttpRequest> {
  const pushResponse = (L2: LuaState, r: HttpResponse): number => {
    responseClass.push(L2, r);
    return 1;
  };

  /** The request at 1, checked unsent; every builder method returns it for chaining. */
  const building = (L2: LuaState, req: HttpRequest): HttpRequest => {
    if (req.sent) raise(L2, 'broken request builder');
    return req;
  };
  const chain = (L2: LuaState): number => {
    lua.lua_pushvalue(L2, 1);
    return 1;
  };

  const requestClass = new UserdataClass<HttpRequest>(L, 'HttpRequest', {
    header: (L2, r) => {
      building(L2, r);
      const name = checkHeaderString(L2, 2, 'header name');
      r.headers.push(name, checkHeaderString(L2, 3, 'header value'));
      return chain(L2);
    },
    headers: (L2, r) => {
      building(L2, r);
      forEachPair(L2, 2, 'headers', (k) => {
        r.headers.push(latin1(k), latin1(checkStringValue(L2, 'headers', k)));
      });
      return chain(L2);
    },
    basic_auth: (L2, r) => {
      building(L2, r);
      const user = checkBytes(L2, 2, 'basic_auth username');
      const password = lua.lua_isnoneornil(L2, 3) ? null : checkBytes(L2, 3, 'basic_auth password');
      r.headers.push('authorization', basicAuth(user, password));
      return chain(L2);
    },
    bearer_auth: (L2, r) => {
      building(L2, r);
      r.headers.push('authorization', `Bearer ${checkHeaderString(L2, 2, 'bearer_auth token')}`);
      return chain(L2);
    },
    body: (L2, r) => {
      building(L2, r);
      r.body = asBuffer(checkBytes(L2, 2, 'body'));
      return chain(L2);
    },
    form_url_encoded: (L2, r) => {
      building(L2, r);
      const params = new URLSearchParams();
      forEachPair(L2, 2, 'form_url_encoded', (k) => {
        params.append(decodeString(k), decodeString(checkStringValue(L2, 'form_url_encoded', k)));
      });
      r.body = Buffer.from(params.toString(), 'latin1');
      if (!r.has('content-type')) r.headers.push('content-type', 'application/x-www-form-urlencoded');
      return chain(L2);
    },
    form_multipart_data: (L2, r) => {
      building(L2, r);
      const boundary = newBoundary();
      const parts: Buffer[] = [];
      forEachPair(L2, 2, 'form_multipart_data', (k) => {
        const name = formName(decodeString(k));
        const t = lua.lua_type(L2, -1);
        if (t === lua.LUA_TSTRING || t === lua.LUA_TNUMBER) {
          const data = lua.lua_tolstring(L2, -1) as Uint8Array;
          // KumoMTA sends a value that is not UTF-8 as an octet-stream part.
          const type = isUtf8(data) ? '' : 'Content-Type: application/octet-stream\r\n';
          parts.push(Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="${name}"\r\n${type}\r\n`, 'utf8'), Buffer.from(data), CRLF);
        } else if (t === lua.LUA_TTABLE) {
          const tbl = lua.lua_absindex(L2, -1);
          lua.lua_getfield(L2, tbl, key('data'));
          lua.lua_getfield(L2, tbl, key('file_name'));
          const what = `form_multipart_data: '${decodeString(k)}'`;
          const data = checkBytes(L2, -2, `${what} data`);
          const fileName = formName(checkString(L2, -1, `${what} file_name`));
          lua.lua_pop(L2, 2);
          parts.push(
            Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="${name}"; filename="${fileName}"\r\nContent-Type: application/octet-stream\r\n\r\n`, 'utf8'),
            Buffer.from(data),
            CRLF,
          );
        } else {
          raise(L2, `form_multipart_data: the value of '${decodeString(k)}' must be a string or { data = ..., file_name = ... }, got ${typeName(L2, -1)}`);
        }
      });
      parts.push(Buffer.from(`--${boundary}--\r\n`, 'latin1'));
      r.body = Buffer.concat(parts);
      r.remove('content-type');
      r.headers.push('content-type', `multipart/form-data; boundary=${boundary}`);
      return chain(L2);
    },
    timeout: (L2, r) => {
      building(L2, r);
      r.timeoutMs = checkDuration(L2, 2, 'timeout');
      return chain(L2);
    },
    send: (L2, r) => {
      building(L2, r);
      r.sent = true;
      const target = r.target;
      const agent = r.client.agent;
      let promise: Promise<HttpResponse>;
      if (target.error !== null || agent === null) {
        promise = Promise.reject(new Error(`error sending request for url (${target.href}): ${target.error ?? 'client was closed'}`));
      } else {
        const ex = new Exchange(agent, r, target);
        promise = ex.promise;
        if (ex.verbose) {
          const method = r.method;
          promise.then(
            (res) => vm.logger.debug({ target: 'kumo.http', method, url: target.href, status: res.status }, 'http request done'),
            (err: Error) => vm.logger.debug({ target: 'kumo.http', method, url: target.href, err: err.message }, 'http request failed'),
          );
        }
      }
      return awaitPromise(L2, promise, pushResponse);
    },
  });
  return requestClass;
}
