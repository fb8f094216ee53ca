/**
 * Webhook secrets and the two signature schemes every egress request carries.
 *
 * klev (`X-Klev-Signature: t=<unix s>;v1=<hex>[;v1=<hex>…]`):
 *   v1 = hex(HMAC-SHA256(key = the whole secret string as UTF-8, prefix
 *   included; message = `${t}.${body}`)). One `v1` per valid secret, so a
 *   receiver holding either the new or the old secret verifies during a
 *   rotation. Verification follows klev's `ingress_validate` step by step,
 *   plus a future-skew check klev lacks.
 *
 * Standard Webhooks v1 (`webhook-id`, `webhook-timestamp`,
 *   `webhook-signature: v1,<base64> [v1,<base64>…]`):
 *   HMAC-SHA256 over `${id}.${t}.${body}`. The key depends on the secret's
 *   form:
 *   - `whsec_<base64>` (the spec's format): the base64-decoded suffix;
 *   - anything else, including our `ewhsec_…` secrets: the raw UTF-8 bytes
 *     of the whole string — the reference libraries' "raw" key mode. This
 *     lets one `ewhsec_` secret sign both schemes; a Standard Webhooks
 *     library verifies it when given the secret as a raw key (e.g.
 *     `new Webhook(secret, { format: 'raw' })` in the `standardwebhooks`
 *     npm package), not when given it as a `whsec_` string.
 *
 * Both verifiers compare in constant time and never throw on bad input.
 */
import crypto from 'node:crypto';

export const KLEV_SIGNATURE_HEADER = 'x-klev-signature';
export const SECRET_PREFIX = 'ewhsec_';
export const DEFAULT_TOLERANCE_SECONDS = 300;

const ALPHANUMERICS = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
const SECRET_SUFFIX_LENGTH = 33;

/** `ewhsec_` + 33 alphanumerics from the CSPRNG (rejection sampling: no modulo bias). */
export function newSecret(): string {
  // 248 = 4 × 62: bytes below it map evenly onto the alphabet; the rest are drawn again.
  const limit = 256 - (256 % ALPHANUMERICS.length);
  let out = SECRET_PREFIX;
  while (out.length < SECRET_PREFIX.length + SECRET_SUFFIX_LENGTH) {
    for (const b of crypto.randomBytes(48)) {
      if (b >= limit) continue;
      out += ALPHANUMERICS[b % ALPHANUMERICS.length]!;
      if (out.length === SECRET_PREFIX.length + SECRET_SUFFIX_LENGTH) break;
    }
  }
  return out;
}

export type VerifyResult = { ok: true } | { ok: false; code: string; message: string };

const fail = (code: string, message: string): VerifyResult => ({ ok: false, code, message });

function assertTimestamp(tSeconds: number): void {
  if (!Number.isSafeInteger(tSeconds)) throw new TypeError(`a signature timestamp must be an integer number of seconds, not ${tSeconds}`);
}

function hmac(key: string | Buffer, parts: (string | Buffer)[]): Buffer {
  const h = crypto.createHmac('sha256', key);
  for (const p of parts) h.update(p);
  return h.digest();
}

function nowSecondsOf(opts: { nowSeconds?: number }): number {
  return Math.floor(opts.nowSeconds ?? Date.now() / 1000);
}

// ---------------------------------------------------------------- klev

/** `t=<t>;v1=<hex>[;v1=<hex>…]`, one `v1` per secret, in order. */
export function klevSignatureHeader(secrets: string[], tSeconds: number, body: Buffer | string): string {
  assertTimestamp(tSeconds);
  if (secrets.length === 0) throw new TypeError('klevSignatureHeader needs at least one secret');
  const t = String(tSeconds);
  return [`t=${t}`, ...secrets.map((s) => `v1=${hmac(s, [`${t}.`, body]).toString('hex')}`)].join(';');
}

export interface KlevVerifyOptions {
  /** The current unix time in seconds (default: the clock). */
  nowSeconds?: number;
  /** How far `t` may lie in the past, and in the future; default 300 (klev's 5 minutes). */
  toleranceSeconds?: number;
  /** The request's Content-Type header, compared as klev does (exact string) when `payload` is given. */
  contentType?: string;
  /** The webhook's payload kind: `message` needs `application/json`, `key`/`value` need `application/octet-stream`. Omit to skip the check. */
  payload?: 'message' | 'key' | 'value';
}

