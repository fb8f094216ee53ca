/**
 * The configuring half of the `kumo` module through a real VM (kumomta-facts
 * §3, §5, §6, §10): log hooks, local logs, disposition hooks, queue and
 * egress-path configs, the HTTP listener. Options are strict, errors use
 * serde's wording and carry the policy's file:line.
 */
import { describe, expect, it } from 'vitest';
import { LuaError } from '../../../src/errors.js';
import { LuaVM, chunkPath } from '../../../src/lua/vm.js';
import { EgressPathHandle, QueueConfigHandle } from '../../../src/lua/modules/kumo-config.js';
import { call, captureLogger, loadPolicy, writePolicy } from '../../helpers/policy.js';

/** The 1-based line of `source` that contains `marker`. */
function lineOf(source: string, marker: string): number {
  const i = source.split('\n').findIndex((l) => l.includes(marker));
  if (i < 0) throw new Error(`marker ${JSON.stringify(marker)} is not in the policy`);
  return i + 1;
}

/** `file:line: ` of the line holding `marker`, as Lua prints it. */
function at(policyPath: string, source: string, marker: string): string {
  return `${chunkPath(policyPath)}:${lineOf(source, marker)}: `;
}

/** Load `source`, expecting its top level to fail; returns the error and the location helper. */
async function loadError(source: string): Promise<{ message: string; where: (marker: string) => string }> {
  const policyPath = writePolicy(source);
  const err = await LuaVM.load({ policyPath, logger: captureLogger().logger }).catch((e: unknown) => e);
  expect(err).toBeInstanceOf(LuaError);
  return { message: (err as LuaError).message, where: (m) => at(policyPath, source, m) };
}

/** The error a one-line top-level call raises, checked to start at that line. */
async function topLevelError(line: string): Promise<string> {
  const source = `local x = 1\n${line}\n`;
  const { message, where } = await loadError(source);
  expect(message.startsWith(where(line))).toBe(true);
  return message.slice(where(line).length);
}

/** Build a queue config in Lua and return the host object behind it. */
async function queueConfig(lua: string): Promise<QueueConfigHandle> {
  const { vm } = await loadPolicy(`kumo.on('make', function() return ${lua} end)`);
  const r = await vm.fire('make', [], 'refs');
  expect(r.values[0]).toBeInstanceOf(QueueConfigHandle);
  return r.values[0] as QueueConfigHandle;
}

async function egressPath(lua: string): Promise<EgressPathHandle> {
  const { vm } = await loadPolicy(`kumo.on('make', function() return ${lua} end)`);
  const r = await vm.fire('make', [], 'refs');
  expect(r.values[0]).toBeInstanceOf(EgressPathHandle);
  return r.values[0] as EgressPathHandle;
}

