/**
 * Records published to `sluice serve` (over HTTP, and with `sluice records`
 * reading JSON lines on stdin) reach both of the policy's hooks.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDaemon, postJson, record, type Daemon } from '../helpers/daemon.js';
import { startReceiver, type Receiver } from '../helpers/receiver.js';
import { runCli } from '../helpers/cli.js';

let a: Receiver;
let b: Receiver;
let daemon: Daemon;

beforeAll(async () => {
  a = await startReceiver();
  b = await startReceiver();
  daemon = await startDaemon({
    policy: `
local log_hooks = require 'policy-extras.log_hooks'
log_hooks:new_json { name = 'first', url = '${a.url}/first' }
log_hooks:new {
  name = 'second',
  batch_size = 10,
  max_batch_latency = '50ms',
  constructor = function(domain, tenant, campaign)
    local client = kumo.http.build_client {}
    local connection = {}
    function connection:send_batch(messages)
      local payload = {}
      for _, msg in ipairs(messages) do
        table.insert(payload, msg:get_meta 'log_record')
      end
      local response = client:post('${b.url}/second'):header('Content-Type', 'application/json'):body(kumo.serde.json_encode(payload)):send()
      if response:status_is_success() then
        return 'ok'
      end
      kumo.reject(500, response:text())
    end
    function connection:close()
      client:close()
    end
    return connection
  end,
}
`,
  });
});
afterAll(async () => {
  expect(await daemon.stop()).toBe(0);
  await a.close();
  await b.close();
});

const ids = (rs: Record<string, unknown>[]) => rs.map((r) => r.id as string).sort();

describe('two hooks', () => {
  it('records published over HTTP reach both hooks', async () => {
    const sent = Array.from({ length: 12 }, (_, i) => record('two', { type: i % 3 === 0 ? 'Bounce' : 'Delivery' }));
    expect(await postJson(`${daemon.url}/api/log-records/v1`, sent.slice(0, 2))).toEqual({ status: 200, json: { accepted: 2, queued: 4 } });
    expect(await postJson(`${daemon.url}/api/log-records/v1`, sent[2])).toEqual({ status: 200, json: { accepted: 1, queued: 2 } });
    expect(await postJson(`${daemon.url}/api/log-records/v1`, sent.slice(3))).toEqual({ status: 200, json: { accepted: 9, queued: 18 } });

    const gotA = await a.waitForRecords(12);
    const gotB = await b.waitForRecords(12);
    expect(ids(gotA)).toEqual(ids(sent));
    expect(ids(gotB)).toEqual(ids(sent));
    expect(a.requests).toHaveLength(12);
    expect(a.requests.every((r) => r.url === '/first')).toBe(true);
    expect(b.requests.every((r) => r.url === '/second' && Array.isArray(JSON.parse(r.body)))).toBe(true);
    const bounce = gotB.find((r) => r.id === sent[0]!.id)!;
    expect(bounce.type).toBe('Bounce');
  });

  it('sluice records reads JSON lines on stdin', async () => {
    const beforeA = a.records().length;
    const beforeB = b.records().length;
    const sent = Array.from({ length: 5 }, () => record('lines'));
    const r = await runCli(['records', '--server', daemon.url, '--batch-size', '2'], { input: sent.map((x) => JSON.stringify(x)).join('\n') + '\n' });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({ accepted: 5, queued: 10 });
    const gotA = (await a.waitForRecords(beforeA + 5)).slice(beforeA);
    const gotB = (await b.waitForRecords(beforeB + 5)).slice(beforeB);
    expect(ids(gotA)).toEqual(ids(sent));
    expect(ids(gotB)).toEqual(ids(sent));
  });
});
