/**
 * The HTTP API server: versioned JSON routes on node:http.
 *
 * Every request is checked before its handler runs: an unknown route is 404,
 * a client outside `trusted_hosts` is 403 (unless it presents the admin
 * token), admin routes need the bearer token when one is set, a body over the
 * limit is 413, malformed JSON is 400. Errors are JSON objects
 * `{"code": "kebab-case", "message": "...", "field"?: "..."}`. None of this
 * touches queued work.
 */
import http from 'node:http';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { timingSafeEqual } from 'node:crypto';
import type { Logger } from '../logging/logger.js';
import { SluiceError } from '../errors.js';

export class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly field?: string,
  ) {
    super(message);
  }
}

export interface ApiRequest {
  method: string;
  path: string;
  query: URLSearchParams;
  headers: http.IncomingHttpHeaders;
  /** The parsed JSON body (undefined when there is none). */
  body: unknown;
  /** The raw body text. */
  text: string;
  params: Record<string, string>;
  remote: string;
}

export interface ApiResponse {
  status?: number;
  /** JSON-encoded unless `text` is given. */
  json?: unknown;
  text?: string;
  contentType?: string;
}

export interface Route {
  method: string;
  /** A path; `:name` segments become params. */
  path: string;
  admin?: boolean;
  /** Read the body as text rather than JSON. */
  rawBody?: boolean;
  handler: (req: ApiRequest) => Promise<ApiResponse> | ApiResponse;
}

export interface ServerOptions {
  routes: Route[];
  trustedHosts: readonly string[];
  /** bytes @defaultValue 2 MiB */
  bodyLimit: number;
  adminToken?: string;
  logger: Logger;
}

interface CompiledRoute extends Route {
  segments: string[];
}

export class ApiServer {
  readonly #server: http.Server;
  readonly #routes: CompiledRoute[];
  readonly #trusted: net.BlockList;
  readonly #o: ServerOptions;
  #accepting = true;

  constructor(opts: ServerOptions) {
    this.#o = opts;
    this.#routes = opts.routes.map((r) => ({ ...r, segments: r.path.split('/').filter(Boolean) }));
    this.#trusted = buildTrustList(opts.trustedHosts);
    this.#server = http.createServer((req, res) => void this.#handle(req, res));
    this.#server.keepAliveTimeout = 65_000;
    this.#server.headersTimeout = 66_000;
  }

