/**
 * Transient failures of a Lua log hook and the retry schedule
 * (kumomta-facts §5.3, §5.4, §7; §17 items 4, 5, 6, 15), on the fake clock.
 *
 * Hook W (log_hooks defaults: retry_interval 1m, max_retry_interval 20m)
 * gets records published straight to the hooks; the local log holds the
 * TransientFailure / Expiration records about the hook messages, whose
 * event_time is fake-clock time.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { Engine } from '../../src/engine.js';
import { startEngine } from '../helpers/engine.js';
import { FakeClock } from '../helpers/fake-clock.js';
import {
  advanceTo, eventMs, hookPolicy, hookRecords, hookStats, logDirs, logRecord, logRecords, timerAtOrAfter, waitForHookRecords, waitForStats,
} from '../helpers/lua-hook.js';

let engine: Engine | null = null;
afterEach(async () => {
  await engine?.close();
  engine = null;
});

const SEC = 1000;

describe('transient failures and the retry schedule', () => {
  it('a 400 reject is a TransientFailure, retried after 60 s then 120 s (§17.4)', async () => {
    const { logDir } = logDirs();
    const started = await startEngine(hookPolicy(logDir, { send: "kumo.reject(400, 'busy')" }));
    engine = started.engine;
    const clock = started.clock;
    const t0 = clock.now();
    expect(await engine.publishRecords([logRecord(clock)])).toBe(1);

    const [first] = await waitForHookRecords(engine, logDir, 'TransientFailure', 1);
    expect(first).toMatchObject({
      type: 'TransientFailure',
      queue: 'W.log_hook',
      num_attempts: 0,
      response: { code: 400, enhanced_code: null, content: 'busy' },
      delivery_protocol: 'Lua',
      site: 'unspecified->W.log_hook@lua:make.W.log_hook',
      peer_address: { name: 'Lua via make.W.log_hook', addr: '0.0.0.0' },
    });
    expect(eventMs(first!)).toBe(t0);

    // The retry is scheduled 60 s ± 1 s later, and nothing happens before it.
    const due1 = await timerAtOrAfter(clock, t0 + 30 * SEC, 'the retry timer');
    expect(due1 - t0).toBeGreaterThanOrEqual(59 * SEC);
    expect(due1 - t0).toBeLessThanOrEqual(61 * SEC);
    await advanceTo(clock, due1 - 1);
    expect((await hookStats(engine)).send).toBe(1);
    expect(await hookRecords(engine, logDir, 'TransientFailure')).toHaveLength(1);

    await advanceTo(clock, due1);
    const second = (await waitForHookRecords(engine, logDir, 'TransientFailure', 2))[1]!;
    expect(second).toMatchObject({ num_attempts: 1, response: { code: 400, content: 'busy' }, id: first!.id });
    const gap1 = eventMs(second) - eventMs(first!);
    expect(gap1).toBeGreaterThanOrEqual(59 * SEC);
    expect(gap1).toBeLessThanOrEqual(61 * SEC);

    // The next retry comes 120 s ± 1 s after the second failure.
    const due2 = await timerAtOrAfter(clock, eventMs(second) + 90 * SEC, 'the second retry timer');
    await advanceTo(clock, due2 - 1);
    expect((await hookStats(engine)).send).toBe(2);
    await advanceTo(clock, due2);
    const third = (await waitForHookRecords(engine, logDir, 'TransientFailure', 3))[2]!;
    expect(third.num_attempts).toBe(2);
    const gap2 = eventMs(third) - eventMs(second);
    expect(gap2).toBeGreaterThanOrEqual(119 * SEC);
    expect(gap2).toBeLessThanOrEqual(121 * SEC);
    expect((await hookStats(engine)).send).toBe(3);
  });

  it('an always-failing hook backs off 60, 120, 240, 480, 960, 1200, 1200 s (§17.5)', async () => {
    const { logDir } = logDirs();
    const started = await startEngine(hookPolicy(logDir, { send: "kumo.reject(400, 'down')" }));
    engine = started.engine;
    const clock = started.clock;
    await engine.publishRecords([logRecord(clock)]);

    const expected = [60, 120, 240, 480, 960, 1200, 1200];
    let failures = await waitForHookRecords(engine, logDir, 'TransientFailure', 1);
    for (let i = 0; i < expected.length; i++) {
      const last = failures[i]!;
      const due = await timerAtOrAfter(clock, eventMs(last) + (expected[i]! / 2) * SEC, `retry ${i + 1}`);
      await advanceTo(clock, due);
      failures = await waitForHookRecords(engine, logDir, 'TransientFailure', i + 2);
    }
    expect(failures).toHaveLength(expected.length + 1);
    expect(failures.map((r) => r.num_attempts)).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    const gaps = failures.slice(1).map((r, i) => (eventMs(r) - eventMs(failures[i]!)) / SEC);
    for (const [i, gap] of gaps.entries()) {
      expect(gap, `gap ${i + 1} (${gaps.join(', ')})`).toBeGreaterThanOrEqual(expected[i]! - 1);
      expect(gap, `gap ${i + 1} (${gaps.join(', ')})`).toBeLessThanOrEqual(expected[i]! + 1);
    }
    expect((await hookStats(engine)).send).toBe(8);
  });

  it("queue_config max_age='2m': failures at 0 s and 60 s, then an Expiration and no more attempts (§17.6)", async () => {
    const { logDir } = logDirs();
    const started = await startEngine(hookPolicy(logDir, { hookOptions: "queue_config = { max_age = '2m' },", send: "kumo.reject(400, 'nope')" }));
    engine = started.engine;
    const clock = started.clock;
    const t0 = clock.now();
    await engine.publishRecords([logRecord(clock)]);

    const [first] = await waitForHookRecords(engine, logDir, 'TransientFailure', 1);
    expect(eventMs(first!)).toBe(t0);
    const due = await timerAtOrAfter(clock, t0 + 30 * SEC, 'the retry timer');
    await advanceTo(clock, due);
    const failures = await waitForHookRecords(engine, logDir, 'TransientFailure', 2);
    const second = failures[1]!;
    expect(eventMs(second) - t0).toBeGreaterThanOrEqual(59 * SEC);
    expect(eventMs(second) - t0).toBeLessThanOrEqual(61 * SEC);
    expect(second.num_attempts).toBe(1);

    // 60 s old + a 120 s delay > 2m: the message expires instead.
    const [expiration] = await waitForHookRecords(engine, logDir, 'Expiration', 1);
    expect(expiration).toMatchObject({
      type: 'Expiration',
      id: first!.id,
      queue: 'W.log_hook',
      response: { code: 551, enhanced_code: { class: 5, subject: 4, detail: 7 } },
    });
    expect(expiration!.response.content.startsWith('Next delivery time would be')).toBe(true);
    expect(expiration!.response.content).toContain('exceeds max_age=2m');
    expect(eventMs(expiration!)).toBe(eventMs(second));

    // Nothing left: an hour later there was no further attempt and the spool is empty.
    await advanceTo(clock, clock.now() + 3600 * SEC);
    expect((await hookStats(engine)).send).toBe(2);
    expect(await hookRecords(engine, logDir, 'TransientFailure')).toHaveLength(2);
    expect(await engine.spool.size()).toBe(0);
    expect(engine.manager.totals.expired).toBe(1);
  });

  it('a batch rejected with 450 fails every message, each with its own jittered retry (§17.15)', async () => {
    const { logDir } = logDirs();
    // rand() cycles 0, 0.4, 0.7, 0.99: jitter trunc(3·r − 1.5) = −1, 0, 0, +1 s.
    const rands = [0, 0.4, 0.7, 0.99];
    let k = 0;
    const clock = new FakeClock();
    const started = await startEngine(
      hookPolicy(logDir, {
        hookOptions: "batch_size = 4, min_batch_size = 4, max_batch_latency = '500ms',",
        egress: 'connection_limit = 1, idle_timeout = 60',
        // The first batch is rejected; the retries are delivered.
        sendBatch: "if calls.batch == 1 then kumo.reject(450, 'later') end\n      return 'OK batch'",
      }),
      { clock, rand: () => rands[k++ % rands.length]! },
    );
    engine = started.engine;
    const t0 = clock.now();
    expect(await engine.publishRecords(logRecords(clock, 4))).toBe(4);

    const failures = await waitForHookRecords(engine, logDir, 'TransientFailure', 4);
    expect(failures).toHaveLength(4);
    expect((await hookStats(engine)).sizes).toEqual([4]);
    for (const r of failures) {
      expect(r).toMatchObject({ num_attempts: 0, queue: 'W.log_hook', response: { code: 450, enhanced_code: null, content: 'later' } });
      expect(eventMs(r)).toBe(t0);
    }
    expect(new Set(failures.map((r) => r.id)).size).toBe(4);

    // Each message was rescheduled with its own jitter: due at 59, 60, 60 and 61 s.
    // A retry batch waits max_batch_latency (0.5 s) for company, so the
    // deliveries land at 59.5 s (alone), 60.5 s (the two due at 60 s) and 61.5 s.
    expect(await timerAtOrAfter(clock, t0 + 30 * SEC, 'the first retry timer')).toBe(t0 + 59 * SEC);
    await advanceTo(clock, t0 + 59 * SEC + 499);
    expect((await hookStats(engine)).batch).toBe(1);
    await advanceTo(clock, t0 + 59.5 * SEC);
    await waitForHookRecords(engine, logDir, 'Delivery', 1);
    await advanceTo(clock, t0 + 60 * SEC);
    await waitForStats(engine, (x) => x.batch === 2, 'the first retry batch only');
    await advanceTo(clock, t0 + 60.5 * SEC);
    await waitForHookRecords(engine, logDir, 'Delivery', 3);
    await advanceTo(clock, t0 + 61.5 * SEC);
    const deliveries = await waitForHookRecords(engine, logDir, 'Delivery', 4);
    const at = new Map(deliveries.map((r) => [r.id, (eventMs(r) - t0) / SEC]));
    expect(failures.map((r) => at.get(r.id))).toEqual([59.5, 60.5, 60.5, 61.5]);
    expect(deliveries.map((r) => r.num_attempts)).toEqual([1, 1, 1, 1]);
    const s = await hookStats(engine);
    expect(s.sizes).toEqual([4, 1, 2, 1]);
    expect(s.send).toBe(0);
  });
});

