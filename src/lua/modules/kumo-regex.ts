/**
 * `kumo.regex.*` (kumomta-facts §10): compiled regular expressions,
 * returning Regex.
 *
 * Difference from KumoMTA, by necessity: regex patterns use Rust/fancy_regex
 * syntax translated to JavaScript's (named groups `(?P<n>..)`, `(?P=n)`,
 * leading `(?ims)` flags, `\A`, `\z`, `\x{..}`, POSIX `[[:alpha:]]` classes,
 * Rust's extra escapes such as `\#` `\&` `\~` `\-` that `kumo.regex.escape`
 * produces). Inline flag groups inside the pattern (`a(?i)b`, `(?i:..)`) and
 * verbose mode `(?x)` are rejected. `\d`, `\w` and `\b` are ASCII in
 * JavaScript, Unicode in Rust.
 */
import { lua } from 'fengari';
import type { LuaVM } from '../vm.js';
import { pushStringList } from '../convert.js';
import { addSubModule, checkCount, checkString, UserdataClass } from '../host.js';
import { key, pushString, type LuaState } from '../lstr.js';

interface CompiledRegex {
  pattern: string;
  /** For is_match, captures and find (no state). */
  once: RegExp;
  /** For the iterating methods (global; lastIndex is reset before each use). */
  all: RegExp;
}

const POSIX_CLASSES: Record<string, string> = {
  alnum: '0-9A-Za-z',
  alpha: 'A-Za-z',
  ascii: '\\x00-\\x7F',
  blank: '\\t ',
  cntrl: '\\x00-\\x1F\\x7F',
  digit: '0-9',
  graph: '!-~',
  lower: 'a-z',
  print: ' -~',
  punct: '!-\\/:-@\\[-\\x60{-~',
  space: '\\t\\n\\v\\f\\r ',
  upper: 'A-Z',
  word: '0-9A-Za-z_',
  xdigit: '0-9A-Fa-f',
};

/** Characters JavaScript accepts after a backslash in Unicode mode. */
const JS_SYNTAX = new Set('^$\\.*+?()[]{}|/'.split(''));

/**
 * Translate a Rust regex pattern to a JavaScript source and flags (always
 * Unicode mode). Throws with a readable message for what cannot be translated.
 */
