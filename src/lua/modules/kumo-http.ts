/**
 * `kumo.http`: KumoMTA's HTTP client (reqwest in KumoMTA), on undici.
 *
 *   local client = kumo.http.build_client { timeout = '10s' }
 *   local resp = client:post(url):header('Content-Type', 'application/json'):body(data):send()
 *   if resp:status_is_success() then ... resp:text() ... end
 *
 * This is the hot path of every webhook delivery, so it talks to undici's
 * dispatcher directly: one `Exchange` object per send is the dispatch handler,
 * collects the reply and settles one promise, which `send()` awaits through
 * the async bridge. There is no response stream, AbortController or
 * per-request closure.
 *
 * Behaviour kept from KumoMTA (kumomta-facts §8):
 * - one connection pool (an undici Agent) per client; `timeout` (default 60 s)
 *   covers the whole exchange: connecting, redirects, the reply and its body.
 * - `send()` raises only for transport failures (`error sending request for
 *   url (...): <cause>`), never for a 4xx/5xx status; there are no retries.
 * - a Request can be sent once (`broken request builder`); after `text()` or
 *   `bytes()`, `headers()`, `content_length()` and another read raise
 *   `broken response wrapper` while the `status_*` methods keep working.
 * - redirects are followed as reqwest does by default: at most 10; 301/302/303
 *   turn the request into a bodiless GET, 307/308 repeat it; credentials are
 *   dropped when the host or port changes.
 * - `user:pass@` in a URL becomes a basic Authorization header; `Accept: *\/*`
 *   and the client's `user_agent` are added when the request has none.
 *
 * The reply body is read eagerly, inside `send()`, into one Buffer (capped at
 * MAX_BODY_BYTES). Webhook replies are small, and reading at once returns the
 * connection to the pool immediately whatever the policy does next: fengari
 * has no `__gc`, so a Response that Lua drops unread could otherwise pin its
 * connection (and the Agent's slot) until the server timed it out. `text()`
 * and `bytes()` therefore need not yield: they return at once.
 */
import { isUtf8 } from 'node:buffer';
import { STATUS_CODES } from 'node:http';
import { lua } from 'fengari';
import { Agent, type Dispatcher } from 'undici';
import type { LuaVM } from '../vm.js';
import { awaitPromise } from '../async.js';
import { pushNumber, typeName } from '../convert.js';
import { checkString, pushFunctionTable, raise, UserdataClass, type HostFunction } from '../host.js';
import { decodeString, key, pushString, toBytes, type LuaState } from '../lstr.js';
import { parseDuration } from '../../config/duration.js';

const DEFAULT_TIMEOUT_MS = 60_000;
/** reqwest's default `pool_idle_timeout`. */
const DEFAULT_POOL_IDLE_MS = 90_000;
const MAX_REDIRECTS = 10;
/** Largest reply body `send()` will buffer. */
export const MAX_BODY_BYTES = 64 * 1024 * 1024;
/** setTimeout's limit (about 24.8 days). */
const MAX_TIMER_MS = 2 ** 31 - 1;
/** Parsed URLs remembered per client: webhooks post to the same few URLs. */
const TARGET_CACHE_SIZE = 64;

type ReplyHeaders = Record<string, string | string[] | undefined>;
const NO_HEADERS: ReplyHeaders = Object.freeze({}) as ReplyHeaders;
const EMPTY_BODY = Buffer.alloc(0);

// ---------------------------------------------------------------- client

/** Where a URL string points, parsed once. `error` is set for URLs that cannot be sent to. */
interface Target {
  /** The URL as error messages show it (normalised, credentials removed). */
  readonly href: string;
  readonly origin: string;
  /** Path and query. */
  readonly path: string;
  /** `Basic ...` from `user:pass@` in the URL, or null. */
  readonly auth: string | null;
  readonly error: string | null;
}