describe('kumo.configure_log_hook (§3.1)', () => {
  it('records the hook with its defaults and where it was configured', async () => {
    const source = `
kumo.on('pre_init', function()
  kumo.configure_log_hook { name = 'W' }
end)
`;
    const { vm, policyPath } = await loadPolicy(source);
    expect(vm.settings.logHooks.size).toBe(0);
    await vm.startup();
    expect(vm.settings.logHooks.get('W')).toEqual({
      name: 'W',
      back_pressure: 128_000,
      meta: [],
      headers: [],
      per_record: {},
      deferred_spool: false,
      where: `${chunkPath(policyPath)}:${lineOf(source, "name = 'W'")}`,
    });
  });

  it('keeps every option: meta, headers, per_record with Any and Reception, back_pressure, deferred_spool', async () => {
    const { vm } = await loadPolicy(`
kumo.on('init', function()
  kumo.configure_log_hook {
    name = 'webhook',
    back_pressure = 10,
    meta = { 'tenant', 'x_*' },
    headers = { 'Subject', 'X-*' },
    deferred_spool = true,
    per_record = {
      Any = { enable = false },
      Reception = { enable = true, template = '{{ type }} {{ id }}' },
      Delivery = { template = '{{ log_record | tojson }}' },
    },
  }
end)
`);
    await vm.startup();
    const hook = vm.settings.logHooks.get('webhook');
    expect(hook).toMatchObject({
      name: 'webhook',
      back_pressure: 10,
      meta: ['tenant', 'x_*'],
      headers: ['Subject', 'X-*'],
      deferred_spool: true,
      per_record: {
        Any: { enable: false },
        Reception: { enable: true, template: '{{ type }} {{ id }}' },
        Delivery: { enable: true, template: '{{ log_record | tojson }}' },
      },
    });
    expect(hook?.per_record.Any?.template).toBeUndefined();
    expect(Object.keys(hook?.per_record ?? {}).sort()).toEqual(['Any', 'Delivery', 'Reception']);
  });

  it('accepts the LogRecordParams keys that mean nothing for hooks', async () => {
    const { vm } = await loadPolicy(`
kumo.configure_log_hook { name = 'W', per_record = { Bounce = { suffix = '.b', log_dir = '/tmp/x', segment_header = 'h' } } }
`);
    expect(vm.settings.logHooks.get('W')?.per_record.Bounce).toEqual({ enable: true, suffix: '.b', log_dir: '/tmp/x', segment_header: 'h' });
  });

  it('keeps several hooks with different names apart', async () => {
    const { vm } = await loadPolicy(`
kumo.configure_log_hook { name = 'A' }
kumo.configure_log_hook { name = 'B', meta = { 'tenant' } }
`);
    expect([...vm.settings.logHooks.keys()]).toEqual(['A', 'B']);
    expect(vm.settings.logHooks.get('B')?.meta).toEqual(['tenant']);
  });

  it('refuses a second hook with the same name, at the line of the second call', async () => {
    const source = `
kumo.on('init', function()
  kumo.configure_log_hook { name = 'W' }
  kumo.configure_log_hook { name = 'W', meta = { 'second' } }
end)
`;
    const { vm, policyPath } = await loadPolicy(source);
    const err = (await vm.startup().catch((e: unknown) => e)) as LuaError;
    expect(err).toBeInstanceOf(LuaError);
    expect(err.message).toBe(
      `${at(policyPath, source, "'second'")}configure_log_hook: A logging hook with name \`W\` has already been registered`,
    );
    expect(vm.settings.logHooks.get('W')?.meta).toEqual([]);
  });

  it('rejects unknown keys, naming the field', async () => {
    const msg = await topLevelError(`kumo.configure_log_hook { name = 'W', bogus = 1 }`);
    expect(msg).toContain('configure_log_hook: deserialize error: unknown field `bogus`');
    expect(msg).toContain('expected one of `name`, `back_pressure`, `meta`, `headers`, `per_record`, `deferred_spool`');
    expect(msg).toMatch(/, while processing LogHookParams$/);
  });

  it('rejects the configure_local_logs-only keys (filter_event, log_dir, max_file_size)', async () => {
    for (const field of [`filter_event = 'f'`, `log_dir = '/tmp'`, 'max_file_size = 100']) {
      const msg = await topLevelError(`kumo.configure_log_hook { name = 'W', ${field} }`);
      expect(msg).toContain(`unknown field \`${field.split(' ')[0]}\``);
    }
  });

  it('suggests the closest field name', async () => {
    const msg = await topLevelError(`kumo.configure_log_hook { name = 'W', header = { 'Subject' } }`);
    expect(msg).toContain('unknown field `header`');
    expect(msg).toContain('(did you mean `headers`?)');
  });

  it('rejects values of the wrong type with "invalid type"', async () => {
    const cases: Array<[string, string]> = [
      [`name = 10`, 'field `name`: invalid type: integer `10`, expected a string'],
      [`name = 'W', back_pressure = 'lots'`, 'field `back_pressure`: invalid type: string "lots", expected an integer'],
      [`name = 'W', back_pressure = 2.5`, 'field `back_pressure`: invalid type: floating point `2.5`, expected an integer'],
      [`name = 'W', back_pressure = 20/2`, 'field `back_pressure`: invalid type: floating point `10.0`, expected an integer'],
      [`name = 'W', meta = 'tenant'`, 'field `meta`: invalid type: string "tenant", expected a sequence'],
      [`name = 'W', headers = { 'Subject', 7 }`, 'field `headers`: invalid type at [2]: integer `7`, expected a string'],
      [`name = 'W', deferred_spool = 'yes'`, 'field `deferred_spool`: invalid type: string "yes", expected a boolean'],
      [`name = 'W', per_record = { Any = { enable = 'no' } }`, 'invalid type: string "no", expected a boolean'],
    ];
    for (const [opts, expected] of cases) {
      const msg = await topLevelError(`kumo.configure_log_hook { ${opts} }`);
      expect(msg).toContain('configure_log_hook: deserialize error: ');
      expect(msg).toContain(expected);
      expect(msg).toContain('invalid type');
    }
  });

  it('requires a name', async () => {
    expect(await topLevelError(`kumo.configure_log_hook { meta = { 'a' } }`)).toBe(
      'configure_log_hook: deserialize error: missing field `name`, while processing LogHookParams',
    );
    expect(await topLevelError(`kumo.configure_log_hook()`)).toContain('missing field `name`');
  });

  it('checks per_record keys and their options', async () => {
    const variant = await topLevelError(`kumo.configure_log_hook { name = 'W', per_record = { Recepton = {} } }`);
    expect(variant).toContain('unknown variant `Recepton`, expected `Any` or one of `Reception`');
    const field = await topLevelError(`kumo.configure_log_hook { name = 'W', per_record = { Any = { enabled = false } } }`);
    expect(field).toContain('unknown field `enabled`');
    expect(field).toContain('(did you mean `enable`?)');
  });

  it('cannot serialise a function option', async () => {
    const msg = await topLevelError(`kumo.configure_log_hook { name = 'W', meta = function() end }`);
    expect(msg).toBe('configure_log_hook: cannot serialize <function>');
  });
});

