/**
 * A full ready queue (kumomta-facts §14.1, §17.33): with max_ready=1 on the
 * hook's egress path and a slow endpoint, a burst of records finds the ready
 * queue full. Those messages go back to their scheduled queue with a
 * `Delayed` record (400, `ReadyQueueWasFull`), without an attempt counted,
 * and are all delivered once the endpoint catches up.
 */
import http from 'node:http';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { readLocalLogs } from '../../src/logging/local-logs.js';
import { buildRecord, response, type JsonLogRecord } from '../../src/logging/record.js';
import { Message } from '../../src/queue/message.js';
import type { Engine } from '../../src/engine.js';
import { startEngine } from '../helpers/engine.js';
import { tempDir } from '../helpers/policy.js';
import { waitFor } from '../helpers/fake-clock.js';

/** An endpoint that holds every request until the test opens the gate. */
async function startGatedEndpoint() {
  const held: Array<() => void> = [];
  const bodies: string[] = [];
  let open = false;
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      bodies.push(Buffer.concat(chunks).toString('utf8'));
      const reply = () => res.writeHead(200, { 'content-type': 'text/plain' }).end('ok');
      if (open) reply();
      else held.push(reply);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    bodies,
    held,
    open() {
      open = true;
      for (const r of held.splice(0)) r();
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

let engine: Engine | null = null;
let endpoint: Awaited<ReturnType<typeof startGatedEndpoint>> | null = null;
afterEach(async () => {
  endpoint?.open(); // a session blocked on a held request would hold up close()
  await engine?.close();
  engine = null;
  await endpoint?.close();
  endpoint = null;
});

function record(i: number): JsonLogRecord {
  const created = Date.UTC(2026, 0, 1);
  const m = new Message({ id: `${'a'.repeat(30)}${String(i).padStart(2, '0')}`, sender: 's@shop.example', recipients: [`r${i}@mail.example`], data: 'x', meta: { reception_protocol: 'ESMTP' }, created });
  return buildRecord(m, { type: 'Delivery', response: response(250, 'ok'), when: created }, { meta: [], headers: [] });
}

describe('a full ready queue on the hook path', () => {
  it('max_ready=1, slow endpoint, burst of 5: Delayed ReadyQueueWasFull records, all delivered, no attempts counted (§17.33)', async () => {
    endpoint = await startGatedEndpoint();
    const logDir = path.join(tempDir('sluice-rqfull-'), 'logs');
    let clock;
    ({ engine, clock } = await startEngine(`
local log_hooks = require 'policy-extras.log_hooks'
SENDS = 0
log_hooks:new {
  name = 'W',
  constructor = function(domain)
    local client = kumo.http.build_client {}
    return {
      send = function(self, msg)
        SENDS = SENDS + 1
        local r = client:post('${endpoint.url}/log'):header('Content-Type', 'application/json'):body(msg:get_data()):send()
        return 'posted ' .. r:status_code()
      end,
      close = function() client:close() end,
    }
  end,
}
kumo.on('get_egress_path_config', function(domain, source, site)
  PATH_ARGS = domain .. ' ' .. source .. ' ' .. site
  return kumo.make_egress_path { max_ready = 1, connection_limit = 1 }
end)
kumo.on('init', function()
  kumo.configure_local_logs { log_dir = '${logDir}' }
end)
kumo.on('stats', function() return { sends = SENDS, path_args = PATH_ARGS } end)
`));
    const records = [1, 2, 3, 4, 5].map(record);
    expect(await engine.publishRecords(records)).toBe(5);

    const rq = engine.manager.readyQueues().find((q) => q.name === 'unspecified->W.log_hook@lua:make.W.log_hook');
    expect(rq).toBeDefined();
    expect(rq!.pathConfig.max_ready).toBe(1);
    // The session is stuck on the first request; one more message fits in the ready queue.
    await waitFor(() => endpoint!.held.length === 1, 'the first request to be held');
    expect(rq!.size).toBeLessThanOrEqual(1);
    expect(rq!.fullCount).toBeGreaterThan(0);

    const stuck = async () => {
      await engine!.hub.flush();
      return (await readLocalLogs(logDir).catch(() => [])).filter((r) => r.type === 'Delayed');
    };
    const delayed = await waitFor(async () => { const d = await stuck(); return d.length > 0 ? d : null; }, 'Delayed records');
    expect(delayed.length).toBeLessThanOrEqual(rq!.fullCount);
    for (const d of delayed) {
      expect(d).toMatchObject({ queue: 'W.log_hook', num_attempts: 0, reception_protocol: 'LogRecord', response: { code: 400 } });
      expect(d.response.content).toContain('ReadyQueueWasFull');
    }

    // The endpoint catches up: everything is delivered, in the order it arrived or not, exactly once.
    endpoint.open();
    await waitFor(async () => {
      await clock.advance(1000);
      return endpoint!.bodies.length >= 5 && (await engine!.spool.size()) === 0;
    }, 'all five records delivered');
    const ids = endpoint.bodies.map((b) => (JSON.parse(b) as JsonLogRecord).id).sort();
    expect(ids).toEqual(records.map((r) => r.id).sort());

    await engine.hub.flush();
    const local = await readLocalLogs(logDir);
    const deliveries = local.filter((r) => r.type === 'Delivery');
    expect(deliveries).toHaveLength(5);
    expect(deliveries.map((r) => r.num_attempts)).toEqual([0, 0, 0, 0, 0]);
    expect(local.filter((r) => r.type === 'TransientFailure')).toEqual([]);
    expect(await engine.policy.fire('stats', []).then((r) => r.values[0])).toEqual({ sends: 5, path_args: 'W.log_hook unspecified W.log_hook' });
    expect(engine.manager.totals).toMatchObject({ delivered: 5, transfail: 0, fail: 0 });
  });
});
