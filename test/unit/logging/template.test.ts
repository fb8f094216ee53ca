import { describe, expect, it } from 'vitest';
import {
  TemplateRenderError,
  TemplateSyntaxError,
  compilePerRecordTemplates,
  compileTemplate,
  renderRecordBody,
} from '../../../src/logging/template.js';
import { buildRecord, response, type JsonLogRecord } from '../../../src/logging/record.js';
import { Message } from '../../../src/queue/message.js';

function record(overrides: Partial<JsonLogRecord> = {}): JsonLogRecord {
  return {
    type: 'Delivery',
    id: '0c4f7a2e91b311f0a6c2525400e1c0de',
    sender: 'news@shop.example',
    recipient: 'alice@mail.example',
    queue: 'acme@mail.example',
    site: 'mx.mail.example',
    size: 2048,
    response: { code: 250, enhanced_code: { class: 2, subject: 0, detail: 0 }, content: 'OK', command: null },
    peer_address: { name: 'mx.mail.example', addr: '192.0.2.10' },
    timestamp: 1767225630,
    event_time: '2026-01-01T00:00:30.123000000Z',
    created: 1767225600,
    created_time: '2026-01-01T00:00:00.120000000Z',
    num_attempts: 0,
    bounce_classification: 'Uncategorized',
    egress_pool: null,
    egress_source: null,
    source_address: null,
    feedback_report: null,
    meta: { tenant: 'acme', 'x-list': ['a', 'b'] },
    headers: { Subject: 'Spring sale', 'X-Campaign': 'spring' },
    delivery_protocol: 'ESMTP',
    reception_protocol: 'ESMTP',
    nodeid: '5b0c7e44-2d1a-4c59-9d55-0b7a3c1f9e21',
    ...overrides,
  };
}

const render = (src: string, vars: Record<string, unknown> = {}, globals?: Record<string, unknown>): string => compileTemplate(src)(vars, globals);

describe('compileTemplate: output and lookup', () => {
  it('substitutes variables and keeps template data', () => {
    expect(render('Hello {{ name }}!', { name: 'World' })).toBe('Hello World!');
    expect(render('{{name}}-{{  name  }}', { name: 'x' })).toBe('x-x');
  });

  it('reads nested fields with . and []', () => {
    const r = record();
    const vars = r as unknown as Record<string, unknown>;
    expect(render('{{ response.code }} {{ response.enhanced_code.class }}', vars)).toBe('250 2');
    expect(render("{{ headers['X-Campaign'] }} {{ meta[\"tenant\"] }}", vars)).toBe('spring acme');
    expect(render('{{ meta["x-list"][1] }} {{ meta["x-list"][-1] }} {{ meta["x-list"].0 }}', vars)).toBe('b b a');
    expect(render('{{ peer_address.addr }}', vars)).toBe('192.0.2.10');
  });

  it('prints values as minijinja does', () => {
    expect(render('{{ a }}|{{ b }}|{{ c }}|{{ d }}', { a: null, b: true, c: 1.5, d: 42 })).toBe('none|true|1.5|42');
    expect(render('{{ xs }}', { xs: ['a', 1, null] })).toBe('["a", 1, none]');
    expect(render('{{ m }}', { m: { k: 'v', n: 2 } })).toBe('{"k": "v", "n": 2}');
    expect(render('{{ "a\\"b" }}')).toBe('a"b');
  });

  it('renders undefined variables as empty strings, and looking into them fails', () => {
    expect(render('[{{ nope }}]')).toBe('[]');
    expect(render('[{{ m.nope }}]', { m: {} })).toBe('[]');
    expect(render('[{{ n.attr }}]', { n: null })).toBe('[]');
    expect(() => render('{{ nope.attr }}')).toThrow(TemplateRenderError);
    expect(() => render('line one\n{{ nope.attr }}')).toThrow(/undefined value \(in template line 2, column 1: '\{\{ nope\.attr \}\}'\)/);
  });

  it('does not expose prototype properties', () => {
    expect(render('[{{ m.constructor }}][{{ m.toString }}][{{ s.length }}]', { m: {}, s: 'abc' })).toBe('[][][]');
  });

  it('supports literals, arithmetic and concatenation', () => {
    expect(render("{{ 'a' ~ 1 ~ none }}")).toBe('a1none');
    expect(render('{{ 1 + 2 * 3 }} {{ (1 + 2) * 3 }} {{ 7 // 2 }} {{ 7 % 3 }} {{ -7 % 3 }} {{ 2 ** 10 }} {{ 1 / 4 }}')).toBe('7 9 3 1 2 1024 0.25');
    expect(render("{{ 'ab' + 'cd' }} {{ [1, 2] + [3] }}")).toBe('abcd [1, 2, 3]');
    // the KumoMTA docs' example: age={{ timestamp - created }}
    expect(render('age={{ timestamp - created }}', record() as unknown as Record<string, unknown>)).toBe('age=30');
    expect(render("{{ 'yes' if ok else 'no' }}{{ 'x' if not ok }}", { ok: false })).toBe('nox');
  });

  it('exposes the globals after the context (log_record)', () => {
    expect(render('{{ a }} {{ g }}', { a: 1 }, { g: 2, a: 3 })).toBe('1 2');
  });

  it('drops one trailing newline of the source (keep_trailing_newline=false)', () => {
    expect(render('{{ a }}\n', { a: 'x' })).toBe('x');
    expect(render('{{ a }}\n\n', { a: 'x' })).toBe('x\n');
  });
});

