/**
 * policy-extras.log_hooks through the real VM: options and their errors
 * (kumomta-facts §17.18–22), and the handlers each call registers.
 */
import { describe, expect, it } from 'vitest';
import { LuaError } from '../../src/errors.js';
import { LuaVM } from '../../src/lua/vm.js';
import { QueueConfigHandle } from '../../src/lua/modules/kumo-config.js';
import { MessageHandle } from '../../src/lua/modules/message.js';
import { Message } from '../../src/queue/message.js';
import { loadPolicy, writePolicy } from '../helpers/policy.js';

const HEAD = `local log_hooks = require 'policy-extras.log_hooks'\n`;

async function loadError(source: string): Promise<LuaError> {
  const err = await LuaVM.load({ policyPath: writePolicy(HEAD + source) }).catch((e: unknown) => e);
  expect(err).toBeInstanceOf(LuaError);
  return err as LuaError;
}

function recordMessage(vm: LuaVM, record: Record<string, unknown>): MessageHandle {
  const m = new Message({
    sender: 'sender@example.com',
    recipients: ['recip@example.com'],
    data: `${JSON.stringify(record)}\n`,
    meta: { log_record: record, reception_protocol: 'LogRecord' },
  });
  return new MessageHandle(vm, m);
}

describe('log_hooks options (§17.18–21)', () => {
  it('refuses a second hook with the same name, at the line of the second call', async () => {
    const err = await loadError(`
log_hooks:new { name = 'W', constructor = function() end }
log_hooks:new { name = 'W', constructor = function() end }
`);
    expect(err.message).toMatch(/init\.lua:4: log_hook with name 'W' has already been configured/);
  });

  it('the name clash applies across new, new_json and new_disposition_hook', async () => {
    const err = await loadError(`
log_hooks:new_json { name = 'W', url = 'http://127.0.0.1:1/' }
log_hooks:new_disposition_hook { name = 'W', hook = function() end }
`);
    expect(err.message).toContain("log_hook with name 'W' has already been configured");
  });

  it('rejects unknown and missing fields', async () => {
    expect((await loadError(`log_hooks:new { name = 'W', constructor = function() end, bogus = 1 }`)).message)
      .toMatch(/init\.lua:2: LogHookOptions: unknown field 'bogus'/);
    expect((await loadError(`log_hooks:new { name = 'W' }`)).message)
      .toContain("LogHookOptions: missing value for field 'constructor' of type 'function'");
  });

  it('new_json accepts no batch_size, filter or constructor', async () => {
    for (const field of ['batch_size = 5', 'filter = function() end', 'constructor = function() end']) {
      const err = await loadError(`log_hooks:new_json { name = 'W', url = 'x', ${field} }`);
      expect(err.message).toContain(`JsonLogHookOptions: unknown field '${field.split(' ')[0]}'`);
    }
  });

  it('checks queue_config keys the way KumoMTA does', async () => {
    expect((await loadError(`log_hooks:new_json { name = 'W', url = 'x', queue_config = { retry_intervall = '1m' } }`)).message)
      .toContain("QueueConfig: unknown field 'retry_intervall'");
    expect((await loadError(`log_hooks:new_json { name = 'W', url = 'x', queue_config = { retry_interval = true } }`)).message)
      .toContain("QueueConfig: invalid value for field 'retry_interval'");
  });

  it('checks field types', async () => {
    const err = await loadError(`log_hooks:new { name = 10, constructor = function() end }`);
    expect(err.message).toContain("LogHookOptions: invalid value for field 'name'");
    expect(err.message).toContain("Expected 'string', got 'number' '10'");
  });
});

