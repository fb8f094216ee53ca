--[[ policy-extras.log_hooks: deliver log records to webhooks (or anything
else a Lua connection can reach) through sluice's durable queues.

Usage (in init.lua, at top level, before any catch-all get_queue_config):

  local log_hooks = require 'policy-extras.log_hooks'

  -- POST each record as JSON; a non-2xx reply is a permanent failure.
  log_hooks:new_json {
    name = 'webhook',
    url = 'http://127.0.0.1:4242/log',
    log_parameters = { headers = { 'Subject', 'X-Customer-ID' } },
  }

  -- Full control: your own connection object, optionally batched.
  log_hooks:new {
    name = 'batched',
    batch_size = 100,
    constructor = function(domain, tenant, campaign)
      local connection = {}
      function connection:send_batch(messages) ... end
      function connection:close() end
      return connection
    end,
  }

What each call registers, for hook name N:
  pre_init                   -> kumo.configure_log_hook { name = N, <log_parameters> }
  should_enqueue_log_record  -> for hook N: drop records about log-hook messages
                                (reception_protocol 'LogRecord') and records the
                                filter rejects; otherwise queue 'N.log_hook'
  get_queue_config           -> for domain 'N.log_hook': custom_lua protocol with
                                constructor 'make.N.log_hook', batch_size,
                                min_batch_size, max_batch_latency; retries 1m / 20m
  make.N.log_hook            -> the constructor

Options are checked strictly; errors name the option record and field, as
KumoMTA's typing module does (`LogHookOptions: unknown field 'bogus'`).
]]
local kumo = require 'kumo'

local mod = { CONFIGURED = {} }

local THIS_SRC = debug.getinfo(1, 'S').short_src

-- `file:line: ` of the policy line that called into this module.
local function caller_location()
  local level = 2
  while true do
    local info = debug.getinfo(level, 'Sl')
    if not info then
      return ''
    end
    if info.short_src ~= THIS_SRC and info.what ~= 'C' then
      return string.format('%s:%d: ', info.short_src, info.currentline)
    end
    level = level + 1
  end
end

local function fail(message)
  error(caller_location() .. message, 0)
end

local function describe(v)
  if type(v) == 'string' then
    return string.format("'string' '%s'", v)
  end
  return string.format("'%s' '%s'", type(v), tostring(v))
end

-- Field kinds: { type = 'string' | 'number' | 'function' | 'table', optional = bool }
local function check_record(record_name, fields, options)
  if type(options) ~= 'table' then
    fail(string.format('%s: expected a table of options, got %s', record_name, type(options)))
  end
  local keys = {}
  for k in pairs(options) do
    table.insert(keys, tostring(k))
  end
  table.sort(keys)
  for _, k in ipairs(keys) do
    if not fields[k] then
      fail(string.format("%s: unknown field '%s'", record_name, k))
    end
  end
  for _, k in ipairs(keys) do
    local spec, v = fields[k], options[k]
    if spec.check then
      spec.check(record_name, k, v)
    elseif type(v) ~= spec.type then
      fail(string.format("%s: invalid value for field '%s'\nExpected '%s', got %s", record_name, k, spec.type, describe(v)))
    end
  end
  local names = {}
  for k in pairs(fields) do
    table.insert(names, k)
  end
  table.sort(names)
  for _, k in ipairs(names) do
    local spec = fields[k]
    if not spec.optional and options[k] == nil then
      fail(string.format("%s: missing value for field '%s' of type '%s'", record_name, k, spec.type))
    end
  end
end

-- queue_config keys are checked one at a time by kumo.make_queue_config, and
-- reported as KumoMTA's helper reports them: a type mismatch is an invalid
-- value, anything else is an unknown field.
local function check_queue_config(record_name, field, v)
  if type(v) ~= 'table' then
    fail(string.format("%s: invalid value for field '%s'\nExpected 'QueueConfig', got %s", record_name, field, describe(v)))
  end
  for k, value in pairs(v) do
    local ok, err = pcall(kumo.make_queue_config, { [k] = value })
    if not ok then
      local detail = tostring(err):match 'deserialize error: (.*), while processing' or tostring(err)
      if detail:find('invalid type', 1, true) then
        fail(string.format("QueueConfig: invalid value for field '%s'\n%s", tostring(k), detail))
      end
      fail(string.format("QueueConfig: unknown field '%s'", tostring(k)))
    end
  end
