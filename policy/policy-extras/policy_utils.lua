--[[ policy-extras.policy_utils: small helpers KumoMTA policies use.

Usage:
  local utils = require 'policy-extras.policy_utils'
  utils.merge_into({ a = 1 }, dest)          -- shallow copy of src into dest
  utils.recursive_merge_into(src, dest)      -- nested tables merged
  utils.table_contains({ 'a', 'b' }, 'b')    -- true
  utils.starts_with('webhook.log_hook', 'webhook')
]]
local kumo = require 'kumo'

local mod = {}

-- Copy every key of src into dest (src wins). Does nothing when src is nil.
function mod.merge_into(src, dest)
  if src == nil then
    return
  end
  for k, v in pairs(src) do
    dest[k] = v
  end
end

-- Merge src into dest; tables are merged key by key, other values overwrite.
-- A table that dest does not have yet is assigned by reference, as in KumoMTA.
function mod.recursive_merge_into(src, dest)
  if src == nil then
    return
  end
  for k, v in pairs(src) do
    if type(v) == 'table' and type(dest[k]) == 'table' then
      mod.recursive_merge_into(v, dest[k])
    else
      dest[k] = v
    end
  end
end

function mod.table_contains(tbl, value)
  for _, v in pairs(tbl) do
    if v == value then
      return true
    end
  end
  return false
end

function mod.table_keys(tbl)
  local keys = {}
  for k in pairs(tbl) do
    table.insert(keys, k)
  end
  return keys
end

function mod.table_is_empty(tbl)
  return next(tbl) == nil
end

function mod.starts_with(s, prefix)
  return s:sub(1, #prefix) == prefix
end

function mod.ends_with(s, suffix)
  return suffix == '' or s:sub(-#suffix) == suffix
end

-- 'host:port' or '[v6]:port' into host and port; the port is nil when absent.
function mod.split_ip_port(s)
  local host, port = s:match '^%[(.+)%]:(%d+)$'
  if host then
    return host, tonumber(port)
  end
  host, port = s:match '^([^:]+):(%d+)$'
  if host then
    return host, tonumber(port)
  end
  return s, nil
end

-- Deep equality of two values (tables compared by content).
function mod.equals(a, b)
  if type(a) ~= type(b) then
    return false
  end
  if type(a) ~= 'table' then
    return a == b
  end
  for k, v in pairs(a) do
    if not mod.equals(v, b[k]) then
      return false
    end
  end
  for k in pairs(b) do
    if a[k] == nil then
      return false
    end
  end
  return true
end

function mod.assert_eq(a, b, message)
  if not mod.equals(a, b) then
    error(string.format('%s: expected %s == %s', message or 'assert_eq', kumo.json_encode(a), kumo.json_encode(b)), 2)
  end
end

function mod.assert_ne(a, b, message)
  if mod.equals(a, b) then
    error(string.format('%s: expected %s ~= %s', message or 'assert_ne', kumo.json_encode(a), kumo.json_encode(b)), 2)
  end
end

-- A table as it is given, or the contents of a JSON file (TOML is not supported).
function mod.load_json_or_toml_file(f)
  if type(f) == 'table' then
    return f
  end
  if f:match '%.toml$' then
    error('policy_utils: TOML files are not supported by sluice: ' .. f, 2)
  end
  return kumo.json_load(f)
end

-- A readable dump of a value, for logging.
function mod.dumps(v)
  local ok, s = pcall(kumo.serde.json_encode_pretty, v)
  return ok and s or tostring(v)
end

return mod