describe('kumo.configure_local_logs', () => {
  it('requires log_dir', async () => {
    expect(await topLevelError(`kumo.configure_local_logs { max_file_size = 100 }`)).toBe(
      'configure_local_logs: deserialize error: missing field `log_dir`, while processing LocalLogsParams',
    );
  });

  it('records its options with the defaults and the call site', async () => {
    const source = `
kumo.on('init', function()
  kumo.configure_local_logs { log_dir = '/var/log/sluice' }
  kumo.configure_local_logs {
    log_dir = '/var/log/sluice-filtered',
    max_file_size = 1000000,
    max_segment_duration = '1 minute',
    compression_level = 3,
    meta = { 'tenant' },
    headers = { 'Subject' },
    per_record = { Reception = { enable = false }, Any = { suffix = '.json' } },
    filter_event = 'should_log',
    min_free_space = '10%',
  }
end)
`;
    const { vm, policyPath } = await loadPolicy(source);
    await vm.startup();
    expect(vm.settings.localLogs).toHaveLength(2);
    expect(vm.settings.localLogs[0]).toEqual({
      log_dir: '/var/log/sluice',
      max_file_size: 1_000_000_000,
      back_pressure: 128_000,
      compression_level: 0,
      meta: [],
      headers: [],
      per_record: {},
      where: `${chunkPath(policyPath)}:${lineOf(source, "'/var/log/sluice' }")}`,
    });
    expect(vm.settings.localLogs[1]).toMatchObject({
      log_dir: '/var/log/sluice-filtered',
      max_file_size: 1_000_000,
      max_segment_duration: 60_000,
      compression_level: 3,
      meta: ['tenant'],
      headers: ['Subject'],
      per_record: { Reception: { enable: false }, Any: { enable: true, suffix: '.json' } },
      filter_event: 'should_log',
      min_free_space: '10%',
      // A call whose table spans lines is reported at the line of its opening brace.
      where: `${chunkPath(policyPath)}:${lineOf(source, "'/var/log/sluice-filtered'") - 1}`,
    });
  });

  it('checks its fields strictly', async () => {
    expect(await topLevelError(`kumo.configure_local_logs { log_dir = '/tmp', name = 'x' }`)).toContain('unknown field `name`');
    expect(await topLevelError(`kumo.configure_local_logs { log_dir = '/tmp', max_file_size = '1GB' }`))
      .toContain('field `max_file_size`: invalid type: string "1GB", expected an integer');
    expect(await topLevelError(`kumo.configure_local_logs { log_dir = '/tmp', max_file_size = 1e6 }`))
      .toContain('field `max_file_size`: invalid type: floating point `1000000.0`, expected an integer');
    expect(await topLevelError(`kumo.configure_local_logs { log_dir = '/tmp', compression_level = 30 }`))
      .toContain('field `compression_level`: invalid value: integer `30`, expected an integer between 0 and 22');
    expect(await topLevelError(`kumo.configure_local_logs { log_dir = '/tmp', filter_event = true }`))
      .toContain('field `filter_event`: invalid type: boolean `true`, expected a string');
    expect(await topLevelError(`kumo.configure_local_logs { log_dir = '/tmp', max_segment_duration = 'soon' }`))
      .toContain('field `max_segment_duration`: invalid duration "soon"');
  });
});

