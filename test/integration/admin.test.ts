/**
 * Admin actions on a hook queue (kumomta-facts §11.1, §14.1, §17.37–38):
 * an admin bounce empties the queue with AdminBounce records and keeps
 * bouncing new arrivals while it is active; a suspension fails due messages
 * with 451 4.4.4 (counting an attempt) and calls no webhook until it is
 * resumed or expires.
 */
import http from 'node:http';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { readLocalLogs } from '../../src/logging/local-logs.js';
import { buildRecord, response, type JsonLogRecord } from '../../src/logging/record.js';
import { Message } from '../../src/queue/message.js';
import type { Engine } from '../../src/engine.js';
import { startReceiver, type Receiver } from '../helpers/receiver.js';
import { startEngine } from '../helpers/engine.js';
import { tempDir } from '../helpers/policy.js';
import { waitFor, type FakeClock } from '../helpers/fake-clock.js';

let receiver: Receiver;
let engine: Engine | null = null;
let logDir: string;

beforeEach(async () => {
  receiver = await startReceiver();
  logDir = path.join(tempDir('sluice-admin-'), 'logs');
});
afterEach(async () => {
  await engine?.close();
  engine = null;
  await receiver.close();
});

const T0 = Date.UTC(2026, 0, 1);

function record(i: number): JsonLogRecord {
  const m = new Message({ id: `${'b'.repeat(30)}${String(i).padStart(2, '0')}`, sender: 's@shop.example', recipients: [`r${i}@mail.example`], data: 'x', meta: { reception_protocol: 'ESMTP' }, created: T0 });
  return buildRecord(m, { type: 'Delivery', response: response(250, 'ok'), when: T0 }, { meta: [], headers: [] });
}

/** Hook W posts to the receiver; a non-2xx answer is a transient failure (400), so records wait for a retry. */
function policy(): string {
  return `
local log_hooks = require 'policy-extras.log_hooks'
SENDS = 0
log_hooks:new {
  name = 'W',
  constructor = function(domain)
    local client = kumo.http.build_client {}
    return {
      send = function(self, msg)
        SENDS = SENDS + 1
        local r = client:post('${receiver.url}/log'):header('Content-Type', 'application/json'):body(msg:get_data()):send()
        if r:status_is_success() then return 'posted' end
        kumo.reject(400, 'endpoint answered ' .. r:status_code())
      end,
      close = function() client:close() end,
    }
  end,
}
kumo.on('init', function()
  kumo.configure_local_logs { log_dir = '${logDir}' }
end)
kumo.on('stats', function() return { sends = SENDS } end)
`;
}

async function sends(e: Engine): Promise<number> {
  return ((await e.policy.fire('stats', [])).values[0] as { sends: number }).sends;
}

async function localLogsWhen(e: Engine, pred: (recs: JsonLogRecord[]) => boolean, what: string): Promise<JsonLogRecord[]> {
  let last: JsonLogRecord[] = [];
  await waitFor(async () => {
    await e.hub.flush();
    last = await readLocalLogs(logDir).catch(() => []);
    return pred(last);
  }, what);
  return last;
}

const ofType = (recs: JsonLogRecord[], type: string) => recs.filter((r) => r.type === type);
const queueStats = (e: Engine) => e.manager.stats().find((q) => q.name === 'W.log_hook');

