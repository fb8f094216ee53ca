/**
 * The spool on its own thread (WorkerSpool, the daemon's spool): the same
 * write and claim semantics as SqliteSpool across the thread boundary, one
 * group commit for the calls of a turn, per-write failures, the data
 * directory lock held by the main thread, and open errors carried back with
 * their codes. The worker runs the built module (dist/, which `npm test`
 * compiles first).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { SluiceError } from '../../../src/errors.js';
import { LOCK_FILE } from '../../../src/queue/data-dir-lock.js';
import { rec, rejection, T0 } from '../../helpers/spool.js';
import type { SpoolRecord } from '../../../src/queue/spool.js';
import { SCHEMA_VERSION, SPOOL_FILE, SqliteSpool } from '../../../src/queue/sqlite-spool.js';
import { WorkerSpool } from '../../../src/queue/worker-spool.js';

const dirs: string[] = [];
const spools: WorkerSpool[] = [];

function tmpDir(): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-wspool-'));
  dirs.push(d);
  return d;
}

async function open(dir: string): Promise<WorkerSpool> {
  const s = await WorkerSpool.open(dir);
  spools.push(s);
  return s;
}



afterEach(async () => {
  for (const s of spools.splice(0)) await s.close();
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

describe('WorkerSpool', () => {
  it('round-trips records exactly (text, bytes, wide integers, nested meta) and applies every write', async () => {
    const spool = await open(tmpDir());
    const bytes = Uint8Array.from([0, 1, 2, 253, 254, 255]);
    await Promise.all([
      spool.insert(rec('a', { meta: { log_record: { id: 'r1', size: 27_083, nested: [1, { x: null }] } }, created: T0 + 1 }), false),
      spool.insert(rec('b', { data: bytes, due: T0 + 5, attempts: 3, recipients: ['x@example.com', 'y@example.com'] }), false),
      spool.insert(rec('c', { queue: 'other', due: T0 + 2 ** 40 }), false),
    ]);
    expect(await spool.size()).toBe(3);
    expect(await spool.nextDue('q')).toBe(T0);
    expect(await spool.nextDue('other')).toBe(T0 + 2 ** 40);
    expect(await spool.counts()).toEqual([
      { queue: 'other', atRest: 1, nextDue: T0 + 2 ** 40, total: 1 },
      { queue: 'q', atRest: 2, nextDue: T0, total: 2 },
    ]);

    const claimed = await spool.claimDue('q', T0 + 10, 10);
    expect(claimed.map((r) => r.id)).toEqual(['a', 'b']);
    expect(claimed[0]).toEqual(rec('a', { meta: { log_record: { id: 'r1', size: 27_083, nested: [1, { x: null }] } }, created: T0 + 1 }));
    expect(claimed[1]!.data).toBeInstanceOf(Uint8Array);
    expect([...(claimed[1]!.data as Uint8Array)]).toEqual([...bytes]);
    expect(claimed[1]).toMatchObject({ due: T0 + 5, attempts: 3, recipients: ['x@example.com', 'y@example.com'] });
    expect(await spool.claimDue('q', T0 + 10, 10)).toEqual([]); // held now

    await spool.reschedule('a', 'other', T0 + 7, 1, false);
    await spool.updateMeta('a', { changed: true });
    await spool.remove('b');
    const again = await spool.claimDue('other', T0 + 10, 10);
    expect(again.map((r) => [r.id, r.attempts, r.meta])).toEqual([['a', 1, { changed: true }]]);
    expect(await spool.size()).toBe(2);
  });

  it('stores a log hook message once across the thread and rebuilds its record', async () => {
    const spool = await open(tmpDir());
    const record = { type: 'Delivery', id: 'r9', headers: { Subject: 'x' } };
    const meta = { log_record: record, reception_protocol: 'LogRecord' };
    await spool.insert(rec('h', { data: `${JSON.stringify(record)}\n`, meta, recordInData: true }), false);
    const [got] = await spool.claimDue('q', T0, 1);
    expect(got).toMatchObject({ id: 'h', meta, recordInData: true });
  });

  it('sends the calls of one turn together: one commit, in call order', async () => {
    const spool = await open(tmpDir());
    await spool.size(); // the open itself is behind us
    const before = { ...spool.stats };
    await Promise.all([
      spool.insert(rec('x'), false),
      spool.insert(rec('y'), false),
      spool.remove('x'),
      spool.reschedule('y', 'q', T0 + 1, 2, false),
    ]);
    expect(spool.stats.commits - before.commits).toBe(1);
    expect(spool.stats.writes - before.writes).toBe(4);
    const rows = await spool.claimDue('q', T0 + 10, 10);
    expect(rows.map((r) => [r.id, r.attempts])).toEqual([['y', 2]]);
  });

  it('rejects only the faulty calls: duplicate id, unknown id, a cyclic meta, a BigInt in meta', async () => {
    const spool = await open(tmpDir());
    await spool.insert(rec('dup'), false);
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    const results = await Promise.allSettled([
      spool.insert(rec('ok1'), false),
      spool.insert(rec('dup'), false),
      spool.updateMeta('ghost', {}),
      spool.updateMeta('ok1', cyclic),
      spool.insert(rec('big', { meta: { n: 10n } }), false),
      spool.insert(rec('ok2'), false),
    ]);
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'rejected', 'rejected', 'rejected', 'fulfilled']);
    const reasons = results.flatMap((r) => (r.status === 'rejected' ? [r.reason as SluiceError] : []));
    for (const e of reasons) {
      expect(e).toBeInstanceOf(SluiceError);
      expect(e.code).toBe('SLUICE_ERR_SPOOL');
    }
    expect(reasons[0]!.message).toMatch(/insert of message dup failed: UNIQUE constraint failed/);
    expect(reasons[1]!.message).toContain('no message ghost');
    expect(reasons[2]!.message).toMatch(/cannot store message: Converting circular structure/);
    expect(reasons[3]!.message).toMatch(/cannot store message: Do not know how to serialize a BigInt/);
    expect(await spool.size()).toBe(3);
    expect(spool.stats.failedCommits).toBe(0);
  });

  it('holds the data directory lock on the main thread, and gives it back on close', async () => {
    const dir = tmpDir();
    const spool = await open(dir);
    await spool.insert(rec('kept'), true);
    expect(fs.existsSync(path.join(dir, LOCK_FILE))).toBe(true);
    expect((await rejection(WorkerSpool.open(dir))).code).toBe('SLUICE_ERR_SPOOL_LOCKED');
    expect(() => SqliteSpool.open(dir)).toThrow(expect.objectContaining({ code: 'SLUICE_ERR_SPOOL_LOCKED' }));

    await spool.close();
    await spool.close(); // idempotent
    expect(fs.existsSync(path.join(dir, LOCK_FILE))).toBe(false);
    expect((await rejection(spool.size())).message).toContain('is closed');
    expect((await rejection(spool.insert(rec('late'), false))).code).toBe('SLUICE_ERR_SPOOL');

    const reopened = await open(dir);
    expect(await reopened.releaseAll()).toBe(1); // the held message is at rest again
    expect((await reopened.claimDue('q', T0, 10)).map((r) => r.id)).toEqual(['kept']);
  });

  it('carries an open error back with its code and message, and releases the lock', async () => {
    const dir = tmpDir();
    await (await open(dir)).close();
    const db = new Database(path.join(dir, SPOOL_FILE));
    db.pragma(`user_version = ${SCHEMA_VERSION + 1}`);
    db.close();
    const err = await rejection(WorkerSpool.open(dir));
    expect(err.code).toBe('SLUICE_ERR_SPOOL');
    expect(err.message).toMatch(/schema version \d+, newer than this sluice supports/);
    expect(fs.existsSync(path.join(dir, LOCK_FILE))).toBe(false);
  });

  it('does not keep the process alive when idle, and keeps many calls in flight', async () => {
    const spool = await open(tmpDir());
    const n = 2000;
    await Promise.all(Array.from({ length: n }, (_, i) => spool.insert(rec(`m${i}`, { due: T0 + (i % 7) }), false)));
    expect(spool.pendingCalls).toBe(0);
    const claimed = await spool.claimDue('q', T0 + 10, n);
    expect(claimed).toHaveLength(n);
    expect(new Set(claimed.map((r) => r.id)).size).toBe(n);
    // oldest due first, ties in insertion order
    const order = claimed.map((r) => [r.due, Number(r.id.slice(1))] as const);
    const sorted = [...order].sort((a, b) => a[0] - b[0] || a[1] - b[1]);
    expect(order).toEqual(sorted);
    await Promise.all(claimed.map((r) => spool.remove(r.id)));
    expect(await spool.size()).toBe(0);
  });
});
