/**
 * `kumo.http`: KumoMTA's HTTP client (reqwest in KumoMTA), on undici.
 *
 *   local client = kumo.http.build_client { timeout = '10s' }
 *   local resp = client:post(url):header('Content-Type', 'application/json'):body(data):send()
 *   if resp:status_is_success() then ... resp:text() ... end
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
 * The module is in four files: this one (the module table and HttpClient),
 * http-request.ts (URL targets and the request builder), http-exchange.ts
 * (sending: the undici dispatch handler, redirects and the deadline) and
 * http-response.ts (HttpResponse and HeaderMap).
 */
import { lua } from 'fengari';
import { Agent } from 'undici';
import type { LuaVM } from '../vm.js';
import { typeName } from '../convert.js';
import { checkString, pushFunctionTable, raise, UserdataClass, type HostFunction } from '../host.js';
import { decodeString, key, pushString, type LuaState } from '../lstr.js';
import { MAX_TIMER_MS } from './http-exchange.js';
import { checkDuration, checkHeaderString, checkStringValue, forEachPair, HttpRequest, makeRequestClass, parseTarget, type Target } from './http-request.js';
import { makeResponseClass } from './http-response.js';

export { MAX_BODY_BYTES } from './http-exchange.js';
export { HttpRequest } from './http-request.js';
export { HttpResponse } from './http-response.js';

const DEFAULT_TIMEOUT_MS = 60_000;
/** reqwest's default `pool_idle_timeout`. */
const DEFAULT_POOL_IDLE_MS = 90_000;
/** Parsed URLs remembered per client: webhooks post to the same few URLs. */
const TARGET_CACHE_SIZE = 64;

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

export function openKumoHttp(vm: LuaVM, L: LuaState): void {
  const requestClass = makeRequestClass(vm, L, makeResponseClass(L));

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