describe('kumo.configure_log_disposition_hook', () => {
  it('records the hook, and refuses a duplicate name', async () => {
    const source = `
kumo.configure_log_disposition_hook { name = 'ndr', per_record = { Any = { enable = false }, Bounce = { enable = true } } }
kumo.on('again', function()
  kumo.configure_log_disposition_hook { name = 'ndr' }
end)
`;
    const { vm, policyPath } = await loadPolicy(source);
    expect(vm.settings.dispositionHooks.get('ndr')).toEqual({
      name: 'ndr',
      per_record: { Any: { enable: false }, Bounce: { enable: true } },
      where: `${chunkPath(policyPath)}:2`,
    });
    const err = (await vm.fire('again', []).catch((e: unknown) => e)) as LuaError;
    expect(err.message).toBe(
      `${at(policyPath, source, "name = 'ndr' }")}configure_log_disposition_hook: A disposition hook with name \`ndr\` has already been registered`,
    );
  });

  it('does not share names with log hooks', async () => {
    const { vm } = await loadPolicy(`
kumo.configure_log_hook { name = 'X' }
kumo.configure_log_disposition_hook { name = 'X' }
`);
    expect(vm.settings.logHooks.has('X')).toBe(true);
    expect(vm.settings.dispositionHooks.has('X')).toBe(true);
  });

  it('rejects unknown keys and a missing name', async () => {
    expect(await topLevelError(`kumo.configure_log_disposition_hook { name = 'd', meta = {} }`))
      .toMatch(/^configure_log_disposition_hook: deserialize error: unknown field `meta`, expected one of `name`, `per_record`, while processing DispositionHookParams$/);
    expect(await topLevelError(`kumo.configure_log_disposition_hook { per_record = {} }`)).toContain('missing field `name`');
  });
});