  listen(host: string, port: number): Promise<{ host: string; port: number }> {
    return new Promise((resolve, reject) => {
      this.#server.once('error', reject);
      this.#server.listen(port, host, () => {
        this.#server.off('error', reject);
        const a = this.#server.address() as AddressInfo;
        resolve({ host: a.address, port: a.port });
      });
    });
  }

  /** Stop accepting: new requests get 503; idle connections close. */
  stopAccepting(): void {
    this.#accepting = false;
    this.#server.closeIdleConnections();
  }

  close(): Promise<void> {
    this.#accepting = false;
    return new Promise((resolve) => {
      this.#server.close(() => resolve());
      this.#server.closeIdleConnections();
      setTimeout(() => this.#server.closeAllConnections(), 2000).unref();
    });
  }

  async #handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const started = process.hrtime.bigint();
    let status = 500;
    try {
      const url = new URL(req.url ?? '/', 'http://localhost');
      const remote = normalizeAddress(req.socket.remoteAddress ?? '');
      const match = this.#match(req.method ?? 'GET', url.pathname);
      if (!match) throw new HttpError(404, 'not-found', `no route for ${req.method} ${url.pathname}`);
      if (match === 'method') throw new HttpError(405, 'method-not-allowed', `${req.method} is not allowed on ${url.pathname}`);
      const tokenOk = this.#tokenMatches(req.headers.authorization);
      if (!this.#isTrusted(remote) && !tokenOk) throw new HttpError(403, 'forbidden', `client ${remote} is not in trusted_hosts`);
      if (match.route.admin && this.#o.adminToken && !tokenOk) throw new HttpError(401, 'unauthorized', 'admin routes need the bearer token (Authorization: Bearer <token>)');
      if (!this.#accepting) throw new HttpError(503, 'shutting-down', 'sluice is shutting down');
      const text = await readBody(req, this.#o.bodyLimit);
      let body: unknown;
      if (!match.route.rawBody && text.trim() !== '') {
        try {
          body = JSON.parse(text);
        } catch (err) {
          throw new HttpError(400, 'invalid-json', `the body is not valid JSON: ${(err as Error).message}`);
        }
      }
      const out = await match.route.handler({ method: req.method ?? 'GET', path: url.pathname, query: url.searchParams, headers: req.headers, body, text, params: match.params, remote });
      status = out.status ?? 200;
      if (out.text !== undefined) {
        res.writeHead(status, { 'content-type': out.contentType ?? 'text/plain; charset=utf-8' });
        res.end(out.text);
      } else {
        res.writeHead(status, { 'content-type': 'application/json' });
        res.end(out.json === undefined ? '' : JSON.stringify(out.json));
      }
    } catch (err) {
      // Work refused because shutdown began after the request was let in is a 503, as for requests that arrive later.
      const e = err instanceof HttpError ? err
        : err instanceof SluiceError && err.code === 'SLUICE_ERR_SHUTTING_DOWN' ? new HttpError(503, 'shutting-down', err.message)
        : new HttpError(500, 'internal-error', err instanceof Error ? err.message : String(err));
      status = e.status;
      if (e.status >= 500 && e.status !== 503) this.#o.logger.error({ err: e.message, url: req.url }, 'HTTP request failed');
      if (!res.headersSent) {
        res.writeHead(e.status, { 'content-type': 'application/json', ...(e.status === 413 ? { connection: 'close' } : {}) });
        res.end(JSON.stringify({ code: e.code, message: e.message, ...(e.field ? { field: e.field } : {}) }));
      } else res.end();
    } finally {
      const ms = Number(process.hrtime.bigint() - started) / 1e6;
      this.#o.logger.debug({ method: req.method, url: req.url, status, ms }, 'request');
    }
  }

  #match(method: string, pathname: string): { route: CompiledRoute; params: Record<string, string> } | 'method' | null {
    const parts = pathname.split('/').filter(Boolean);
    let pathMatched = false;
    for (const route of this.#routes) {
      if (route.segments.length !== parts.length) continue;
      const params: Record<string, string> = {};
      let ok = true;
      for (let i = 0; i < parts.length; i++) {
        const seg = route.segments[i] as string;
        if (seg.startsWith(':')) params[seg.slice(1)] = decodeURIComponent(parts[i] as string);
        else if (seg !== parts[i]) {
          ok = false;
          break;
        }
      }
      if (!ok) continue;
      pathMatched = true;
      if (route.method === method || (method === 'HEAD' && route.method === 'GET')) return { route, params };
    }
    return pathMatched ? 'method' : null;
  }

  #isTrusted(address: string): boolean {
    const type = net.isIPv6(address) ? 'ipv6' : 'ipv4';
    return this.#trusted.check(address, type);
  }

  #tokenMatches(header: string | undefined): boolean {
    const token = this.#o.adminToken;
    if (!token || !header?.startsWith('Bearer ')) return false;
    const given = Buffer.from(header.slice(7));
    const want = Buffer.from(token);
    return given.length === want.length && timingSafeEqual(given, want);
  }
}

function normalizeAddress(a: string): string {
  return a.startsWith('::ffff:') && net.isIPv4(a.slice(7)) ? a.slice(7) : a;
}

/** trusted_hosts entries: addresses or CIDR blocks, IPv4 or IPv6. */
export function buildTrustList(hosts: readonly string[]): net.BlockList {
  const list = new net.BlockList();
  for (const h of hosts) {
    const [addr, prefix] = h.split('/');
    const type = net.isIPv6(addr ?? '') ? 'ipv6' : net.isIPv4(addr ?? '') ? 'ipv4' : null;
    if (!addr || !type) throw new Error(`trusted_hosts: '${h}' is not an IP address or CIDR block`);
    if (prefix === undefined) list.addAddress(addr, type);
    else {
      const n = Number(prefix);
      if (!Number.isInteger(n) || n < 0 || n > (type === 'ipv4' ? 32 : 128)) throw new Error(`trusted_hosts: bad prefix length in '${h}'`);
      list.addSubnet(addr, n, type);
    }
  }
  return list;
}

function readBody(req: http.IncomingMessage, limit: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers['content-length'] ?? NaN);
    if (declared > limit) {
      req.resume();
      reject(new HttpError(413, 'body-too-large', `the body is ${declared} bytes; the limit is ${limit}`));
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > limit) {
        req.removeAllListeners('data');
        req.resume();
        reject(new HttpError(413, 'body-too-large', `the body is over the limit of ${limit} bytes`));
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}