const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;
const HEX_RE = /^(?:[0-9a-fA-F]{2})*$/;

/**
 * Verify `X-Klev-Signature` as klev's `ingress_validate` does:
 * 1. with `payload` given, the content type must be exactly
 *    `application/json` (message) or `application/octet-stream` (key/value);
 * 2. a missing or empty header is `klev-not-signed`;
 * 3. the header splits on `;`, each part at its first `=` (parts without one,
 *    and unknown keys, are skipped; keys are not trimmed);
 *    `t` must be an int64 (`klev-timestamp-invalid`), no older than the
 *    tolerance (`klev-timestamp-expired`) and — our addition — no further
 *    than the tolerance in the future (`klev-timestamp-future`); every `t`
 *    is checked and the last one wins; each `v1` is hex-decoded, and values
 *    that do not decode are skipped;
 * 4. no `t`: `klev-signature-time-missing`; no `v1`: `klev-signature-missing`;
 * 5. HMAC-SHA256(secret, <t as received> + "." + body) must equal some `v1`
 *    (constant-time), else `klev-signature-mismatch`.
 * The body must be the raw bytes received, never re-serialized JSON.
 */
export function verifyKlev(secret: string, header: string | undefined, body: Buffer | string, opts: KlevVerifyOptions = {}): VerifyResult {
  const tolerance = opts.toleranceSeconds ?? DEFAULT_TOLERANCE_SECONDS;
  if (opts.payload === 'message' && opts.contentType !== 'application/json') {
    return fail('klev-content-type-json-invalid', `content type must be application/json, got ${JSON.stringify(opts.contentType ?? '')}`);
  }
  if ((opts.payload === 'key' || opts.payload === 'value') && opts.contentType !== 'application/octet-stream') {
    return fail('klev-content-type-octet-invalid', `content type must be application/octet-stream, got ${JSON.stringify(opts.contentType ?? '')}`);
  }
  if (header === undefined || header === '') return fail('klev-not-signed', `the ${KLEV_SIGNATURE_HEADER} header is missing`);

  const now = BigInt(nowSecondsOf(opts));
  let t: string | undefined;
  const signatures: Buffer[] = [];
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq < 0) continue;
    const key = part.slice(0, eq);
    const value = part.slice(eq + 1);
    if (key === 't') {
      if (!/^[+-]?[0-9]+$/.test(value)) return fail('klev-timestamp-invalid', `signature timestamp ${JSON.stringify(value)} is not an integer`);
      const ts = BigInt(value);
      if (ts < INT64_MIN || ts > INT64_MAX) return fail('klev-timestamp-invalid', `signature timestamp ${value} is out of range`);
      if (now - ts > BigInt(tolerance)) return fail('klev-timestamp-expired', `signature timestamp ${value} is more than ${tolerance} s old`);
      if (ts - now > BigInt(tolerance)) return fail('klev-timestamp-future', `signature timestamp ${value} is more than ${tolerance} s in the future`);
      t = value;
    } else if (key === 'v1') {
      if (HEX_RE.test(value)) signatures.push(Buffer.from(value, 'hex'));
    }
  }
  if (t === undefined) return fail('klev-signature-time-missing', `the ${KLEV_SIGNATURE_HEADER} header has no t= timestamp`);
  if (signatures.length === 0) return fail('klev-signature-missing', `the ${KLEV_SIGNATURE_HEADER} header has no v1= signature`);

  const expected = hmac(secret, [`${t}.`, body]);
  for (const sig of signatures) {
    if (sig.length === expected.length && crypto.timingSafeEqual(sig, expected)) return { ok: true };
  }
  return fail('klev-signature-mismatch', 'no v1 signature matches the secret and body');
}

// ---------------------------------------------------------------- Standard Webhooks

/**
 * The HMAC key for a secret: `whsec_<base64>` → the decoded bytes (the
 * spec's format); anything else (our `ewhsec_…`) → the whole string's UTF-8
 * bytes (the reference libraries' "raw" mode). See the file comment.
 */
export function standardWebhookKey(secret: string): Buffer {
  return secret.startsWith('whsec_') ? Buffer.from(secret.slice('whsec_'.length), 'base64') : Buffer.from(secret, 'utf8');
}

