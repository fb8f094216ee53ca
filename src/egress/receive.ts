/**
 * A webhook receiver for testing egress webhooks, like `klev receive`: it
 * verifies every request and prints what it got.
 *
 * - Any path. Only POST.
 * - Signatures: a request with a `webhook-signature` header is verified with
 *   Standard Webhooks; one with `x-klev-signature` with klev's scheme; one
 *   with both (what sluice sends) must pass both. With neither it is
 *   rejected as `klev-not-signed`.
 * - `application/json` bodies are klev "message" payloads (GetOut:
 *   `{encoding, offset, time, key?, value?}`), printed as klev prints them:
 *       Offset: 0
 *        Time: 2023-09-23 17:42:07.24796 +0000 UTC
 *        Key: 
 *        Value: hello world
 *   `application/octet-stream` bodies are raw key/value payloads, printed as
 *   `Payload: <text>` and, when the request has one, ` Webhook-Id: <id>`.
 *   For klev-signed requests the content type must match exactly, as klev's
 *   validator demands; otherwise parameters such as `; charset=utf-8` are
 *   allowed.
 * - Accepted: 200 with an empty body. Rejected: a JSON `{code, message}`
 *   with 401 (signature or timestamp), 400 (malformed body), 405 (not POST),
 *   413 (body over 1 MiB) or 415 (other content types), and one line
 *   `rejected: <code>: <message>` on `err`. The receiver keeps serving.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { KLEV_SIGNATURE_HEADER, verifyKlev, verifyStandard, type VerifyResult } from './signature.js';

export const MAX_BODY_BYTES = 1024 * 1024;

export interface ReceiverOptions {
  /** The webhook secret (`ewhsec_…`, or `whsec_…` for Standard Webhooks senders). */
  secret: string;
  host: string;
  /** 0 picks a free port; `address.port` has the real one. */
  port: number;
  out: (line: string) => void;
  err: (line: string) => void;
  /** The clock in unix milliseconds (default Date.now). */
  now?: () => number;
  /** Accepted timestamp skew either way, in seconds; default 300. */
  toleranceSeconds?: number;
}

export interface RunningReceiver {
  server: http.Server;
  address: { host: string; port: number };
  /** `http://host:port` (IPv6 hosts in brackets). */
  url: string;
  close(): Promise<void>;
}

class Rejection {
  constructor(readonly status: number, readonly code: string, readonly message: string) {}
}

/** Go's `time.Time.String()` for a UTC time given in unix microseconds, e.g. `2023-09-23 17:42:07.24796 +0000 UTC`. */
export function formatGoTimeMicros(us: number): string {
  const seconds = Math.floor(us / 1e6);
  const micros = us - seconds * 1e6;
  const d = new Date(seconds * 1000);
  const p = (n: number, w = 2) => String(n).padStart(w, '0');
  const year = d.getUTCFullYear();
  const y = year < 0 ? `-${p(-year, 4)}` : p(year, 4);
  const frac = micros === 0 ? '' : `.${p(micros, 6).replace(/0+$/, '')}`;
  return `${y}-${p(d.getUTCMonth() + 1)}-${p(d.getUTCDate())} ${p(d.getUTCHours())}:${p(d.getUTCMinutes())}:${p(d.getUTCSeconds())}${frac} +0000 UTC`;
}

const BASE64_RE = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

function decodeField(name: 'key' | 'value', v: unknown, encoding: 'string' | 'base64'): Buffer | null {
  if (v === undefined || v === null) return null;
  if (typeof v !== 'string') throw new Rejection(400, `message-${name}-invalid`, `${name} must be a string`);
  if (encoding === 'string') return Buffer.from(v, 'utf8');
  if (!BASE64_RE.test(v)) throw new Rejection(400, `message-${name}-invalid`, `${name} is not valid base64`);
  return Buffer.from(v, 'base64');
}

/** Parse a klev GetOut body; throws a Rejection when it is malformed. */
function parseMessage(body: Buffer): { offset: number; time: number; key: Buffer | null; value: Buffer | null } {
  let m: unknown;
  try {
    m = JSON.parse(body.toString('utf8'));
  } catch (e) {
    throw new Rejection(400, 'message-json-invalid', `the body is not JSON: ${(e as Error).message}`);
  }
  if (typeof m !== 'object' || m === null || Array.isArray(m)) throw new Rejection(400, 'message-json-invalid', 'the body must be a JSON object');
  const o = m as Record<string, unknown>;
  if (o.encoding !== 'string' && o.encoding !== 'base64') {
    throw new Rejection(400, 'message-encoding-invalid', `encoding must be "string" or "base64", got ${JSON.stringify(o.encoding) ?? 'nothing'}`);
  }
  if (typeof o.offset !== 'number' || !Number.isSafeInteger(o.offset)) {
    throw new Rejection(400, 'message-offset-invalid', `offset must be an integer, got ${JSON.stringify(o.offset) ?? 'nothing'}`);
  }
  if (typeof o.time !== 'number' || !Number.isSafeInteger(o.time)) {
    throw new Rejection(400, 'message-time-invalid', `time must be an integer (unix microseconds), got ${JSON.stringify(o.time) ?? 'nothing'}`);
  }
  return { offset: o.offset, time: o.time, key: decodeField('key', o.key, o.encoding), value: decodeField('value', o.value, o.encoding) };
}