describe('compileTemplate: filters', () => {
  it('tojson is compact JSON, HTML-safe like minijinja', () => {
    expect(render('{{ m | tojson }}', { m: { a: [1, 'x'], b: null } })).toBe('{"a":[1,"x"],"b":null}');
    expect(render('{{ s|tojson }}', { s: "<a href='x'>&</a>" })).toBe('"\\u003ca href=\\u0027x\\u0027\\u003e\\u0026\\u003c/a\\u003e"');
    expect(render('{{ nope|tojson }}')).toBe('null');
    expect(render('{{ m|tojson(indent=2) }}', { m: { a: 1 } })).toBe('{\n  "a": 1\n}');
    expect(render('{{ m|tojson(true) }}', { m: [1] })).toBe('[\n  1\n]');
  });

  it('string filters', () => {
    const v = { s: '  Hello World  ', t: 'Hello' };
    expect(render('{{ t|upper }} {{ t|lower }} [{{ s|trim }}] {{ t|replace("l", "L") }} {{ t|length }}', v)).toBe('HELLO hello [Hello World] HeLLo 5');
    expect(render('{{ "xxhixx"|trim("x") }} {{ "hello world"|title }} {{ "hELLO"|capitalize }}')).toBe('hi Hello World Hello');
    expect(render('{{ "a,b,c"|split(",")|join("+") }}')).toBe('a+b+c');
    expect(render('{{ "<b>"|e }}')).toBe('&lt;b&gt;');
    expect(render('{{ nope|upper }}|')).toBe('|');
  });

  it('default only replaces undefined, unless lax', () => {
    expect(render('{{ nope|default("dflt") }} {{ n|default("dflt") }} {{ e|default("dflt", true) }} {{ nope|d("d") }}', { n: null, e: '' })).toBe('dflt none dflt d');
    expect(render('[{{ nope|default }}]')).toBe('[]');
  });

  it('length, join, string, int and friends', () => {
    const v = { xs: ['a', 'b', 'c'], m: { a: 1, b: 2 }, n: 42 };
    expect(render('{{ xs|length }} {{ m|length }} {{ "héllo"|length }} {{ xs|count }}', v)).toBe('3 2 5 3');
    expect(render('{{ xs|join }} {{ xs|join(", ") }} {{ [1, none, true]|join("/") }} [{{ nope|join(",") }}]', v)).toBe('abc a, b, c 1/none/true []');
    expect(render('{{ (n|string) ~ "!" }} {{ "42"|int + 1 }} {{ "3.9"|int }} {{ 3.9|int }} {{ nope|int }} {{ true|int }}', v)).toBe('42! 43 3 3 0 1');
    expect(render('{{ xs|first }} {{ xs|last }} {{ xs|reverse|join }} {{ "-3"|float|abs }}', v)).toBe('a c cba 3');
    expect(render('{% for k, v in m|items %}{{ k }}={{ v }};{% endfor %}', v)).toBe('a=1;b=2;');
    expect(render('{% for k, v in {"b": 1, "A": 2}|dictsort %}{{ k }};{% endfor %}')).toBe('A;b;');
    expect(() => render('{{ n|length }}', v)).toThrow(/cannot calculate length of value of type number/);
  });

  it('chains filters and applies them before operators', () => {
    expect(render('{{ "a" ~ s|upper|replace("B", "-") }}', { s: 'abc' })).toBe('aA-C');
  });
});

