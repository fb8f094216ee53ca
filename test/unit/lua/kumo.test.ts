/**
 * The core of the `kumo` module through a real VM (kumomta-facts §2, §10):
 * logging, the MTA-only calls sluice accepts and ignores, introspection
 * (traceback, validation_failed, declared events), sleep, memoize and
 * kumo.time.parse_duration.
 */
import { describe, expect, it, vi } from 'vitest';
import { LuaError } from '../../../src/errors.js';
import { chunkPath } from '../../../src/lua/vm.js';
import { DECLARED_EVENTS, isMultiple } from '../../../src/lua/events.js';
import { MTA_ONLY_CALLS } from '../../../src/lua/modules/kumo.js';
import { call, loadPolicy, type CapturedLog } from '../../helpers/policy.js';

function lineOf(source: string, marker: string): number {
  const i = source.split('\n').findIndex((l) => l.includes(marker));
  if (i < 0) throw new Error(`marker ${JSON.stringify(marker)} is not in the policy`);
  return i + 1;
}

/** Fire `event`, expecting a LuaError. */
async function fireError(vm: Awaited<ReturnType<typeof loadPolicy>>['vm'], event: string, ...args: unknown[]): Promise<LuaError> {
  const err = await vm.fire(event, args).catch((e: unknown) => e);
  expect(err).toBeInstanceOf(LuaError);
  return err as LuaError;
}

const LEVEL = { debug: 20, info: 30, warn: 40, error: 50 } as const;

describe('kumo.log_error / log_warn / log_info / log_debug', () => {
  it('log at their level, target lua, prefixed with file:line and joined by spaces', async () => {
    const source = `
kumo.on('log', function()
  kumo.log_error('delivery failed', 42, nil, true)
  kumo.log_warn('careful')
  kumo.log_info('ts', 1700000000123, 1.5, 7)
  kumo.log_debug('obj', setmetatable({}, { __tostring = function() return 'custom!' end }))
end)
`;
    const { vm, policyPath, logs } = await loadPolicy(source);
    const where = (marker: string) => `${chunkPath(policyPath)}:${lineOf(source, marker)}: `;
    await call(vm, 'log');
    await vi.waitFor(() => expect(logs.filter((l) => l.target === 'lua')).toHaveLength(4));
    const lua = logs.filter((l) => l.target === 'lua').map((l) => [l.level, l.msg]);
    expect(lua).toEqual([
      [LEVEL.error, `${where('log_error')}delivery failed 42 nil true`],
      [LEVEL.warn, `${where('log_warn')}careful`],
      [LEVEL.info, `${where('log_info')}ts 1700000000123 1.5 7`],
      [LEVEL.debug, `${where('log_debug')}obj custom!`],
    ]);
  });

  it('name the line of the immediate Lua caller, also in helper functions and at top level', async () => {
    const source = `
local function helper(what)
  kumo.log_info('helper says', what)
end
kumo.log_warn('loading')
kumo.on('go', function()
  helper('hi')
end)
`;
    const { vm, policyPath, logs } = await loadPolicy(source);
    await call(vm, 'go');
    await vi.waitFor(() => expect(logs.filter((l) => l.target === 'lua')).toHaveLength(2));
    const msgs = logs.filter((l) => l.target === 'lua').map((l) => l.msg);
    expect(msgs).toEqual([
      `${chunkPath(policyPath)}:${lineOf(source, "log_warn('loading')")}: loading`,
      `${chunkPath(policyPath)}:${lineOf(source, 'helper says')}: helper says hi`,
    ]);
  });

  it('log an empty message when called without values', async () => {
    const { vm, policyPath, logs } = await loadPolicy(`kumo.on('e', function() kumo.log_info() end)`);
    await call(vm, 'e');
    await vi.waitFor(() => expect(logs.some((l) => l.target === 'lua')).toBe(true));
    expect(logs.find((l) => l.target === 'lua')?.msg).toBe(`${chunkPath(policyPath)}:1: `);
  });
});