describe('what log_hooks:new registers', () => {
  it('configures the hook in pre_init with the merged log_parameters', async () => {
    const { vm } = await loadPolicy(HEAD + `
log_hooks:new_json { name = 'W', url = 'http://127.0.0.1:1/', log_parameters = { headers = { 'Subject' }, meta = { 'tenant' } } }
`);
    expect(vm.settings.logHooks.size).toBe(0);
    await vm.startup();
    expect(vm.settings.logHooks.get('W')).toMatchObject({ name: 'W', headers: ['Subject'], meta: ['tenant'], back_pressure: 128000 });
  });

  it('routes records to N.log_hook, skipping LogRecord records and filtered ones (§17.16)', async () => {
    const { vm } = await loadPolicy(HEAD + `
log_hooks:new {
  name = 'W',
  constructor = function() return {} end,
  filter = function(msg) return msg:get_meta('log_record').type == 'Reception' end,
}
`);
    const delivery = recordMessage(vm, { type: 'Delivery', reception_protocol: 'ESMTP' });
    expect(await vm.fire('should_enqueue_log_record', [delivery, 'W'])).toEqual({ handled: true, values: [true] });
    expect(delivery.message.queueName()).toBe('W.log_hook');

    const reception = recordMessage(vm, { type: 'Reception', reception_protocol: 'ESMTP' });
    expect((await vm.fire('should_enqueue_log_record', [reception, 'W'])).values).toEqual([false]);

    const loop = recordMessage(vm, { type: 'Delivery', reception_protocol: 'LogRecord' });
    expect((await vm.fire('should_enqueue_log_record', [loop, 'W'])).values).toEqual([false]);

    const other = recordMessage(vm, { type: 'Delivery', reception_protocol: 'ESMTP' });
    expect(await vm.fire('should_enqueue_log_record', [other, 'other'])).toEqual({ handled: false, values: [] });
  });

  it('returns a custom_lua queue config with the 1m/20m retry defaults', async () => {
    const { vm } = await loadPolicy(HEAD + `
log_hooks:new { name = 'W', batch_size = 100, min_batch_size = 10, max_batch_latency = '15s',
  queue_config = { max_age = '2m' }, constructor = function() return {} end }
kumo.on('read', function()
  local cfg = kumo.make_queue_config { retry_interval = '90s' }
  return cfg.retry_interval
end)
`);
    const r = await vm.fire('get_queue_config', ['W.log_hook', null, null, null], 'refs');
    const cfg = (r.values[0] as QueueConfigHandle).config;
    expect(cfg).toMatchObject({
      retry_interval: 60_000, max_retry_interval: 1_200_000, max_age: 120_000,
      protocol: { kind: 'custom_lua', constructor: 'make.W.log_hook', batch_size: 100, min_batch_size: 10, max_batch_latency: 15_000 },
    });
    expect((await vm.fire('get_queue_config', ['example.com', null, null, null])).handled).toBe(false);
    expect((await vm.fire('read', [])).values).toEqual(['1m 30s']);
  });

  it('a catch-all get_queue_config registered first wins (§17.22)', async () => {
    const source = (first: boolean) => {
      const catchAll = `kumo.on('get_queue_config', function() return kumo.make_queue_config {} end)\n`;
      const hook = `log_hooks:new { name = 'W', constructor = function() return {} end }\n`;
      return HEAD + (first ? catchAll + hook : hook + catchAll);
    };
    for (const catchAllFirst of [true, false]) {
      const { vm } = await loadPolicy(source(catchAllFirst));
      const cfg = ((await vm.fire('get_queue_config', ['W.log_hook', null, null, null], 'refs')).values[0] as QueueConfigHandle).config;
      expect(cfg.protocol.kind).toBe(catchAllFirst ? 'smtp' : 'custom_lua');
    }
  });

  it('registers the constructor under make.N.log_hook', async () => {
    const { vm } = await loadPolicy(HEAD + `
log_hooks:new { name = 'W', constructor = function(domain, tenant, campaign) return { domain = domain } end }
`);
    expect(vm.hasHandler('make.W.log_hook')).toBe(true);
  });

  it('new_disposition_hook configures a disposition hook and its event', async () => {
    const { vm } = await loadPolicy(HEAD + `
log_hooks:new_disposition_hook { name = 'ndr', hook = function(msg, record) end }
`);
    await vm.startup();
    expect(vm.settings.dispositionHooks.has('ndr')).toBe(true);
    expect(vm.hasHandler('log_disposition_ndr')).toBe(true);
  });
});