describe('kumo.make_queue_config (§5)', () => {
  it('fills in KumoMTA defaults', async () => {
    for (const lua of ['kumo.make_queue_config {}', 'kumo.make_queue_config()']) {
      const { config } = await queueConfig(lua);
      expect(config).toEqual({
        retry_interval: 20 * 60_000,
        max_age: 7 * 86_400_000,
        protocol: { kind: 'smtp', options: {} },
        reap_interval: 10 * 60_000,
        refresh_interval: 60_000,
        strategy: 'SingletonTimerWheel',
        refresh_strategy: 'Ttl',
        shrink_policy: [],
      });
      expect(config.max_retry_interval).toBeUndefined();
      expect(Object.isFrozen(config)).toBe(true);
    }
  });

  it('accepts humantime strings and numbers of seconds for durations', async () => {
    const { config } = await queueConfig(`kumo.make_queue_config {
      retry_interval = '1m', max_retry_interval = '20 minutes', max_age = '1h 30m',
      reap_interval = 90, refresh_interval = 0.5, timerwheel_tick_interval = '250ms',
    }`);
    expect(config).toMatchObject({
      retry_interval: 60_000,
      max_retry_interval: 1_200_000,
      max_age: 5_400_000,
      reap_interval: 90_000,
      refresh_interval: 500,
      timerwheel_tick_interval: 250,
    });
  });

  it('reads fields back as humantime strings and plain values', async () => {
    const { vm } = await loadPolicy(`
kumo.on('read', function()
  local cfg = kumo.make_queue_config {
    retry_interval = '1m', max_retry_interval = 1200, max_age = '1h 30m', egress_pool = 'pool',
    max_message_rate = '10/s', strategy = 'SkipList', refresh_strategy = 'Epoch', provider_name = 'p',
  }
  return cfg.retry_interval, cfg.max_retry_interval, cfg.max_age, cfg.reap_interval, cfg.refresh_interval,
    cfg.egress_pool, cfg.max_message_rate, cfg.strategy, cfg.refresh_strategy, cfg.provider_name,
    cfg.protocol.smtp ~= nil, cfg.timerwheel_tick_interval == nil, cfg.no_such_field == nil
end)
kumo.on('defaults', function()
  local cfg = kumo.make_queue_config {}
  return cfg.retry_interval, cfg.max_age, type(cfg), tostring(cfg), #cfg.shrink_policy
end)
`);
    expect(await call(vm, 'read')).toEqual([
      '1m', '20m', '1h 30m', '10m', '1m', 'pool', '10/s', 'SkipList', 'Epoch', 'p', true, true, true,
    ]);
    expect(await call(vm, 'defaults')).toEqual(['20m', '7days', 'userdata', 'QueueConfig', 0]);
  });

  it('iterates with pairs() and counts with # over the serialized form', async () => {
    const { vm } = await loadPolicy(`
kumo.on('keys', function()
  local cfg = kumo.make_queue_config { retry_interval = '1m', max_retry_interval = '20m' }
  local keys, values = {}, {}
  for k, v in pairs(cfg) do
    table.insert(keys, k)
    values[k] = type(v) == 'table' and 'table' or v
  end
  table.sort(keys)
  return keys, values, #cfg
end)
`);
    const [keys, values, len] = await call(vm, 'keys');
    expect(keys).toEqual([
      'max_age', 'max_retry_interval', 'protocol', 'reap_interval', 'refresh_interval', 'refresh_strategy',
      'retry_interval', 'shrink_policy', 'strategy',
    ]);
    expect(values).toEqual({
      max_age: '7days', max_retry_interval: '20m', protocol: 'table', reap_interval: '10m', refresh_interval: '1m',
      refresh_strategy: 'Ttl', retry_interval: '1m', shrink_policy: 'table', strategy: 'SingletonTimerWheel',
    });
    expect(len).toBe(9);
  });

  it('shows each protocol in its tagged form', async () => {
    const { vm } = await loadPolicy(`
kumo.on('protocols', function()
  local lua = kumo.make_queue_config { protocol = { custom_lua = { constructor = 'make.W', batch_size = 50, max_batch_latency = '15s' } } }
  local maildir = kumo.make_queue_config { protocol = { maildir_path = '/var/tmp/sluice-maildir', dir_mode = 448 } }
  local smtp = kumo.make_queue_config { protocol = { smtp = { mx_list = { '127.0.0.1' } } } }
  return lua.protocol, maildir.protocol, smtp.protocol
end)
`);
    expect(await call(vm, 'protocols')).toEqual([
      { custom_lua: { constructor: 'make.W', batch_size: 50, min_batch_size: 1, max_batch_latency: '15s' } },
      { maildir_path: '/var/tmp/sluice-maildir', dir_mode: 448 },
      { smtp: { mx_list: ['127.0.0.1'] } },
    ]);
  });

  it('parses custom_lua with its defaults', async () => {
    const { config } = await queueConfig(`kumo.make_queue_config { protocol = { custom_lua = { constructor = 'make.W' } } }`);
    expect(config.protocol).toEqual({ kind: 'custom_lua', constructor: 'make.W', batch_size: 1, min_batch_size: 1, max_batch_latency: 0 });
    const { config: batched } = await queueConfig(
      `kumo.make_queue_config { protocol = { custom_lua = { constructor = 'c', batch_size = math.tointeger(20/2), min_batch_size = 5, max_batch_latency = '2s' } } }`,
    );
    expect(batched.protocol).toEqual({ kind: 'custom_lua', constructor: 'c', batch_size: 10, min_batch_size: 5, max_batch_latency: 2000 });
  });

  it('accepts a maildir protocol', async () => {
    const { config } = await queueConfig(`kumo.make_queue_config { protocol = { maildir_path = '/var/tmp/md', file_mode = 420 } }`);
    expect(config.protocol).toEqual({ kind: 'maildir', maildir_path: '/var/tmp/md', file_mode: 420 });
  });

  it('rejects a float batch_size inside protocol.custom_lua (§5.2)', async () => {
    const msg = await topLevelError(`kumo.make_queue_config { protocol = { custom_lua = { constructor = 'c', batch_size = 20/2 } } }`);
    expect(msg).toContain('invalid type: floating point `10.0`');
    expect(msg).toContain('batch_size');
    expect(msg).toMatch(/^make_queue_config: deserialize error: .*, while processing QueueConfig$/);
    const min = await topLevelError(`kumo.make_queue_config { protocol = { custom_lua = { constructor = 'c', min_batch_size = 2.0 } } }`);
    expect(min).toContain('field `min_batch_size`: invalid type: floating point `2.0`');
  });

  it('rejects unknown fields at the top and inside custom_lua', async () => {
    const top = await topLevelError(`kumo.make_queue_config { retry_intervall = '1m' }`);
    expect(top).toContain('make_queue_config: deserialize error: unknown field `retry_intervall`');
    expect(top).toContain('(did you mean `retry_interval`?)');
    expect(top).toMatch(/, while processing QueueConfig$/);
    const nested = await topLevelError(`kumo.make_queue_config { protocol = { custom_lua = { constructor = 'c', batchsize = 5 } } }`);
    expect(nested).toContain('unknown field `batchsize`');
    expect(nested).toContain('(did you mean `batch_size`?)');
  });

  it('treats names of Object.prototype members as ordinary keys', async () => {
    expect(await topLevelError(`kumo.make_queue_config { toString = 1 }`)).toContain('unknown field `toString`');
    expect(await topLevelError(`kumo.make_queue_config { constructor = 'make.W' }`)).toContain('unknown field `constructor`');
    expect(await topLevelError(`kumo.make_queue_config { protocol = { custom_lua = {} } }`))
      .toContain('field `protocol`: custom_lua: missing field `constructor`');
  });

  it('rejects wrong types and bad values', async () => {
    const cases: Array<[string, string]> = [
      ['retry_interval = true', 'field `retry_interval`: invalid type: boolean `true`'],
      [`max_age = 'a week'`, 'field `max_age`: invalid duration "a week"'],
      ['max_age = -5', 'field `max_age`: invalid duration -5'],
      [`strategy = 'Fastest'`, 'field `strategy`: unknown variant `Fastest`, expected one of `SingletonTimerWheel`'],
      [`max_message_rate = 'fast'`, 'field `max_message_rate`: invalid throttle "fast"'],
      ['egress_pool = 5', 'field `egress_pool`: invalid type: integer `5`, expected a string'],
      [`protocol = { xfer = {} }`, 'the xfer protocol is not supported by sluice'],
      [`protocol = { carrier_pigeon = {} }`, 'invalid protocol map'],
      [`protocol = { custom_lua = {} }`, 'missing field `constructor`'],
      [`protocol = { custom_lua = { constructor = 'c', batch_size = 0 } }`, 'batch_size must be at least 1'],
      [`protocol = { custom_lua = { constructor = 'c' }, smtp = {} }`, 'custom_lua must be the only key of protocol'],
    ];
    for (const [opts, expected] of cases) {
      const msg = await topLevelError(`kumo.make_queue_config { ${opts} }`);
      expect(msg).toContain(expected);
      expect(msg).toMatch(/^make_queue_config: deserialize error: .*, while processing QueueConfig$/);
    }
  });

  it('accepts throttle specs in KumoMTA forms', async () => {
    for (const rate of ['10/s', '1,000/hr', 'local:10/min', '5/day']) {
      const { config } = await queueConfig(`kumo.make_queue_config { max_message_rate = '${rate}' }`);
      expect(config.max_message_rate).toBe(rate);
    }
  });

  it('is what a get_queue_config handler hands to the host', async () => {
    const { vm } = await loadPolicy(`
kumo.on('get_queue_config', function(domain, tenant, campaign, routing_domain)
  if domain == 'W.log_hook' then
    return kumo.make_queue_config { retry_interval = '1m', protocol = { custom_lua = { constructor = 'make.W' } } }
  end
end)
`);
    const r = await vm.fire('get_queue_config', ['W.log_hook', null, null, null], 'refs');
    expect(r.handled).toBe(true);
    expect((r.values[0] as QueueConfigHandle).config).toMatchObject({ retry_interval: 60_000, protocol: { kind: 'custom_lua', constructor: 'make.W' } });
    expect(await vm.fire('get_queue_config', ['example.com', null, null, null], 'refs')).toEqual({ handled: false, values: [] });
  });

  it('serialises through kumo.serde with durations as strings', async () => {
    const { vm } = await loadPolicy(`
kumo.on('json', function()
  return kumo.serde.json_parse(kumo.serde.json_encode(kumo.make_queue_config { retry_interval = 90, max_age = '2m' }))
end)
`);
    expect((await call(vm, 'json'))[0]).toMatchObject({ retry_interval: '1m 30s', max_age: '2m', protocol: { smtp: {} } });
  });
});

