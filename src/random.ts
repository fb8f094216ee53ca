/**
 * Random hex for ids (message ids, record ids, file names), drawn from a
 * pooled buffer: one `randomFillSync` call fills 4 KiB, instead of one
 * system call per id. The bytes come from the same CSPRNG as `randomBytes`.
 */
import { randomFillSync } from 'node:crypto';

const POOL_BYTES = 4096;
const pool = Buffer.allocUnsafe(POOL_BYTES);
let offset = POOL_BYTES;

/** `bytes` random bytes (1–64) as 2 × `bytes` lowercase hex digits. */
export function randomHex(bytes: number): string {
  if (!(Number.isInteger(bytes) && bytes >= 1 && bytes <= 64)) throw new RangeError(`randomHex: bytes must be an integer from 1 to 64, got ${bytes}`);
  if (offset + bytes > POOL_BYTES) {
    randomFillSync(pool);
    offset = 0;
  }
  const hex = pool.toString('hex', offset, offset + bytes);
  offset += bytes;
  return hex;
}