describe('compileTemplate: statements', () => {
  it('if / elif / else with comparisons and boolean operators', () => {
    const t = compileTemplate('{% if code == 250 %}ok{% elif code >= 500 and not soft %}perm{% elif code != 0 or soft %}temp{% else %}none{% endif %}');
    expect(t({ code: 250 })).toBe('ok');
    expect(t({ code: 550, soft: false })).toBe('perm');
    expect(t({ code: 450 })).toBe('temp');
    expect(t({ code: 0 })).toBe('none');
  });

  it('tests: is defined, is none, is not ..., in', () => {
    const t = compileTemplate('{% if a is defined %}A{% endif %}{% if b is none %}B{% endif %}{% if c is not defined %}C{% endif %}{% if "x" in xs %}X{% endif %}{% if "z" not in xs %}Z{% endif %}{% if "ell" in "hello" %}S{% endif %}{% if 3 is odd %}O{% endif %}');
    expect(t({ a: 0, b: null, xs: ['x'] })).toBe('ABCXZSO');
    expect(t({ b: 1, c: 1, xs: [] })).toBe('ZSO');
  });

  it('truthiness follows minijinja (empty string, 0, empty list and map are false)', () => {
    const t = compileTemplate('{% if v %}T{% else %}F{% endif %}');
    expect([undefined, null, false, 0, '', [], {}].map((v) => t({ v }))).toEqual(['F', 'F', 'F', 'F', 'F', 'F', 'F']);
    expect([true, 1, 'x', [0], { a: 1 }].map((v) => t({ v }))).toEqual(['T', 'T', 'T', 'T', 'T']);
  });

  it('for loops over lists, maps, strings, with loop vars, else and a filter', () => {
    expect(render('{% for x in xs %}{{ loop.index }}:{{ x }}{% if not loop.last %},{% endif %}{% endfor %}', { xs: ['a', 'b'] })).toBe('1:a,2:b');
    expect(render('{% for k in m %}{{ k }}{% endfor %}', { m: { a: 1, b: 2 } })).toBe('ab');
    expect(render('{% for c in "abc" %}[{{ c }}]{% endfor %}')).toBe('[a][b][c]');
    expect(render('{% for x in nope %}x{% else %}empty{% endfor %}')).toBe('empty');
    expect(render('{% for x in xs if x > 1 %}{{ x }}/{{ loop.length }} {% endfor %}', { xs: [1, 2, 3] })).toBe('2/2 3/2 ');
    expect(render('{% for x in range(3) %}{{ x }}{% endfor %}')).toBe('012');
    expect(render('{% for x in xs %}{% for y in xs %}{{ x }}{{ y }} {% endfor %}{% endfor %}', { xs: [1, 2] })).toBe('11 12 21 22 ');
  });

  it('set, in the template and scoped to a loop body', () => {
    expect(render('{% set n = 2 %}{% for x in xs %}{% set n = x %}{{ n }}{% endfor %}{{ n }}', { xs: [5, 6] })).toBe('562');
    expect(render('{% set greeting %}Hi {{ who }}{% endset %}{{ greeting|upper }}', { who: 'you' })).toBe('HI YOU');
  });

  it('methods in the Python style', () => {
    expect(render('{{ s.upper() }} {{ s.startswith("he") }} {{ m.get("a") }} {{ m.get("z", "dflt") }}', { s: 'hello', m: { a: 1 } })).toBe('HELLO true 1 dflt');
    expect(render('{% for k, v in m.items() %}{{ k }}{{ v }}{% endfor %}', { m: { a: 1 } })).toBe('a1');
  });

  it('comments, raw blocks and whitespace control', () => {
    expect(render('a{# a comment {{ x }} #}b')).toBe('ab');
    expect(render('{% raw %}{{ x }}{% endraw %}')).toBe('{{ x }}');
    expect(render('a  \n  {{- x -}}  \n  b', { x: 1 })).toBe('a1b');
    expect(render('<ul>\n  {%- for x in xs %}\n  <li>{{ x }}</li>\n  {%- endfor %}\n</ul>', { xs: [1, 2] })).toBe('<ul>\n  <li>1</li>\n  <li>2</li>\n</ul>');
    expect(render('x {#- comment -#} y')).toBe('xy');
    expect(render('{% if true -%}\n  yes\n{%- endif %}')).toBe('yes');
  });
});

