/**
 * KSUIDs in segmentio's format, as klev uses them for resource ids
 * (`log_…`, `ewh_…`): 20 bytes — a 4-byte big-endian timestamp in seconds
 * since the KSUID epoch (1 400 000 000 = 2014-05-13T16:53:20Z) followed by
 * 16 random bytes — base62-encoded (alphabet 0-9A-Za-z) to exactly 27
 * characters, left-padded with '0'. The alphabet is in ASCII order, so ids
 * sort by creation second as plain strings.
 */
import crypto from 'node:crypto';

export const KSUID_EPOCH_SECONDS = 1_400_000_000;
export const KSUID_LENGTH = 27;

const ALPHABET = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
const PAYLOAD_BYTES = 16;
const TOTAL_BYTES = 20;
/** 2^160 − 1 encodes as this; anything larger is not a KSUID. */
const MAX_KSUID = 'aWgEPTl1tmebfsQzFP4bxwgy80V';
const KSUID_RE = /^[0-9A-Za-z]{27}$/;

function encodeBase62(bytes: Buffer): string {
  let n = BigInt(`0x${bytes.toString('hex')}`);
  let out = '';
  while (n > 0n) {
    out = ALPHABET[Number(n % 62n)]! + out;
    n /= 62n;
  }
  return out.padStart(KSUID_LENGTH, '0');
}

function decodeBase62(s: string): bigint {
  let n = 0n;
  for (const ch of s) n = n * 62n + BigInt(ALPHABET.indexOf(ch));
  return n;
}

/** A new KSUID; `now` is unix milliseconds (default: the clock). */
export function newKsuid(now: number = Date.now()): string {
  const seconds = Math.floor(now / 1000) - KSUID_EPOCH_SECONDS;
  if (!Number.isFinite(seconds) || seconds < 0 || seconds > 0xffff_ffff) {
    throw new RangeError(`cannot make a KSUID for time ${now}: outside the KSUID range (2014-05-13 to 2150-06-19)`);
  }
  const bytes = Buffer.alloc(TOTAL_BYTES);
  bytes.writeUInt32BE(seconds, 0);
  crypto.randomBytes(PAYLOAD_BYTES).copy(bytes, 4);
  return encodeBase62(bytes);
}

/** Whether `s` is a well-formed KSUID: 27 base62 characters, at most 2^160 − 1. */
export function isKsuid(s: string): boolean {
  return KSUID_RE.test(s) && s <= MAX_KSUID;
}

/** The creation time of a KSUID, in unix milliseconds (whole seconds). Throws on a malformed id. */
export function ksuidTime(s: string): number {
  if (!isKsuid(s)) throw new TypeError(`not a KSUID (27 base62 characters): ${JSON.stringify(s)}`);
  const seconds = Number(decodeBase62(s) >> BigInt(PAYLOAD_BYTES * 8));
  return (seconds + KSUID_EPOCH_SECONDS) * 1000;
}

/** `<prefix>_<ksuid>`, e.g. `prefixedId('log')` → `log_2VnvpTOoNFQRf0G9peK1zKlfhlf`. */
export function prefixedId(prefix: string, now?: number): string {
  return `${prefix}_${newKsuid(now)}`;
}

/**
 * Whether `s` is `<prefix>_` followed by exactly 27 ASCII alphanumerics —
 * the check klev's client makes on ids.
 */
export function isPrefixedId(s: string, prefix: string): boolean {
  return typeof s === 'string' && s.startsWith(`${prefix}_`) && KSUID_RE.test(s.slice(prefix.length + 1));
}
