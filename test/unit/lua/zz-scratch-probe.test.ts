import { it } from 'vitest';
import { loadPolicy, call } from '../../helpers/policy.js';
it('probe', async () => {
  const { vm, policyPath } = await loadPolicy(`
local function inner()
  return kumo.traceback(0), kumo.traceback(1)
end
kumo.on('tb', function() local a, b = inner(); return a, b end)
kumo.on('q', function()
  local ok, e = pcall(kumo.make_queue_config, { protocol = { custom_lua = { constructor = 'x', batch_size = 20/2 } } })
  local cfg = kumo.make_queue_config { retry_interval = '1m' }
  local keys = {}
  for k, v in pairs(cfg) do table.insert(keys, k .. '=' .. tostring(v)) end
  table.sort(keys)
  local ok2, e2 = pcall(kumo.memoize, function() end, { name = 'x', ttl = 'soon' })
  return ok, e and tostring(e) or nil, table.concat(keys, ','), #cfg, e2
end)
`);
  console.log(policyPath);
  console.log(JSON.stringify(await call(vm, 'tb'), null, 1));
  console.log(await call(vm, 'q'));
});
