/**
 * `kumo.uuid.*` (kumomta-facts §10): UUID v1/v4/v6/v7 and parsing, returning
 * Uuid (`.bytes`, `.hyphenated`, `.simple`, `.braced`, `.urn`).
 */
import { randomBytes } from 'node:crypto';
import { lua } from 'fengari';
import type { LuaVM } from '../vm.js';
import { addSubModule, checkString, UserdataClass, type HostFunction } from '../host.js';
import { pushString, toJsString, type LuaState } from '../lstr.js';

/** 100 ns intervals between 1582-10-15 and 1970-01-01. */
const GREGORIAN_OFFSET = 0x01b21dd213814000n;
const NODE_ID = (() => {
  const b = randomBytes(6);
  b[0] = (b[0] as number) | 0x01; // multicast bit: a random node id, not a MAC (RFC 9562 §6.10)
  return b;
})();
const CLOCK_SEQ = randomBytes(2).readUInt16BE(0) & 0x3fff;
let lastGregorian = 0n;
let lastV7Ms = 0;
let v7Counter = 0;

/** A strictly increasing 60-bit Gregorian timestamp for v1 and v6. */
function gregorianNow(): bigint {
  let t = BigInt(Date.now()) * 10000n + GREGORIAN_OFFSET;
  if (t <= lastGregorian) t = lastGregorian + 1n;
  lastGregorian = t;
  return t;
}

function clockSeqAndNode(b: Buffer): void {
  b.writeUInt16BE(0x8000 | CLOCK_SEQ, 8);
  NODE_ID.copy(b, 10);
}

export function uuidV1(): Buffer {
  const t = gregorianNow();
  const b = Buffer.alloc(16);
  b.writeUInt32BE(Number(t & 0xffffffffn), 0);
  b.writeUInt16BE(Number((t >> 32n) & 0xffffn), 4);
  b.writeUInt16BE(0x1000 | Number((t >> 48n) & 0x0fffn), 6);
  clockSeqAndNode(b);
  return b;
}

export function uuidV6(): Buffer {
  const t = gregorianNow();
  const b = Buffer.alloc(16);
  b.writeUInt32BE(Number((t >> 28n) & 0xffffffffn), 0);
  b.writeUInt16BE(Number((t >> 12n) & 0xffffn), 4);
  b.writeUInt16BE(0x6000 | Number(t & 0x0fffn), 6);
  clockSeqAndNode(b);
  return b;
}

export function uuidV4(): Buffer {
  const b = randomBytes(16);
  b[6] = ((b[6] as number) & 0x0f) | 0x40;
  b[8] = ((b[8] as number) & 0x3f) | 0x80;
  return b;
}

/** Unix milliseconds, then a 12-bit counter so that ids made in one millisecond still sort (RFC 9562 method 1). */
export function uuidV7(): Buffer {
  let ms = Date.now();
  if (ms > lastV7Ms) {
    lastV7Ms = ms;
    v7Counter = randomBytes(2).readUInt16BE(0) & 0x7ff; // leave room to count up
  } else {
    ms = lastV7Ms;
    if (++v7Counter > 0xfff) {
      ms = ++lastV7Ms;
      v7Counter = 0;
    }
  }
  const b = randomBytes(16);
  b.writeUIntBE(ms, 0, 6);
  b.writeUInt16BE(0x7000 | v7Counter, 6);
  b[8] = ((b[8] as number) & 0x3f) | 0x80;
  return b;
}

/** Parse the hyphenated, simple, braced and urn forms (hex digits in either case). */
export function parseUuid(s: string): Buffer {
  let body = s;
  if (body.startsWith('urn:uuid:')) body = body.slice(9);
  else if (body.startsWith('{') && body.endsWith('}')) body = body.slice(1, -1);
  let hex: string | null = null;
  if (/^[0-9a-fA-F]{32}$/.test(body)) hex = body;
  else if (/^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/.test(body)) hex = body.replace(/-/g, '');
  if (hex === null) {
    throw new Error(`invalid UUID ${JSON.stringify(s)}: expected 32 hex digits, optionally as 8-4-4-4-12 groups, in braces or after urn:uuid:`);
  }
  return Buffer.from(hex, 'hex');
}

export function uuidHyphenated(b: Uint8Array): string {
  const h = Buffer.from(b).toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

export function openKumoUuid(_vm: LuaVM, L: LuaState): void {
  const cls: UserdataClass<Buffer> = new UserdataClass<Buffer>(L, 'Uuid', {}, {
    __tostring: (L2) => {
      pushString(L2, uuidHyphenated(cls.check(L2, 1, 'Uuid')));
      return 1;
    },
  });
  cls.setIndex(L, (L2) => {
    const b = cls.check(L2, 1, 'Uuid');
    switch (toJsString(L2, 2)) {
      case 'bytes':
        pushString(L2, new Uint8Array(b));
        break;
      case 'hyphenated':
        pushString(L2, uuidHyphenated(b));
        break;
      case 'simple':
        pushString(L2, b.toString('hex'));
        break;
      case 'braced':
        pushString(L2, `{${uuidHyphenated(b)}}`);
        break;
      case 'urn':
        pushString(L2, `urn:uuid:${uuidHyphenated(b)}`);
        break;
      default:
        lua.lua_pushnil(L2);
    }
    return 1;
  });
  const make = (gen: () => Buffer): HostFunction => (L2) => {
    cls.push(L2, gen());
    return 1;
  };
  addSubModule(L, 'uuid', {
    new_v1: make(uuidV1),
    new_v4: make(uuidV4),
    new_v6: make(uuidV6),
    new_v7: make(uuidV7),
    parse: (L2) => {
      cls.push(L2, parseUuid(checkString(L2, 1, 'kumo.uuid.parse')));
      return 1;
    },
  });
}
