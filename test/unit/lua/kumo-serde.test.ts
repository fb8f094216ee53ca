/**
 * kumo.serde and its legacy aliases through the real VM (kumomta-facts §9,
 * §17.39): mlua's table rules, comments, error positions, and integers beyond
 * fengari's 32 bits.
 */
import fs from 'node:fs';
import path from 'node:path';
import { lua, lauxlib, lualib } from 'fengari';
import { describe, expect, it } from 'vitest';
import { LuaError } from '../../../src/errors.js';
import type { LuaVM } from '../../../src/lua/vm.js';
import { openKumoSerde } from '../../../src/lua/modules/kumo-serde.js';
import { call, loadPolicy, tempDir } from '../../helpers/policy.js';

/** Run `body` as the handler of a test event; returns its values. */
async function run(body: string, ...args: unknown[]): Promise<unknown[]> {
  const { vm } = await loadPolicy(`kumo.on('test', function(...)\n${body}\nend)`);
  return call(vm, 'test', ...args);
}

/** Run `body` expecting it to raise; returns the error. */
async function runError(body: string, ...args: unknown[]): Promise<LuaError> {
  const err = await run(body, ...args).catch((e: unknown) => e);
  expect(err).toBeInstanceOf(LuaError);
  return err as LuaError;
}

it('openKumoSerde leaves the stack as it found it', () => {
  const L = lauxlib.luaL_newstate();
  lualib.luaL_openlibs(L);
  lua.lua_createtable(L, 0, 0);
  const top = lua.lua_gettop(L);
  openKumoSerde({} as LuaVM, L);
  expect(lua.lua_gettop(L)).toBe(top);
  expect(lua.lua_type(L, -1)).toBe(lua.LUA_TTABLE);
});

describe('json_encode (§17.39)', () => {
  for (const fn of ['kumo.serde.json_encode', 'kumo.json_encode']) {
    it(`${fn}: the table and number rules`, async () => {
      const values = await run(`
        local enc = ${fn}
        return enc({}), enc({1,2}), enc({1,2,a=3}),
          enc(kumo.json_parse('{"a":null,"b":[]}')), enc(1.0), enc(1), enc(nil),
          enc({a={b={c='x'}}}), enc('quote " and \\\\ and \\n'), enc(true), enc(0.5)
      `);
      expect(values).toEqual([
        '{}',
        '[1,2]',
        '[1,2]',
        '{"b":{}}',
        '1.0',
        '1',
        'null',
        '{"a":{"b":{"c":"x"}}}',
        '"quote \\" and \\\\ and \\n"',
        'true',
        '0.5',
      ]);
    });

    it(`${fn}: a function cannot be serialized`, async () => {
      const err = await runError(`return ${fn}(function() end)`);
      expect(err.message).toMatch(/init\.lua:2: .*cannot serialize <function>/);
      const [ok, msg] = await run(`return pcall(${fn}, {f = function() end})`);
      expect(ok).toBe(false);
      expect(msg).toContain('cannot serialize');
    });
  }

  it('holes inside the length become null; integer keys of objects become strings', async () => {
    const values = await run(`
      local t = {1, 2, 3}
      t[2] = nil
      return kumo.json_encode(t), kumo.json_encode({[10]='x'})
    `);
    // #t is 3 for this table in Lua 5.3 (border at the array end).
    expect(values).toEqual(['[1,null,3]', '{"10":"x"}']);
  });

  it('a recursive table is an error', async () => {
    const [ok, msg] = await run(`local t = {} t.self = t return pcall(kumo.json_encode, t)`);
    expect(ok).toBe(false);
    expect(msg).toContain('recursive');
  });
});

describe('json_encode_pretty', () => {
  it('sorts keys and indents by two spaces', async () => {
    const [text, alias] = await run(`
      local v = { zeta = 1, alpha = { d = {1, 2}, c = true }, mid = 'm', empty = {} }
      return kumo.serde.json_encode_pretty(v), kumo.json_encode_pretty(v)
    `);
    const expected = [
      '{',
      '  "alpha": {',
      '    "c": true,',
      '    "d": [',
      '      1,',
      '      2',
      '    ]',
      '  },',
      '  "empty": {},',
      '  "mid": "m",',
      '  "zeta": 1',
      '}',
    ].join('\n');
    expect(text).toBe(expected);
    expect(alias).toBe(expected);
  });
});

