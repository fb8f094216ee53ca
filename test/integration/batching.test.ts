/**
 * Sessions and batching of a Lua hook (kumomta-facts §6.2, §6.3; §17
 * items 12, 13, 14, 34, 35): batch_size, min_batch_size, max_batch_latency,
 * max_deliveries_per_connection and idle_timeout, with one connection
 * (connection_limit = 1) and the fake clock.
 */
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { Engine } from '../../src/engine.js';
import type { JsonLogRecord } from '../../src/logging/record.js';
import { startEngine, mail } from '../helpers/engine.js';
import { settle, waitFor } from '../helpers/fake-clock.js';
import {
  advanceTo, eventMs, hookPolicy, hookStats, logDirs, logRecord, logRecords, waitForHookRecords, waitForStats,
} from '../helpers/lua-hook.js';

let engine: Engine | null = null;
afterEach(async () => {
  await engine?.close();
  engine = null;
});

const SEC = 1000;

/** Queue `records` for hook W while its queue is suspended, then resume: they are all waiting before any session starts. */
async function queueUpFront(e: Engine, records: JsonLogRecord[]): Promise<void> {
  const s = e.manager.suspend({ queueNames: ['W.log_hook'] }, 'hold', e.clock.now() + 3600 * SEC);
  expect(await e.publishRecords(records)).toBe(records.length);
  expect(e.manager.stats().find((q) => q.name === 'W.log_hook')).toMatchObject({ scheduled: records.length, ready: 0, in_flight: 0 });
  expect(e.manager.resume(s.id)).toBe(true);
}

