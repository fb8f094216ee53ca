import { describe, expect, it } from 'vitest';
import { LuaError, RejectError, SluiceError } from '../../../src/errors.js';
import { LuaVM } from '../../../src/lua/vm.js';
import { call, loadPolicy, writePolicy } from '../../helpers/policy.js';

describe('policy loading', () => {
  it('runs the top level, then pre_init handlers in order, then init', async () => {
    const { vm } = await loadPolicy(`
      order = { 'top' }
      kumo.on('pre_init', function() table.insert(order, 'pre_init 1') end)
      kumo.on('init', function() table.insert(order, 'init') end)
      kumo.on('pre_init', function() table.insert(order, 'pre_init 2') end)
      kumo.on('get_order', function() return table.concat(order, ',') end)
    `);
    await vm.startup();
    expect(await call(vm, 'get_order')).toEqual(['top,pre_init 1,pre_init 2,init']);
  });

  it('offers kumo both as a global and through require', async () => {
    const { vm } = await loadPolicy(`
      local k = require 'kumo'
      kumo.on('same', function() return k == kumo end)
    `);
    expect(await call(vm, 'same')).toEqual([true]);
  });

  it('resolves require from the policy folder and from sluice policy-extras', async () => {
    const { vm } = await loadPolicy(`
      local helper = require 'lib.helper'
      local log_hooks = require 'policy-extras.log_hooks'
      kumo.on('t', function() return helper.answer, type(log_hooks.new_json) end)
    `, { files: { 'lib/helper.lua': 'return { answer = 42 }' } });
    expect(await call(vm, 't')).toEqual([42, 'function']);
  });

  it('reports a syntax error with the file and line', async () => {
    const policyPath = writePolicy('local x = \nkumo.on(\n');
    const err = await LuaVM.load({ policyPath }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'SLUICE_ERR_LUA_SYNTAX' });
    expect((err as Error).message).toMatch(/init\.lua:3:/);
  });

  it('reports a missing policy file with a hint', async () => {
    const err = await LuaVM.load({ policyPath: '/nonexistent/init.lua' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SluiceError);
    expect((err as Error).message).toMatch(/cannot open .*--policy/);
  });

  it('reports an error in init with file, line and traceback', async () => {
    const { vm } = await loadPolicy(`
      local function helper()
        error('database is down')
      end
      kumo.on('init', function()
        helper()
      end)
    `);
    const err = (await vm.startup().catch((e: unknown) => e)) as LuaError;
    expect(err).toBeInstanceOf(LuaError);
    expect(err.message).toMatch(/init\.lua:3: database is down/);
    expect(err.traceback).toMatch(/init\.lua:3: in/);
    expect(err.traceback).toMatch(/init\.lua:6: in function/);
  });
});

describe('kumo.on', () => {
  it('refuses a second handler for a single event, naming the first one', async () => {
    const policyPath = writePolicy(`kumo.on('init', function() end)\nkumo.on('init', function() end)\n`);
    const err = (await LuaVM.load({ policyPath }).catch((e: unknown) => e)) as LuaError;
    expect(err.message).toMatch(/init\.lua:2: init event already has a handler defined at .*init\.lua:1/);
  });

  it('allows several handlers for get_queue_config', async () => {
    const { vm } = await loadPolicy(`
      kumo.on('get_queue_config', function() end)
      kumo.on('get_queue_config', function() end)
    `);
    expect(vm.events.get('get_queue_config')).toHaveLength(2);
  });

  it('is an error inside an event handler', async () => {
    const { vm } = await loadPolicy(`
      kumo.on('init', function()
        kumo.on('x', function() end)
      end)
    `);
    const err = (await vm.startup().catch((e: unknown) => e)) as LuaError;
    expect(err.message).toContain("from within the event handler 'init'");
    expect(err.message).toMatch(/init\.lua:3:/);
  });

  it('runs multiple handlers in order until one returns a value (§17.25)', async () => {
    const { vm } = await loadPolicy(`
      calls = {}
      kumo.on('should_enqueue_log_record', function(msg, name)
        table.insert(calls, 'first:' .. name)
        if name == 'drop' then return false end
      end)
      kumo.on('should_enqueue_log_record', function(msg, name)
        table.insert(calls, 'second:' .. name)
        return true
      end)
      kumo.on('calls', function() return table.concat(calls, ',') end)
    `);
    expect(await vm.fire('should_enqueue_log_record', [null, 'keep'])).toEqual({ handled: true, values: [true] });
    expect(await vm.fire('should_enqueue_log_record', [null, 'drop'])).toEqual({ handled: true, values: [false] });
    expect(await call(vm, 'calls')).toEqual(['first:keep,second:keep,first:drop']);
  });

  it('treats a handler that returns only nil as having no opinion', async () => {
    const { vm } = await loadPolicy(`
      kumo.on('get_queue_config', function() return nil end)
      kumo.on('get_queue_config', function() return 'second' end)
    `);
    expect((await vm.fire('get_queue_config', ['x'])).values).toEqual(['second']);
  });

  it('lists registrars', async () => {
    const { vm } = await loadPolicy(`
      kumo.on('get_queue_config', function() end)
      kumo.on('get_queue_config', function() end)
      kumo.on('r', function() return kumo.get_event_registrars('get_queue_config') end)
    `);
    const [list] = (await call(vm, 'r')) as [string[][]];
    expect(list).toHaveLength(2);
    expect(list[0]?.[0]).toMatch(/init\.lua:2$/);
    expect(list[1]?.[0]).toMatch(/init\.lua:3$/);
  });
});

