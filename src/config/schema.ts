/**
 * Strict option records, in the manner of serde's `deny_unknown_fields`:
 * every field has a parser and a default, unknown keys are rejected with the
 * list of known ones, and the result is frozen. Error text follows serde's
 * wording (`unknown field`, `invalid type`), which policies and KumoMTA's
 * helpers match on.
 */
import { describe, parseDuration } from './duration.js';

export class OptionError extends Error {
  constructor(
    message: string,
    readonly field?: string,
    readonly kind: 'unknown' | 'invalid' | 'missing' = 'invalid',
  ) {
    super(message);
  }
}

export type FieldParser<T> = (value: unknown, field: string) => T;

export interface FieldSpec<T> {
  parse: FieldParser<T>;
  /** Used when the key is absent or nil; a field with no default is required. */
  default?: () => T;
  optional?: boolean;
}

export type Schema<T> = { [K in keyof T]-?: FieldSpec<T[K]> };

/**
 * A Lua float with an integral value (`20/2`) reaches JS as a plain number.
 * The Lua bridge marks the keys that held one, so that integer fields can
 * refuse them as mlua does (`invalid type: floating point \`10.0\``).
 */
const luaFloatKeys = new WeakMap<object, Set<string>>();
const INTEGER_FIELD = Symbol('sluice.integer_field');

export function markLuaFloat(obj: object, key: string): void {
  let keys = luaFloatKeys.get(obj);
  if (!keys) luaFloatKeys.set(obj, (keys = new Set()));
  keys.add(key);
}

export function isLuaFloat(obj: object, key: string): boolean {
  return luaFloatKeys.get(obj)?.has(key) === true;
}

/** Mark a parser as one that takes integers only (see markLuaFloat). */
export function integerField<T>(parse: FieldParser<T>): FieldParser<T> {
  (parse as { [INTEGER_FIELD]?: boolean })[INTEGER_FIELD] = true;
  return parse;
}

/** Validate `input` against `schema`; throws OptionError naming the record and field. */
export function parseRecord<T>(recordName: string, schema: Schema<T>, input: unknown): Readonly<T> {
  if (input === null || input === undefined) input = {};
  if (typeof input !== 'object' || Array.isArray(input)) {
    throw new OptionError(`${recordName}: invalid type: ${describe(input)}, expected a table of options`);
  }
  const known = Object.keys(schema);
  const obj = input as Record<string, unknown>;
  for (const k of Object.keys(obj)) {
    if (!Object.hasOwn(schema, k)) {
      const hint = suggest(k, known);
      throw new OptionError(
        `${recordName}: unknown field \`${k}\`, expected one of ${known.map((n) => `\`${n}\``).join(', ')}${hint ? ` (did you mean \`${hint}\`?)` : ''}`,
        k,
        'unknown',
      );
    }
  }
  const out: Record<string, unknown> = {};
  for (const k of known) {
    const spec = (schema as Record<string, FieldSpec<unknown>>)[k] as FieldSpec<unknown>;
    // Own keys only: `constructor` and `toString` are fields too, not Object.prototype's.
    const v = Object.hasOwn(obj, k) ? obj[k] : undefined;
    if (v === undefined || v === null) {
      if (spec.default) out[k] = spec.default();
      else if (!spec.optional) throw new OptionError(`${recordName}: missing field \`${k}\``, k, 'missing');
      continue;
    }
    try {
      if ((spec.parse as { [INTEGER_FIELD]?: boolean })[INTEGER_FIELD] && isLuaFloat(obj, k)) {
        throw new OptionError(`invalid type: floating point \`${v}.0\`, expected an integer`);
      }
      out[k] = spec.parse(v, k);
    } catch (err) {
      if (err instanceof OptionError && err.message.startsWith(recordName)) throw err;
      const reason = err instanceof Error ? err.message : String(err);
      throw new OptionError(`${recordName}: field \`${k}\`: ${reason}`, k, 'invalid');
    }
  }
  return Object.freeze(out) as Readonly<T>;
}

/** The closest known name within edit distance 2, for "did you mean". */
export function suggest(name: string, known: readonly string[]): string | null {
  let best: string | null = null;
  let bestDist = 3;
  for (const k of known) {
    const d = editDistance(name, k);
    if (d < bestDist) {
      best = k;
      bestDist = d;
    }
  }
  return best;
}

function editDistance(a: string, b: string): number {
  const dp = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let prev = dp[0] as number;
    dp[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const tmp = dp[j] as number;
      dp[j] = Math.min((dp[j] as number) + 1, (dp[j - 1] as number) + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = tmp;
    }
  }
  return dp[b.length] as number;
}

// ---- field parsers -------------------------------------------------------

export const string: FieldParser<string> = (v) => {
  if (typeof v !== 'string') throw new OptionError(`invalid type: ${describe(v)}, expected a string`);
  return v;
};

export const boolean: FieldParser<boolean> = (v) => {
  if (typeof v !== 'boolean') throw new OptionError(`invalid type: ${describe(v)}, expected a boolean`);
  return v;
};

/** A non-negative integer; floats are rejected as mlua does (`batch_size = 20/2` fails). */
export function unsigned(max = Number.MAX_SAFE_INTEGER): FieldParser<number> {
  return integerField((v) => {
    if (typeof v !== 'number') throw new OptionError(`invalid type: ${describe(v)}, expected an integer`);
    if (!Number.isInteger(v)) throw new OptionError(`invalid type: floating point \`${v}\`, expected an integer`);
    if (v < 0 || v > max) throw new OptionError(`invalid value: integer \`${v}\`, expected an integer between 0 and ${max}`);
    return v;
  });
}

/** A duration in milliseconds. */
export const duration: FieldParser<number> = (v) => {
  try {
    return parseDuration(v);
  } catch (err) {
    throw new OptionError((err as Error).message);
  }
};

export function stringList(): FieldParser<string[]> {
  return (v) => {
    const list = asList(v);
    return list.map((item, i) => {
      if (typeof item !== 'string') throw new OptionError(`invalid type at [${i + 1}]: ${describe(item)}, expected a string`);
      return item;
    });
  };
}

export function oneOf<T extends string>(values: readonly T[]): FieldParser<T> {
  return (v) => {
    if (typeof v !== 'string' || !values.includes(v as T)) {
      throw new OptionError(`unknown variant ${typeof v === 'string' ? `\`${v}\`` : describe(v)}, expected one of ${values.map((x) => `\`${x}\``).join(', ')}`);
    }
    return v as T;
  };
}

/** Lua arrays arrive as JS arrays; an empty Lua table arrives as `{}`. */
export function asList(v: unknown): unknown[] {
  if (Array.isArray(v)) return v;
  if (v && typeof v === 'object' && Object.keys(v).length === 0) return [];
  throw new OptionError(`invalid type: ${describe(v)}, expected a sequence`);
}

export function asMap(v: unknown): Record<string, unknown> {
  if (v && typeof v === 'object' && !Array.isArray(v)) return v as Record<string, unknown>;
  if (Array.isArray(v) && v.length === 0) return {};
  throw new OptionError(`invalid type: ${describe(v)}, expected a map`);
}