function one(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v.join(', ') : v;
}

export function startReceiver(opts: ReceiverOptions): Promise<RunningReceiver> {
  const now = opts.now ?? Date.now;

  const verify = (req: http.IncomingMessage, body: Buffer, payload: 'message' | 'value'): VerifyResult => {
    const nowSeconds = Math.floor(now() / 1000);
    const tolerance = { nowSeconds, toleranceSeconds: opts.toleranceSeconds };
    const klevHeader = one(req.headers[KLEV_SIGNATURE_HEADER]);
    const standard = req.headers['webhook-signature'] !== undefined;
    if (standard) {
      const r = verifyStandard(opts.secret, req.headers, body, tolerance);
      if (!r.ok || klevHeader === undefined) return r;
    }
    if (klevHeader === undefined && !standard) {
      return { ok: false, code: 'klev-not-signed', message: `the request has neither an ${KLEV_SIGNATURE_HEADER} nor a webhook-signature header` };
    }
    return verifyKlev(opts.secret, klevHeader, body, { ...tolerance, contentType: one(req.headers['content-type']), payload });
  };

  const handle = (req: http.IncomingMessage, body: Buffer): void => {
    const contentType = one(req.headers['content-type']) ?? '';
    const media = contentType.split(';')[0]!.trim().toLowerCase();
    const payload = media === 'application/json' ? 'message' : media === 'application/octet-stream' ? 'value' : undefined;
    if (payload === undefined) {
      throw new Rejection(415, 'content-type-unsupported', `content type must be application/json or application/octet-stream, got ${JSON.stringify(contentType)}`);
    }
    const v = verify(req, body, payload);
    if (!v.ok) throw new Rejection(v.code.includes('content-type') ? 415 : 401, v.code, v.message);
    if (payload === 'value') {
      const id = one(req.headers['webhook-id']);
      opts.out(`Payload: ${body.toString('utf8')}`);
      if (id !== undefined) opts.out(` Webhook-Id: ${id}`);
      return;
    }
    const m = parseMessage(body);
    opts.out(`Offset: ${m.offset}`);
    opts.out(` Time: ${formatGoTimeMicros(m.time)}`);
    opts.out(` Key: ${m.key?.toString('utf8') ?? ''}`);
    opts.out(` Value: ${m.value?.toString('utf8') ?? ''}`);
  };

  const reject = (res: http.ServerResponse, r: Rejection): void => {
    opts.err(`rejected: ${r.code}: ${r.message}`);
    const json = JSON.stringify({ code: r.code, message: r.message });
    res.writeHead(r.status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(json) });
    res.end(json);
  };

  const server = http.createServer((req, res) => {
    if (req.method !== 'POST') {
      req.resume();
      reject(res, new Rejection(405, 'method-not-allowed', `only POST is accepted, got ${req.method}`));
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let tooLarge = Number(req.headers['content-length'] ?? 0) > MAX_BODY_BYTES;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY_BYTES) tooLarge = true;
      if (!tooLarge) chunks.push(c);
    });
    req.on('error', () => undefined);
    req.on('end', () => {
      // The whole body is read (and an oversized one discarded) before the
      // reply, so the sender never sees a reset in the middle of its upload.
      if (tooLarge) {
        reject(res, new Rejection(413, 'body-too-large', `the body is larger than ${MAX_BODY_BYTES} bytes`));
        return;
      }
      try {
        handle(req, Buffer.concat(chunks));
      } catch (e) {
        reject(res, e instanceof Rejection ? e : new Rejection(400, 'bad-request', (e as Error).message));
        return;
      }
      res.writeHead(200, { 'content-length': 0 });
      res.end();
    });
  });
  server.requestTimeout = 60_000;

  return new Promise((resolve, rejectListen) => {
    server.once('error', rejectListen);
    server.listen(opts.port, opts.host, () => {
      server.off('error', rejectListen);
      const port = (server.address() as AddressInfo).port;
      const hostInUrl = opts.host.includes(':') ? `[${opts.host}]` : opts.host;
      resolve({
        server,
        address: { host: opts.host, port },
        url: `http://${hostInUrl}:${port}`,
        close: () =>
          new Promise<void>((done) => {
            server.close(() => done());
            server.closeAllConnections();
          }),
      });
    });
  });
}