describe('batching and sessions', () => {
  it('batch_size=5 with 12 records queued: send_batch arrays of at most 5 that sum to 12, never send (§17.12)', async () => {
    const { logDir } = logDirs();
    const started = await startEngine(hookPolicy(logDir, { hookOptions: 'batch_size = 5,' }));
    engine = started.engine;
    const clock = started.clock;
    await queueUpFront(engine, logRecords(clock, 12));

    const s = await waitForStats(engine, (x) => x.sizes.reduce((a, b) => a + b, 0) === 12, '12 messages through send_batch');
    expect(s.sizes.every((n) => n >= 1 && n <= 5)).toBe(true);
    expect(s.sizes).toEqual([5, 5, 2]);
    expect(s.send).toBe(0);
    expect(s.ctor).toBe(1);
    const deliveries = await waitForHookRecords(engine, logDir, 'Delivery', 12);
    expect(deliveries.every((r) => r.response.content === 'OK batch')).toBe(true);
    await waitFor(async () => (await engine!.spool.size()) === 0, 'an empty spool');
  });

  it('batch_size=100, min_batch_size=10, max_batch_latency=15s: 10 messages, 20 records, exactly 2 send_batch calls of 10 (§17.13)', async () => {
    const { dir, logDir } = logDirs();
    const maildir = path.join(dir, 'maildir');
    const started = await startEngine(
      hookPolicy(logDir, {
        hookOptions: "batch_size = 100, min_batch_size = 10, max_batch_latency = '15s',",
        sendBatch: `for _, m in ipairs(msgs) do
        local t = m:get_meta('log_record').type
        calls.extra[t] = (calls.extra[t] or 0) + 1
      end
      return 'OK batch'`,
        // Registered after log_hooks:new, so the hook's queue keeps its own config.
        extra: `kumo.on('get_queue_config', function(domain)
  return kumo.make_queue_config { protocol = { maildir_path = ${JSON.stringify(maildir)} } }
end)`,
      }),
    );
    engine = started.engine;
    const clock = started.clock;
    const t0 = clock.now();

    // Five messages make ten records: the first batch goes out once it holds all ten.
    for (let i = 0; i < 5; i++) await engine.inject(mail(`m${i}`));
    let s = await waitForStats(engine, (x) => x.batch === 1, 'the first batch');
    expect(s.sizes).toEqual([10]);
    // Five more: the second batch waits for its tenth record too.
    for (let i = 5; i < 10; i++) await engine.inject(mail(`m${i}`));
    s = await waitForStats(engine, (x) => x.batch === 2, 'the second batch');
    expect(s.sizes).toEqual([10, 10]);
    expect(s.extra).toEqual({ Reception: 10, Delivery: 10 });
    expect(s).toMatchObject({ send: 0, ctor: 1 });
    // No latency deadline was needed: the fake clock never moved.
    expect(clock.now()).toBe(t0);
    const hookDeliveries = await waitForHookRecords(engine, logDir, 'Delivery', 20);
    expect(hookDeliveries).toHaveLength(20);
  });

  it('min_batch_size=10, max_batch_latency=2s, 3 records: one send_batch of 3 two seconds after the first (§17.14)', async () => {
    const { logDir } = logDirs();
    const started = await startEngine(
      hookPolicy(logDir, {
        hookOptions: "batch_size = 100, min_batch_size = 10, max_batch_latency = '2s',",
        egress: 'connection_limit = 1, idle_timeout = 60',
      }),
    );
    engine = started.engine;
    const clock = started.clock;
    const t0 = clock.now();
    expect(await engine.publishRecords(logRecords(clock, 3))).toBe(3);
    await waitFor(() => engine!.manager.readyQueues()[0]?.inFlight === 3, 'three records in the session');

    // Nothing is sent (not even the constructor runs) before the batch is due.
    await advanceTo(clock, t0 + 2 * SEC - 1);
    expect(await hookStats(engine)).toMatchObject({ ctor: 0, batch: 0 });
    await advanceTo(clock, t0 + 2 * SEC);
    const s = await waitForStats(engine, (x) => x.batch === 1, 'the batch of 3');
    expect(s).toMatchObject({ ctor: 1, sizes: [3], send: 0 });
    const deliveries = await waitForHookRecords(engine, logDir, 'Delivery', 3);
    expect(deliveries.map((r) => eventMs(r) - t0)).toEqual([2 * SEC, 2 * SEC, 2 * SEC]);
  });

  it('max_deliveries_per_connection=3, batch_size=1, 7 records: 3 connections (3+3+1), each closed (§17.34)', async () => {
    const { logDir } = logDirs();
    const started = await startEngine(hookPolicy(logDir, { egress: 'connection_limit = 1, max_deliveries_per_connection = 3' }));
    engine = started.engine;
    const clock = started.clock;
    await queueUpFront(engine, logRecords(clock, 7));

    let s = await waitForStats(engine, (x) => x.send === 7, 'seven sends');
    expect(s.conns).toEqual([1, 1, 1, 2, 2, 2, 3]);
    expect(s.ctor).toBe(3);
    expect(s.batch).toBe(0);
    // Sessions 1 and 2 closed at their limit; session 3 closes when it idles out (5 s default).
    s = await waitForStats(engine, (x) => x.close === 2, 'two closes');
    await advanceTo(clock, clock.now() + 5 * SEC);
    s = await waitForStats(engine, (x) => x.close === 3, 'the third close');
    expect(s.ctor).toBe(3);
    await waitForHookRecords(engine, logDir, 'Delivery', 7);
  });

  it('a connection idle for idle_timeout is closed once; the next record gets a new connection (§17.35)', async () => {
    const { logDir } = logDirs();
    const started = await startEngine(hookPolicy(logDir, { egress: 'connection_limit = 1, idle_timeout = 10' }));
    engine = started.engine;
    const clock = started.clock;
    const t0 = clock.now();
    await engine.publishRecords([logRecord(clock)]);
    await waitForHookRecords(engine, logDir, 'Delivery', 1);
    expect(await hookStats(engine)).toMatchObject({ ctor: 1, send: 1, close: 0 });

    await advanceTo(clock, t0 + 10 * SEC - 1);
    await settle();
    expect((await hookStats(engine)).close).toBe(0);
    await advanceTo(clock, t0 + 10 * SEC);
    await waitForStats(engine, (x) => x.close === 1, 'close() after idling out');
    // Much longer idle: still one close.
    await advanceTo(clock, t0 + 60 * SEC);
    expect(await hookStats(engine)).toMatchObject({ ctor: 1, close: 1 });

    await engine.publishRecords([logRecord(clock)]);
    const s = await waitForStats(engine, (x) => x.send === 2, 'the second send');
    expect(s).toMatchObject({ ctor: 2, close: 1, conns: [1, 2] });
    await waitForHookRecords(engine, logDir, 'Delivery', 2);
  });
});
