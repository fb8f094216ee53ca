/**
 * Template values with minijinja's semantics: kinds, truthiness, how a value
 * prints, equality and ordering, item and attribute lookup, iteration,
 * conversions and the binary operators. Failures throw OpError (errors.ts).
 */
import { invalid, undefinedError } from './errors.js';

export type Obj = Record<string, unknown>;

export const hasOwn = Object.hasOwn;

export function isMap(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** minijinja's kind names, used in error messages. */
export function kindOf(v: unknown): string {
  if (v === undefined) return 'undefined';
  if (v === null) return 'none';
  switch (typeof v) {
    case 'boolean':
      return 'bool';
    case 'number':
    case 'bigint':
      return 'number';
    case 'string':
      return 'string';
    default:
      return Array.isArray(v) ? 'sequence' : 'map';
  }
}

/** Keys of a map value; keys holding JS `undefined` are absent (as in JSON). */
export function mapKeys(o: Obj): string[] {
  const keys = Object.keys(o);
  for (const k of keys) if (o[k] === undefined) return keys.filter((x) => o[x] !== undefined);
  return keys;
}

export function truthy(v: unknown): boolean {
  if (v === undefined || v === null) return false;
  switch (typeof v) {
    case 'boolean':
      return v;
    case 'number':
      return v !== 0 && !Number.isNaN(v);
    case 'bigint':
      return v !== 0n;
    case 'string':
      return v.length > 0;
    default:
      return Array.isArray(v) ? v.length > 0 : mapKeys(v as Obj).length > 0;
  }
}

function formatNumber(n: number): string {
  if (Number.isNaN(n)) return 'NaN';
  if (!Number.isFinite(n)) return n > 0 ? 'inf' : '-inf';
  if (Number.isInteger(n) && Math.abs(n) >= 1e21) return BigInt(n).toString();
  return String(n);
}

/** How `{{ v }}` prints a value (minijinja's Display). */
export function displayValue(v: unknown): string {
  switch (typeof v) {
    case 'string':
      return v;
    case 'undefined':
      return '';
    case 'number':
      return formatNumber(v);
    case 'boolean':
      return v ? 'true' : 'false';
    case 'bigint':
      return v.toString();
    default:
      return v === null ? 'none' : debugRepr(v);
  }
}

/** Rust's `{:?}` for strings: double quotes, backslash escapes. */
function debugString(s: string): string {
  let out = '"';
  for (const ch of s) {
    const c = ch.codePointAt(0) as number;
    if (ch === '"') out += '\\"';
    else if (ch === '\\') out += '\\\\';
    else if (ch === '\n') out += '\\n';
    else if (ch === '\r') out += '\\r';
    else if (ch === '\t') out += '\\t';
    else if (c === 0) out += '\\0';
    else if (c < 0x20 || c === 0x7f) out += `\\u{${c.toString(16)}}`;
    else out += ch;
  }
  return out + '"';
}

/** How minijinja prints a value nested in a list or map (`["a", 1, none]`). */
function debugRepr(v: unknown): string {
  if (v === undefined) return 'undefined';
  if (v === null) return 'none';
  if (typeof v === 'string') return debugString(v);
  if (Array.isArray(v)) return `[${v.map(debugRepr).join(', ')}]`;
  if (typeof v === 'object') {
    const o = v as Obj;
    return `{${mapKeys(o).map((k) => `${debugString(k)}: ${debugRepr(o[k])}`).join(', ')}}`;
  }
  return displayValue(v);
}

export function valueEq(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (Array.isArray(a)) {
    if (!Array.isArray(b) || a.length !== b.length) return false;
    for (let i = 0; i < a.length; i++) if (!valueEq(a[i], b[i])) return false;
    return true;
  }
  if (isMap(a) && isMap(b)) {
    const ka = mapKeys(a);
    const kb = mapKeys(b);
    if (ka.length !== kb.length) return false;
    for (const k of ka) if (!hasOwn(b, k) || !valueEq(a[k], b[k])) return false;
    return true;
  }
  if (typeof a === 'bigint' || typeof b === 'bigint') {
    return (typeof a === 'number' || typeof a === 'bigint') && (typeof b === 'number' || typeof b === 'bigint') && Number(a) === Number(b);
  }
  return false;
}

const KIND_RANK: Record<string, number> = { undefined: 0, none: 1, bool: 2, number: 3, string: 4, sequence: 5, map: 6 };

export function asNumber(v: unknown): number | undefined {
  if (typeof v === 'number') return v;
  if (typeof v === 'bigint') return Number(v);
  if (typeof v === 'boolean') return v ? 1 : 0;
  return undefined;
}

/** A total order in the manner of minijinja's Value ordering. */
export function valueCmp(a: unknown, b: unknown): number {
  const na = asNumber(a);
  const nb = asNumber(b);
  if (na !== undefined && nb !== undefined) return na < nb ? -1 : na > nb ? 1 : 0;
  if (typeof a === 'string' && typeof b === 'string') return a < b ? -1 : a > b ? 1 : 0;
  if (Array.isArray(a) && Array.isArray(b)) {
    for (let i = 0; i < Math.min(a.length, b.length); i++) {
      const c = valueCmp(a[i], b[i]);
      if (c !== 0) return c;
    }
    return a.length - b.length;
  }
  return (KIND_RANK[kindOf(a)] as number) - (KIND_RANK[kindOf(b)] as number);
}

export function contains(container: unknown, item: unknown): boolean {
  if (typeof container === 'string') {
    if (typeof item !== 'string') throw invalid(`cannot perform a containment check on a string with a ${kindOf(item)}`);
    return container.includes(item);
  }
  if (Array.isArray(container)) return container.some((x) => valueEq(x, item));
  if (isMap(container)) return (typeof item === 'string' || typeof item === 'number') && hasOwn(container, String(item)) && container[String(item)] !== undefined;
  if (container === undefined) return false;
  throw invalid(`cannot perform a containment check on this value (${kindOf(container)})`);
}

/** `a[key]` / `a.key`. Looking into undefined fails; into none gives undefined. */
export function getItem(a: unknown, key: unknown): unknown {
  if (a === undefined) throw undefinedError();
  if (a === null) return undefined;
  if (Array.isArray(a) || typeof a === 'string') {
    let i: number | undefined = typeof key === 'number' ? key : typeof key === 'bigint' ? Number(key) : undefined;
    if (i === undefined || !Number.isInteger(i)) return undefined;
    if (typeof a === 'string') {
      const chars = [...a];
      if (i < 0) i += chars.length;
      return chars[i];
    }
    if (i < 0) i += a.length;
    return a[i];
  }
  if (typeof a === 'object') {
    const k = typeof key === 'string' ? key : typeof key === 'number' || typeof key === 'bigint' || typeof key === 'boolean' ? String(key) : undefined;
    if (k === undefined) return undefined;
    return hasOwn(a, k) ? (a as Obj)[k] : undefined;
  }
  return undefined;
}

export function getAttr(a: unknown, name: string): unknown {
  if (a === undefined) throw undefinedError();
  if (Array.isArray(a)) return /^\d+$/.test(name) ? a[Number(name)] : undefined;
  if (typeof a === 'string') return undefined;
  return getItem(a, name);
}

export function iterate(v: unknown): unknown[] {
  if (v === undefined) return [];
  if (Array.isArray(v)) return v;
  if (typeof v === 'string') return [...v];
  if (isMap(v)) return mapKeys(v);
  throw invalid(`value of type ${kindOf(v)} is not iterable`);
}

/** A string argument: lenient undefined reads as "", other values print. */
export function str(v: unknown): string {
  return typeof v === 'string' ? v : displayValue(v);
}

export function toInt(v: unknown): number {
  if (v === undefined || v === null) return 0;
  if (typeof v === 'boolean') return v ? 1 : 0;
  if (typeof v === 'number') return Math.trunc(v);
  if (typeof v === 'bigint') return Number(v);
  if (typeof v === 'string') {
    const s = v.trim();
    if (/^[+-]?\d+$/.test(s)) return Number(s);
    const f = Number(s);
    if (s !== '' && Number.isFinite(f)) return Math.trunc(f);
    throw invalid(`invalid digit found in string "${v}"`);
  }
  throw invalid(`cannot convert ${kindOf(v)} to integer`);
}

export function toFloat(v: unknown): number {
  if (v === undefined || v === null) return 0;
  if (typeof v === 'boolean') return v ? 1 : 0;
  if (typeof v === 'number') return v;
  if (typeof v === 'bigint') return Number(v);
  if (typeof v === 'string') {
    const f = Number(v.trim());
    if (v.trim() !== '' && !Number.isNaN(f)) return f;
    throw invalid(`invalid float literal "${v}"`);
  }
  throw invalid(`cannot convert ${kindOf(v)} to float`);
}

/** minijinja's tojson: serde_json output made HTML-safe (`<`, `>`, `&`, `'` as \u escapes). */
export function toJson(v: unknown, indent?: number): string {
  const json = JSON.stringify(v === undefined ? null : v, (_k, x: unknown) => (typeof x === 'bigint' ? Number(x) : x), indent) ?? 'null';
  return json.replace(/[<>&']/g, (c) => `\\u00${c.charCodeAt(0).toString(16)}`);
}

export function htmlEscape(s: string): string {
  return s.replace(/[<>&"'/]/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;', "'": '&#x27;', '/': '&#x2f;' })[c] as string);
}

function numberOp(op: string, a: unknown, b: unknown): [number, number] {
  const x = asNumber(a);
  const y = asNumber(b);
  if (x === undefined || y === undefined) throw invalid(`tried to use ${op} operator on unsupported types ${kindOf(a)} and ${kindOf(b)}`);
  return [x, y];
}

function add(a: unknown, b: unknown): unknown {
  if (typeof a === 'string' && typeof b === 'string') return a + b;
  if (Array.isArray(a) && Array.isArray(b)) return [...a, ...b];
  const [x, y] = numberOp('+', a, b);
  return x + y;
}

function pyMod(x: number, y: number): number {
  const r = x % y;
  return r !== 0 && r < 0 !== y < 0 ? r + y : r;
}

export function binaryOp(op: string, a: unknown, b: unknown): unknown {
  switch (op) {
    case '+':
      return add(a, b);
    case '~':
      return displayValue(a) + displayValue(b);
    case '==':
      return valueEq(a, b);
    case '!=':
      return !valueEq(a, b);
    case '<':
      return valueCmp(a, b) < 0;
    case '<=':
      return valueCmp(a, b) <= 0;
    case '>':
      return valueCmp(a, b) > 0;
    case '>=':
      return valueCmp(a, b) >= 0;
    case 'in':
      return contains(b, a);
    case 'not in':
      return !contains(b, a);
    case '*': {
      if (typeof a === 'string' && typeof b === 'number') return a.repeat(Math.max(0, Math.trunc(b)));
      const [x, y] = numberOp(op, a, b);
      return x * y;
    }
    case '-': {
      const [x, y] = numberOp(op, a, b);
      return x - y;
    }
    case '/': {
      const [x, y] = numberOp(op, a, b);
      return x / y;
    }
    case '//': {
      const [x, y] = numberOp(op, a, b);
      if (y === 0) throw invalid('tried to use // operator on unsupported types number and number');
      return Math.floor(x / y);
    }
    case '%': {
      const [x, y] = numberOp(op, a, b);
      if (y === 0) throw invalid('tried to use % operator on unsupported types number and number');
      return pyMod(x, y);
    }
    case '**': {
      const [x, y] = numberOp(op, a, b);
      return x ** y;
    }
    default:
      throw invalid(`unknown operator ${op}`);
  }
}
