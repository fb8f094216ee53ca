/**
 * A small minijinja-compatible template engine for `per_record.template`
 * (kumomta-facts §3.2, §3.4). KumoMTA renders a record body with minijinja:
 * the record's fields are the template variables and the global
 * `log_record` holds the whole record.
 *
 * Supported (minijinja semantics unless noted):
 * - `{{ expr }}`, `{% if/elif/else/endif %}`, `{% for [k, v] in xs [if c] %}
 *   ... {% else %} ... {% endfor %}` with `loop.index` & co, `{% set %}`
 *   (also the block form), `{% raw %}`, `{# comments #}`, whitespace
 *   control `{{-`, `-}}`, `{%-`, `-%}`, `{#-`, `-#}` (`+` is accepted and a
 *   no-op, as trim_blocks/lstrip_blocks are off).
 * - A single trailing newline of the source is dropped (minijinja's
 *   keep_trailing_newline=false default); KumoMTA then appends `\n`.
 * - Expressions: variables, `a.b`, `a['b']`, `a[0]`, `a[-1]`, string / number /
 *   true / false / none literals, lists, maps, `x if c else y`, `and`, `or`,
 *   `not`, `==`, `!=`, `<`, `<=`, `>`, `>=`, `in`, `not in`, `~`, `+`, `-`,
 *   `*`, `/`, `//`, `%`, `**`, tests `is [not] defined|undefined|none|...`,
 *   a few Python-style methods (`s.upper()`, `m.items()`, ...) and `range()`.
 * - Filters: tojson, upper, lower, default/d, length/count, join, trim,
 *   replace, string, int, float, abs, round, first, last, items, dictsort,
 *   list, reverse, capitalize, title, split, bool, attr, safe, escape/e.
 * - Lenient undefined (minijinja's default): an undefined variable prints as
 *   `""` and iterates as empty; looking up an attribute *of* an undefined
 *   value is an error. `none` prints as `none`, booleans as `true`/`false`.
 *
 * Unknown filters, tests and functions are reported when the template is
 * compiled (minijinja reports some of them only at render time), so a typo
 * fails `configure_log_hook` instead of every record.
 *
 * Known differences: JS has one number type, so an integral float prints
 * without `.0` (`{{ 4 / 2 }}` is `2`, minijinja prints `2.0`); map key
 * order is the record's field order (what `{{ log_record | tojson }}` is
 * documented to reproduce); minijinja-contrib and KumoMTA's extra filters
 * (`normalize_smtp_response`, `datetimeformat`, ...) are not provided.
 */

import type { JsonLogRecord } from './record.js';

// ---------------------------------------------------------------- errors

export class TemplateError extends Error {
  constructor(
    /** `syntax error`, `undefined value`, `invalid operation`, `unknown method`. */
    readonly kind: string,
    readonly detail: string,
    /** 1-based. */
    readonly line: number,
    /** 1-based; 0 when unknown. */
    readonly column: number,
    readonly templateName: string | undefined,
    sourceLine: string,
  ) {
    const where = templateName !== undefined ? `in template '${templateName}' ` : 'in template ';
    const col = column > 0 ? `, column ${column}` : '';
    super(`${kind}: ${detail} (${where}line ${line}${col}: '${sourceLine.slice(0, 1024)}')`);
    this.name = 'TemplateError';
  }
}

/** A template that does not parse; raised by compileTemplate. */
export class TemplateSyntaxError extends TemplateError {
  constructor(detail: string, line: number, column: number, templateName: string | undefined, sourceLine: string) {
    super('syntax error', detail, line, column, templateName, sourceLine);
    this.name = 'TemplateSyntaxError';
  }
}

/** A failure while rendering (for example `{{ missing.attr }}`). */
export class TemplateRenderError extends TemplateError {
  constructor(kind: string, detail: string, line: number, column: number, templateName: string | undefined, sourceLine: string) {
    super(kind, detail, line, column, templateName, sourceLine);
    this.name = 'TemplateRenderError';
  }
}

/** Thrown by value operations; converted to TemplateRenderError with a position. */
class OpError extends Error {
  constructor(
    readonly kind: string,
    detail: string,
  ) {
    super(detail);
  }
}

const undefinedError = (): OpError => new OpError('undefined value', 'undefined value');
const invalid = (detail: string): OpError => new OpError('invalid operation', detail);

// ---------------------------------------------------------------- values

type Obj = Record<string, unknown>;

const hasOwn = Object.hasOwn;