describe('kumo.reject', () => {
  it('reaches the host intact through pcall re-raising and nested calls', async () => {
    const { vm } = await loadPolicy(`
      local function inner() kumo.reject(421, 'try later') end
      local function middle() inner() end
      kumo.on('t', function()
        local ok, err = pcall(middle)
        assert(not ok)
        error(err)
      end)
    `);
    const err = (await vm.fire('t', []).catch((e: unknown) => e)) as RejectError;
    expect(err).toBeInstanceOf(RejectError);
    expect(err.smtpCode).toBe(421);
    expect(err.response).toBe('try later');
  });

  it('can be caught and inspected by the policy', async () => {
    const { vm } = await loadPolicy(`
      kumo.on('t', function()
        local ok, err = pcall(kumo.reject, 550, 'no')
        return ok, err.code, err.message, tostring(err)
      end)
    `);
    expect(await call(vm, 't')).toEqual([false, 550, 'no', '550 no']);
  });
});

describe('the async bridge', () => {
  it('suspends only the calling coroutine', async () => {
    const { vm } = await loadPolicy(`
      kumo.on('slow', function(tag, seconds)
        kumo.sleep(seconds)
        return tag
      end)
    `);
    const order: string[] = [];
    await Promise.all([
      vm.fire('slow', ['a', 0.05]).then((r) => order.push(r.values[0] as string)),
      vm.fire('slow', ['b', 0.001]).then((r) => order.push(r.values[0] as string)),
    ]);
    expect(order).toEqual(['b', 'a']);
  });

  it('keeps 1,000 calls in flight on one VM', async () => {
    const { vm } = await loadPolicy(`
      in_flight, peak = 0, 0
      kumo.on('work', function(i)
        in_flight = in_flight + 1
        if in_flight > peak then peak = in_flight end
        kumo.time.sleep(0.02)
        in_flight = in_flight - 1
        return i * 2
      end)
      kumo.on('peak', function() return peak end)
    `);
    const results = await Promise.all(Array.from({ length: 1000 }, (_, i) => vm.fire('work', [i])));
    expect(results.map((r) => r.values[0])).toEqual(Array.from({ length: 1000 }, (_, i) => i * 2));
    expect(await call(vm, 'peak')).toEqual([1000]);
  });

  it('works inside pcall and inside coroutines the policy creates', async () => {
    const { vm } = await loadPolicy(`
      kumo.on('t', function()
        local ok = pcall(function() kumo.sleep(0.001) end)
        local gen = coroutine.wrap(function()
          kumo.sleep(0.001)
          coroutine.yield('first')
          kumo.sleep(0.001)
          return 'second'
        end)
        return ok, gen(), gen()
      end)
    `);
    expect(await call(vm, 't')).toEqual([true, 'first', 'second']);
  });
});

describe('the runaway guard', () => {
  it('stops a handler that never yields, names it, and the VM carries on', async () => {
    const { vm } = await loadPolicy(`
      kumo.on('spin', function()
        local n = 0
        while true do
          n = n + 1
        end
      end)
      kumo.on('ok', function() return 'still here' end)
    `, { instructionLimit: 100_000 });
    const err = (await vm.fire('spin', []).catch((e: unknown) => e)) as LuaError;
    expect(err).toMatchObject({ code: 'SLUICE_ERR_LUA_RUNAWAY' });
    expect(err.message).toMatch(/init\.lua:[45]: event 'spin' ran more than 100000 instructions without yielding/);
    expect(await call(vm, 'ok')).toEqual(['still here']);
  });

  it('cannot be swallowed by pcall', async () => {
    const { vm } = await loadPolicy(`
      kumo.on('spin', function()
        for i = 1, 1000 do
          pcall(function() while true do end end)
        end
        return 'escaped'
      end)
    `, { instructionLimit: 10_000 });
    await expect(vm.fire('spin', [])).rejects.toMatchObject({ code: 'SLUICE_ERR_LUA_RUNAWAY' });
  });

  it('restarts the count at every yield', async () => {
    const { vm } = await loadPolicy(`
      kumo.on('busy', function()
        local n = 0
        for round = 1, 5 do
          for i = 1, 3000 do n = n + i end
          kumo.sleep(0)
        end
        return n
      end)
    `, { instructionLimit: 20_000 });
    expect(await call(vm, 'busy')).toEqual([5 * 4501500]);
  });
});

describe('values across the boundary', () => {
  it('keeps integers above 2^31 exact', async () => {
    const { vm } = await loadPolicy(`
      kumo.on('t', function(ts, offset)
        return ts + 1, offset, tostring(ts), 'id-' .. offset
      end)
    `);
    expect(await call(vm, 't', 1_700_000_000_123, 9_007_199_254_740_991)).toEqual([
      1_700_000_000_124, 9_007_199_254_740_991, '1700000000123', 'id-9007199254740991',
    ]);
  });

  it('converts tables by the array and map rules', async () => {
    const { vm } = await loadPolicy(`
      kumo.on('t', function(v)
        return { 1, 2, 3 }, { a = 1, b = { c = true } }, {}, v.list[2], v.map.k, v.nothing == nil
      end)
    `);
    expect(await call(vm, 't', { list: ['x', 'y'], map: { k: 'v' }, nothing: null })).toEqual([
      [1, 2, 3], { a: 1, b: { c: true } }, {}, 'y', 'v', true,
    ]);
  });
});