end

local function check_string_map(record_name, field, v)
  if type(v) ~= 'table' then
    fail(string.format("%s: invalid value for field '%s'\nExpected 'map<string,any>', got %s", record_name, field, describe(v)))
  end
  for k in pairs(v) do
    if type(k) ~= 'string' then
      fail(string.format("%s: invalid value for field '%s'\nExpected string keys, got %s", record_name, field, describe(k)))
    end
  end
end

local COMMON = {
  name = { type = 'string' },
  log_parameters = { type = 'map<string,any>', optional = true, check = check_string_map },
  queue_config = { type = 'QueueConfig', optional = true, check = check_queue_config },
}

local LOG_HOOK_OPTIONS = {
  constructor = { type = 'function' },
  batch_size = { type = 'number', optional = true },
  min_batch_size = { type = 'number', optional = true },
  max_batch_latency = { type = 'string', optional = true },
  filter = { type = 'function', optional = true },
}

local JSON_LOG_HOOK_OPTIONS = {
  url = { type = 'string' },
}

for k, v in pairs(COMMON) do
  LOG_HOOK_OPTIONS[k] = v
  JSON_LOG_HOOK_OPTIONS[k] = v
end

local DISP_HOOK_OPTIONS = {
  name = { type = 'string' },
  hook = { type = 'function' },
}

local function claim_name(name)
  if mod.CONFIGURED[name] then
    fail(string.format("log_hook with name '%s' has already been configured", name))
  end
  mod.CONFIGURED[name] = true
end

function mod:new(options)
  check_record('LogHookOptions', LOG_HOOK_OPTIONS, options)
  local name = options.name
  claim_name(name)

  local domain_name = name .. '.log_hook'
  local constructor_name = 'make.' .. name .. '.log_hook'

  local queue_config = { retry_interval = '1m', max_retry_interval = '20m' }
  for k, v in pairs(options.queue_config or {}) do
    queue_config[k] = v
  end
  queue_config.protocol = {
    custom_lua = {
      constructor = constructor_name,
      batch_size = options.batch_size or 1,
      min_batch_size = options.min_batch_size,
      max_batch_latency = options.max_batch_latency,
    },
  }
  local ok, queue_config_obj = pcall(kumo.make_queue_config, queue_config)
  if not ok then
    fail(tostring(queue_config_obj))
  end

  kumo.on('pre_init', function()
    local log_parameters = { name = name }
    for k, v in pairs(options.log_parameters or {}) do
      log_parameters[k] = v
    end
    kumo.configure_log_hook(log_parameters)
  end)

  kumo.on('should_enqueue_log_record', function(msg, hook_name)
    if hook_name ~= name then
      return
    end
    local log_record = msg:get_meta 'log_record'
    if log_record and log_record.reception_protocol == 'LogRecord' then
      return false
    end
    if options.filter and options.filter(msg, hook_name) then
      return false
    end
    msg:set_meta('queue', domain_name)
    return true
  end)

  kumo.on('get_queue_config', function(domain, tenant, campaign, routing_domain)
    if domain ~= domain_name then
      return
    end
    return queue_config_obj
  end)

  kumo.on(constructor_name, options.constructor)
end

function mod:new_json(options)
  check_record('JsonLogHookOptions', JSON_LOG_HOOK_OPTIONS, options)
  local url = options.url
  options.url = nil
  options.constructor = function(domain, tenant, campaign)
    local connection = {}
    local client = kumo.http.build_client {}

    function connection:send(message)
      local response = client
        :post(url)
        :header('Content-Type', 'application/json')
        :body(message:get_data())
        :send()

      local disposition = string.format(
        '%d %s: %s',
        response:status_code(),
        response:status_reason(),
        response:text()
      )

      if response:status_is_success() then
        return disposition
      end
      kumo.reject(500, disposition)
    end

    function connection:close()
      client:close()
    end

    return connection
  end
  return self:new(options)
end

function mod:new_disposition_hook(options)
  check_record('DispHookOptions', DISP_HOOK_OPTIONS, options)
  local name = options.name
  claim_name(name)
  kumo.on('pre_init', function()
    kumo.configure_log_disposition_hook { name = name }
  end)
  kumo.on('log_disposition_' .. name, options.hook)
end

return mod
