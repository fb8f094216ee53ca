/**
 * What each outcome of a Lua hook's `send` means (kumomta-facts §6.3, §7;
 * §17 items 7–11 and 36): returned text, kumo.reject with 4xx / 421 /
 * other codes, a Lua error, no value, and a constructor that raises.
 * Records are published straight to hook W; the local log holds the
 * records about the hook messages, stamped with fake-clock time.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { Engine } from '../../src/engine.js';
import { startEngine } from '../helpers/engine.js';
import { FakeClock, waitFor } from '../helpers/fake-clock.js';
import {
  advanceTo, eventMs, hookPolicy, hookRecords, hookStats, logDirs, logRecord, logRecords, timerAtOrAfter, waitForHookRecords, waitForStats,
} from '../helpers/lua-hook.js';

let engine: Engine | null = null;
afterEach(async () => {
  await engine?.close();
  engine = null;
});

const SEC = 1000;
const SITE = 'unspecified->W.log_hook@lua:make.W.log_hook';
const PEER = { name: 'Lua via make.W.log_hook', addr: '0.0.0.0' };

/** Move to the retry of the message that failed at `failedAt`. */
async function advanceToRetry(clock: FakeClock, failedAt: number): Promise<number> {
  const due = await timerAtOrAfter(clock, failedAt + 30 * SEC, 'the retry timer');
  expect(due - failedAt).toBeGreaterThanOrEqual(59 * SEC);
  expect(due - failedAt).toBeLessThanOrEqual(61 * SEC);
  await advanceTo(clock, due);
  return due;
}