describe('kumo.make_egress_path (§6)', () => {
  it('fills in the defaults', async () => {
    const { config } = await egressPath('kumo.make_egress_path {}');
    expect(config).toEqual({
      connection_limit: 32,
      max_ready: 1024,
      max_deliveries_per_connection: 1024,
      idle_timeout: 5000,
      consecutive_connection_failures_before_delay: 100,
      dispatcher_progress_watchdog_timeout: 600_000,
      refresh_interval: 60_000,
      refresh_strategy: 'Ttl',
      suspended: false,
    });
  });

  it('reads fields back, durations as humantime', async () => {
    const { vm } = await loadPolicy(`
kumo.on('read', function()
  local p = kumo.make_egress_path { idle_timeout = 60, max_ready = 1 }
  local d = kumo.make_egress_path_config {}
  return p.idle_timeout, p.max_ready, p.connection_limit, d.idle_timeout, d.max_deliveries_per_connection, tostring(p)
end)
`);
    expect(await call(vm, 'read')).toEqual(['1m', 1, 32, '5s', 1024, 'EgressPathConfig']);
  });

  it('accepts connection_limit as a number or as "local:10" and "1,000"', async () => {
    const cases: Array<[string, number]> = [['5', 5], [`'local:10'`, 10], [`'1,000'`, 1000], [`'1_000'`, 1000], [`'7'`, 7]];
    for (const [lua, expected] of cases) {
      const { config } = await egressPath(`kumo.make_egress_path { connection_limit = ${lua} }`);
      expect(config.connection_limit).toBe(expected);
    }
  });

  it('rejects connection_limit values that are not counts', async () => {
    for (const lua of [`'many'`, `''`, `'local:'`, `' 10'`, '-1', '2.5', '20/2', 'true']) {
      const msg = await topLevelError(`kumo.make_egress_path { connection_limit = ${lua} }`);
      expect(msg).toContain('field `connection_limit`');
      expect(msg).toMatch(/^make_egress_path: deserialize error: .*, while processing EgressPathConfig$/);
    }
    expect(await topLevelError(`kumo.make_egress_path { connection_limit = 20/2 }`)).toContain('invalid type: floating point `10.0`');
  });

  it('accepts and ignores SMTP-only keys', async () => {
    const { config } = await egressPath(`kumo.make_egress_path {
      enable_tls = 'OpportunisticInsecure', smtp_port = 2525, ehlo_domain = 'mx.example.com',
      connect_timeout = '60s', max_recipients_per_batch = 100, prohibited_hosts = { '127.0.0.0/8' },
      connection_limit = 2, idle_timeout = '10s', max_deliveries_per_connection = 3,
    }`);
    expect(config).toMatchObject({ connection_limit: 2, idle_timeout: 10_000, max_deliveries_per_connection: 3 });
    expect(Object.keys(config)).not.toContain('enable_tls');
    expect(Object.keys(config)).not.toContain('smtp_port');
  });

  it('rejects unknown keys, listing the accepted ones including SMTP-only keys', async () => {
    const msg = await topLevelError(`kumo.make_egress_path { conection_limit = 2 }`);
    expect(msg).toContain('make_egress_path: deserialize error: unknown field `conection_limit`');
    expect(msg).toContain('`enable_tls`');
    expect(msg).toContain('`max_ready`');
    expect(msg).toContain('(did you mean `connection_limit`?)');
    expect(msg).toMatch(/, while processing EgressPathConfig$/);
  });

  it('rejects wrong types', async () => {
    expect(await topLevelError(`kumo.make_egress_path { max_ready = '10' }`)).toContain('field `max_ready`: invalid type: string "10", expected an integer');
    expect(await topLevelError(`kumo.make_egress_path { idle_timeout = 'forever' }`)).toContain('field `idle_timeout`: invalid duration "forever"');
    expect(await topLevelError(`kumo.make_egress_path { suspended = 1 }`)).toContain('field `suspended`: invalid type: integer `1`, expected a boolean');
    expect(await topLevelError(`kumo.make_egress_path { max_deliveries_per_connection = 1e3 }`)).toContain('invalid type: floating point `1000.0`');
  });

  it('is what get_egress_path_config hands to the host', async () => {
    const { vm } = await loadPolicy(`
kumo.on('get_egress_path_config', function(routing_domain, egress_source, site_name)
  return kumo.make_egress_path { connection_limit = 'local:4', max_ready = 8 }
end)
`);
    const r = await vm.fire('get_egress_path_config', ['W.log_hook', 'unspecified', 'site'], 'refs');
    expect((r.values[0] as EgressPathHandle).config).toMatchObject({ connection_limit: 4, max_ready: 8 });
  });
});

