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
 *
 * This file is the engine's public API; the engine itself is in template/:
 * lexer.ts, expressions.ts and statements.ts (parsing, which compiles to
 * closures), values.ts (minijinja value semantics), filters.ts (filters,
 * tests, methods) and errors.ts.
 */

import type { JsonLogRecord } from './record.js';
import { Source } from './template/errors.js';
import { tokenize } from './template/lexer.js';
import { Scope } from './template/expressions.js';
import { TemplateParser, type Out } from './template/statements.js';
import type { Obj } from './template/values.js';

export { TemplateError, TemplateRenderError, TemplateSyntaxError } from './template/errors.js';
export { displayValue } from './template/values.js';

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
  const body = new TemplateParser(src, tokenize(src)).parseTemplate();
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
