--[[ sluice prelude: loaded into every policy VM before the policy itself.

  1. Coroutines a policy creates forward the host's await tokens outward, so
     `kumo.http` calls and `kumo.sleep` work inside `coroutine.wrap` too.
  2. `kumo.memoize(fn, { name, ttl, capacity, invalidate_with_epoch })`
     caches results by arguments (compared by value, as JSON).
  3. fengari's integers are 32-bit, so larger integers (unix-ms timestamps,
     offsets) live in Lua as floats. `string.format` '%d' and '%i' print
     such integral floats as the integers they stand for, as KumoMTA's
     64-bit Lua would (`tostring` and '%s' are handled in the host).
]]
local kumo = require 'kumo'

local is_await = kumo._is_await_token
kumo._is_await_token = nil

local co_resume, co_yield, co_status = coroutine.resume, coroutine.yield, coroutine.status
local pack, unpack = table.pack, table.unpack

local function forward(co, r)
  while r[1] and r.n >= 2 and is_await(r[2]) and co_status(co) == 'suspended' do
    r = pack(co_resume(co, co_yield(r[2])))
  end
  return r
end

coroutine.resume = function(co, ...)
  local r = forward(co, pack(co_resume(co, ...)))
  return unpack(r, 1, r.n)
end

coroutine.wrap = function(fn)
  local co = coroutine.create(fn)
  return function(...)
    local r = forward(co, pack(co_resume(co, ...)))
    if not r[1] then
      error(r[2], 0)
    end
    return unpack(r, 2, r.n)
  end
end

local INT32_MAX, INT32_MIN, EXACT = 2147483647, -2147483648, 2 ^ 53
local math_type, floor, select = math.type, math.floor, select
local raw_format = string.format

local function wide_integer(v)
  return math_type(v) == 'float' and v == floor(v) and (v > INT32_MAX or v < INT32_MIN) and v <= EXACT and v >= -EXACT
end

string.format = function(fmt, ...)
  local n = select('#', ...)
  local wide = false
  for i = 1, n do
    if wide_integer((select(i, ...))) then
      wide = true
      break
    end
  end
  if not wide then
    return raw_format(fmt, ...)
  end
  local args, i = pack(...), 0
  local rewritten = fmt:gsub('%%([-+ #0]*%d*%.?%d*)([%a%%])', function(flags, conv)
    if conv == '%' then
      return nil
    end
    i = i + 1
    if wide_integer(args[i]) and (conv == 'd' or conv == 'i' or conv == 's') then
      args[i] = raw_format('%.0f', args[i])
      return '%' .. flags .. 's'
    end
  end)
  return raw_format(rewritten, unpack(args, 1, n))
end

local MEMOIZE_OPTIONS = {
  name = 'string',
  ttl = 'duration',
  capacity = 'number',
  invalidate_with_epoch = 'boolean',
  retry_on_error = 'boolean',
  allow_stale_reads = 'boolean',
}

function kumo.memoize(fn, opts)
  if type(fn) ~= 'function' then
    error('kumo.memoize: expected a function as the first argument', 2)
  end
  if type(opts) ~= 'table' then
    error('kumo.memoize: expected an options table { name, ttl, capacity }', 2)
  end
  for k, v in pairs(opts) do
    local want = MEMOIZE_OPTIONS[k]
    if not want then
      error(string.format("kumo.memoize: unknown field '%s'", tostring(k)), 2)
    end
    if want == 'duration' then
      if type(v) ~= 'number' and type(v) ~= 'string' then
        error(string.format("kumo.memoize: invalid type for field '%s'", k), 2)
      end
    elseif type(v) ~= want then
      error(string.format("kumo.memoize: invalid type for field '%s'", k), 2)
    end
  end
  if type(opts.name) ~= 'string' then
    error("kumo.memoize: missing field 'name'", 2)
  end
  local ttl = kumo.time.parse_duration(opts.ttl or 0)
  local capacity = opts.capacity or 1024
  local cache, count = {}, 0
  return function(...)
    local key = kumo.serde.json_encode { ... }
    local now = kumo.time.now()
    local hit = cache[key]
    if hit and (ttl == 0 or now - hit.at < ttl) then
      return unpack(hit.value, 1, hit.value.n)
    end
    local value = pack(fn(...))
    if not hit then
      count = count + 1
      if count > capacity then
        cache, count = {}, 1
      end
    end
    cache[key] = { at = now, value = value }
    return unpack(value, 1, value.n)
  end
end