describe('outcomes of send', () => {
  it("send raising error('boom') is a TransientFailure 400, closes the connection once, and is retried (§17.7)", async () => {
    const { logDir } = logDirs();
    const started = await startEngine(hookPolicy(logDir, { send: "if calls.send == 1 then error('boom') end\n      return 'OK'" }));
    engine = started.engine;
    const clock = started.clock;
    const t0 = clock.now();
    await engine.publishRecords([logRecord(clock)]);

    const [tf] = await waitForHookRecords(engine, logDir, 'TransientFailure', 1);
    expect(tf).toMatchObject({ num_attempts: 0, queue: 'W.log_hook', site: SITE, delivery_protocol: 'Lua', response: { code: 400, enhanced_code: null } });
    expect(tf!.response.content.startsWith('KumoMTA internal: error in deliver_message:')).toBe(true);
    expect(tf!.response.content).toContain('boom');
    expect(tf!.response.content).toContain('sender:send method');
    const s = await waitForStats(engine, (x) => x.close === 1, 'close() after the error');
    expect(s).toMatchObject({ ctor: 1, send: 1, close: 1 });

    // Retried later, on a new connection; close() was not called again meanwhile.
    await advanceToRetry(clock, t0);
    const [delivery] = await waitForHookRecords(engine, logDir, 'Delivery', 1);
    expect(delivery).toMatchObject({ id: tf!.id, num_attempts: 1, response: { code: 200, content: 'OK' } });
    const after = await hookStats(engine);
    expect(after).toMatchObject({ ctor: 2, send: 2, close: 1, conns: [1, 2] });
    expect(await engine.spool.size()).toBe(0);
  });

  it('send returning nothing is a TransientFailure with a conversion error, and is retried (§17.8)', async () => {
    const { logDir } = logDirs();
    const started = await startEngine(hookPolicy(logDir, { send: "if calls.send == 1 then return end\n      return 'OK'" }));
    engine = started.engine;
    const clock = started.clock;
    const t0 = clock.now();
    await engine.publishRecords([logRecord(clock)]);

    const [tf] = await waitForHookRecords(engine, logDir, 'TransientFailure', 1);
    expect(tf).toMatchObject({ num_attempts: 0, response: { code: 400 } });
    expect(tf!.response.content.startsWith('KumoMTA internal: error in deliver_message:')).toBe(true);
    expect(tf!.response.content).toContain('error converting Lua nil to String');
    await waitForStats(engine, (x) => x.close === 1, 'close() after the bad return');

    await advanceToRetry(clock, t0);
    const [delivery] = await waitForHookRecords(engine, logDir, 'Delivery', 1);
    expect(delivery).toMatchObject({ id: tf!.id, num_attempts: 1, response: { code: 200, content: 'OK' } });
  });

  it("send returning 'OK 123' is a Delivery with that content (§17.9)", async () => {
    const { logDir } = logDirs();
    const started = await startEngine(hookPolicy(logDir, { send: "return 'OK 123'" }));
    engine = started.engine;
    const clock = started.clock;
    await engine.publishRecords([logRecord(clock)]);

    const [d] = await waitForHookRecords(engine, logDir, 'Delivery', 1);
    expect(d).toMatchObject({
      type: 'Delivery',
      queue: 'W.log_hook',
      num_attempts: 0,
      response: { code: 200, enhanced_code: null, content: 'OK 123' },
      peer_address: PEER,
      site: SITE,
      delivery_protocol: 'Lua',
      reception_protocol: 'LogRecord',
      egress_pool: 'unspecified',
      egress_source: 'unspecified',
    });
    expect(typeof d!.session_id).toBe('string');
    expect(await hookRecords(engine, logDir, 'TransientFailure')).toEqual([]);
    await waitFor(async () => (await engine!.spool.size()) === 0, 'an empty spool');
    expect(engine.manager.totals.delivered).toBe(1);
    expect((await hookStats(engine)).close).toBe(0);
  });

  it("reject(421, 'closing') is a TransientFailure 421 that closes the connection; later sends use new connections (§17.10)", async () => {
    const { logDir } = logDirs();
    const started = await startEngine(hookPolicy(logDir, { send: "if calls.send == 1 then kumo.reject(421, 'closing') end\n      return 'OK'" }));
    engine = started.engine;
    const clock = started.clock;
    const t0 = clock.now();
    // Two records: the second is waiting in the ready queue when the first is rejected.
    expect(await engine.publishRecords(logRecords(clock, 2))).toBe(2);

    const [tf] = await waitForHookRecords(engine, logDir, 'TransientFailure', 1);
    expect(tf).toMatchObject({ num_attempts: 0, response: { code: 421, enhanced_code: null, content: 'closing' }, peer_address: PEER });
    // The other record is delivered at once, on a connection from a second constructor call.
    const [d1] = await waitForHookRecords(engine, logDir, 'Delivery', 1);
    expect(d1!.id).not.toBe(tf!.id);
    expect(eventMs(d1!)).toBe(t0);
    let s = await waitForStats(engine, (x) => x.close >= 1 && x.send === 2, 'close() after the 421');
    expect(s).toMatchObject({ ctor: 2, close: 1, conns: [1, 2] });

    // The rejected one comes back ~60 s later, after connection 2 idled out: a third connection.
    await advanceToRetry(clock, t0);
    const deliveries = await waitForHookRecords(engine, logDir, 'Delivery', 2);
    expect(deliveries[1]).toMatchObject({ id: tf!.id, num_attempts: 1, response: { code: 200, content: 'OK' } });
    s = await hookStats(engine);
    expect(s).toMatchObject({ ctor: 3, close: 2, send: 3, conns: [1, 2, 3] });
  });

  it("reject(250, 'weird') is a Bounce with code 250, not a Delivery, and is not retried (§17.11)", async () => {
    const { logDir } = logDirs();
    const started = await startEngine(hookPolicy(logDir, { send: "kumo.reject(250, 'weird')" }));
    engine = started.engine;
    const clock = started.clock;
    await engine.publishRecords([logRecord(clock)]);

    const [b] = await waitForHookRecords(engine, logDir, 'Bounce', 1);
    expect(b).toMatchObject({ type: 'Bounce', num_attempts: 0, queue: 'W.log_hook', response: { code: 250, enhanced_code: null, content: 'weird' }, peer_address: PEER, site: SITE });
    await waitFor(async () => (await engine!.spool.size()) === 0, 'an empty spool');
    // The connection is kept (no close until it idles out), and there is nothing to retry.
    expect((await hookStats(engine)).close).toBe(0);
    await advanceTo(clock, clock.now() + 3600 * SEC);
    const s = await hookStats(engine);
    expect(s).toMatchObject({ send: 1, ctor: 1, close: 1 });
    expect(await hookRecords(engine, logDir, 'Delivery')).toEqual([]);
    expect(await hookRecords(engine, logDir, 'TransientFailure')).toEqual([]);
    expect(engine.manager.totals).toMatchObject({ delivered: 0, fail: 1, transfail: 0 });
  });

  it('a constructor that raises fails every popped message with 400 failed to connect, and they are retried (§17.36)', async () => {
    const { logDir } = logDirs();
    const clock = new FakeClock();
    const started = await startEngine(
      hookPolicy(logDir, {
        hookOptions: "batch_size = 3, min_batch_size = 3, max_batch_latency = '1s',",
        constructorPrelude: "calls.extra.tries = (calls.extra.tries or 0) + 1\n    if calls.extra.tries == 1 then error('no route to the endpoint') end",
      }),
      // jitter 0: all three retries are due together, 60 s later
      { clock, rand: () => 0.5 },
    );
    engine = started.engine;
    const t0 = clock.now();
    expect(await engine.publishRecords(logRecords(clock, 3))).toBe(3);

    const failures = await waitForHookRecords(engine, logDir, 'TransientFailure', 3);
    expect(new Set(failures.map((r) => r.id)).size).toBe(3);
    for (const r of failures) {
      expect(r).toMatchObject({ num_attempts: 0, queue: 'W.log_hook', response: { code: 400, enhanced_code: null } });
      expect(r.response.content.startsWith('KumoMTA internal: failed to connect to any candidate hosts:')).toBe(true);
      expect(r.response.content).toContain('no route to the endpoint');
      expect(eventMs(r)).toBe(t0);
    }
    let s = await hookStats(engine);
    expect(s).toMatchObject({ ctor: 0, batch: 0, close: 0, extra: { tries: 1 } });

    expect(await timerAtOrAfter(clock, t0 + 30 * SEC, 'the retry timer')).toBe(t0 + 60 * SEC);
    await advanceTo(clock, t0 + 60 * SEC);
    const deliveries = await waitForHookRecords(engine, logDir, 'Delivery', 3);
    expect(deliveries.map((r) => r.id).sort()).toEqual(failures.map((r) => r.id).sort());
    expect(deliveries.map((r) => r.num_attempts)).toEqual([1, 1, 1]);
    s = await hookStats(engine);
    expect(s).toMatchObject({ ctor: 1, batch: 1, sizes: [3], extra: { tries: 2 } });
  });
});
