/**
 * EventLogStore directly on a temporary data directory: logs (create, list,
 * get, update, delete), publish and consume (offsets from 0, -2/-1, gaps),
 * long poll, getOne, retention by count, size and age, compaction by key,
 * reopening, and large offsets and times.
 *
 * Time is a fake clock (`store.now`) so messages age without sleeping.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { EventLogStore, LogError, type LogMessage } from '../../../src/egress/log-store.js';
import { tempDir } from '../../helpers/policy.js';

const T0 = Date.UTC(2026, 0, 1); // unix ms
const open: EventLogStore[] = [];

function newDir(): string {
  const dir = path.join(tempDir('sluice-logstore-'), 'data');
  fs.mkdirSync(dir, { recursive: true });
  return dir;
}

function openStore(dir = newDir(), now: { t: number } = { t: T0 }): { store: EventLogStore; dir: string; clock: { t: number } } {
  const store = new EventLogStore(dir);
  store.now = () => now.t;
  open.push(store);
  return { store, dir, clock: now };
}

function closeStore(store: EventLogStore): void {
  const i = open.indexOf(store);
  if (i >= 0) open.splice(i, 1);
  store.close();
}

afterEach(() => {
  for (const s of open.splice(0)) s.close();
});

const msg = (value: string, key?: string) => ({ key: key === undefined ? null : Buffer.from(key), value: Buffer.from(value) });
const text = (m: LogMessage) => ({ offset: m.offset, key: m.key === null ? null : m.key.toString(), value: m.value === null ? null : m.value.toString() });
const offsets = (ms: LogMessage[]) => ms.map((m) => m.offset);

function expectLogError(fn: () => unknown, status: number, code: string): void {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(LogError);
    expect((err as LogError).status).toBe(status);
    expect((err as LogError).code).toBe(code);
    return;
  }
  throw new Error(`expected a LogError ${code}`);
}

async function expectLogErrorAsync(p: Promise<unknown>, status: number, code: string): Promise<void> {
  const err = await p.then(() => null, (e: unknown) => e);
  expect(err).toBeInstanceOf(LogError);
  expect((err as LogError).status).toBe(status);
  expect((err as LogError).code).toBe(code);
}

describe('EventLogStore: logs', () => {
  it('create, list, get, update, delete', async () => {
    const { store } = openStore();
    const a = await store.create({ metadata: 'first', compacting: false });
    const b = await store.create({ metadata: 'second', compacting: true, compact_seconds: 60, expire_seconds: 120 });
    expect(a.log_id).toMatch(/^log_[0-9A-Za-z]{27}$/);
    expect(b.log_id).toMatch(/^log_[0-9A-Za-z]{27}$/);
    expect(a.log_id).not.toBe(b.log_id);
    expect(a).toEqual({ log_id: a.log_id, metadata: 'first', compacting: false });
    expect(b).toEqual({ log_id: b.log_id, metadata: 'second', compacting: true, compact_seconds: 60, expire_seconds: 120 });

    expect(store.list().map((l) => l.log_id)).toEqual([a.log_id, b.log_id]);
    expect(store.list('second')).toEqual([b]);
    expect(store.list('none')).toEqual([]);
    expect(store.get(a.log_id)).toEqual(a);
    expect(store.has(a.log_id)).toBe(true);

    const updated = await store.update(a.log_id, { metadata: 'renamed', trim_count: 5 });
    expect(updated).toEqual({ log_id: a.log_id, metadata: 'renamed', compacting: false, trim_count: 5 });
    expect(store.get(a.log_id)).toEqual(updated);

    await store.publish(a.log_id, [msg('x')]);
    expect(await store.delete(a.log_id)).toEqual(updated);
    expect(store.has(a.log_id)).toBe(false);
    expect(store.list().map((l) => l.log_id)).toEqual([b.log_id]);
    expectLogError(() => store.get(a.log_id), 404, 'log-not-found');
    expectLogError(() => store.read(a.log_id, 0, 10), 404, 'log-not-found');
    expectLogError(() => store.stats(a.log_id), 404, 'log-not-found');
    await expectLogErrorAsync(store.publish(a.log_id, [msg('y')]), 404, 'log-not-found');
    await expectLogErrorAsync(store.update(a.log_id, { metadata: 'z' }), 404, 'log-not-found');
    await expectLogErrorAsync(store.delete(a.log_id), 404, 'log-not-found');
    expect(store.db.prepare('SELECT COUNT(*) AS n FROM event_messages WHERE log_id = ?').get(a.log_id)).toEqual({ n: 0 });
  });

  it('stats count messages and bytes of keys and values', async () => {
    const { store } = openStore();
    const log = await store.create({ metadata: '', compacting: false });
    expect(store.stats(log.log_id)).toEqual({ size: 0, count: 0 });
    await store.publish(log.log_id, [msg('abc', 'k'), { value: null, key: null }, msg('12345')]);
    expect(store.stats(log.log_id)).toEqual({ size: 9, count: 3 });
  });
});

describe('EventLogStore: publish and consume', () => {
  it('publish one and a batch → next_offset; offsets start at 0 and only grow', async () => {
    const { store } = openStore();
    const log = await store.create({ metadata: '', compacting: false });
    expect(store.nextOffset(log.log_id)).toBe(0);
    expect(await store.publish(log.log_id, [msg('zero')])).toBe(1);
    expect(await store.publish(log.log_id, [msg('one'), msg('two'), msg('three')])).toBe(4);
    expect(await store.publish(log.log_id, [])).toBe(4);
    // Concurrent publishes (one group commit) still get distinct, growing offsets.
    const nexts = await Promise.all([store.publish(log.log_id, [msg('four')]), store.publish(log.log_id, [msg('five'), msg('six')]), store.publish(log.log_id, [msg('seven')])]);
    expect(nexts).toEqual([5, 7, 8]);
    const r = store.read(log.log_id, 0, 100);
    expect(r.nextOffset).toBe(8);
    expect(r.messages.map(text)).toEqual(['zero', 'one', 'two', 'three', 'four', 'five', 'six', 'seven'].map((v, i) => ({ offset: i, key: null, value: v })));
    for (const m of r.messages) expect(m.time).toBe(T0 * 1000);
  });

  it('a read while a publish is being committed does not move next_offset past it (the consumer would skip it)', async () => {
    const { store } = openStore();
    const log = await store.create({ metadata: '', compacting: false });
    await store.publish(log.log_id, [msg('m0')]);
    const pending = store.publish(log.log_id, [msg('m1'), msg('m2')]); // queued for the next group commit
    expect(store.read(log.log_id, 1, 10)).toEqual({ nextOffset: 1, messages: [] });
    const r0 = store.read(log.log_id, 0, 10);
    expect(offsets(r0.messages)).toEqual([0]);
    expect(r0.nextOffset).toBe(1);
    expect(await pending).toBe(3);
    const r1 = store.read(log.log_id, r0.nextOffset, 10);
    expect(offsets(r1.messages)).toEqual([1, 2]);
    expect(r1.nextOffset).toBe(3);
  });

  it('keeps key, value, nil and empty apart, and an explicit time', async () => {
    const { store } = openStore();
    const log = await store.create({ metadata: '', compacting: false });
    await store.publish(log.log_id, [
      { key: Buffer.from('k'), value: Buffer.from([0, 255, 1]), time: 1_695_490_927_247_960 },
      { key: Buffer.alloc(0), value: Buffer.alloc(0) },
      {},
    ]);
    const [a, b, c] = store.read(log.log_id, 0, 10).messages;
    expect(a).toMatchObject({ offset: 0, time: 1_695_490_927_247_960 });
    expect(Buffer.compare(a!.key!, Buffer.from('k'))).toBe(0);
    expect(Buffer.compare(a!.value!, Buffer.from([0, 255, 1]))).toBe(0);
    expect(b!.key?.length).toBe(0);
    expect(b!.value?.length).toBe(0);
    expect(c).toMatchObject({ offset: 2, key: null, value: null, time: T0 * 1000 });
  });

  it('consume from an offset with len; -2 oldest, -1 newest; beyond the end', async () => {
    const { store } = openStore();
    const log = await store.create({ metadata: '', compacting: false });
    // empty log
    expect(store.read(log.log_id, -2, 10)).toEqual({ nextOffset: 0, messages: [] });
    expect(store.read(log.log_id, -1, 10)).toEqual({ nextOffset: 0, messages: [] });
    await store.publish(log.log_id, Array.from({ length: 10 }, (_, i) => msg(`m${i}`)));

    let r = store.read(log.log_id, 3, 4);
    expect(offsets(r.messages)).toEqual([3, 4, 5, 6]);
    expect(r.nextOffset).toBe(7);
    r = store.read(log.log_id, r.nextOffset, 100);
    expect(offsets(r.messages)).toEqual([7, 8, 9]);
    expect(r.nextOffset).toBe(10);
    expect(store.read(log.log_id, 10, 5)).toEqual({ nextOffset: 10, messages: [] });
    expect(store.read(log.log_id, 50, 5)).toEqual({ nextOffset: 50, messages: [] });

    r = store.read(log.log_id, -2, 2);
    expect(offsets(r.messages)).toEqual([0, 1]);
    expect(r.nextOffset).toBe(2);
    expect(store.read(log.log_id, -1, 5)).toEqual({ nextOffset: 10, messages: [] });
    expectLogError(() => store.read(log.log_id, -3, 5), 400, 'message-offset-invalid');
  });

  it('reads across trimmed gaps, also with a fresh (uncached) store', async () => {
    const { store, dir } = openStore();
    const log = await store.create({ metadata: '', compacting: false });
    await store.publish(log.log_id, Array.from({ length: 10 }, (_, i) => msg(`m${i}`)));
    // punch holes: 2..4 and 7
    store.db.prepare('DELETE FROM event_messages WHERE log_id = ? AND ((offset BETWEEN 2 AND 4) OR offset = 7)').run(log.log_id);

    const check = (s: EventLogStore) => {
      let r = s.read(log.log_id, 0, 3);
      expect(offsets(r.messages)).toEqual([0, 1, 5]);
      expect(r.nextOffset).toBe(6);
      r = s.read(log.log_id, 2, 100);
      expect(offsets(r.messages)).toEqual([5, 6, 8, 9]);
      expect(r.nextOffset).toBe(10);
      r = s.read(log.log_id, 7, 1);
      expect(offsets(r.messages)).toEqual([8]);
      expect(r.nextOffset).toBe(9);
      expectLogError(() => s.getOne(log.log_id, 3), 404, 'message-not-found');
      expect(text(s.getOne(log.log_id, 8))).toEqual({ offset: 8, key: null, value: 'm8' });
    };
    // The first store still has 2..4 and 7 in its recent-message cache; the
    // database is the truth only once the cache is gone, so check a reopened store.
    closeStore(store);
    const { store: again } = openStore(dir);
    check(again);
  });

  it('long poll: waitForPublish resolves on publish, and after its timeout otherwise', async () => {
    const { store } = openStore();
    const log = await store.create({ metadata: '', compacting: false });
    const other = await store.create({ metadata: '', compacting: false });
    let woke = false;
    const waiting = store.waitForPublish(log.log_id, 20_000).then(() => (woke = true));
    await store.publish(other.log_id, [msg('elsewhere')]);
    await new Promise((r) => setImmediate(r));
    expect(woke).toBe(false);
    const started = Date.now();
    await store.publish(log.log_id, [msg('now')]);
    await waiting;
    expect(Date.now() - started).toBeLessThan(5000);
    expect(offsets(store.read(log.log_id, 0, 10).messages)).toEqual([0]);

    // no publish: resolves after the (short) timeout
    await store.waitForPublish(log.log_id, 20);
    // aborted
    const ac = new AbortController();
    const aborted = store.waitForPublish(log.log_id, 20_000, ac.signal);
    ac.abort();
    await aborted;
    // deleting the log wakes waiters too
    const deleted = store.waitForPublish(other.log_id, 20_000);
    await store.delete(other.log_id);
    await deleted;
  });

  it('getOne: the last message, one at an offset, and message-not-found', async () => {
    const { store } = openStore();
    const log = await store.create({ metadata: '', compacting: false });
    expectLogError(() => store.getOne(log.log_id), 404, 'message-not-found');
    expectLogError(() => store.getOne(log.log_id, 0), 404, 'message-not-found');
    await store.publish(log.log_id, [msg('a', 'ka'), msg('b', 'kb'), msg('c', 'kc')]);
    expect(text(store.getOne(log.log_id))).toEqual({ offset: 2, key: 'kc', value: 'c' });
    expect(text(store.getOne(log.log_id, 1))).toEqual({ offset: 1, key: 'kb', value: 'b' });
    expect(text(store.getOne(log.log_id, 0))).toEqual({ offset: 0, key: 'ka', value: 'a' });
    expectLogError(() => store.getOne(log.log_id, 3), 404, 'message-not-found');
    expectLogError(() => store.getOne(log.log_id, 1000), 404, 'message-not-found');
    expectLogError(() => store.getOne('log_nope'), 404, 'log-not-found');
  });
});

describe('EventLogStore: retention', () => {
  it('by count keeps the newest N; offsets keep growing', async () => {
    const { store } = openStore();
    const log = await store.create({ metadata: '', compacting: false, trim_count: 3 });
    const keep = await store.create({ metadata: '', compacting: false });
    await store.publish(log.log_id, Array.from({ length: 10 }, (_, i) => msg(`m${i}`)));
    await store.publish(keep.log_id, Array.from({ length: 10 }, (_, i) => msg(`m${i}`)));
    store.applyRetention();
    let r = store.read(log.log_id, -2, 100);
    expect(offsets(r.messages)).toEqual([7, 8, 9]);
    expect(offsets(store.read(log.log_id, 0, 100).messages)).toEqual([7, 8, 9]);
    expect(store.stats(log.log_id).count).toBe(3);
    expect(store.stats(keep.log_id).count).toBe(10);
    expect(await store.publish(log.log_id, [msg('m10')])).toBe(11);
    store.applyRetention();
    r = store.read(log.log_id, -2, 100);
    expect(offsets(r.messages)).toEqual([8, 9, 10]);
    expectLogError(() => store.getOne(log.log_id, 7), 404, 'message-not-found');
  });

  it('by size keeps the newest messages whose keys and values fit', async () => {
    const { store } = openStore();
    const log = await store.create({ metadata: '', compacting: false, trim_size: 25 });
    // each message 10 bytes (2 key + 8 value)
    await store.publish(log.log_id, Array.from({ length: 6 }, (_, i) => msg(`value-0${i}`.slice(0, 8), `k${i}`)));
    expect(store.stats(log.log_id)).toEqual({ size: 60, count: 6 });
    store.applyRetention();
    expect(offsets(store.read(log.log_id, -2, 100).messages)).toEqual([4, 5]);
    expect(store.stats(log.log_id)).toEqual({ size: 20, count: 2 });
    expect(store.nextOffset(log.log_id)).toBe(6);
  });

  it('by age drops messages older than trim_seconds (fake clock)', async () => {
    const { store, clock } = openStore();
    const log = await store.create({ metadata: '', compacting: false, trim_seconds: 60 });
    await store.publish(log.log_id, [msg('old0'), msg('old1')]);
    clock.t = T0 + 30_000;
    await store.publish(log.log_id, [msg('newer')]);
    store.applyRetention();
    expect(offsets(store.read(log.log_id, -2, 100).messages)).toEqual([0, 1, 2]);
    clock.t = T0 + 61_000;
    store.applyRetention();
    const r = store.read(log.log_id, -2, 100);
    expect(r.messages.map(text)).toEqual([{ offset: 2, key: null, value: 'newer' }]);
    expect(r.messages[0]!.time).toBe((T0 + 30_000) * 1000);
    clock.t = T0 + 91_000;
    store.applyRetention();
    expect(store.read(log.log_id, -2, 100)).toEqual({ nextOffset: 3, messages: [] });
    expect(await store.publish(log.log_id, [msg('again')])).toBe(4);
    expect(offsets(store.read(log.log_id, -2, 100).messages)).toEqual([3]);
  });

  it('compaction by key: superseded updates go after compact_seconds, tombstones after expire_seconds', async () => {
    const { store, clock } = openStore();
    const log = await store.create({ metadata: '', compacting: true, compact_seconds: 60, expire_seconds: 120 });
    await store.publish(log.log_id, [
      msg('v1', 'k1'), // 0: superseded by 1
      msg('v2', 'k1'), // 1: newest for k1
      msg('a', 'k2'), // 2: superseded by the tombstone
      { key: Buffer.from('k2'), value: null }, // 3: tombstone
      msg('x', 'k3'), // 4: only one for k3
      msg('no key'), // 5: no key: never compacted
      msg('no key again'), // 6
    ]);
    const all = () => offsets(store.read(log.log_id, -2, 100).messages);
    clock.t = T0 + 30_000;
    store.applyRetention();
    expect(all()).toEqual([0, 1, 2, 3, 4, 5, 6]);

    clock.t = T0 + 61_000;
    await store.publish(log.log_id, [msg('x2', 'k3')]); // 7: supersedes 4, but 7 is young; 4 is old
    store.applyRetention();
    expect(all()).toEqual([1, 3, 5, 6, 7]);

    clock.t = T0 + 121_000;
    store.applyRetention();
    expect(all()).toEqual([1, 5, 6, 7]);
    expect(store.read(log.log_id, -2, 100).messages.map(text)).toEqual([
      { offset: 1, key: 'k1', value: 'v2' },
      { offset: 5, key: null, value: 'no key' },
      { offset: 6, key: null, value: 'no key again' },
      { offset: 7, key: 'k3', value: 'x2' },
    ]);
    expect(store.nextOffset(log.log_id)).toBe(8);
  });

  it('a young superseded update stays until compact_seconds have passed', async () => {
    const { store, clock } = openStore();
    const log = await store.create({ metadata: '', compacting: true, compact_seconds: 60, expire_seconds: 120 });
    await store.publish(log.log_id, [msg('v1', 'k')]);
    clock.t = T0 + 50_000;
    await store.publish(log.log_id, [msg('v2', 'k')]);
    clock.t = T0 + 59_000;
    store.applyRetention();
    expect(offsets(store.read(log.log_id, -2, 10).messages)).toEqual([0, 1]);
    clock.t = T0 + 61_000;
    store.applyRetention();
    expect(offsets(store.read(log.log_id, -2, 10).messages)).toEqual([1]);
  });
});

describe('EventLogStore: durability and range', () => {
  it('reopen after close keeps logs, settings, messages and next offsets', async () => {
    const { store, dir } = openStore();
    const a = await store.create({ metadata: 'a', compacting: false, trim_count: 100 });
    const b = await store.create({ metadata: 'b', compacting: true, compact_seconds: 5, expire_seconds: 10 });
    const c = await store.create({ metadata: 'c', compacting: false });
    await store.publish(a.log_id, [msg('a0', 'ka'), msg('a1')]);
    await store.publish(b.log_id, [msg('b0', 'kb')]);
    await store.update(c.log_id, { metadata: 'c2' });
    await store.publish(c.log_id, [msg('c0'), msg('c1'), msg('c2')]);
    store.db.prepare('DELETE FROM event_messages WHERE log_id = ?').run(c.log_id); // all trimmed
    closeStore(store);

    const { store: again } = openStore(dir);
    expect(again.list()).toEqual([
      { log_id: a.log_id, metadata: 'a', compacting: false, trim_count: 100 },
      { log_id: b.log_id, metadata: 'b', compacting: true, compact_seconds: 5, expire_seconds: 10 },
      { log_id: c.log_id, metadata: 'c2', compacting: false },
    ]);
    expect(again.nextOffset(a.log_id)).toBe(2);
    expect(again.nextOffset(b.log_id)).toBe(1);
    expect(again.nextOffset(c.log_id)).toBe(3); // not reset by the trim
    expect(again.read(a.log_id, 0, 10).messages.map(text)).toEqual([{ offset: 0, key: 'ka', value: 'a0' }, { offset: 1, key: null, value: 'a1' }]);
    expect(again.read(c.log_id, -2, 10)).toEqual({ nextOffset: 3, messages: [] });
    expect(await again.publish(a.log_id, [msg('a2')])).toBe(3);
    expect(await again.publish(c.log_id, [msg('c3')])).toBe(4);
    expect(offsets(again.read(c.log_id, -2, 10).messages)).toEqual([3]);
  });

  it('large offsets and times (µs ~ 1.7e15, offsets near 2^53) round-trip exactly', async () => {
    const { store, dir } = openStore();
    const log = await store.create({ metadata: '', compacting: false });
    const bigTime = 1_712_345_678_901_234; // 2024 in µs
    const maxTime = 4_102_444_799_999_999; // 2099-12-31T23:59:59.999999Z
    await store.publish(log.log_id, [{ value: Buffer.from('t'), time: bigTime }, { value: Buffer.from('u'), time: maxTime }]);
    const [a, b] = store.read(log.log_id, 0, 10).messages;
    expect(a!.time).toBe(bigTime);
    expect(b!.time).toBe(maxTime);
    // default times are the clock in µs
    store.now = () => 1_712_345_678_901; // ms
    await store.publish(log.log_id, [msg('now')]);
    expect(store.getOne(log.log_id).time).toBe(1_712_345_678_901_000);

    const start = Number.MAX_SAFE_INTEGER - 100; // 9007199254740891
    store.db.prepare('UPDATE event_logs SET next_offset = ? WHERE log_id = ?').run(start, log.log_id);
    closeStore(store);
    const { store: again } = openStore(dir);
    expect(again.nextOffset(log.log_id)).toBe(start);
    expect(await again.publish(log.log_id, [{ value: Buffer.from('big'), time: bigTime }, msg('bigger')])).toBe(start + 2);
    let r = again.read(log.log_id, start, 10);
    expect(r.messages.map((m) => [m.offset, m.time])).toEqual([[start, bigTime], [start + 1, T0 * 1000]]);
    expect(r.nextOffset).toBe(start + 2);
    expect(text(again.getOne(log.log_id, start + 1))).toEqual({ offset: start + 1, key: null, value: 'bigger' });
    closeStore(again);
    // and again from the database alone
    const { store: third } = openStore(dir);
    r = third.read(log.log_id, start, 10);
    expect(r.messages.map((m) => [m.offset, m.time])).toEqual([[start, bigTime], [start + 1, T0 * 1000]]);
    expect(offsets(third.read(log.log_id, 0, 10).messages)).toEqual([0, 1, 2, start, start + 1]);
    expect(third.nextOffset(log.log_id)).toBe(start + 2);
  });
});