describe('kumo.start_http_listener', () => {
  it('records the listener with its defaults', async () => {
    const source = `
kumo.on('init', function()
  kumo.start_http_listener { listen = '127.0.0.1:8000' }
  kumo.start_http_listener { listen = '127.0.0.1:8001', hostname = 'sluice', trusted_hosts = { '127.0.0.1' }, request_body_limit = 1024 }
end)
`;
    const { vm, policyPath } = await loadPolicy(source);
    await vm.startup();
    expect(vm.settings.httpListeners).toEqual([
      { listen: '127.0.0.1:8000', trusted_hosts: ['127.0.0.1', '::1'], request_body_limit: 2 * 1024 * 1024, where: `${chunkPath(policyPath)}:3` },
      { listen: '127.0.0.1:8001', trusted_hosts: ['127.0.0.1'], request_body_limit: 1024, where: `${chunkPath(policyPath)}:4` },
    ]);
  });

  it('defaults listen to 127.0.0.1:8000', async () => {
    const { vm } = await loadPolicy(`kumo.start_http_listener {}`);
    expect(vm.settings.httpListeners[0]?.listen).toBe('127.0.0.1:8000');
  });

  it('refuses TLS and unknown keys', async () => {
    expect(await topLevelError(`kumo.start_http_listener { listen = '127.0.0.1:8000', use_tls = true }`)).toBe(
      'start_http_listener: use_tls is not supported by sluice; terminate TLS in front of it',
    );
    const msg = await topLevelError(`kumo.start_http_listener { listen = '127.0.0.1:8000', trusted_host = {} }`);
    expect(msg).toContain('start_http_listener: deserialize error: unknown field `trusted_host`');
    expect(msg).toContain('(did you mean `trusted_hosts`?)');
    expect(await topLevelError(`kumo.start_http_listener { listen = 8000 }`)).toContain('field `listen`: invalid type: integer `8000`, expected a string');
  });
});

describe('error locations', () => {
  it('name the policy line of the call, also inside nested functions and handlers', async () => {
    const source = `
local function configure(opts)
  return kumo.make_queue_config(opts)
end
kumo.on('bad', function()
  local ok, err = pcall(configure, { bogus = 1 })
  return ok, err
end)
kumo.on('raise', function()
  kumo.make_egress_path { bogus = 1 }
end)
`;
    const { vm, policyPath } = await loadPolicy(source);
    const [ok, err] = await call(vm, 'bad');
    expect(ok).toBe(false);
    expect(String(err).startsWith(at(policyPath, source, 'return kumo.make_queue_config'))).toBe(true);
    const raised = (await vm.fire('raise', []).catch((e: unknown) => e)) as LuaError;
    expect(raised).toBeInstanceOf(LuaError);
    expect(raised.message.startsWith(at(policyPath, source, 'kumo.make_egress_path { bogus'))).toBe(true);
    expect(raised.message).toContain('unknown field `bogus`');
  });
});
