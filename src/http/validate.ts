/**
 * Checking JSON request bodies at the boundary: unknown fields and wrong
 * types are 400s that name the field (`recipients[0].email`).
 */
import { HttpError } from './server.js';

export type Json = Record<string, unknown>;

export function bad(field: string, message: string): HttpError {
  return new HttpError(400, 'invalid-field', `${field}: ${message}`, field);
}

// Long field lists (log records: 29 fields) are checked through a Set made once per list.
const allowedSets = new WeakMap<readonly string[], ReadonlySet<string>>();

function allowedSet(allowed: readonly string[]): ReadonlySet<string> {
  let s = allowedSets.get(allowed);
  if (!s) allowedSets.set(allowed, (s = new Set(allowed)));
  return s;
}

/** The body must be an object with only `allowed` keys. */
export function object(v: unknown, field: string, allowed: readonly string[]): Json {
  if (v === undefined) throw new HttpError(400, 'missing-body', `a JSON object body is required`, field || undefined);
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw bad(field || 'body', `expected a JSON object, got ${kind(v)}`);
  const set = allowed.length > 8 ? allowedSet(allowed) : null;
  for (const k of Object.keys(v)) {
    if (!(set ? set.has(k) : allowed.includes(k))) throw bad(join(field, k), `unknown field; expected one of ${allowed.join(', ')}`);
  }
  return v as Json;
}

export function string(o: Json, key: string, field: string, required: true): string;
export function string(o: Json, key: string, field: string, required?: false): string | undefined;
export function string(o: Json, key: string, field: string, required = false): string | undefined {
  const v = o[key];
  if (v === undefined || v === null) {
    if (required) throw bad(join(field, key), 'is required');
    return undefined;
  }
  if (typeof v !== 'string') throw bad(join(field, key), `expected a string, got ${kind(v)}`);
  return v;
}

export function boolean(o: Json, key: string, field: string): boolean | undefined {
  const v = o[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'boolean') throw bad(join(field, key), `expected a boolean, got ${kind(v)}`);
  return v;
}

export function stringList(o: Json, key: string, field: string): string[] | undefined {
  const v = o[key];
  if (v === undefined || v === null) return undefined;
  if (!Array.isArray(v)) throw bad(join(field, key), `expected an array of strings, got ${kind(v)}`);
  v.forEach((x, i) => {
    if (typeof x !== 'string') throw bad(`${join(field, key)}[${i}]`, `expected a string, got ${kind(x)}`);
  });
  return v as string[];
}

export function map(o: Json, key: string, field: string): Json | undefined {
  const v = o[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'object' || Array.isArray(v)) throw bad(join(field, key), `expected an object, got ${kind(v)}`);
  return v as Json;
}

export function join(field: string, key: string): string {
  return field ? `${field}.${key}` : key;
}

export function kind(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  return typeof v === 'object' ? 'an object' : `a ${typeof v}`;
}