describe('json_parse', () => {
  it('makes objects tables, arrays sequences, null nil', async () => {
    const values = await run(`
      local v = kumo.serde.json_parse('{"s":"x","n":1,"f":1.5,"b":false,"z":null,"a":[1,"two",null,4],"o":{"k":"v"}}')
      return v.s, v.n, math.type(v.n), v.f, v.b, v.z == nil, #v.a, v.a[2], v.a[3] == nil, v.a[4], v.o.k,
        getmetatable(v.a) ~= nil, getmetatable(v.o) == nil
    `);
    expect(values).toEqual(['x', 1, 'integer', 1.5, false, true, 4, 'two', true, 4, 'v', true, true]);
  });

  it('keeps floats written with a fraction as floats, integers as integers', async () => {
    const values = await run(`
      local v = kumo.json_parse('[1, 1.0, 2e0, -3, 0.25]')
      return math.type(v[1]), math.type(v[2]), math.type(v[3]), math.type(v[4]), kumo.json_encode(v)
    `);
    expect(values).toEqual(['integer', 'float', 'float', 'integer', '[1,1.0,2.0,-3,0.25]']);
  });

  it('an empty parsed array re-encodes as {} (json_encode copies tables, §9.2)', async () => {
    expect(await run(`return kumo.json_encode(kumo.json_parse('[]')), kumo.json_encode(kumo.json_parse('[[]]'))`)).toEqual([
      '{}',
      '[{}]',
    ]);
  });

  it('strips //, /* */ and # comments outside strings, not inside them', async () => {
    const doc = [
      '# leading hash comment',
      '{',
      '  // line comment',
      '  "url": "http://example.com/a#frag", /* block',
      '     spanning lines */',
      '  "text": "not // a comment, nor /* this */",',
      '  "n": 3 # trailing',
      '}',
    ].join('\n');
    const values = await run(`local v = kumo.json_parse(...) return v.url, v.text, v.n`, doc);
    expect(values).toEqual(['http://example.com/a#frag', 'not // a comment, nor /* this */', 3]);
  });

  it('decodes escapes, including surrogate pairs', async () => {
    const [s, len] = await run(`local s = kumo.json_parse('"a\\\\u00e9\\\\ud83d\\\\ude00\\\\n\\\\"b"') return s, #s`);
    expect(s).toBe('aé😀\n"b');
    expect(len).toBe(1 + 2 + 4 + 1 + 1 + 1);
  });

  it('a syntax error is a Lua error naming line and column', async () => {
    // Called from a Lua function, the error carries that caller's file:line.
    const [ok, msg] = await run(`return pcall(function() return kumo.json_parse('{"a":}') end)`);
    expect(ok).toBe(false);
    expect(msg).toMatch(/^\/.*init\.lua:2: json_parse: parsing "\{\\"a\\":\}" as json: expected value at line 1 column 6$/);
    // Called by pcall directly there is no Lua caller to name (as in C Lua).
    const [ok1, msg1] = await run(`return pcall(kumo.json_parse, '{"a":}')`);
    expect(ok1).toBe(false);
    expect(msg1).toMatch(/^json_parse: .*expected value at line 1 column 6$/);
    const [, msg2] = await run(`return pcall(kumo.serde.json_parse, '{\\n  "a": 1,\\n  "b" 2\\n}')`);
    expect(msg2).toMatch(/expected `:` at line 3 column 7/);
    const [, msg3] = await run(`return pcall(kumo.json_parse, '[1, 2')`);
    expect(msg3).toMatch(/EOF while parsing a list at line 1 column 5/);
    const [, msg4] = await run(`return pcall(kumo.json_parse, '{"a": 1} x')`);
    expect(msg4).toMatch(/trailing characters at line 1 column 10/);
    const [, msg5] = await run(`return pcall(kumo.json_parse, '[1,]')`);
    expect(msg5).toMatch(/trailing comma/);
    const [, msg6] = await run(`return pcall(kumo.json_parse, '"tab\tinside"')`);
    expect(msg6).toMatch(/control character/);
  });

  it('an uncaught parse error reaches the host as a LuaError with the line', async () => {
    const err = await runError(`local x = 1\nreturn kumo.json_parse('nope')`);
    // serde_json's wording: 'n' starts `null`, so the 'o' is an unexpected identifier character.
    expect(err.message).toMatch(/init\.lua:3: json_parse: parsing "nope" as json: expected ident at line 1 column 2/);
    const err2 = await runError(`return kumo.json_parse('')`);
    expect(err2.message).toMatch(/init\.lua:2: json_parse: .*EOF while parsing a value at line 1 column 0/);
  });

  it('handles deep nesting within serde_json’s limit and refuses beyond it', async () => {
    const deep = `${'['.repeat(100)}1${']'.repeat(100)}`;
    const [encoded] = await run(`return kumo.json_encode(kumo.json_parse(...))`, deep);
    expect(encoded).toBe(deep);
    const [ok, msg] = await run(`return pcall(kumo.json_parse, ...)`, `${'['.repeat(200)}${']'.repeat(200)}`);
    expect(ok).toBe(false);
    expect(msg).toMatch(/recursion limit exceeded/);
  });

  it('a __proto__ key is an ordinary key', async () => {
    expect(await run(`local v = kumo.json_parse('{"__proto__": {"x": 1}}') return v.__proto__.x`)).toEqual([1]);
  });
});

