/**
 * Durations as KumoMTA accepts them: a number of seconds, or a humantime
 * string such as `'1m'`, `'20 minutes'`, `'1h 30m'`, `'10 hours'`, `'500ms'`.
 * The only place sluice parses durations. Results are milliseconds.
 */
const UNIT_MS: Record<string, number> = {
  ns: 1e-6, nsec: 1e-6, nanos: 1e-6, nanosecond: 1e-6, nanoseconds: 1e-6,
  us: 1e-3, usec: 1e-3, micros: 1e-3, microsecond: 1e-3, microseconds: 1e-3,
  ms: 1, msec: 1, millis: 1, millisecond: 1, milliseconds: 1,
  s: 1000, sec: 1000, secs: 1000, second: 1000, seconds: 1000,
  m: 60_000, min: 60_000, mins: 60_000, minute: 60_000, minutes: 60_000,
  h: 3_600_000, hr: 3_600_000, hrs: 3_600_000, hour: 3_600_000, hours: 3_600_000,
  d: 86_400_000, day: 86_400_000, days: 86_400_000,
  w: 604_800_000, week: 604_800_000, weeks: 604_800_000,
  M: 2_630_016_000, month: 2_630_016_000, months: 2_630_016_000,
  y: 31_557_600_000, year: 31_557_600_000, years: 31_557_600_000,
};

export class DurationError extends Error {}

/** Parse a duration; throws DurationError with the reason. */
export function parseDuration(value: unknown): number {
  if (typeof value === 'number') {
    if (!Number.isFinite(value) || value < 0) throw new DurationError(`invalid duration ${value}: expected a non-negative number of seconds`);
    return value * 1000;
  }
  if (typeof value !== 'string') throw new DurationError(`invalid type: ${describe(value)}, expected a duration such as "1m" or a number of seconds`);
  const text = value.trim();
  if (text === '') throw new DurationError('invalid duration "": expected a value such as "1m"');
  const re = /(\d+(?:\.\d+)?)\s*([a-zA-Z]+)/gy;
  let total = 0;
  let pos = 0;
  while (pos < text.length) {
    while (text[pos] === ' ') pos++;
    if (pos >= text.length) break;
    re.lastIndex = pos;
    const m = re.exec(text);
    if (!m) {
      if (/^\d+(\.\d+)?$/.test(text.slice(pos))) throw new DurationError(`invalid duration "${value}": the number needs a unit, as in "${text.slice(pos)}s"`);
      throw new DurationError(`invalid duration "${value}": expected a number and a unit, as in "1m" or "1h 30m"`);
    }
    const unit = UNIT_MS[m[2] as string] ?? UNIT_MS[(m[2] as string).toLowerCase()];
    if (unit === undefined) throw new DurationError(`invalid duration "${value}": unknown unit "${m[2]}"`);
    total += Number(m[1]) * unit;
    pos = re.lastIndex;
  }
  return total;
}

/** Format milliseconds the way humantime does (`1h 30m`, `2m`, `500ms`). */
export function formatDuration(ms: number): string {
  // Whole milliseconds first, then the sub-millisecond part as humantime's us/ns.
  let rest = Math.floor(ms);
  let ns = Math.round((ms - rest) * 1e6);
  if (ns >= 1e6) {
    rest += 1;
    ns -= 1e6;
  }
  if (rest === 0 && ns === 0) return '0s';
  const parts: string[] = [];
  const units: Array<[string, number]> = [['years', 31_557_600_000], ['months', 2_630_016_000], ['days', 86_400_000], ['h', 3_600_000], ['m', 60_000], ['s', 1000], ['ms', 1]];
  for (const [name, size] of units) {
    const n = Math.floor(rest / size);
    if (n > 0) {
      const label = name === 'years' ? (n === 1 ? 'year' : 'years') : name === 'months' ? (n === 1 ? 'month' : 'months') : name === 'days' ? (n === 1 ? 'day' : 'days') : name;
      parts.push(name.length > 2 ? `${n}${label}` : `${n}${name}`);
      rest -= n * size;
    }
  }
  if (ns >= 1000) parts.push(`${Math.floor(ns / 1000)}us`);
  if (ns % 1000 > 0) parts.push(`${ns % 1000}ns`);
  return parts.join(' ');
}

export function describe(v: unknown): string {
  if (v === null || v === undefined) return 'nil';
  if (typeof v === 'string') return `string "${v}"`;
  if (typeof v === 'number') return Number.isInteger(v) ? `integer \`${v}\`` : `floating point \`${v}\``;
  if (typeof v === 'boolean') return `boolean \`${v}\``;
  if (Array.isArray(v)) return 'sequence';
  return 'map';
}