describe('MTA-only calls', () => {
  const warningsFor = (logs: CapturedLog[], name: string) => logs.filter((l) => l.level === LEVEL.warn && l.call === `kumo.${name}`);

  it('are accepted, return nothing, and warn exactly once per name even when called twice', async () => {
    const source = `
kumo.on('init', function()
  kumo.start_esmtp_listener { listen = '127.0.0.1:2525' }
  kumo.start_esmtp_listener { listen = '127.0.0.1:2526' }
  kumo.define_spool { name = 'data', path = '/var/spool/kumomta/data', kind = 'RocksDB' }
  kumo.define_spool { name = 'meta', path = '/var/spool/kumomta/meta', kind = 'RocksDB' }
  kumo.set_max_lua_context_age(300)
  kumo.set_max_lua_context_age(300)
  kumo.set_max_spare_lua_contexts(4)
  results = { select('#', kumo.configure_accounting_db_path('/tmp/acct.db')) }
end)
kumo.on('results', function() return results[1] end)
`;
    const { vm, policyPath, logs } = await loadPolicy(source);
    await vm.startup();
    expect(await call(vm, 'results')).toEqual([0]);
    await vi.waitFor(() => expect(warningsFor(logs, 'configure_accounting_db_path')).toHaveLength(1));
    for (const [name, marker] of [
      ['start_esmtp_listener', '2525'],
      ['define_spool', "name = 'data'"],
      ['set_max_lua_context_age', 'set_max_lua_context_age'],
      ['set_max_spare_lua_contexts', 'set_max_spare_lua_contexts'],
    ] as const) {
      const w = warningsFor(logs, name);
      expect(w).toHaveLength(1);
      expect(w[0]?.msg).toBe(`kumo.${name} is an MTA setting that sluice accepts and ignores`);
      expect(w[0]?.where).toBe(`${chunkPath(policyPath)}:${lineOf(source, marker)}`);
    }
    expect([...vm.settings.ignoredCalls].sort()).toEqual([
      'configure_accounting_db_path', 'define_spool', 'set_max_lua_context_age', 'set_max_spare_lua_contexts', 'start_esmtp_listener',
    ]);
  });

  it('exist for every name in the list', async () => {
    const { vm } = await loadPolicy(`
kumo.on('check', function(names)
  local missing = {}
  for _, n in ipairs(names) do
    if type(kumo[n]) ~= 'function' then table.insert(missing, n) end
  end
  return #missing
end)
`);
    expect(MTA_ONLY_CALLS).toEqual(expect.arrayContaining(['start_esmtp_listener', 'define_spool', 'set_max_lua_context_age', 'set_diagnostic_log_filter']));
    expect(await call(vm, 'check', MTA_ONLY_CALLS)).toEqual([0]);
  });

  it('make_egress_source and make_egress_pool return their argument', async () => {
    const { vm, logs } = await loadPolicy(`
kumo.on('echo', function()
  local src = { name = 'ip-1', source_address = '127.0.0.1' }
  local pool = { name = 'pool-1', entries = { { name = 'ip-1' } } }
  local a = kumo.make_egress_source(src)
  local b = kumo.make_egress_source { name = 'ip-2' }
  local c = kumo.make_egress_pool(pool)
  return a == src, a.source_address, b.name, c == pool, c.entries[1].name
end)
`);
    expect(await call(vm, 'echo')).toEqual([true, '127.0.0.1', 'ip-2', true, 'ip-1']);
    await vi.waitFor(() => expect(warningsFor(logs, 'make_egress_pool')).toHaveLength(1));
    expect(warningsFor(logs, 'make_egress_source')).toHaveLength(1);
  });
});

