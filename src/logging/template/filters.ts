/**
 * The filters (`x | name(args)`), tests (`x is name`), Python-style methods
 * (`s.upper()`) and the `range()` function templates can call. Compiling a
 * template looks each name up here, so an unknown one is a syntax error.
 */
import { invalid, OpError, undefinedError } from './errors.js';
import { asNumber, contains, getItem, htmlEscape, isMap, iterate, kindOf, mapKeys, str, toFloat, toInt, toJson, truthy, valueCmp, valueEq } from './values.js';

export type Kwargs = Record<string, unknown>;
export interface Callable {
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

export const FILTERS: Record<string, Callable> = {
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

export const TESTS: Record<string, Callable> = {
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
export function callMethod(v: unknown, name: string, args: unknown[]): unknown {
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

export function range(args: unknown[]): number[] {
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