export function translateRegex(pattern: string): { source: string; flags: string } {
  const flags = new Set(['u']);
  let i = 0;
  // Leading flag groups: (?i), (?ms), (?-u) ...
  for (;;) {
    const m = /^\(\?([a-zA-Z-]+)\)/.exec(pattern.slice(i));
    if (!m) break;
    let on = true;
    for (const f of m[1] as string) {
      if (f === '-') on = false;
      else if (f === 'i' || f === 'm' || f === 's') {
        if (on) flags.add(f);
        else flags.delete(f);
      } else if (f !== 'u') {
        throw new Error(`regex flag '${f}' is not supported by sluice`);
      }
    }
    i += m[0].length;
  }
  let out = '';
  let inClass = false;
  while (i < pattern.length) {
    const c = pattern[i] as string;
    if (c === '\\') {
      const d = pattern[i + 1];
      if (d === undefined) throw new Error('pattern ends with a lone backslash');
      i += 2;
      if (d === 'A' && !inClass) out += '(?<![\\s\\S])';
      else if (d === '<' && !inClass) out += '\\b(?=\\w)';
      else if (d === '>' && !inClass) out += '\\b(?<=\\w)';
      else if (d === 'z' && !inClass) out += '(?![\\s\\S])';
      else if (d === 'x' && pattern[i] === '{') {
        const end = pattern.indexOf('}', i);
        if (end < 0) throw new Error('unterminated \\x{...} escape');
        out += `\\u{${pattern.slice(i + 1, end)}}`;
        i = end + 1;
      } else if ((d === 'p' || d === 'P') && pattern[i] !== '{' && pattern[i] !== undefined) {
        out += `\\${d}{${pattern[i]}}`;
        i++;
      } else if (/[0-9A-Za-z]/.test(d) || JS_SYNTAX.has(d) || (d === '-' && inClass)) {
        out += `\\${d}`;
      } else {
        // Rust allows escaping any punctuation (regex::escape writes \# \& \~ \-);
        // in JavaScript's Unicode mode those are errors, and they are literals anyway.
        out += d;
      }
      continue;
    }
    if (inClass) {
      if (c === '[' && pattern[i + 1] === ':') {
        const end = pattern.indexOf(':]', i + 2);
        const name = end > 0 ? pattern.slice(i + 2, end) : '';
        const cls = POSIX_CLASSES[name];
        if (cls === undefined) throw new Error(`unsupported character class [:${name}:]`);
        out += cls;
        i = end + 2;
        continue;
      }
      if (c === '[') throw new Error('nested character classes and class set operations are not supported by sluice');
      if (c === ']') inClass = false;
      out += c;
      i++;
      continue;
    }
    if (c === '[') {
      inClass = true;
      out += '[';
      i++;
      if (pattern[i] === '^') {
        out += '^';
        i++;
      }
      if (pattern[i] === ']') {
        // Rust: a ']' first in a class is a literal; in JavaScript `[]` is the empty class.
        out += '\\]';
        i++;
      }
      continue;
    }
    if (pattern.startsWith('(?P<', i)) {
      out += '(?<';
      i += 4;
      continue;
    }
    if (pattern.startsWith('(?P=', i)) {
      const end = pattern.indexOf(')', i);
      if (end < 0) throw new Error('unterminated (?P=name) group');
      out += `\\k<${pattern.slice(i + 4, end)}>`;
      i = end + 1;
      continue;
    }
    if (/^\(\?[a-zA-Z-]*[:)]/.test(pattern.slice(i, i + 12)) && !pattern.startsWith('(?:', i)) {
      throw new Error('inline flag groups are only supported at the start of the pattern');
    }
    out += c;
    i++;
  }
  return { source: out, flags: [...flags].sort().join('') };
}

export function compileRegex(pattern: string): CompiledRegex {
  const { source, flags } = translateRegex(pattern);
  try {
    return { pattern, once: new RegExp(source, flags), all: new RegExp(source, `${flags}g`) };
  } catch (err) {
    throw new Error(`invalid regex ${JSON.stringify(pattern)}: ${(err as Error).message.replace(/^Invalid regular expression: /, '')}`);
  }
}