describe('kumo.traceback', () => {
  const source = `
local function inner()
  return kumo.traceback(0), kumo.traceback(1), kumo.traceback(2)
end
kumo.on('tb', function()
  local t0, t1, t2 = inner()
  return t0, t1, t2
end)
`;

  it('level 1 starts at the calling Lua function, level 0 at traceback itself (as mlua inspect_stack)', async () => {
    const { vm, policyPath } = await loadPolicy(source);
    const [t0, t1, t2] = (await call(vm, 'tb')) as Array<Array<Record<string, unknown>>>;
    const src = chunkPath(policyPath);
    const innerFrame = {
      event: 'Call',
      name: 'inner',
      name_what: 'upvalue',
      source: `@${src}`,
      short_src: src,
      line_defined: lineOf(source, 'local function inner'),
      last_line_defined: lineOf(source, 'local function inner') + 2,
      what: 'Lua',
      curr_line: lineOf(source, 'kumo.traceback(0)'),
      is_tail_call: false,
    };
    const handlerFrame = {
      event: 'Call',
      source: `@${src}`,
      short_src: src,
      line_defined: lineOf(source, "kumo.on('tb'"),
      last_line_defined: lineOf(source, "kumo.on('tb'") + 3,
      what: 'Lua',
      curr_line: lineOf(source, 'local t0, t1, t2'),
      is_tail_call: false,
    };
    expect(t1).toEqual([innerFrame, handlerFrame]);
    expect(t2).toEqual([handlerFrame]);
    expect(t0).toHaveLength(3);
    expect(t0?.[0]).toEqual({ event: 'Call', name: 'traceback', name_what: 'field', source: '=[C]', short_src: '[C]', what: 'C', curr_line: -1, is_tail_call: false });
    expect(t0?.slice(1)).toEqual([innerFrame, handlerFrame]);
  });

  it('lets a helper find its own file, as queue.lua does with traceback(1)[1].short_src', async () => {
    const { vm, policyPath } = await loadPolicy(`
local helper = require 'helper'
kumo.on('src', function() return helper.my_source, helper.caller() end)
`, { files: { 'helper.lua': `
local M = {}
M.my_source = kumo.traceback(1)[1].short_src
function M.caller()
  -- the first frame outside this file
  for _, frame in ipairs(kumo.traceback(1)) do
    if frame.short_src ~= M.my_source then return frame.short_src .. ':' .. frame.curr_line end
  end
end
return M
` } });
    const dir = chunkPath(policyPath).replace(/init\.lua$/, '');
    expect(await call(vm, 'src')).toEqual([`${dir}helper.lua`, `${chunkPath(policyPath)}:3`]);
  });

  it('shows host functions such as pcall as C frames', async () => {
    const { vm, policyPath } = await loadPolicy(`kumo.on('p', function()
  local ok, tb = pcall(kumo.traceback, 1)
  return tb[1], tb[2].curr_line, tb[2].short_src
end)`);
    expect(await call(vm, 'p')).toEqual([
      { event: 'Call', name: 'pcall', name_what: 'global', source: '=[C]', short_src: '[C]', what: 'C', curr_line: -1, is_tail_call: false },
      2,
      chunkPath(policyPath),
    ]);
  });

  it('returns an empty list beyond the stack', async () => {
    const { vm } = await loadPolicy(`kumo.on('deep', function() return #kumo.traceback(50) end)`);
    expect(await call(vm, 'deep')).toEqual([0]);
  });
});

describe('kumo.validation_failed', () => {
  it('sets vm.validationFailed', async () => {
    const { vm } = await loadPolicy(`
kumo.on('validate_config', function()
  kumo.validation_failed()
end)
`);
    expect(vm.validationFailed).toBe(false);
    await vm.startup();
    expect(vm.validationFailed).toBe(false);
    await vm.startup({ validate: true });
    expect(vm.validationFailed).toBe(true);
  });
});

describe('kumo.sleep and kumo.time.sleep', () => {
  it('suspend the handler for the given seconds, accepting fractions', async () => {
    const { vm } = await loadPolicy(`
kumo.on('nap', function(secs)
  local a = select('#', kumo.sleep(secs))
  local b = select('#', kumo.time.sleep(secs))
  return a, b
end)
`);
    const started = performance.now();
    expect(await call(vm, 'nap', 0.03)).toEqual([0, 0]);
    expect(performance.now() - started).toBeGreaterThanOrEqual(55);
    expect(await call(vm, 'nap', 0)).toEqual([0, 0]);
  });

  it('refuse a negative or non-numeric duration, at the caller line', async () => {
    const source = `
kumo.on('neg', function() kumo.sleep(-1) end)
kumo.on('neg_time', function() kumo.time.sleep(-0.5) end)
kumo.on('text', function() kumo.time.sleep('1s') end)
`;
    const { vm, policyPath } = await loadPolicy(source);
    expect((await fireError(vm, 'neg')).message).toBe(`${chunkPath(policyPath)}:2: sleep: seconds must not be negative, got -1`);
    expect((await fireError(vm, 'neg_time')).message).toBe(`${chunkPath(policyPath)}:3: sleep: seconds must not be negative, got -0.5`);
    expect((await fireError(vm, 'text')).message).toBe(`${chunkPath(policyPath)}:4: sleep seconds: expected a number, got string`);
  });
});

