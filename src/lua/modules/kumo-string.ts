/**
 * `kumo.string.*` (kumomta-facts §10): plain-string splitting, replacing and
 * trimming, as Rust's str methods do them.
 *
 * Difference from KumoMTA: `kumo.string` has no `wrap`, `psl_domain`,
 * `psl_suffix`, `eval_template` or `normalize_smtp_response`.
 */
import { lua } from 'fengari';
import type { LuaVM } from '../vm.js';
import { pushStringList } from '../convert.js';
import { addSubModule, checkBytes, checkCount, checkString, type HostFunction } from '../host.js';
import { pushString, type LuaState } from '../lstr.js';

/** Start offsets of the non-overlapping occurrences of `pat`; an empty `pat` matches at every character boundary. */
function occurrences(s: string, pat: string, limit = Infinity): number[] {
  const out: number[] = [];
  if (pat === '') {
    for (let i = 0; i <= s.length && out.length < limit; ) {
      out.push(i);
      const cp = s.codePointAt(i);
      i += cp !== undefined && cp > 0xffff ? 2 : 1;
    }
    return out;
  }
  for (let i = s.indexOf(pat); i >= 0 && out.length < limit; i = s.indexOf(pat, i + pat.length)) out.push(i);
  return out;
}

/** Rust's `str::splitn` (`limit` pieces at most; Infinity for `split`). */
export function splitStr(s: string, pat: string, limit = Infinity): string[] {
  if (limit === 0) return [];
  const parts: string[] = [];
  let last = 0;
  for (const at of occurrences(s, pat, limit - 1)) {
    parts.push(s.slice(last, at));
    last = at + pat.length;
  }
  parts.push(s.slice(last));
  return parts;
}

/** Start offsets of the non-overlapping occurrences of `pat`, searched from the right. */
function* occurrencesFromRight(s: string, pat: string): Generator<number> {
  if (pat === '') {
    yield* occurrences(s, '').reverse();
    return;
  }
  let end = s.length;
  while (end - pat.length >= 0) {
    const at = s.lastIndexOf(pat, end - pat.length);
    if (at < 0) return;
    yield at;
    end = at;
  }
}

/** Rust's `str::rsplitn` (`limit` pieces at most, from the right; Infinity for `rsplit`). */
export function rsplitStr(s: string, pat: string, limit = Infinity): string[] {
  if (limit === 0) return [];
  const parts: string[] = [];
  let end = s.length;
  if (limit > 1) {
    for (const at of occurrencesFromRight(s, pat)) {
      parts.push(s.slice(at + pat.length, end));
      end = at;
      if (parts.length >= limit - 1) break;
    }
  }
  parts.push(s.slice(0, end));
  return parts;
}

const WS_START = /^\p{White_Space}+/u;
const WS_END = /\p{White_Space}+$/u;

export function openKumoString(_vm: LuaVM, L: LuaState): void {
  const s = (L2: LuaState, arg: number, fn: string): string => checkString(L2, arg, `kumo.string.${fn}`);
  const list = (fn: (L2: LuaState) => string[]): HostFunction => (L2) => {
    pushStringList(L2, fn(L2));
    return 1;
  };
  const text = (fn: (L2: LuaState) => string): HostFunction => (L2) => {
    pushString(L2, fn(L2));
    return 1;
  };
  const bytesEq = (a: Uint8Array, b: Uint8Array, at: number): boolean => {
    if (at < 0) return false;
    for (let i = 0; i < b.length; i++) if (a[at + i] !== b[i]) return false;
    return true;
  };
  addSubModule(L, 'string', {
    split: list((L2) => splitStr(s(L2, 1, 'split'), s(L2, 2, 'split'))),
    splitn: list((L2) => splitStr(s(L2, 1, 'splitn'), s(L2, 3, 'splitn'), checkCount(L2, 2, 'kumo.string.splitn limit'))),
    rsplit: list((L2) => rsplitStr(s(L2, 1, 'rsplit'), s(L2, 2, 'rsplit'))),
    rsplitn: list((L2) => rsplitStr(s(L2, 1, 'rsplitn'), s(L2, 3, 'rsplitn'), checkCount(L2, 2, 'kumo.string.rsplitn limit'))),
    split_whitespace: list((L2) => s(L2, 1, 'split_whitespace').split(/\p{White_Space}+/u).filter((p) => p !== '')),
    split_ascii_whitespace: list((L2) => s(L2, 1, 'split_ascii_whitespace').split(/[ \t\n\f\r]+/).filter((p) => p !== '')),
    replace: text((L2) => splitStr(s(L2, 1, 'replace'), s(L2, 2, 'replace')).join(s(L2, 3, 'replace'))),
    replacen: text((L2) => {
      const count = checkCount(L2, 4, 'kumo.string.replacen count');
      return splitStr(s(L2, 1, 'replacen'), s(L2, 2, 'replacen'), count + 1).join(s(L2, 3, 'replacen'));
    }),
    trim: text((L2) => s(L2, 1, 'trim').replace(WS_START, '').replace(WS_END, '')),
    trim_start: text((L2) => s(L2, 1, 'trim_start').replace(WS_START, '')),
    trim_end: text((L2) => s(L2, 1, 'trim_end').replace(WS_END, '')),
    starts_with: (L2) => {
      const a = checkBytes(L2, 1, 'kumo.string.starts_with');
      const b = checkBytes(L2, 2, 'kumo.string.starts_with');
      lua.lua_pushboolean(L2, b.length <= a.length && bytesEq(a, b, 0));
      return 1;
    },
    ends_with: (L2) => {
      const a = checkBytes(L2, 1, 'kumo.string.ends_with');
      const b = checkBytes(L2, 2, 'kumo.string.ends_with');
      lua.lua_pushboolean(L2, b.length <= a.length && bytesEq(a, b, a.length - b.length));
      return 1;
    },
  });
}
