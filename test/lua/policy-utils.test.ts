import { describe, expect, it } from 'vitest';
import { call, loadPolicy } from '../helpers/policy.js';

describe('policy-extras.policy_utils', () => {
  it('merges, searches and compares as KumoMTA helpers expect', async () => {
    const { vm } = await loadPolicy(`
      local utils = require 'policy-extras.policy_utils'
      kumo.on('t', function()
        local dest = { a = 1, nested = { x = 1 } }
        utils.merge_into({ b = 2 }, dest)
        utils.merge_into(nil, dest)
        utils.recursive_merge_into({ nested = { y = 2 } }, dest)
        local host, port = utils.split_ip_port('[::1]:8000')
        return dest.a, dest.b, dest.nested.x, dest.nested.y,
          utils.table_contains({ 'a', 'b' }, 'b'), utils.table_contains({ 'a' }, 'z'),
          utils.starts_with('webhook.log_hook', 'webhook'), utils.ends_with('webhook.log_hook', '.log_hook'),
          host, port, utils.equals({ 1, { a = 2 } }, { 1, { a = 2 } }), utils.equals({ a = 1 }, { a = 2 }),
          utils.table_is_empty({}), #utils.table_keys({ a = 1, b = 2 })
      end)
      kumo.on('fail', function() utils.assert_eq({ 1 }, { 2 }, 'lists') end)
    `);
    expect(await call(vm, 't')).toEqual([1, 2, 1, 2, true, false, true, true, '::1', 8000, true, false, true, 2]);
    await expect(vm.fire('fail', [])).rejects.toMatchObject({ code: 'SLUICE_ERR_LUA', message: expect.stringMatching(/init\.lua:\d+: lists: expected \[1\] == \[2\]/) });
  });
});