describe('admin bounce', () => {
  it('bounces every queued record with AdminBounce 551 5.7.1, empties the queue, and bounces new arrivals (§17.37)', async () => {
    receiver.respond = () => ({ status: 400, body: 'dead' });
    let clock: FakeClock;
    ({ engine, clock } = await startEngine(policy(), { rand: () => 0.5 }));
    const records = [1, 2, 3].map(record);
    expect(await engine.publishRecords(records)).toBe(3);
    // Each was tried once and waits for its retry.
    await waitFor(() => queueStats(engine!)?.scheduled === 3, 'three records waiting for a retry');
    expect(receiver.requests).toHaveLength(3);
    const failures = ofType(await localLogsWhen(engine, (r) => ofType(r, 'TransientFailure').length === 3, 'three transient failures'), 'TransientFailure');
    expect(failures.map((r) => [r.response.code, r.response.content])).toEqual([
      [400, 'endpoint answered 400'], [400, 'endpoint answered 400'], [400, 'endpoint answered 400'],
    ]);

    const rule = await engine.manager.adminBounce({ queueNames: ['W.log_hook'], reason: 'purge', until: clock.now() + 3_600_000 });
    expect(rule.bounced).toBe(3);
    expect(queueStats(engine)).toMatchObject({ scheduled: 0, ready: 0, in_flight: 0 });
    await waitFor(async () => (await engine!.spool.size()) === 0, 'the spool to empty');
    expect(engine.manager.totals.admin_bounced).toBe(3);

    const local = await localLogsWhen(engine, (r) => ofType(r, 'AdminBounce').length === 3, 'three AdminBounce records');
    const bounced = ofType(local, 'AdminBounce');
    expect(bounced.map((r) => r.id).sort()).toEqual(failures.map((r) => r.id).sort());
    for (const r of bounced) {
      expect(r).toMatchObject({
        queue: 'W.log_hook',
        site: 'localhost',
        num_attempts: 1,
        reception_protocol: 'LogRecord',
        response: { code: 551, enhanced_code: { class: 5, subject: 7, detail: 1 }, content: 'Administrator bounced with reason: purge', command: null },
      });
    }

    // New insertions while the rule is active are bounced on arrival, never sent.
    receiver.respond = () => ({ status: 200 });
    expect(await engine.publishRecords([record(4)])).toBe(1);
    await localLogsWhen(engine, (r) => ofType(r, 'AdminBounce').length === 4, 'a fourth AdminBounce record');
    expect(rule.bounced).toBe(4);
    expect(await engine.spool.size()).toBe(0);
    // Past every retry time, nothing more reaches the endpoint.
    await clock.advance(600_000);
    expect(receiver.requests).toHaveLength(3);
    expect(await sends(engine)).toBe(3);
    expect(queueStats(engine)).toMatchObject({ scheduled: 0, ready: 0, in_flight: 0, delivered: 0 });

    // Once the rule is cancelled, records flow again.
    expect(engine.manager.cancelBounce(rule.id)).toBe(true);
    expect(await engine.publishRecords([record(5)])).toBe(1);
    const got = await receiver.waitForRecords(4);
    expect(got.slice(3).map((r) => r.id)).toEqual([record(5).id]);
    expect(rule.bounced).toBe(4);
  });

  it('bounces records waiting in the ready queue; the one in flight finishes its attempt', async () => {
    // Hold every request until the test lets go: the session is stuck on the first record.
    const held: Array<() => void> = [];
    let gate = true;
    receiver.respond = () => ({ status: 200 });
    const gated = http.createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        const reply = () => res.writeHead(200).end('ok');
        if (gate) held.push(reply);
        else reply();
      });
    });
    await new Promise<void>((resolve) => gated.listen(0, '127.0.0.1', resolve));
    const gateUrl = `http://127.0.0.1:${(gated.address() as AddressInfo).port}/hold`;
    try {
      let clock: FakeClock;
      ({ engine, clock } = await startEngine(policy().replace(`local r = client:post('${receiver.url}/log')`, `client:post('${gateUrl}'):send()
        local r = client:post('${receiver.url}/log')`) + `
kumo.on('get_egress_path_config', function() return kumo.make_egress_path { connection_limit = 1 } end)
`));
      await engine.publishRecords([1, 2, 3].map(record));
      await waitFor(() => held.length === 1, 'the first record in flight');
      expect(queueStats(engine)).toMatchObject({ ready: 2, in_flight: 1, scheduled: 0 });
      const rule = await engine.manager.adminBounce({ queueNames: ['W.log_hook'], reason: 'purge', until: clock.now() + 3_600_000 });
      expect(rule.bounced).toBe(2);
      expect(queueStats(engine)).toMatchObject({ ready: 0, in_flight: 1, scheduled: 0 });
      gate = false;
      for (const r of held.splice(0)) r();
      const local = await localLogsWhen(engine, (r) => ofType(r, 'Delivery').length === 1 && ofType(r, 'AdminBounce').length === 2, 'one delivery and two bounces');
      expect(ofType(local, 'Delivery').map((r) => r.id)).not.toContain(ofType(local, 'AdminBounce')[0]!.id);
      expect(receiver.records().map((r) => r.id)).toEqual([record(1).id]);
      await waitFor(async () => (await engine!.spool.size()) === 0, 'the spool to empty');
      expect(await sends(engine)).toBe(1);
    } finally {
      gate = false;
      for (const r of held.splice(0)) r();
      await engine?.close();
      engine = null;
      gated.closeAllConnections();
      await new Promise<void>((resolve) => gated.close(() => resolve()));
    }
  });

  it('an admin bounce for another queue leaves the hook queue alone', async () => {
    receiver.respond = () => ({ status: 400 });
    let clock: FakeClock;
    ({ engine, clock } = await startEngine(policy(), { rand: () => 0.5 }));
    await engine.publishRecords([record(1)]);
    await waitFor(() => queueStats(engine!)?.scheduled === 1, 'the record waiting for a retry');
    const rule = await engine.manager.adminBounce({ queueNames: ['other.log_hook'], reason: 'purge', until: clock.now() + 3_600_000 });
    expect(rule.bounced).toBe(0);
    receiver.respond = () => ({ status: 200 });
    await clock.advance(61_000);
    const got = await receiver.waitForRequests(2);
    expect(JSON.parse(got[1]!.body)).toMatchObject({ id: record(1).id });
    await waitFor(() => queueStats(engine!)?.delivered === 1, 'the delivery');
    expect(engine.manager.totals.admin_bounced).toBe(0);
  });
});