/** regex::escape: backslash before every meta character. */
export function escapeRegex(s: string): string {
  return s.replace(/[\\.+*?()|[\]{}^$#&\-~]/g, '\\$&');
}

/**
 * Every match, as Rust's find_iter reports them: after an empty match the
 * search steps one character on, and an empty match right where the previous
 * match ended is skipped.
 */
function* matches(re: CompiledRegex, hay: string): Generator<RegExpExecArray> {
  const g = re.all;
  g.lastIndex = 0;
  let lastEnd = -1;
  for (;;) {
    const m = g.exec(hay);
    if (m === null) return;
    const empty = m[0].length === 0;
    if (empty) {
      const cp = hay.codePointAt(g.lastIndex);
      g.lastIndex += cp !== undefined && cp > 0xffff ? 2 : 1;
      if (m.index === lastEnd) continue;
    }
    lastEnd = m.index + m[0].length;
    const next = g.lastIndex;
    yield m;
    g.lastIndex = next;
  }
}

/** Rust's replacement syntax: `$1`, `$name`, `${name}`, `$$`. */
export function expandReplacement(rep: string, m: RegExpExecArray): string {
  if (!rep.includes('$')) return rep;
  let out = '';
  let i = 0;
  while (i < rep.length) {
    const c = rep[i] as string;
    if (c !== '$') {
      out += c;
      i++;
      continue;
    }
    if (rep[i + 1] === '$') {
      out += '$';
      i += 2;
      continue;
    }
    let name: string | null = null;
    if (rep[i + 1] === '{') {
      const end = rep.indexOf('}', i + 2);
      if (end > i + 2) {
        name = rep.slice(i + 2, end);
        i = end + 1;
      }
    } else {
      const nm = /^[_0-9A-Za-z]+/.exec(rep.slice(i + 1));
      if (nm) {
        name = nm[0];
        i += 1 + name.length;
      }
    }
    if (name === null) {
      out += '$';
      i++;
      continue;
    }
    const value = /^[0-9]+$/.test(name) ? m[Number(name)] : m.groups?.[name];
    out += value ?? '';
  }
  return out;
}

function replaceMatches(re: CompiledRegex, hay: string, rep: string, limit: number): string {
  let out = '';
  let last = 0;
  let count = 0;
  for (const m of matches(re, hay)) {
    out += hay.slice(last, m.index) + expandReplacement(rep, m);
    last = m.index + m[0].length;
    if (limit > 0 && ++count >= limit) break;
  }
  return out + hay.slice(last);
}

export function openKumoRegex(_vm: LuaVM, L: LuaState): void {
  const str = (L2: LuaState, arg: number, what: string): string => checkString(L2, arg, `Regex:${what}`);
  const cls = new UserdataClass<CompiledRegex>(
    L,
    'Regex',
    {
      is_match: (L2, re) => {
        lua.lua_pushboolean(L2, re.once.test(str(L2, 2, 'is_match')));
        return 1;
      },
      captures: (L2, re) => {
        const m = re.once.exec(str(L2, 2, 'captures'));
        if (m === null) {
          lua.lua_pushnil(L2);
          return 1;
        }
        lua.lua_createtable(L2, m.length, 0);
        m.forEach((cap, idx) => {
          if (cap === undefined) return;
          pushString(L2, cap);
          lua.lua_rawseti(L2, -2, idx);
        });
        for (const [name, cap] of Object.entries(m.groups ?? {})) {
          if (cap === undefined) continue;
          pushString(L2, cap);
          lua.lua_setfield(L2, -2, key(name));
        }
        return 1;
      },
      find: (L2, re) => {
        const m = re.once.exec(str(L2, 2, 'find'));
        if (m === null) lua.lua_pushnil(L2);
        else pushString(L2, m[0]);
        return 1;
      },
      find_all: (L2, re) => {
        pushStringList(L2, [...matches(re, str(L2, 2, 'find_all'))].map((m) => m[0]));
        return 1;
      },
      replace: (L2, re) => {
        pushString(L2, replaceMatches(re, str(L2, 2, 'replace'), str(L2, 3, 'replace'), 1));
        return 1;
      },
      replace_all: (L2, re) => {
        pushString(L2, replaceMatches(re, str(L2, 2, 'replace_all'), str(L2, 3, 'replace_all'), 0));
        return 1;
      },
      replacen: (L2, re) => {
        const hay = str(L2, 2, 'replacen');
        const limit = checkCount(L2, 3, 'Regex:replacen');
        pushString(L2, replaceMatches(re, hay, str(L2, 4, 'replacen'), limit));
        return 1;
      },
      split: (L2, re) => {
        const hay = str(L2, 2, 'split');
        const parts: string[] = [];
        let last = 0;
        for (const m of matches(re, hay)) {
          parts.push(hay.slice(last, m.index));
          last = m.index + m[0].length;
        }
        parts.push(hay.slice(last));
        pushStringList(L2, parts);
        return 1;
      },
    },
    {
      __tostring: (L2) => {
        const re = cls.test(L2, 1);
        pushString(L2, re ? `Regex(${re.pattern})` : 'Regex');
        return 1;
      },
    },
  );
  addSubModule(L, 'regex', {
    compile: (L2) => {
      cls.push(L2, compileRegex(checkString(L2, 1, 'kumo.regex.compile')));
      return 1;
    },
    escape: (L2) => {
      pushString(L2, escapeRegex(checkString(L2, 1, 'kumo.regex.escape')));
      return 1;
    },
  });
}