describe('kumo.memoize', () => {
  it('caches results by argument values, keeping every returned value', async () => {
    const { vm } = await loadPolicy(`
calls = 0
local lookup = kumo.memoize(function(a, b)
  calls = calls + 1
  return a, b, nil, 'computed ' .. calls
end, { name = 'lookup', ttl = '1 minute', capacity = 100 })
kumo.on('m', function(a, b) return lookup(a, b) end)
kumo.on('calls', function() return calls end)
kumo.on('tables', function()
  local first = select(4, lookup({ k = 'v', n = { 1, 2 } }))
  local second = select(4, lookup({ k = 'v', n = { 1, 2 } }))
  return first, second, calls
end)
`);
    expect(await call(vm, 'm', 1, 'a')).toEqual([1, 'a', null, 'computed 1']);
    expect(await call(vm, 'm', 1, 'a')).toEqual([1, 'a', null, 'computed 1']);
    expect(await call(vm, 'm', 1, 'b')).toEqual([1, 'b', null, 'computed 2']);
    expect(await call(vm, 'm', '1', 'a')).toEqual(['1', 'a', null, 'computed 3']);
    expect(await call(vm, 'm', 1, 'a')).toEqual([1, 'a', null, 'computed 1']);
    expect(await call(vm, 'calls')).toEqual([3]);
    expect(await call(vm, 'tables')).toEqual(['computed 4', 'computed 4', 4]);
  });

  it('recomputes once the ttl has passed', async () => {
    const { vm } = await loadPolicy(`
local n = 0
local stamp = kumo.memoize(function() n = n + 1; return n end, { name = 'stamp', ttl = '50ms' })
kumo.on('ttl', function()
  local started = kumo.time.now()
  local first, second = stamp(), stamp()
  local waited, value = 0, stamp()
  while value == first and waited < 500 do
    kumo.sleep(0.005)
    waited = waited + 1
    value = stamp()
  end
  return first, second, value, kumo.time.now() - started
end)
`);
    const [first, second, value, elapsed] = (await call(vm, 'ttl')) as number[];
    expect([first, second, value]).toEqual([1, 1, 2]);
    expect(elapsed).toBeGreaterThanOrEqual(0.045);
    expect(elapsed).toBeLessThan(2);
  });

  it('takes the ttl as a number of seconds too', async () => {
    const { vm } = await loadPolicy(`
local n = 0
local f = kumo.memoize(function() n = n + 1; return n end, { name = 'secs', ttl = 0.02 })
kumo.on('t', function()
  local first = f()
  local value = first
  for i = 1, 400 do
    value = f()
    if value ~= first then break end
    kumo.sleep(0.005)
  end
  return first, value
end)
`);
    expect(await call(vm, 't')).toEqual([1, 2]);
  });

  it('holds at most capacity entries', async () => {
    const { vm } = await loadPolicy(`
calls = {}
local f = kumo.memoize(function(k) table.insert(calls, k); return k:upper() end, { name = 'cap', capacity = 2 })
kumo.on('run', function(...)
  local out = {}
  for _, k in ipairs({ ... }) do table.insert(out, f(k)) end
  return table.concat(out, ','), table.concat(calls, ',')
end)
`);
    // a, b fill the cache; c exceeds it and evicts a; c is still cached, a must be computed again.
    expect(await call(vm, 'run', 'a', 'b', 'a', 'c', 'c', 'a')).toEqual(['A,B,A,C,C,A', 'a,b,c,a']);
  });

  it('works with a function that yields (kumo.sleep inside)', async () => {
    const { vm } = await loadPolicy(`
local n = 0
local slow = kumo.memoize(function(x)
  kumo.sleep(0.01)
  n = n + 1
  return x * 10, n
end, { name = 'slow', ttl = '1h' })
kumo.on('slow', function(x) return slow(x) end)
`);
    expect(await call(vm, 'slow', 4)).toEqual([40, 1]);
    expect(await call(vm, 'slow', 4)).toEqual([40, 1]);
    expect(await call(vm, 'slow', 5)).toEqual([50, 2]);
  });

  it('checks its options, reporting at the caller line', async () => {
    const source = `
kumo.on('unknown', function() kumo.memoize(function() end, { name = 'x', bogus = 1 }) end)
kumo.on('noname', function() kumo.memoize(function() end, { ttl = '1m' }) end)
kumo.on('badtype', function() kumo.memoize(function() end, { name = 'x', ttl = true }) end)
kumo.on('capacity', function() kumo.memoize(function() end, { name = 'x', capacity = 'lots' }) end)
kumo.on('nofn', function() kumo.memoize('f', { name = 'x' }) end)
kumo.on('noopts', function() kumo.memoize(function() end) end)
kumo.on('badttl', function() kumo.memoize(function() end, { name = 'x', ttl = 'soon' }) end)
`;
    const { vm, policyPath } = await loadPolicy(source);
    const at = (marker: string) => `${chunkPath(policyPath)}:${lineOf(source, marker)}: `;
    expect((await fireError(vm, 'unknown')).message).toBe(`${at("'unknown'")}kumo.memoize: unknown field 'bogus'`);
    expect((await fireError(vm, 'noname')).message).toBe(`${at("'noname'")}kumo.memoize: missing field 'name'`);
    expect((await fireError(vm, 'badtype')).message).toBe(`${at("'badtype'")}kumo.memoize: invalid type for field 'ttl'`);
    expect((await fireError(vm, 'capacity')).message).toBe(`${at("'capacity'")}kumo.memoize: invalid type for field 'capacity'`);
    expect((await fireError(vm, 'nofn')).message).toBe(`${at("'nofn'")}kumo.memoize: expected a function as the first argument`);
    expect((await fireError(vm, 'noopts')).message).toBe(`${at("'noopts'")}kumo.memoize: expected an options table { name, ttl, capacity }`);
    expect((await fireError(vm, 'badttl')).message).toContain('invalid duration "soon"');
  });
});