describe('suspension', () => {
  it('due records get 451 4.4.4 while suspended, and reach the endpoint only after resume (§17.38)', async () => {
    let clock: FakeClock;
    ({ engine, clock } = await startEngine(policy(), { rand: () => 0.5 }));
    const s = engine.manager.suspend({ queueNames: ['W.log_hook'] }, 'maint', clock.now() + 5 * 60_000);
    expect(await engine.publishRecords([record(1), record(2)])).toBe(2);
    await waitFor(() => queueStats(engine!)?.scheduled === 2, 'two records at rest');
    expect(queueStats(engine)?.suspended).toBe('maint');

    // Due now: promotion meets the suspension.
    await clock.advance(0);
    let local = await localLogsWhen(engine, (r) => ofType(r, 'TransientFailure').length === 2, 'two suspension failures');
    for (const r of ofType(local, 'TransientFailure')) {
      expect(r).toMatchObject({
        queue: 'W.log_hook',
        num_attempts: 0,
        response: { code: 451, enhanced_code: { class: 4, subject: 4, detail: 4 }, content: 'KumoMTA internal: scheduled queue is suspended: maint' },
      });
    }
    // Requeued with an attempt counted: retry in 1m (jitter 0 with rand 0.5).
    await waitFor(() => queueStats(engine!)?.scheduled === 2, 'both requeued');
    await clock.advance(60_000);
    local = await localLogsWhen(engine, (r) => ofType(r, 'TransientFailure').length === 4, 'two more suspension failures');
    expect(ofType(local, 'TransientFailure').slice(2).map((r) => [r.response.code, r.num_attempts])).toEqual([[451, 1], [451, 1]]);
    expect(receiver.requests).toHaveLength(0);
    expect(await sends(engine)).toBe(0);

    // Resume: the records wait for their due time (2m after the last failure), then go out.
    await waitFor(() => queueStats(engine!)?.scheduled === 2, 'both requeued again');
    expect(engine.manager.resume(s.id)).toBe(true);
    expect(queueStats(engine)?.suspended).toBeNull();
    await clock.advance(119_000);
    expect(receiver.requests).toHaveLength(0);
    await clock.advance(1_000);
    const got = await receiver.waitForRecords(2);
    expect(got.map((r) => r.id).sort()).toEqual([record(1).id, record(2).id]);
    local = await localLogsWhen(engine, (r) => ofType(r, 'Delivery').length === 2, 'two deliveries');
    expect(ofType(local, 'Delivery').map((r) => r.num_attempts)).toEqual([2, 2]);
    expect(ofType(local, 'TransientFailure')).toHaveLength(4);
    expect(engine.manager.resume(s.id)).toBe(false);
  });

  it('no webhook call before the suspension expires; after it, due records are delivered', async () => {
    let clock: FakeClock;
    ({ engine, clock } = await startEngine(policy(), { rand: () => 0.5 }));
    const requestTimes: number[] = [];
    receiver.respond = () => {
      requestTimes.push(clock.now());
      return { status: 200 };
    };
    const until = clock.now() + 5 * 60_000;
    engine.manager.suspend({ queueNames: ['W.log_hook'] }, 'maint', until);
    await engine.publishRecords([record(1)]);
    // Failures at +0, +60 s and +180 s (backoff 1m, 2m, 4m); the retry at +420 s is past the expiry.
    for (const [step, failures] of [[0, 1], [60_000, 2], [120_000, 3]] as const) {
      await waitFor(() => queueStats(engine!)?.scheduled === 1, 'the record at rest');
      await clock.advance(step);
      await localLogsWhen(engine, (r) => ofType(r, 'TransientFailure').length === failures, `${failures} suspension failures`);
    }
    await waitFor(() => queueStats(engine!)?.scheduled === 1, 'the record at rest');
    await clock.advance(239_000);
    expect(queueStats(engine)?.suspended).toBeNull(); // expired at +300 s
    expect(receiver.requests).toHaveLength(0);
    await clock.advance(1_000);
    await receiver.waitForRequests(1);
    expect(requestTimes).toEqual([T0 + 420_000]);
    expect(requestTimes[0]).toBeGreaterThanOrEqual(until);
    const local = await localLogsWhen(engine, (r) => ofType(r, 'Delivery').length === 1, 'the delivery');
    expect(ofType(local, 'TransientFailure').map((r) => [r.response.code, r.num_attempts, r.timestamp - T0 / 1000])).toEqual([
      [451, 0, 0], [451, 1, 60], [451, 2, 180],
    ]);
    expect(ofType(local, 'Delivery')[0]).toMatchObject({ num_attempts: 3, response: { code: 200, content: 'posted' } });
  });

  it('a suspension of a queue that already exists applies to records queued before it', async () => {
    receiver.respond = () => ({ status: 400 });
    let clock: FakeClock;
    ({ engine, clock } = await startEngine(policy(), { rand: () => 0.5 }));
    await engine.publishRecords([record(1)]);
    await waitFor(() => queueStats(engine!)?.scheduled === 1, 'the record waiting for a retry');
    receiver.respond = () => ({ status: 200 });
    engine.manager.suspend({ queueNames: ['W.log_hook'] }, 'maint', clock.now() + 5 * 60_000);
    await clock.advance(60_000);
    const local = await localLogsWhen(engine, (r) => ofType(r, 'TransientFailure').length === 2, 'the suspension failure');
    expect(ofType(local, 'TransientFailure')[1]).toMatchObject({ num_attempts: 1, response: { code: 451, content: 'KumoMTA internal: scheduled queue is suspended: maint' } });
    expect(receiver.requests).toHaveLength(1);
  });
});