function parseTarget(raw: string): Target {
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

interface ClientOptions {
  userAgent: string | null;
  verbose: boolean;
  poolIdleMs: number;
  timeoutMs: number;
  acceptInvalidCerts: boolean;
}

/** Clients of one VM, so that `closeHttpClients(vm)` can end their pools. */
type ClientSet = Set<WeakRef<HttpClient>>;
const clientsByVm = new WeakMap<LuaVM, ClientSet>();

interface Held {
  agent: Agent;
  set: ClientSet;
  ref: WeakRef<HttpClient>;
}

/**
 * fengari has no `__gc`, so a client that Lua drops without `close()` is
 * noticed by the JS garbage collector instead; its pool is then closed, as
 * dropping a reqwest Client does.
 */
const finalizer = new FinalizationRegistry<Held>((held) => {
  held.set.delete(held.ref);
  held.agent.close().catch(noop);
});

function noop(): void {}

export class HttpClient {
  agent: Agent | null;
  readonly #targets = new Map<string, Target>();
  readonly #held: Held;

  constructor(
    readonly vm: LuaVM,
    readonly options: ClientOptions,
  ) {
    this.agent = new Agent({
      keepAliveTimeout: Math.max(1, options.poolIdleMs),
      keepAliveMaxTimeout: Math.max(1, options.poolIdleMs),
      // The exchange's own deadline covers headers and body; undici's
      // per-phase timers would only duplicate it (and cap it at 300 s).
      headersTimeout: 0,
      bodyTimeout: 0,
      connect: {
        timeout: Math.max(1, Math.min(options.timeoutMs, MAX_TIMER_MS)),
        rejectUnauthorized: !options.acceptInvalidCerts,
      },
    });
    let set = clientsByVm.get(vm);
    if (!set) clientsByVm.set(vm, (set = new Set()));
    const ref = new WeakRef(this);
    set.add(ref);
    this.#held = { agent: this.agent, set, ref };
    finalizer.register(this, this.#held, this);
  }

  target(url: string): Target {
    let t = this.#targets.get(url);
    if (t === undefined) {
      if (this.#targets.size >= TARGET_CACHE_SIZE) this.#targets.clear();
      t = parseTarget(url);
      this.#targets.set(url, t);
    }
    return t;
  }

  /** End the pool: requests in flight finish, idle connections close. Idempotent. */
  close(): Promise<void> {
    const agent = this.agent;
    if (!agent) return Promise.resolve();
    this.agent = null;
    finalizer.unregister(this);
    this.#held.set.delete(this.#held.ref);
    return agent.close().catch(noop);
  }
}

/** Close every client `vm`'s policy built and has not closed (call when the VM is retired). */
export async function closeHttpClients(vm: LuaVM): Promise<void> {
  const set = clientsByVm.get(vm);
  if (!set) return;
  const closing: Promise<void>[] = [];
  for (const ref of [...set]) {
    const client = ref.deref();
    if (client) closing.push(client.close());
  }
  set.clear();
  await Promise.all(closing);
}

// ---------------------------------------------------------------- request

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

/**
 * One send: the undici dispatch handler, the deadline and the promise that
 * `send()` awaits. Follows redirects itself, so the common case costs no
 * redirect interceptor.
 */
class Exchange implements Dispatcher.DispatchHandler {
  readonly promise: Promise<HttpResponse>;
  #resolve!: (r: HttpResponse) => void;
  #reject!: (e: Error) => void;
  #done = false;
  #error: Error | null = null;
  #controller: Dispatcher.DispatchController | null = null;
  #timer: NodeJS.Timeout | null = null;
  #href: string;
  readonly #opts: Dispatcher.DispatchOptions;
  readonly #agent: Agent;
  readonly #verbose: boolean;
  #redirects = 0;
  /** The redirect being followed (set by a 3xx with a Location) and that reply's status. */
  #next: URL | null = null;
  #nextStatus = 0;
  #status = 0;
  #headers: ReplyHeaders = NO_HEADERS;
  #chunks: Buffer[] = [];
  #size = 0;

  constructor(agent: Agent, req: HttpRequest, target: Target) {
    this.promise = new Promise<HttpResponse>((resolve, reject) => {
      this.#resolve = resolve;
      this.#reject = reject;
    });
    this.#agent = agent;
    this.#verbose = req.client.options.verbose;
    this.#href = target.href;
    const headers = req.headers;
    if (!req.has('accept')) headers.push('accept', '*/*');
    const ua = req.client.options.userAgent;
    if (ua !== null && !req.has('user-agent')) headers.push('user-agent', ua);
    this.#opts = {
      origin: target.origin,
      path: target.path,
      method: req.method,
      headers,
      body: req.body,
      headersTimeout: 0,
      bodyTimeout: 0,
    };
    this.#timer = setTimeout(onDeadline, Math.min(req.timeoutMs, MAX_TIMER_MS), this);
    this.#dispatch();
  }

  #dispatch(): void {
    try {
      this.#agent.dispatch(this.#opts, this);
    } catch (err) {
      this.fail(err);
    }
  }

  /** Settle with a transport error (once); abort the wire request if it started and is still going. */
  fail(cause: unknown, prefix = 'error sending request for url', abort = true): void {
    if (this.#done) return;
    this.#done = true;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
    this.#chunks = [];
    const err = new Error(`${prefix} (${this.#href}): ${describeError(cause)}`);
    this.#error = err;
    if (abort) this.#controller?.abort(err);
    this.#controller = null;
    this.#reject(err);
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    if (this.#done) {
      // Timed out while waiting for a connection: do not send it at all.
      if (this.#error) controller.abort(this.#error);
      return;
    }
    this.#controller = controller;
  }

  onResponseStart(_c: Dispatcher.DispatchController, statusCode: number, headers: ReplyHeaders): void {
    if (this.#done || statusCode < 200) return;
    if (statusCode >= 301 && statusCode <= 308 && statusCode !== 304 && statusCode !== 305 && statusCode !== 306) {
      const location = headers.location;
      if (typeof location === 'string') {
        let next: URL | null = null;
        try {
          next = new URL(location, this.#href);
        } catch {
          next = null; // an unusable Location: the 3xx is the answer, as in reqwest
        }
        if (next) {
          this.#next = next;
          this.#nextStatus = statusCode;
          return;
        }
      }
    }
    this.#status = statusCode;
    this.#headers = headers;
  }

  onResponseData(_c: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.#done || this.#next) return;
    this.#size += chunk.length;
    if (this.#size > MAX_BODY_BYTES) {
      this.fail(`response body larger than ${MAX_BODY_BYTES} bytes`, 'error reading response body from url');
      return;
    }
    this.#chunks.push(chunk);
  }

  onResponseEnd(): void {
    if (this.#done) return;
    if (this.#next) {
      this.#follow(this.#next);
      return;
    }
    this.#done = true;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
    this.#controller = null;
    const chunks = this.#chunks;
    let body: Buffer;
    if (chunks.length === 0) body = EMPTY_BODY;
    else if (chunks.length > 1) body = Buffer.concat(chunks, this.#size);
    else {
      // One chunk is a view into the socket's read buffer (up to 64 KiB):
      // keep it as it is unless that would pin much more memory than the body.
      body = chunks[0] as Buffer;
      if (body.buffer.byteLength > 4 * body.length + 1024) body = Buffer.from(body);
    }
    this.#chunks = [];
    this.#resolve(new HttpResponse(this.#status, this.#headers, body));
  }

  onResponseError(_c: Dispatcher.DispatchController | undefined, error: Error): void {
    if (this.#done) return;
    this.fail(error, this.#status !== 0 && !this.#next ? 'error reading response body from url' : undefined, false);
  }

  #follow(next: URL): void {
    this.#next = null;
    this.#controller = null;
    if (next.protocol !== 'http:' && next.protocol !== 'https:') {
      this.fail('URL scheme is not allowed', 'error following redirect for url');
      return;
    }
    if (++this.#redirects > MAX_REDIRECTS) {
      this.fail('too many redirects', 'error following redirect for url');
      return;
    }
    const opts = this.#opts;
    const previous = new URL(this.#href);
    const status = this.#nextStatus;
    const headers = [...(opts.headers as string[])];
    if (status === 301 || status === 302 || status === 303) {
      // reqwest: the body and its headers go; anything but GET/HEAD becomes GET.
      opts.body = null;
      if (opts.method !== 'GET' && opts.method !== 'HEAD') opts.method = 'GET';
      stripHeaders(headers, CONTENT_HEADERS);
    }
    if (previous.hostname !== next.hostname || portOf(previous) !== portOf(next)) stripHeaders(headers, SENSITIVE_HEADERS);
    next.hash = '';
    this.#href = next.href;
    opts.headers = headers;
    opts.origin = next.origin;
    opts.path = next.pathname + next.search;
    this.#status = 0;
    this.#headers = NO_HEADERS;
    this.#chunks = [];
    this.#size = 0;
    this.#dispatch();
  }

  timedOut(): void {
    this.fail('operation timed out');
  }

  get verbose(): boolean {
    return this.#verbose;
  }
}

function onDeadline(ex: Exchange): void {
  ex.timedOut();
}

const CONTENT_HEADERS = ['content-type', 'content-length', 'content-encoding', 'transfer-encoding'];
const SENSITIVE_HEADERS = ['authorization', 'cookie', 'proxy-authorization', 'www-authenticate'];

function stripHeaders(headers: string[], lowerNames: readonly string[]): void {
  for (let i = headers.length - 2; i >= 0; i -= 2) {
    if (lowerNames.includes((headers[i] as string).toLowerCase())) headers.splice(i, 2);
  }
}

function portOf(u: URL): string {
  return u.port !== '' ? u.port : u.protocol === 'https:' ? '443' : '80';
}

/** The cause of a transport error, readable: AggregateError (happy eyeballs) has no message of its own. */
function describeError(err: unknown): string {
  if (typeof err === 'string') return err;
  if (!(err instanceof Error)) return String(err);
  let message = err.message;
  if (!message && err instanceof AggregateError) message = err.errors.map((e) => describeError(e)).join('; ');
  const code = (err as { code?: unknown }).code;
  if (!message) message = typeof code === 'string' ? code : err.name;
  const cause = (err as { cause?: unknown }).cause;
  if (cause instanceof Error && cause.message && !message.includes(cause.message)) message += `: ${cause.message}`;
  return message;
}

// ---------------------------------------------------------------- response

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

// ---------------------------------------------------------------- Lua glue

/** Raw bytes of the string (or number) argument, as a latin1 string: what undici writes byte for byte. */
function checkHeaderString(L: LuaState, arg: number, what: string): string {
  const t = lua.lua_type(L, arg);
  if (t !== lua.LUA_TSTRING && t !== lua.LUA_TNUMBER) raise(L, `${what}: expected a string, got ${typeName(L, arg)}`);
  return latin1(toBytes(L, arg) as Uint8Array);
}

function latin1(u8: Uint8Array): string {
  return Buffer.from(u8.buffer, u8.byteOffset, u8.byteLength).toString('latin1');
}

function checkBytes(L: LuaState, arg: number, what: string): Uint8Array {
  const t = lua.lua_type(L, arg);
  if (t !== lua.LUA_TSTRING && t !== lua.LUA_TNUMBER) raise(L, `${what}: expected a string, got ${typeName(L, arg)}`);
  return toBytes(L, arg) as Uint8Array;
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
function forEachPair(L: LuaState, idx: number, what: string, visit: (k: Uint8Array) => void): void {
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

function checkStringValue(L: LuaState, what: string, k: Uint8Array): Uint8Array {
  const t = lua.lua_type(L, -1);
  if (t !== lua.LUA_TSTRING && t !== lua.LUA_TNUMBER) {
    raise(L, `${what}: the value of '${decodeString(k)}' must be a string, got ${typeName(L, -1)}`);
  }
  return lua.lua_tolstring(L, -1);
}

function checkDuration(L: LuaState, idx: number, what: string): number {
  const t = lua.lua_type(L, idx);
  if (t !== lua.LUA_TNUMBER && t !== lua.LUA_TSTRING) raise(L, `${what}: invalid timeout duration: expected a number of seconds or a string such as '10s', got ${typeName(L, idx)}`);
  try {
    return parseDuration(t === lua.LUA_TNUMBER ? lua.lua_tonumber(L, idx) : decodeString(lua.lua_tolstring(L, idx)));
  } catch (err) {
    return raise(L, `${what}: ${err instanceof Error ? err.message : String(err)}`);
  }
}

function readClientOptions(L: LuaState): ClientOptions {
  const opts: ClientOptions = {
    userAgent: null,
    verbose: false,
    poolIdleMs: DEFAULT_POOL_IDLE_MS,
    timeoutMs: DEFAULT_TIMEOUT_MS,
    acceptInvalidCerts: false,
  };
  const what = 'kumo.http.build_client';
  if (lua.lua_isnoneornil(L, 1)) return opts;
  if (lua.lua_type(L, 1) !== lua.LUA_TTABLE) raise(L, `${what}: expected an options table, got ${typeName(L, 1)}`);
  // Unknown keys are ignored, as in KumoMTA.
  if (lua.lua_getfield(L, 1, key('user_agent')) !== lua.LUA_TNIL) opts.userAgent = checkHeaderString(L, -1, `${what}: user_agent`);
  if (lua.lua_getfield(L, 1, key('connection_verbose')) !== lua.LUA_TNIL) opts.verbose = checkBoolean(L, -1, `${what}: connection_verbose`);
  if (lua.lua_getfield(L, 1, key('pool_idle_timeout')) !== lua.LUA_TNIL) opts.poolIdleMs = checkDuration(L, -1, `${what}: pool_idle_timeout`);
  if (lua.lua_getfield(L, 1, key('timeout')) !== lua.LUA_TNIL) opts.timeoutMs = checkDuration(L, -1, `${what}: timeout`);
  if (lua.lua_getfield(L, 1, key('accept_invalid_certs')) !== lua.LUA_TNIL) opts.acceptInvalidCerts = checkBoolean(L, -1, `${what}: accept_invalid_certs`);
  lua.lua_pop(L, 5);
  return opts;
}

function checkBoolean(L: LuaState, idx: number, what: string): boolean {
  if (lua.lua_type(L, idx) !== lua.LUA_TBOOLEAN) raise(L, `${what}: expected a boolean, got ${typeName(L, idx)}`);
  return lua.lua_toboolean(L, idx);
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

export function openKumoHttp(vm: LuaVM, L: LuaState): void {
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

  const newRequest = (method: 'GET' | 'POST' | 'PUT') => (L2: LuaState, c: HttpClient): number => {
    const url = checkString(L2, 2, `${method.toLowerCase()} url`);
    if (c.agent === null) raise(L2, 'client was closed');
    requestClass.push(L2, new HttpRequest(c, method, c.target(url)));
    return 1;
  };

  const clientClass = new UserdataClass<HttpClient>(L, 'HttpClient', {
    get: newRequest('GET'),
    post: newRequest('POST'),
    put: newRequest('PUT'),
    close: (_L2, c) => {
      void c.close();
      return 0;
    },
  });

  const fns: Record<string, HostFunction> = {
    build_client: (L2) => {
      const opts = readClientOptions(L2);
      clientClass.push(L2, new HttpClient(vm, opts));
      return 1;
    },
    build_url: (L2) => {
      const base = checkString(L2, 1, 'kumo.http.build_url url');
      let u: URL;
      try {
        u = new URL(base);
      } catch {
        return raise(L2, `kumo.http.build_url: invalid URL '${base}'`);
      }
      const params = new URLSearchParams();
      forEachPair(L2, 2, 'kumo.http.build_url params', (k) => {
        params.append(decodeString(k), decodeString(checkStringValue(L2, 'kumo.http.build_url params', k)));
      });
      // Like rust-url's query_pairs_mut: the existing query is kept as it is
      // and the new pairs are appended (a URL without a query gains a '?').
      const hash = u.hash;
      if (hash !== '') u.hash = '';
      let s = u.href;
      if (!s.includes('?')) s += '?';
      const extra = params.toString();
      if (extra !== '') s += (s.endsWith('?') ? '' : '&') + extra;
      pushString(L2, s + hash);
      return 1;
    },
  };
  pushFunctionTable(L, 'kumo.http.', fns);
  lua.lua_setfield(L, -2, key('http'));
}

const CRLF = Buffer.from('\r\n', 'latin1');