function isMap(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** minijinja's kind names, used in error messages. */
function kindOf(v: unknown): string {
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
function mapKeys(o: Obj): string[] {
  const keys = Object.keys(o);
  for (const k of keys) if (o[k] === undefined) return keys.filter((x) => o[x] !== undefined);
  return keys;
}

function truthy(v: unknown): boolean {
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

function valueEq(a: unknown, b: unknown): boolean {
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

function asNumber(v: unknown): number | undefined {
  if (typeof v === 'number') return v;
  if (typeof v === 'bigint') return Number(v);
  if (typeof v === 'boolean') return v ? 1 : 0;
  return undefined;
}

/** A total order in the manner of minijinja's Value ordering. */
function valueCmp(a: unknown, b: unknown): number {
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

function contains(container: unknown, item: unknown): boolean {
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
function getItem(a: unknown, key: unknown): unknown {
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

function getAttr(a: unknown, name: string): unknown {
  if (a === undefined) throw undefinedError();
  if (Array.isArray(a)) return /^\d+$/.test(name) ? a[Number(name)] : undefined;
  if (typeof a === 'string') return undefined;
  return getItem(a, name);
}

function iterate(v: unknown): unknown[] {
  if (v === undefined) return [];
  if (Array.isArray(v)) return v;
  if (typeof v === 'string') return [...v];
  if (isMap(v)) return mapKeys(v);
  throw invalid(`value of type ${kindOf(v)} is not iterable`);
}

/** A string argument: lenient undefined reads as "", other values print. */
function str(v: unknown): string {
  return typeof v === 'string' ? v : displayValue(v);
}

function toInt(v: unknown): number {
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

function toFloat(v: unknown): number {
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
function toJson(v: unknown, indent?: number): string {
  const json = JSON.stringify(v === undefined ? null : v, (_k, x: unknown) => (typeof x === 'bigint' ? Number(x) : x), indent) ?? 'null';
  return json.replace(/[<>&']/g, (c) => `\\u00${c.charCodeAt(0).toString(16)}`);
}

function htmlEscape(s: string): string {
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

function binaryOp(op: string, a: unknown, b: unknown): unknown {
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

// ------------------------------------------------------ filters and tests

type Kwargs = Record<string, unknown>;
interface Callable {
  min: number;
  max: number;
  kwargs?: readonly string[];
  fn: (value: unknown, args: unknown[], kwargs: Kwargs) => unknown;
}

function title(s: string): string {
  let out = '';
  let cap = true;
  for (const c of s) {
    if (/[\s!-/:-@[-`{-~]/.test(c)) {
      out += c;
      cap = true;
    } else {
      out += cap ? c.toUpperCase() : c.toLowerCase();
      cap = false;
    }
  }
  return out;
}

function splitString(s: string, sep: unknown, maxsplit: unknown): string[] {
  const n = maxsplit === undefined || maxsplit === null ? -1 : toInt(maxsplit);
  if (sep === undefined || sep === null) {
    const parts = s.trim() === '' ? [] : s.trim().split(/\s+/);
    if (n < 0 || parts.length <= n + 1) return parts;
    // keep the remainder intact after n splits
    const out: string[] = [];
    let rest = s.replace(/^\s+/, '');
    for (let i = 0; i < n; i++) {
      const m = /\s+/.exec(rest);
      if (!m) break;
      out.push(rest.slice(0, m.index));
      rest = rest.slice(m.index + m[0].length);
    }
    out.push(rest);
    return out;
  }
  const d = str(sep);
  if (d === '') throw invalid('empty separator');
  const all = s.split(d);
  if (n < 0 || all.length <= n + 1) return all;
  return [...all.slice(0, n), all.slice(n).join(d)];
}

function trimChars(s: string, chars: unknown, where: 'both' | 'start' | 'end'): string {
  if (chars === undefined || chars === null) return where === 'both' ? s.trim() : where === 'start' ? s.trimStart() : s.trimEnd();
  const set = new Set([...str(chars)]);
  const cs = [...s];
  let i = 0;
  let j = cs.length;
  if (where !== 'end') while (i < j && set.has(cs[i] as string)) i++;
  if (where !== 'start') while (j > i && set.has(cs[j - 1] as string)) j--;
  return cs.slice(i, j).join('');
}

function indentArg(v: unknown): number | undefined {
  if (v === undefined || v === false || v === null) return undefined;
  if (v === true) return 2;
  return toInt(v);
}

const FILTERS: Record<string, Callable> = {
  tojson: { min: 0, max: 1, kwargs: ['indent'], fn: (v, a, kw) => toJson(v, indentArg(a[0] ?? kw.indent)) },
  upper: { min: 0, max: 0, fn: (v) => str(v).toUpperCase() },
  lower: { min: 0, max: 0, fn: (v) => str(v).toLowerCase() },
  default: {
    min: 0,
    max: 2,
    fn: (v, a) => (v === undefined || (a[1] === true && !truthy(v)) ? (a[0] === undefined ? '' : a[0]) : v),
  },
  length: {
    min: 0,
    max: 0,
    fn: (v) => {
      if (typeof v === 'string') return [...v].length;
      if (Array.isArray(v)) return v.length;
      if (isMap(v)) return mapKeys(v).length;
      throw invalid(`cannot calculate length of value of type ${kindOf(v)}`);
    },
  },
  join: {
    min: 0,
    max: 1,
    fn: (v, a) => {
      if (v === undefined || v === null) return '';
      const sep = a[0] === undefined ? '' : str(a[0]);
      if (typeof v === 'string') return [...v].join(sep);
      if (Array.isArray(v)) return v.map(str).join(sep);
      throw invalid(`cannot join value of type ${kindOf(v)}`);
    },
  },
  trim: { min: 0, max: 1, fn: (v, a) => trimChars(str(v), a[0], 'both') },
  replace: { min: 2, max: 2, fn: (v, a) => str(v).replaceAll(str(a[0]), str(a[1])) },
  string: { min: 0, max: 0, fn: (v) => str(v) },
  int: { min: 0, max: 0, fn: (v) => toInt(v) },
  float: { min: 0, max: 0, fn: (v) => toFloat(v) },
  bool: { min: 0, max: 0, fn: (v) => truthy(v) },
  abs: {
    min: 0,
    max: 0,
    fn: (v) => {
      const n = asNumber(v);
      if (n === undefined || typeof v === 'boolean') throw invalid('cannot get absolute value');
      return Math.abs(n);
    },
  },
  round: {
    min: 0,
    max: 1,
    fn: (v, a) => {
      if (typeof v !== 'number') throw invalid(`cannot round value (${kindOf(v)})`);
      if (Number.isInteger(v)) return v;
      const x = 10 ** (a[0] === undefined ? 0 : toInt(a[0]));
      return Math.round(x * v) / x;
    },
  },
  first: {
    min: 0,
    max: 0,
    fn: (v) => {
      if (typeof v === 'string') return [...v][0];
      if (Array.isArray(v) || isMap(v)) return iterate(v)[0];
      throw invalid('cannot get first item from value');
    },
  },
  last: {
    min: 0,
    max: 0,
    fn: (v) => {
      if (typeof v === 'string' || Array.isArray(v)) return iterate(v).at(-1);
      throw invalid('cannot get last item from value');
    },
  },
  items: {
    min: 0,
    max: 0,
    fn: (v) => {
      if (!isMap(v)) throw invalid('cannot convert value into pair list');
      return mapKeys(v).map((k) => [k, v[k]]);
    },
  },
  dictsort: {
    min: 0,
    max: 0,
    kwargs: ['case_sensitive', 'reverse'],
    fn: (v, _a, kw) => {
      if (!isMap(v)) throw invalid('cannot convert value into pair list');
      const cs = kw.case_sensitive === true;
      const keyOf = (k: string): string => (cs ? k : k.toLowerCase());
      const keys = mapKeys(v).sort((x, y) => (keyOf(x) < keyOf(y) ? -1 : keyOf(x) > keyOf(y) ? 1 : 0));
      if (kw.reverse === true) keys.reverse();
      return keys.map((k) => [k, v[k]]);
    },
  },
  list: { min: 0, max: 0, fn: (v) => [...iterate(v)] },
  reverse: {
    min: 0,
    max: 0,
    fn: (v) => {
      if (typeof v === 'string') return [...v].reverse().join('');
      if (Array.isArray(v)) return [...v].reverse();
      throw invalid(`cannot reverse value of type ${kindOf(v)}`);
    },
  },
  capitalize: {
    min: 0,
    max: 0,
    fn: (v) => {
      const [first = '', ...rest] = [...str(v)];
      return first.toUpperCase() + rest.join('').toLowerCase();
    },
  },
  title: { min: 0, max: 0, fn: (v) => title(str(v)) },
  split: { min: 0, max: 2, fn: (v, a) => splitString(str(v), a[0], a[1]) },
  attr: { min: 1, max: 1, fn: (v, a) => getItem(v, a[0]) },
  safe: { min: 0, max: 0, fn: (v) => str(v) },
  escape: { min: 0, max: 0, fn: (v) => htmlEscape(str(v)) },
};
FILTERS.d = FILTERS.default as Callable;
FILTERS.count = FILTERS.length as Callable;
FILTERS.e = FILTERS.escape as Callable;

const TESTS: Record<string, Callable> = {
  defined: { min: 0, max: 0, fn: (v) => v !== undefined },
  undefined: { min: 0, max: 0, fn: (v) => v === undefined },
  none: { min: 0, max: 0, fn: (v) => v === null },
  string: { min: 0, max: 0, fn: (v) => typeof v === 'string' },
  number: { min: 0, max: 0, fn: (v) => typeof v === 'number' || typeof v === 'bigint' },
  integer: { min: 0, max: 0, fn: (v) => (typeof v === 'number' && Number.isInteger(v)) || typeof v === 'bigint' },
  float: { min: 0, max: 0, fn: (v) => typeof v === 'number' && !Number.isInteger(v) },
  boolean: { min: 0, max: 0, fn: (v) => typeof v === 'boolean' },
  true: { min: 0, max: 0, fn: (v) => v === true },
  false: { min: 0, max: 0, fn: (v) => v === false },
  mapping: { min: 0, max: 0, fn: (v) => isMap(v) },
  sequence: { min: 0, max: 0, fn: (v) => Array.isArray(v) },
  iterable: { min: 0, max: 0, fn: (v) => Array.isArray(v) || isMap(v) || typeof v === 'string' },
  odd: { min: 0, max: 0, fn: (v) => typeof v === 'number' && Number.isInteger(v) && Math.abs(v % 2) === 1 },
  even: { min: 0, max: 0, fn: (v) => typeof v === 'number' && Number.isInteger(v) && v % 2 === 0 },
  divisibleby: { min: 1, max: 1, fn: (v, a) => typeof v === 'number' && toInt(a[0]) !== 0 && v % toInt(a[0]) === 0 },
  startingwith: { min: 1, max: 1, fn: (v, a) => typeof v === 'string' && v.startsWith(str(a[0])) },
  endingwith: { min: 1, max: 1, fn: (v, a) => typeof v === 'string' && v.endsWith(str(a[0])) },
  eq: { min: 1, max: 1, fn: (v, a) => valueEq(v, a[0]) },
  ne: { min: 1, max: 1, fn: (v, a) => !valueEq(v, a[0]) },
  lt: { min: 1, max: 1, fn: (v, a) => valueCmp(v, a[0]) < 0 },
  le: { min: 1, max: 1, fn: (v, a) => valueCmp(v, a[0]) <= 0 },
  gt: { min: 1, max: 1, fn: (v, a) => valueCmp(v, a[0]) > 0 },
  ge: { min: 1, max: 1, fn: (v, a) => valueCmp(v, a[0]) >= 0 },
  in: { min: 1, max: 1, fn: (v, a) => contains(a[0], v) },
  lower: { min: 0, max: 0, fn: (v) => typeof v === 'string' && v === v.toLowerCase() },
  upper: { min: 0, max: 0, fn: (v) => typeof v === 'string' && v === v.toUpperCase() },
};
TESTS.equalto = TESTS.eq as Callable;
TESTS.greaterthan = TESTS.gt as Callable;
TESTS.lessthan = TESTS.lt as Callable;

/** Python-style methods (KumoMTA enables minijinja's pycompat callback). */
function callMethod(v: unknown, name: string, args: unknown[]): unknown {
  if (typeof v === 'string') {
    switch (name) {
      case 'upper':
        return v.toUpperCase();
      case 'lower':
        return v.toLowerCase();
      case 'strip':
        return trimChars(v, args[0], 'both');
      case 'lstrip':
        return trimChars(v, args[0], 'start');
      case 'rstrip':
        return trimChars(v, args[0], 'end');
      case 'startswith':
        return v.startsWith(str(args[0]));
      case 'endswith':
        return v.endsWith(str(args[0]));
      case 'split':
        return splitString(v, args[0], args[1]);
      case 'replace':
        return v.replaceAll(str(args[0]), str(args[1]));
      case 'title':
        return title(v);
      case 'capitalize':
        return (FILTERS.capitalize as Callable).fn(v, [], {});
      case 'count':
        return str(args[0]) === '' ? [...v].length + 1 : v.split(str(args[0])).length - 1;
      case 'find':
        return v.indexOf(str(args[0]));
    }
  } else if (isMap(v)) {
    switch (name) {
      case 'items':
        return mapKeys(v).map((k) => [k, v[k]]);
      case 'keys':
        return mapKeys(v);
      case 'values':
        return mapKeys(v).map((k) => v[k]);
      case 'get': {
        const got = getItem(v, args[0]);
        return got === undefined ? (args[1] === undefined ? null : args[1]) : got;
      }
    }
  } else if (v === undefined) {
    throw undefinedError();
  }
  throw new OpError('unknown method', `${kindOf(v)} has no method named ${name}`);
}

function range(args: unknown[]): number[] {
  const nums = args.map(toInt);
  const [start, stop, step] = nums.length === 1 ? [0, nums[0] as number, 1] : [nums[0] as number, nums[1] as number, nums[2] ?? 1];
  if (step === 0) throw invalid('range step cannot be zero');
  const out: number[] = [];
  for (let i = start; step > 0 ? i < stop : i > stop; i += step) {
    out.push(i);
    if (out.length > 100_000) throw invalid('range has too many elements');
  }
  return out;
}

// ---------------------------------------------------------------- lexer

type TokType = 'data' | 'var_start' | 'var_end' | 'block_start' | 'block_end' | 'ident' | 'str' | 'num' | 'op' | 'eof';

interface Token {
  t: TokType;
  /** ident name, operator text, string value or template data */
  v: string;
  n: number;
  pos: number;
}

const OPERATORS = ['**', '//', '==', '!=', '<=', '>=', '+', '-', '*', '/', '%', '~', '<', '>', '=', '.', ',', ':', '|', '(', ')', '[', ']', '{', '}'];

class Source {
  constructor(
    readonly text: string,
    readonly name: string | undefined,
  ) {}

  position(pos: number): { line: number; column: number; lineText: string } {
    let line = 1;
    let start = 0;
    for (let i = 0; i < pos && i < this.text.length; i++) {
      if (this.text.charCodeAt(i) === 10) {
        line++;
        start = i + 1;
      }
    }
    const end = this.text.indexOf('\n', start);
    const lineText = this.text.slice(start, end === -1 ? this.text.length : end).replace(/\r$/, '');
    return { line, column: pos - start + 1, lineText };
  }

  syntaxError(pos: number, detail: string): TemplateSyntaxError {
    const p = this.position(pos);
    return new TemplateSyntaxError(detail, p.line, p.column, this.name, p.lineText);
  }

  renderError(pos: number, err: unknown): unknown {
    if (err instanceof TemplateError) return err;
    const p = this.position(pos);
    if (err instanceof OpError) return new TemplateRenderError(err.kind, err.message, p.line, p.column, this.name, p.lineText);
    if (err instanceof RangeError) return new TemplateRenderError('invalid operation', err.message, p.line, p.column, this.name, p.lineText);
    return err;
  }
}

function unescapeString(src: Source, raw: string, pos: number): string {
  if (!raw.includes('\\')) return raw;
  let out = '';
  for (let i = 0; i < raw.length; i++) {
    const c = raw[i] as string;
    if (c !== '\\') {
      out += c;
      continue;
    }
    const d = raw[++i];
    switch (d) {
      case '"':
      case "'":
      case '\\':
      case '/':
        out += d;
        break;
      case 'b':
        out += '\b';
        break;
      case 'f':
        out += '\f';
        break;
      case 'n':
        out += '\n';
        break;
      case 'r':
        out += '\r';
        break;
      case 't':
        out += '\t';
        break;
      case 'u': {
        const hex = raw.slice(i + 1, i + 5);
        if (!/^[0-9a-fA-F]{4}$/.test(hex)) throw src.syntaxError(pos, 'bad string escape');
        out += String.fromCharCode(parseInt(hex, 16));
        i += 4;
        break;
      }
      default:
        throw src.syntaxError(pos, 'bad string escape');
    }
  }
  return out;
}

function tokenize(src: Source): Token[] {
  const s = src.text;
  const n = s.length;
  const toks: Token[] = [];
  let i = 0;
  let lstripNext = false;
  const push = (t: TokType, v: string, pos: number, num = 0): void => {
    toks.push({ t, v, n: num, pos });
  };
  const pushData = (text: string, pos: number, rstrip: boolean): void => {
    if (lstripNext) text = text.trimStart();
    if (rstrip) text = text.trimEnd();
    lstripNext = false;
    if (text !== '') push('data', text, pos);
  };

  while (i < n) {
    // the next `{{`, `{%` or `{#`
    let j = s.indexOf('{', i);
    while (j !== -1 && j + 1 < n && !'{%#'.includes(s[j + 1] as string)) j = s.indexOf('{', j + 1);
    if (j !== -1 && j + 1 >= n) j = -1;
    if (j === -1) {
      pushData(s.slice(i), i, false);
      break;
    }
    const kind = s[j + 1] as string;
    const ws = s[j + 2];
    pushData(s.slice(i, j), i, ws === '-');
    const start = j;
    i = j + 2;
    if (ws === '-' || ws === '+') i++;

    if (kind === '#') {
      const end = s.indexOf('#}', i);
      if (end === -1) throw src.syntaxError(start, 'unexpected end of comment');
      lstripNext = s[end - 1] === '-' && end - 1 >= i;
      i = end + 2;
      continue;
    }

    if (kind === '%') {
      const raw = /\s*raw\s*([-+]?)%\}/y;
      raw.lastIndex = i;
      const m = raw.exec(s);
      if (m) {
        const endRe = /\{%([-+]?)\s*endraw\s*([-+]?)%\}/g;
        endRe.lastIndex = raw.lastIndex;
        const e = endRe.exec(s);
        if (!e) throw src.syntaxError(start, 'unexpected end of raw block');
        lstripNext = m[1] === '-';
        pushData(s.slice(raw.lastIndex, e.index), raw.lastIndex, e[1] === '-');
        lstripNext = e[2] === '-';
        i = endRe.lastIndex;
        continue;
      }
    }

    const isVar = kind === '{';
    push(isVar ? 'var_start' : 'block_start', '', start);
    let depth = 0;
    for (;;) {
      while (i < n && /\s/.test(s[i] as string)) i++;
      if (i >= n) throw src.syntaxError(n, `unexpected end of input, expected end of ${isVar ? 'variable block' : 'block'}`);
      if (depth === 0) {
        const close = isVar ? '}}' : '%}';
        if ((s[i] === '-' || s[i] === '+') && s.startsWith(close, i + 1)) {
          lstripNext = s[i] === '-';
          push(isVar ? 'var_end' : 'block_end', '', i);
          i += 3;
          break;
        }
        if (s.startsWith(close, i)) {
          push(isVar ? 'var_end' : 'block_end', '', i);
          i += 2;
          break;
        }
      }
      const c = s[i] as string;
      const at = i;
      if (/[A-Za-z_]/.test(c)) {
        const re = /[A-Za-z_][A-Za-z0-9_]*/y;
        re.lastIndex = i;
        const m = re.exec(s) as RegExpExecArray;
        push('ident', m[0], at);
        i = re.lastIndex;
      } else if (/[0-9]/.test(c)) {
        const re = /[0-9][0-9_]*(?:\.[0-9][0-9_]*)?(?:[eE][+-]?[0-9]+)?/y;
        re.lastIndex = i;
        const m = re.exec(s) as RegExpExecArray;
        push('num', m[0], at, Number(m[0].replaceAll('_', '')));
        i = re.lastIndex;
      } else if (c === '"' || c === "'") {
        let k = i + 1;
        while (k < n && s[k] !== c) k += s[k] === '\\' ? 2 : 1;
        if (k >= n) throw src.syntaxError(at, 'unexpected end of string');
        push('str', unescapeString(src, s.slice(i + 1, k), at), at);
        i = k + 1;
      } else {
        const op = OPERATORS.find((o) => s.startsWith(o, i));
        if (op === undefined) throw src.syntaxError(at, `unexpected character '${c}'`);
        if (op === '(' || op === '[' || op === '{') depth++;
        else if (op === ')' || op === ']' || op === '}') depth = Math.max(0, depth - 1);
        push('op', op, at);
        i += op.length;
      }
    }
  }
  push('eof', '', n);
  return toks;
}

// ---------------------------------------------------------------- parser

/** Render-time scope: locals, then the context, then globals. */
class Scope {
  constructor(
    readonly vars: Obj,
    readonly parent: Scope | null,
  ) {}

  get(name: string): unknown {
    for (let sc: Scope | null = this; sc !== null; sc = sc.parent) {
      if (hasOwn(sc.vars, name)) return sc.vars[name];
    }
    return undefined;
  }
}

interface Out {
  s: string;
}

type Expr = (sc: Scope) => unknown;
type Stmt = (sc: Scope, out: Out) => void;

function describeToken(tok: Token): string {
  switch (tok.t) {
    case 'eof':
      return 'end of input';
    case 'data':
      return 'template data';
    case 'var_start':
      return 'start of variable block';
    case 'var_end':
      return 'end of variable block';
    case 'block_start':
      return 'start of block';
    case 'block_end':
      return 'end of block';
    case 'ident':
      return `identifier \`${tok.v}\``;
    case 'str':
      return 'string';
    case 'num':
      return 'number';
    default:
      return `\`${tok.v}\``;
  }
}

const RESERVED = new Set(['and', 'or', 'not', 'in', 'is', 'if', 'else']);

class Parser {
  private i = 0;

  constructor(
    private readonly src: Source,
    private readonly toks: Token[],
  ) {}

  private peek(offset = 0): Token {
    return this.toks[Math.min(this.i + offset, this.toks.length - 1)] as Token;
  }

  private next(): Token {
    const t = this.peek();
    if (this.i < this.toks.length - 1) this.i++;
    return t;
  }

  private fail(tok: Token, detail: string): never {
    throw this.src.syntaxError(tok.pos, detail);
  }

  private unexpected(tok: Token, expected: string): never {
    this.fail(tok, `unexpected ${describeToken(tok)}, expected ${expected}`);
  }

  private isOp(v: string, offset = 0): boolean {
    const t = this.peek(offset);
    return t.t === 'op' && t.v === v;
  }

  private isKw(v: string, offset = 0): boolean {
    const t = this.peek(offset);
    return t.t === 'ident' && t.v === v;
  }

  private expectOp(v: string): Token {
    const t = this.next();
    if (t.t !== 'op' || t.v !== v) this.unexpected(t, `\`${v}\``);
    return t;
  }

  private expectKw(v: string): Token {
    const t = this.next();
    if (t.t !== 'ident' || t.v !== v) this.unexpected(t, `\`${v}\``);
    return t;
  }

  private expect(type: TokType, what: string): Token {
    const t = this.next();
    if (t.t !== type) this.unexpected(t, what);
    return t;
  }

  private ident(what = 'identifier'): string {
    const t = this.next();
    if (t.t !== 'ident') this.unexpected(t, what);
    return t.v;
  }

  // ---- statements

  parseTemplate(): Stmt {
    const { body, end } = this.parseBody([]);
    if (end) this.fail(end, `unexpected \`${end.v}\``);
    return body;
  }

  /** Parse until one of `ends` opens a block; leaves the parser after the keyword. */
  private parseBody(ends: readonly string[]): { body: Stmt; end?: Token } {
    const stmts: Stmt[] = [];
    for (;;) {
      const tok = this.next();
      if (tok.t === 'eof') {
        if (ends.length > 0) this.fail(tok, `unexpected end of input, expected ${ends.map((e) => `\`${e}\``).join(' or ')}`);
        return { body: seq(stmts) };
      }
      if (tok.t === 'data') {
        const text = tok.v;
        stmts.push((_sc, out) => {
          out.s += text;
        });
      } else if (tok.t === 'var_start') {
        const expr = this.parseExpr();
        this.expect('var_end', 'end of variable block');
        const src = this.src;
        const pos = tok.pos;
        stmts.push((sc, out) => {
          try {
            out.s += displayValue(expr(sc));
          } catch (err) {
            throw src.renderError(pos, err);
          }
        });
      } else if (tok.t === 'block_start') {
        const kwTok = this.peek();
        if (kwTok.t !== 'ident') this.unexpected(kwTok, 'statement');
        if (ends.includes(kwTok.v)) {
          this.next();
          return { body: seq(stmts), end: kwTok };
        }
        this.next();
        switch (kwTok.v) {
          case 'if':
            stmts.push(this.parseIf(tok));
            break;
          case 'for':
            stmts.push(this.parseFor(tok));
            break;
          case 'set':
            stmts.push(this.parseSet(tok));
            break;
          case 'elif':
          case 'else':
          case 'endif':
          case 'endfor':
          case 'endset':
          case 'endraw':
            this.fail(kwTok, `unexpected \`${kwTok.v}\``);
            break;
          default:
            this.fail(kwTok, `unknown statement ${kwTok.v}`);
        }
      } else {
        this.unexpected(tok, 'template data');
      }
    }
  }

  private guarded(pos: number, expr: Expr): Expr {
    const src = this.src;
    return (sc) => {
      try {
        return expr(sc);
      } catch (err) {
        throw src.renderError(pos, err);
      }
    };
  }

  private parseIf(start: Token): Stmt {
    const branches: Array<[Expr, Stmt]> = [];
    let otherwise: Stmt | undefined;
    let cond = this.guarded(start.pos, this.parseExpr());
    this.expect('block_end', 'end of block');
    for (;;) {
      const { body, end } = this.parseBody(['elif', 'else', 'endif']);
      branches.push([cond, body]);
      const endTok = end as Token;
      if (endTok.v === 'elif') {
        cond = this.guarded(endTok.pos, this.parseExpr());
        this.expect('block_end', 'end of block');
        continue;
      }
      this.expect('block_end', 'end of block');
      if (endTok.v === 'endif') break;
      otherwise = this.parseBody(['endif']).body;
      this.expect('block_end', 'end of block');
      break;
    }
    const els = otherwise;
    if (branches.length === 1 && els === undefined) {
      const [c, b] = branches[0] as [Expr, Stmt];
      return (sc, out) => {
        if (truthy(c(sc))) b(sc, out);
      };
    }
    return (sc, out) => {
      for (const [c, b] of branches) {
        if (truthy(c(sc))) {
          b(sc, out);
          return;
        }
      }
      if (els) els(sc, out);
    };
  }

  private parseTargets(): string[] {
    const paren = this.isOp('(');
    if (paren) this.next();
    const names = [this.ident('loop variable')];
    while (this.isOp(',')) {
      this.next();
      if (paren && this.isOp(')')) break;
      names.push(this.ident('loop variable'));
    }
    if (paren) this.expectOp(')');
    return names;
  }

  private parseFor(start: Token): Stmt {
    const targets = this.parseTargets();
    this.expectKw('in');
    const iter = this.guarded(start.pos, this.parseIfLess());
    let filter: Expr | undefined;
    if (this.isKw('if')) {
      this.next();
      filter = this.guarded(start.pos, this.parseIfLess());
    }
    if (this.isKw('recursive')) this.fail(this.peek(), 'recursive loops are not supported');
    this.expect('block_end', 'end of block');
    const { body, end } = this.parseBody(['else', 'endfor']);
    let otherwise: Stmt | undefined;
    this.expect('block_end', 'end of block');
    if ((end as Token).v === 'else') {
      otherwise = this.parseBody(['endfor']).body;
      this.expect('block_end', 'end of block');
    }
    const src = this.src;
    const bind = (vars: Obj, item: unknown): void => {
      if (targets.length === 1) {
        vars[targets[0] as string] = item;
        return;
      }
      const parts = Array.isArray(item) ? item : typeof item === 'string' ? [...item] : undefined;
      if (!parts || parts.length !== targets.length) {
        throw src.renderError(start.pos, invalid(`cannot unpack ${kindOf(item)} into ${targets.length} variables`));
      }
      targets.forEach((t, k) => {
        vars[t] = parts[k];
      });
    };
    return (sc, out) => {
      let items: unknown[];
      try {
        items = iterate(iter(sc));
      } catch (err) {
        throw src.renderError(start.pos, err);
      }
      if (filter) {
        const f = filter;
        items = items.filter((item) => {
          const vars: Obj = Object.create(null) as Obj;
          bind(vars, item);
          return truthy(f(new Scope(vars, sc)));
        });
      }
      if (items.length === 0) {
        if (otherwise) otherwise(sc, out);
        return;
      }
      const length = items.length;
      for (let k = 0; k < length; k++) {
        const vars: Obj = Object.create(null) as Obj;
        bind(vars, items[k]);
        vars.loop = {
          index: k + 1,
          index0: k,
          revindex: length - k,
          revindex0: length - k - 1,
          first: k === 0,
          last: k === length - 1,
          length,
          previtem: k > 0 ? items[k - 1] : undefined,
          nextitem: k < length - 1 ? items[k + 1] : undefined,
        };
        body(new Scope(vars, sc), out);
      }
    };
  }

  private parseSet(start: Token): Stmt {
    const targets = this.parseTargets();
    if (this.peek().t === 'block_end') {
      // block form: {% set x %}...{% endset %}
      if (targets.length !== 1) this.fail(this.peek(), 'a block set takes one variable');
      this.next();
      const { body } = this.parseBody(['endset']);
      this.expect('block_end', 'end of block');
      const name = targets[0] as string;
      return (sc) => {
        const buf: Out = { s: '' };
        body(sc, buf);
        sc.vars[name] = buf.s;
      };
    }
    this.expectOp('=');
    const expr = this.guarded(start.pos, this.parseExpr());
    this.expect('block_end', 'end of block');
    const src = this.src;
    return (sc) => {
      const v = expr(sc);
      if (targets.length === 1) {
        sc.vars[targets[0] as string] = v;
        return;
      }
      if (!Array.isArray(v) || v.length !== targets.length) throw src.renderError(start.pos, invalid(`cannot unpack ${kindOf(v)} into ${targets.length} variables`));
      targets.forEach((t, k) => {
        sc.vars[t] = v[k];
      });
    };
  }

  // ---- expressions

  parseExpr(): Expr {
    const value = this.parseOr();
    if (!this.isKw('if')) return value;
    this.next();
    const cond = this.parseOr();
    let otherwise: Expr | undefined;
    if (this.isKw('else')) {
      this.next();
      otherwise = this.parseExpr();
    }
    const els = otherwise;
    return (sc) => (truthy(cond(sc)) ? value(sc) : els ? els(sc) : undefined);
  }

  /** An expression without a trailing `if` (loop iterables and filters). */
  private parseIfLess(): Expr {
    return this.parseOr();
  }

  private parseOr(): Expr {
    let left = this.parseAnd();
    while (this.isKw('or')) {
      this.next();
      const l = left;
      const r = this.parseAnd();
      left = (sc) => {
        const v = l(sc);
        return truthy(v) ? v : r(sc);
      };
    }
    return left;
  }

  private parseAnd(): Expr {
    let left = this.parseNot();
    while (this.isKw('and')) {
      this.next();
      const l = left;
      const r = this.parseNot();
      left = (sc) => {
        const v = l(sc);
        return truthy(v) ? r(sc) : v;
      };
    }
    return left;
  }

  private parseNot(): Expr {
    if (this.isKw('not')) {
      this.next();
      const e = this.parseNot();
      return (sc) => !truthy(e(sc));
    }
    return this.parseCompare();
  }

  private parseCompare(): Expr {
    let left = this.parseMath1();
    for (;;) {
      let op: string | undefined;
      const t = this.peek();
      if (t.t === 'op' && ['==', '!=', '<', '<=', '>', '>='].includes(t.v)) op = t.v;
      else if (this.isKw('in')) op = 'in';
      else if (this.isKw('not') && this.isKw('in', 1)) op = 'not in';
      if (op === undefined) return left;
      this.next();
      if (op === 'not in') this.next();
      left = binary(op, left, this.parseMath1());
    }
  }

  private parseMath1(): Expr {
    let left = this.parseConcat();
    while (this.isOp('+') || this.isOp('-')) {
      const op = this.next().v;
      left = binary(op, left, this.parseConcat());
    }
    return left;
  }

  private parseConcat(): Expr {
    let left = this.parseMath2();
    while (this.isOp('~')) {
      this.next();
      left = binary('~', left, this.parseMath2());
    }
    return left;
  }

  private parseMath2(): Expr {
    let left = this.parsePow();
    while (this.isOp('*') || this.isOp('/') || this.isOp('//') || this.isOp('%')) {
      const op = this.next().v;
      left = binary(op, left, this.parsePow());
    }
    return left;
  }

  private parsePow(): Expr {
    let left = this.parseUnary();
    while (this.isOp('**')) {
      this.next();
      left = binary('**', left, this.parseUnary());
    }
    return left;
  }

  private parseUnary(): Expr {
    if (this.isOp('-')) {
      this.next();
      const e = this.parseUnary();
      return (sc) => {
        const v = e(sc);
        const n = asNumber(v);
        if (n === undefined || typeof v === 'boolean') throw invalid(`cannot negate value of type ${kindOf(v)}`);
        return -n;
      };
    }
    if (this.isOp('+')) {
      this.next();
      return this.parseUnary();
    }
    return this.parseFilters(this.parsePostfix(this.parsePrimary()));
  }

  private parseArgs(): { args: Expr[]; kwargs: Array<[string, Expr]> } {
    this.expectOp('(');
    const args: Expr[] = [];
    const kwargs: Array<[string, Expr]> = [];
    while (!this.isOp(')')) {
      if (this.peek().t === 'ident' && this.isOp('=', 1)) {
        const name = this.next().v;
        this.next();
        kwargs.push([name, this.parseExpr()]);
      } else {
        if (kwargs.length > 0) this.fail(this.peek(), 'non-keyword argument after keyword argument');
        args.push(this.parseExpr());
      }
      if (!this.isOp(',')) break;
      this.next();
    }
    this.expectOp(')');
    return { args, kwargs };
  }

  private parseFilters(expr: Expr): Expr {
    for (;;) {
      if (this.isOp('|')) {
        this.next();
        const nameTok = this.expect('ident', 'filter name');
        const filter = FILTERS[nameTok.v];
        if (!filter || !hasOwn(FILTERS, nameTok.v)) this.fail(nameTok, `unknown filter \`${nameTok.v}\``);
        const call = this.isOp('(') ? this.parseArgs() : { args: [], kwargs: [] };
        this.checkArity(nameTok, 'filter', filter, call.args.length, call.kwargs);
        expr = applyCallable(filter, expr, call.args, call.kwargs);
      } else if (this.isKw('is')) {
        this.next();
        let negate = false;
        if (this.isKw('not')) {
          this.next();
          negate = true;
        }
        const nameTok = this.expect('ident', 'test name');
        const test = hasOwn(TESTS, nameTok.v) ? TESTS[nameTok.v] : undefined;
        if (!test) this.fail(nameTok, `unknown test \`${nameTok.v}\``);
        let call: { args: Expr[]; kwargs: Array<[string, Expr]> } = { args: [], kwargs: [] };
        if (this.isOp('(')) call = this.parseArgs();
        else if (test.min === 1 && this.startsPrimary()) call = { args: [this.parsePostfix(this.parsePrimary())], kwargs: [] };
        this.checkArity(nameTok, 'test', test, call.args.length, call.kwargs);
        const applied = applyCallable(test, expr, call.args, call.kwargs);
        expr = negate ? (sc) => !truthy(applied(sc)) : (sc) => truthy(applied(sc));
      } else {
        return expr;
      }
    }
  }

  private startsPrimary(): boolean {
    const t = this.peek();
    return t.t === 'str' || t.t === 'num' || (t.t === 'ident' && !['and', 'or', 'not', 'in', 'is', 'if', 'else'].includes(t.v)) || (t.t === 'op' && ['(', '['].includes(t.v));
  }

  private checkArity(tok: Token, what: string, c: Callable, n: number, kwargs: Array<[string, Expr]>): void {
    if (n < c.min) this.fail(tok, `missing argument: ${what} \`${tok.v}\` takes at least ${c.min} argument${c.min === 1 ? '' : 's'}`);
    if (n > c.max) this.fail(tok, `too many arguments: ${what} \`${tok.v}\` takes at most ${c.max} argument${c.max === 1 ? '' : 's'}`);
    for (const [k] of kwargs) {
      if (!c.kwargs?.includes(k)) this.fail(tok, `too many arguments: ${what} \`${tok.v}\` has no keyword argument \`${k}\``);
    }
  }

  private parsePostfix(expr: Expr): Expr {
    for (;;) {
      if (this.isOp('.')) {
        this.next();
        const t = this.next();
        if (t.t !== 'ident' && t.t !== 'num') this.unexpected(t, 'identifier');
        const name = t.t === 'num' ? t.v : t.v;
        if (t.t === 'ident' && this.isOp('(')) {
          const { args, kwargs } = this.parseArgs();
          if (kwargs.length > 0) this.fail(t, 'keyword arguments are not supported on methods');
          const obj = expr;
          expr = (sc) => {
            const target = obj(sc);
            return callMethod(target, name, args.map((a) => a(sc)));
          };
        } else {
          const obj = expr;
          expr = (sc) => getAttr(obj(sc), name);
        }
      } else if (this.isOp('[')) {
        const open = this.next();
        if (this.isOp(':')) this.fail(open, 'slicing is not supported');
        const key = this.parseExpr();
        if (this.isOp(':')) this.fail(this.peek(), 'slicing is not supported');
        this.expectOp(']');
        const obj = expr;
        expr = (sc) => getItem(obj(sc), key(sc));
      } else if (this.isOp('(')) {
        this.fail(this.peek(), 'only functions and methods can be called');
      } else {
        return expr;
      }
    }
  }

  private parsePrimary(): Expr {
    const t = this.next();
    switch (t.t) {
      case 'str': {
        let v = t.v;
        // adjacent string literals concatenate
        while (this.peek().t === 'str') v += this.next().v;
        const value = v;
        return () => value;
      }
      case 'num': {
        const value = t.n;
        return () => value;
      }
      case 'ident': {
        switch (t.v) {
          case 'true':
          case 'True':
            return () => true;
          case 'false':
          case 'False':
            return () => false;
          case 'none':
          case 'None':
            return () => null;
        }
        if (RESERVED.has(t.v)) this.unexpected(t, 'expression');
        if (this.isOp('(')) {
          const { args, kwargs } = this.parseArgs();
          if (t.v === 'range') {
            if (args.length < 1 || args.length > 3 || kwargs.length > 0) this.fail(t, 'range takes 1 to 3 arguments');
            return (sc) => range(args.map((a) => a(sc)));
          }
          if (t.v === 'dict') {
            if (args.length > 0) this.fail(t, 'dict takes keyword arguments only');
            return (sc) => Object.fromEntries(kwargs.map(([k, e]) => [k, e(sc)]));
          }
          this.fail(t, `unknown function ${t.v}`);
        }
        const name = t.v;
        return (sc) => sc.get(name);
      }
      case 'op':
        if (t.v === '(') {
          if (this.isOp(')')) {
            this.next();
            return () => [];
          }
          const first = this.parseExpr();
          if (this.isOp(')')) {
            this.next();
            return first;
          }
          const items = [first];
          while (this.isOp(',')) {
            this.next();
            if (this.isOp(')')) break;
            items.push(this.parseExpr());
          }
          this.expectOp(')');
          return (sc) => items.map((e) => e(sc));
        }
        if (t.v === '[') {
          const items: Expr[] = [];
          while (!this.isOp(']')) {
            items.push(this.parseExpr());
            if (!this.isOp(',')) break;
            this.next();
          }
          this.expectOp(']');
          return (sc) => items.map((e) => e(sc));
        }
        if (t.v === '{') {
          const entries: Array<[Expr, Expr]> = [];
          while (!this.isOp('}')) {
            const k = this.parseExpr();
            this.expectOp(':');
            entries.push([k, this.parseExpr()]);
            if (!this.isOp(',')) break;
            this.next();
          }
          this.expectOp('}');
          return (sc) => {
            const o: Obj = {};
            for (const [k, v] of entries) o[str(k(sc))] = v(sc);
            return o;
          };
        }
        return this.unexpected(t, 'expression');
      default:
        return this.unexpected(t, 'expression');
    }
  }
}

function binary(op: string, l: Expr, r: Expr): Expr {
  return (sc) => binaryOp(op, l(sc), r(sc));
}

function applyCallable(c: Callable, value: Expr, args: Expr[], kwargs: Array<[string, Expr]>): Expr {
  if (args.length === 0 && kwargs.length === 0) return (sc) => c.fn(value(sc), [], {});
  return (sc) => {
    const kw: Kwargs = {};
    for (const [k, e] of kwargs) kw[k] = e(sc);
    return c.fn(
      value(sc),
      args.map((a) => a(sc)),
      kw,
    );
  };
}

function seq(stmts: Stmt[]): Stmt {
  if (stmts.length === 0) return () => {};
  if (stmts.length === 1) return stmts[0] as Stmt;
  return (sc, out) => {
    for (const s of stmts) s(sc, out);
  };
}

// ---------------------------------------------------------------- API

export interface CompiledTemplate {
  /** Render with `vars` as the context; `globals` are looked up after it. */
  (vars: Record<string, unknown>, globals?: Record<string, unknown>): string;
  readonly source: string;
}

export interface CompileOptions {
  /** Named in error messages (KumoMTA names a per_record template by its record type). */
  name?: string;
}

const EMPTY: Obj = Object.freeze(Object.create(null) as Obj);

/**
 * Parse `source` once; the result renders without re-parsing. Throws
 * TemplateSyntaxError (with line and column) for a template that does not
 * parse, or names an unknown filter, test or function.
 */
export function compileTemplate(source: string, options: CompileOptions = {}): CompiledTemplate {
  // keep_trailing_newline=false: a single trailing newline is not part of the output
  let text = source;
  if (text.endsWith('\n')) text = text.slice(0, text.endsWith('\r\n') ? -2 : -1);
  const src = new Source(text, options.name);
  const body = new Parser(src, tokenize(src)).parseTemplate();
  const render = (vars: Record<string, unknown>, globals?: Record<string, unknown>): string => {
    const root = new Scope(Object.create(null) as Obj, new Scope(vars ?? EMPTY, new Scope(globals ?? EMPTY, null)));
    const out: Out = { s: '' };
    body(root, out);
    return out.s;
  };
  return Object.assign(render, { source });
}

const cache = new Map<string, CompiledTemplate>();
const CACHE_LIMIT = 256;

/** compileTemplate with a small cache keyed by source (for callers that hold only the string). */
export function cachedTemplate(source: string): CompiledTemplate {
  let t = cache.get(source);
  if (!t) {
    t = compileTemplate(source);
    if (cache.size >= CACHE_LIMIT) cache.delete(cache.keys().next().value as string);
    cache.set(source, t);
  }
  return t;
}

/**
 * Compile every `per_record` template, for `configure_log_hook` /
 * `configure_local_logs` to report a bad one when the policy loads. Keys are
 * the per_record keys (`Any`, `Delivery`, ...); entries without a template
 * are absent. Throws the first TemplateSyntaxError, naming the key.
 */
export function compilePerRecordTemplates(perRecord: Readonly<Record<string, { template?: string } | undefined>>): Map<string, CompiledTemplate> {
  const out = new Map<string, CompiledTemplate>();
  for (const [key, params] of Object.entries(perRecord)) {
    if (params?.template === undefined) continue;
    const compiled = compileTemplate(params.template, { name: key });
    out.set(key, compiled);
    if (!cache.has(params.template) && cache.size < CACHE_LIMIT) cache.set(params.template, compiled);
  }
  return out;
}

/** What renderRecordBody accepts: a compiled template (or any function of the same shape). */
export type RecordTemplate = (vars: Record<string, unknown>, globals?: Record<string, unknown>) => string;

/**
 * The body KumoMTA writes for a record (§3.2 step 3): compact JSON without
 * a template, the rendered template with one (record fields as variables,
 * global `log_record` = the whole record), and a `\n` appended unless the
 * body already ends with one. Template errors propagate (TemplateError).
 */
export function renderRecordBody(record: JsonLogRecord, template: RecordTemplate | string | undefined): string {
  let body: string;
  if (template === undefined) {
    body = JSON.stringify(record);
  } else {
    const t = typeof template === 'string' ? cachedTemplate(template) : template;
    body = t(record as unknown as Record<string, unknown>, { log_record: record });
  }
  return body.endsWith('\n') ? body : `${body}\n`;
}
