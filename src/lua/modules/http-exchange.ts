/**
 * Sending a `kumo.http` request (kumo-http.ts).
 *
 * This is the hot path of every webhook delivery, so it talks to undici's
 * dispatcher directly: one `Exchange` object per send is the dispatch handler,
 * collects the reply and settles one promise, which `send()` awaits through
 * the async bridge. There is no response stream, AbortController or
 * per-request closure.
 *
 * The reply body is read eagerly, inside `send()`, into one Buffer (capped at
 * MAX_BODY_BYTES). Webhook replies are small, and reading at once returns the
 * connection to the pool immediately whatever the policy does next: fengari
 * has no `__gc`, so a Response that Lua drops unread could otherwise pin its
 * connection (and the Agent's slot) until the server timed it out. `text()`
 * and `bytes()` therefore need not yield: they return at once.
 */
import { Agent, type Dispatcher } from 'undici';
import type { HttpRequest, Target } from './http-request.js';
import { HttpResponse, NO_HEADERS, type ReplyHeaders } from './http-response.js';

const MAX_REDIRECTS = 10;
/** Largest reply body `send()` will buffer. */
export const MAX_BODY_BYTES = 64 * 1024 * 1024;
/** setTimeout's limit (about 24.8 days). */
export const MAX_TIMER_MS = 2 ** 31 - 1;
const EMPTY_BODY = Buffer.alloc(0);

/**
 * One send: the undici dispatch handler, the deadline and the promise that
 * `send()` awaits. Follows redirects itself, so the common case costs no
 * redirect interceptor.
 */
export class Exchange implements Dispatcher.DispatchHandler {
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