describe('integers beyond 32 bits', () => {
  it('round-trip exactly through json_parse / json_encode', async () => {
    const values = await run(`
      local a = kumo.json_parse('{"t":1700000000123}')
      local b = kumo.json_parse('{"o":9007199254740991}')
      local c = kumo.json_parse('[-1700000000123, 2147483647, 2147483648, -2147483648, -2147483649]')
      return kumo.json_encode(a), kumo.json_encode(b), kumo.json_encode(c)
    `);
    expect(values).toEqual(['{"t":1700000000123}', '{"o":9007199254740991}', '[-1700000000123,2147483647,2147483648,-2147483648,-2147483649]']);
  });

  it('print as integers through concatenation, and arithmetic stays exact', async () => {
    const values = await run(`
      local v = kumo.json_parse('{"t":1700000000123,"o":9007199254740991}')
      return 'ts=' .. v.t, v.o .. '', kumo.json_encode({next = v.t + 1}), v.t, v.o
    `);
    expect(values).toEqual(['ts=1700000000123', '9007199254740991', '{"next":1700000000124}', 1700000000123, 9007199254740991]);
  });

  it('print as integers through tostring() and string.format %s', async () => {
    const values = await run(`
      local v = kumo.json_parse('{"t":1700000000123,"o":9007199254740991}')
      return tostring(v.t), tostring(v.o), string.format('%s', v.t)
    `);
    expect(values).toEqual(['1700000000123', '9007199254740991', '1700000000123']);
  });

  it('large integers passed in from JS encode as integers too', async () => {
    expect(await run(`return kumo.json_encode({ts = ...})`, 1700000000123)).toEqual(['{"ts":1700000000123}']);
  });
});

describe('json_load', () => {
  it('reads and parses a file (comments allowed), by absolute or relative path', async () => {
    const dir = tempDir();
    const file = path.join(dir, 'data.json');
    fs.writeFileSync(file, '// settings\n{"name": "hook", "ids": [1, 2], "ts": 1700000000123}\n');
    const rel = path.relative(process.cwd(), file);
    const values = await run(
      `
      local a = kumo.serde.json_load(select(1, ...))
      local b = kumo.json_load(select(2, ...))
      return a.name, #a.ids, kumo.json_encode(b)
    `,
      file,
      rel,
    );
    expect(values.slice(0, 2)).toEqual(['hook', 2]);
    // Object key order follows the Lua table, so compare the parsed text.
    expect(JSON.parse(values[2] as string)).toEqual({ name: 'hook', ids: [1, 2], ts: 1700000000123 });
    expect(values[2]).toContain('"ts":1700000000123');
  });

  it('a missing file and a bad file are Lua errors that pcall catches', async () => {
    const dir = tempDir();
    const bad = path.join(dir, 'bad.json');
    fs.writeFileSync(bad, '{\n  "a": tru\n}');
    const [ok1, msg1, ok2, msg2] = await run(
      `
      local a, b = ...
      local ok1, msg1 = pcall(function() return kumo.json_load(a) end)
      local ok2, msg2 = pcall(kumo.json_load, b)
      return ok1, msg1, ok2, msg2
    `,
      path.join(dir, 'missing.json'),
      bad,
    );
    expect(ok1).toBe(false);
    expect(msg1).toMatch(/init\.lua:\d+: json_load: reading file .*missing\.json: no such file or directory/);
    expect(ok2).toBe(false);
    expect(msg2).toMatch(/parsing .*bad\.json as json: expected ident at line 2 column 11/);
  });
});