describe('compileTemplate: syntax errors', () => {
  it('names the line and column', () => {
    let err: unknown;
    try {
      compileTemplate('ok\n{{ type ', { name: 'Delivery' });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(TemplateSyntaxError);
    const e = err as TemplateSyntaxError;
    expect(e.line).toBe(2);
    expect(e.column).toBe(9);
    expect(e.message).toBe("syntax error: unexpected end of input, expected end of variable block (in template 'Delivery' line 2, column 9: '{{ type ')");
  });

  it.each([
    ['{% if x %}never closed', /unexpected end of input, expected `elif` or `else` or `endif`/],
    ['{% endif %}', /unexpected `endif`/],
    ['{{ x | nosuchfilter }}', /unknown filter `nosuchfilter`.*column 8/],
    ['{{ x is nosuchtest }}', /unknown test `nosuchtest`/],
    ['{% frobnicate %}', /unknown statement frobnicate/],
    ['{{ "unterminated }}', /unexpected end of string/],
    ['{{ x | replace("a") }}', /missing argument: filter `replace` takes at least 2 arguments/],
    ['{{ a b }}', /unexpected identifier `b`, expected end of variable block/],
    ['{# open comment', /unexpected end of comment/],
    ['{{ 1 + }}', /unexpected end of variable block, expected expression/],
    ['{{ nosuchfunction() }}', /unknown function nosuchfunction/],
  ])('%s', (src, message) => {
    expect(() => compileTemplate(src)).toThrow(message);
  });

  it('compilePerRecordTemplates names the record type', () => {
    expect(() => compilePerRecordTemplates({ Any: { template: '{{ id }}' }, Bounce: { template: '{% if %}' } })).toThrow(/in template 'Bounce' line 1/);
    const map = compilePerRecordTemplates({ Any: { template: '{{ id }}' }, Delivery: {} });
    expect([...map.keys()]).toEqual(['Any']);
  });
});

describe('renderRecordBody', () => {
  it('is compact JSON of the record plus a newline without a template', () => {
    const r = record();
    expect(renderRecordBody(r, undefined)).toBe(`${JSON.stringify(r)}\n`);
  });

  it('{{ type }} {{ id }} gives "<Type> <id>\\n" (kumomta-facts §17.31)', () => {
    const r = record();
    expect(renderRecordBody(r, compileTemplate('{{ type }} {{ id }}'))).toBe(`Delivery ${r.id}\n`);
    // a source string works too (compiled once, cached)
    expect(renderRecordBody(r, '{{ type }} {{ id }}')).toBe(`Delivery ${r.id}\n`);
  });

  it('{{ log_record | tojson }} reproduces the default JSON', () => {
    const msg = new Message({ sender: 'a@example.com', recipients: ['b@example.net'], data: 'Subject: hi\r\n\r\nbody', meta: { tenant: 't1' } });
    const r = buildRecord(msg, { type: 'Reception', response: response(250, 'OK'), when: 1767225600123, sessionId: 'e7a1c2d3-0000-4000-8000-000000000001' }, { meta: ['tenant'], headers: ['Subject'] });
    expect(renderRecordBody(r, '{{ log_record | tojson }}')).toBe(renderRecordBody(r, undefined));
    expect(JSON.parse(renderRecordBody(r, '{{ log_record | tojson }}'))).toEqual(r);
  });

  it('does not add a second newline', () => {
    const r = record();
    expect(renderRecordBody(r, '{{ type }}\n\n')).toBe('Delivery\n');
    expect(renderRecordBody(r, '{{ type }}{{ "\\n" }}')).toBe('Delivery\n');
  });

  it('renders a few thousand records quickly from one compilation', () => {
    const t = compileTemplate('{% for k, v in meta|items %}{{ k }}={{ v|tojson }} {% endfor %}{{ type|lower }} {{ response.code }} {{ headers.Subject|default("-") }}');
    const r = record();
    const start = performance.now();
    let out = '';
    for (let i = 0; i < 5000; i++) out = renderRecordBody(r, t);
    expect(out).toBe('tenant="acme" x-list=["a","b"] delivery 250 Spring sale\n');
    expect(performance.now() - start).toBeLessThan(2000);
  });
});