function standardSignature(key: Buffer, id: string, t: string, body: Buffer | string): string {
  return hmac(key, [`${id}.${t}.`, body]).toString('base64');
}

export interface StandardWebhookHeaders {
  'webhook-id': string;
  'webhook-timestamp': string;
  'webhook-signature': string;
}

/** The three Standard Webhooks headers; one `v1,<base64>` entry per secret, space-separated. */
export function standardWebhookHeaders(id: string, secrets: string[], tSeconds: number, body: Buffer | string): StandardWebhookHeaders {
  assertTimestamp(tSeconds);
  if (id === '' || id.includes('.')) throw new TypeError(`a webhook-id must be non-empty and contain no '.': ${JSON.stringify(id)}`);
  if (secrets.length === 0) throw new TypeError('standardWebhookHeaders needs at least one secret');
  const t = String(tSeconds);
  return {
    'webhook-id': id,
    'webhook-timestamp': t,
    'webhook-signature': secrets.map((s) => `v1,${standardSignature(standardWebhookKey(s), id, t, body)}`).join(' '),
  };
}

export interface StandardVerifyOptions {
  /** The current unix time in seconds (default: the clock). */
  nowSeconds?: number;
  /** How far `webhook-timestamp` may lie from now, either way; default 300. */
  toleranceSeconds?: number;
}

export type HeaderBag = Record<string, string | string[] | undefined>;

function header(headers: HeaderBag, name: string): string | undefined {
  let v = headers[name];
  if (v === undefined) {
    for (const [k, x] of Object.entries(headers)) if (k.toLowerCase() === name) v = x;
  }
  return Array.isArray(v) ? v.join(' ') : v;
}

/**
 * Verify Standard Webhooks v1 headers: all three present
 * (`webhook-headers-missing`), an integer timestamp
 * (`webhook-timestamp-invalid`) within ± the tolerance
 * (`webhook-timestamp-expired` / `webhook-timestamp-future`), at least one
 * `v1,` entry (`webhook-signature-missing`; other versions are ignored) and
 * one that matches in constant time (`webhook-signature-mismatch`).
 * Header names are matched case-insensitively.
 */
export function verifyStandard(secret: string, headers: HeaderBag, body: Buffer | string, opts: StandardVerifyOptions = {}): VerifyResult {
  const tolerance = opts.toleranceSeconds ?? DEFAULT_TOLERANCE_SECONDS;
  const id = header(headers, 'webhook-id');
  const t = header(headers, 'webhook-timestamp');
  const sigs = header(headers, 'webhook-signature');
  const missing = [['webhook-id', id], ['webhook-timestamp', t], ['webhook-signature', sigs]].filter(([, v]) => !v).map(([n]) => n);
  if (missing.length > 0 || id === undefined || t === undefined || sigs === undefined) {
    return fail('webhook-headers-missing', `missing header${missing.length > 1 ? 's' : ''}: ${missing.join(', ')}`);
  }
  if (!/^[0-9]{1,15}$/.test(t)) return fail('webhook-timestamp-invalid', `webhook-timestamp ${JSON.stringify(t)} is not an integer number of seconds`);
  const ts = Number(t);
  const now = nowSecondsOf(opts);
  if (now - ts > tolerance) return fail('webhook-timestamp-expired', `webhook-timestamp ${t} is more than ${tolerance} s old`);
  if (ts - now > tolerance) return fail('webhook-timestamp-future', `webhook-timestamp ${t} is more than ${tolerance} s in the future`);

  const given: string[] = [];
  for (const entry of sigs.split(' ')) {
    const comma = entry.indexOf(',');
    if (comma < 0 || entry.slice(0, comma) !== 'v1') continue;
    given.push(entry.slice(comma + 1));
  }
  if (given.length === 0) return fail('webhook-signature-missing', 'webhook-signature has no v1 entry');

  // Compare the base64 text, as the reference libraries do: Node's base64
  // decoder is lenient, so decoding first would accept altered spellings.
  const expected = Buffer.from(standardSignature(standardWebhookKey(secret), id, t, body));
  for (const g of given) {
    const b = Buffer.from(g);
    if (b.length === expected.length && crypto.timingSafeEqual(b, expected)) return { ok: true };
  }
  return fail('webhook-signature-mismatch', 'no v1 signature matches the secret and body');
}