describe('declared events', () => {
  it('are listed in kumo._declared_events', async () => {
    const { vm } = await loadPolicy(`kumo.on('list', function() return kumo._declared_events end)`);
    const [list] = (await call(vm, 'list')) as [string[]];
    expect(list).toEqual(Object.keys(DECLARED_EVENTS));
    expect(list).toEqual(expect.arrayContaining([
      'pre_init', 'init', 'validate_config', 'should_enqueue_log_record', 'get_queue_config', 'get_egress_path_config',
      'requeue_message', 'throttle_insert_ready_queue', 'get_acl_definition', 'http_message_generated', 'shutdown_logging',
    ]));
  });

  it('classify Multiple events as KumoMTA does (§2.4)', () => {
    const multiple = Object.keys(DECLARED_EVENTS).filter(isMultiple).sort();
    expect(multiple).toEqual([
      'get_acl_definition', 'get_queue_config', 'pre_init', 'requeue_message', 'should_enqueue_log_record',
      'throttle_insert_ready_queue', 'validate_config',
    ]);
    expect(isMultiple('make.webhook')).toBe(false);
    expect(isMultiple('init')).toBe(false);
  });
});

describe('kumo.time', () => {
  it('parse_duration gives seconds for humantime strings and numbers', async () => {
    const { vm } = await loadPolicy(`
kumo.on('d', function(...)
  local out = {}
  for i, v in ipairs({ ... }) do out[i] = kumo.time.parse_duration(v) end
  return table.unpack(out)
end)
`);
    expect(await call(vm, 'd', '1m', '20 minutes', '1h 30m', 90, '500ms', 0, '2 days', 1.5)).toEqual([
      60, 1200, 5400, 90, 0.5, 0, 172_800, 1.5,
    ]);
  });

  it('parse_duration errors name the caller line', async () => {
    const source = `
kumo.on('bad', function(v) return kumo.time.parse_duration(v) end)
`;
    const { vm, policyPath } = await loadPolicy(source);
    const at = `${chunkPath(policyPath)}:2: `;
    expect((await fireError(vm, 'bad', 'soon')).message).toBe(`${at}invalid duration "soon": expected a number and a unit, as in "1m" or "1h 30m"`);
    expect((await fireError(vm, 'bad', '10')).message).toBe(`${at}invalid duration "10": the number needs a unit, as in "10s"`);
    expect((await fireError(vm, 'bad', -3)).message).toBe(`${at}invalid duration -3: expected a non-negative number of seconds`);
    expect((await fireError(vm, 'bad', true)).message).toBe(`${at}duration: expected a string, got boolean`);
  });

  it('now is the current unix time in seconds', async () => {
    const { vm } = await loadPolicy(`kumo.on('now', function() return kumo.time.now() end)`);
    const before = Date.now() / 1000;
    const [now] = (await call(vm, 'now')) as [number];
    expect(now).toBeGreaterThanOrEqual(before - 0.001);
    expect(now).toBeLessThanOrEqual(Date.now() / 1000 + 0.001);
  });
});

describe('other kumo surface', () => {
  it('eval_config_monitor_globs lists the policy; bump_config_epoch reaches the host', async () => {
    const { vm } = await loadPolicy(`
kumo.on('globs', function() return kumo.eval_config_monitor_globs() end)
kumo.on('bump', function() kumo.bump_config_epoch() end)
`);
    expect(await call(vm, 'globs')).toEqual([[vm.policyPath]]);
    let bumps = 0;
    vm.onBumpEpoch = () => bumps++;
    await call(vm, 'bump');
    await call(vm, 'bump');
    expect(bumps).toBe(2);
  });

  it('has a version string and available_parallelism', async () => {
    const { vm } = await loadPolicy(`kumo.on('v', function() return kumo.version, kumo.available_parallelism() end)`);
    const [version, parallelism] = await call(vm, 'v');
    expect(version).toMatch(/^sluice/);
    expect(parallelism).toBe(2);
  });
});
