/**
 * The SQLite spool on a real database in a temporary directory: write and
 * claim semantics, held vs at rest, group commit, exact round trips, and
 * crash safety / single-process locking with child processes that load the
 * built module (dist/, which `npm test` compiles before running vitest).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { SluiceError } from '../../../src/errors.js';
import { LOCK_FILE } from '../../../src/queue/data-dir-lock.js';
import { rec, rejection, T0 } from '../../helpers/spool.js';
import type { SpoolRecord } from '../../../src/queue/spool.js';
import { SCHEMA_VERSION, SPOOL_FILE, SqliteSpool } from '../../../src/queue/sqlite-spool.js';

const dirs: string[] = [];
const spools: SqliteSpool[] = [];
const children: ChildProcess[] = [];

function tmpDir(): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-spool-'));
  dirs.push(d);
  return d;
}

function open(dir: string, opts?: Parameters<typeof SqliteSpool.open>[1]): SqliteSpool {
  const s = SqliteSpool.open(dir, opts);
  spools.push(s);
  return s;
}


async function claimIds(spool: SqliteSpool, queue: string, now: number, limit: number): Promise<string[]> {
  return (await spool.claimDue(queue, now, limit)).map((r) => r.id);
}


afterEach(async () => {
  for (const c of children.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  for (const s of spools.splice(0)) await s.close();
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

describe('SqliteSpool', () => {
  it('creates spool.db with WAL, the schema version, and round-trips a record', async () => {
    const dir = path.join(tmpDir(), 'data');
    const spool = open(dir);
    const r = rec('m1', { recipients: ['a@x', 'b@y'], meta: { n: 1, nested: { ok: true }, list: [1, 'two'] }, attempts: 3, created: T0 - 5 });
    await spool.insert(r, false);
    expect(await spool.size()).toBe(1);
    expect(await spool.claimDue('q', T0, 10)).toEqual([r]);
    await spool.close();

    const db = new Database(path.join(dir, SPOOL_FILE), { readonly: true });
    try {
      expect(db.pragma('journal_mode', { simple: true })).toBe('wal');
      expect(db.pragma('user_version', { simple: true })).toBe(SCHEMA_VERSION);
      expect(db.pragma('integrity_check', { simple: true })).toBe('ok');
    } finally {
      db.close();
    }
  });

  it('keeps held messages out of claimDue and counts until they are at rest again', async () => {
    const spool = open(tmpDir());
    await Promise.all([spool.insert(rec('held'), true), spool.insert(rec('rest', { due: T0 + 10 }), false), spool.insert(rec('other', { queue: 'p' }), false)]);
    expect(await spool.counts()).toEqual([
      { queue: 'p', atRest: 1, nextDue: T0, total: 1 },
      { queue: 'q', atRest: 1, nextDue: T0 + 10, total: 2 },
    ]);
    expect(await spool.nextDue('q')).toBe(T0 + 10);
    expect(await claimIds(spool, 'q', T0 + 100, 10)).toEqual(['rest']);
    // Claimed: now held, so gone from the at-rest view but still stored.
    expect(await claimIds(spool, 'q', T0 + 100, 10)).toEqual([]);
    expect(await spool.nextDue('q')).toBeNull();
    expect(await spool.counts()).toContainEqual({ queue: 'q', atRest: 0, nextDue: null, total: 2 });
    expect(await spool.size()).toBe(3);

    // A transient failure puts 'held' back at rest with a later due time.
    await spool.reschedule('held', 'q', T0 + 50, 1, false);
    expect(await spool.nextDue('q')).toBe(T0 + 50);
    expect(await claimIds(spool, 'q', T0 + 49, 10)).toEqual([]);
    const [again] = await spool.claimDue('q', T0 + 50, 10);
    expect(again).toMatchObject({ id: 'held', due: T0 + 50, attempts: 1 });
    expect(await spool.nextDue('nope')).toBeNull();
  });

  it('claims oldest due first, ties in insertion order, only due messages, never twice', async () => {
    const spool = open(tmpDir());
    await Promise.all([
      spool.insert(rec('c', { due: T0 + 300 }), false),
      spool.insert(rec('a1', { due: T0 + 100 }), false),
      spool.insert(rec('a2', { due: T0 + 100 }), false),
    ]);
    await spool.insert(rec('b', { due: T0 + 200 }), false);
    await spool.insert(rec('a3', { due: T0 + 100 }), false); // a later turn: still after a1, a2
    await spool.insert(rec('later', { due: T0 + 1000 }), false);
    await spool.insert(rec('elsewhere', { queue: 'other', due: T0 }), false);

    expect(await claimIds(spool, 'q', T0 + 99, 10)).toEqual([]);
    expect(await claimIds(spool, 'q', T0 + 300, 2)).toEqual(['a1', 'a2']);
    expect(await claimIds(spool, 'q', T0 + 300, 2)).toEqual(['a3', 'b']);
    expect(await claimIds(spool, 'q', T0 + 300, 2)).toEqual(['c']);
    expect(await claimIds(spool, 'q', T0 + 300, 2)).toEqual([]);
    expect(await claimIds(spool, 'q', T0 + 1000, 0)).toEqual([]);
    expect(await claimIds(spool, 'q', T0 + 1000, 5)).toEqual(['later']);
    expect(await claimIds(spool, 'other', T0, 5)).toEqual(['elsewhere']);
  });

  it('never hands out a message twice under many small claims', async () => {
    const spool = open(tmpDir());
    const ids = Array.from({ length: 500 }, (_, i) => `m${i}`);
    await Promise.all(ids.map((id, i) => spool.insert(rec(id, { due: T0 + (i % 7) }), false)));
    const claimed: string[] = [];
    // Claims issued in the same turn, each before the previous one's promise settled.
    // (Bounded: a claim that does not mark its rows held would loop forever on
    // resolved promises, where vitest's timeout cannot fire.)
    for (let round = 0; round < 100; round++) {
      const batch = await Promise.all([claimIds(spool, 'q', T0 + 10, 7), claimIds(spool, 'q', T0 + 10, 11)]);
      if (batch.flat().length === 0) break;
      claimed.push(...batch.flat());
    }
    expect(claimed).toHaveLength(ids.length);
    expect(new Set(claimed).size).toBe(ids.length);
  });

  it('applies updateMeta, reschedule (also to another queue) and remove', async () => {
    const spool = open(tmpDir());
    await spool.insert(rec('m', { meta: { a: 1 } }), true);
    await spool.updateMeta('m', { a: 2, b: 'x' });
    await spool.reschedule('m', 'q2', T0 + 5, 4, false);
    expect(await spool.claimDue('q', T0 + 5, 10)).toEqual([]);
    expect(await spool.claimDue('q2', T0 + 5, 10)).toEqual([rec('m', { queue: 'q2', due: T0 + 5, attempts: 4, meta: { a: 2, b: 'x' } })]);
    await spool.remove('m');
    expect(await spool.size()).toBe(0);
    await spool.remove('m'); // removing what is gone is fine
  });

  it('rejects only the faulty write of a batch: duplicate id, unknown id, unserialisable meta', async () => {
    const spool = open(tmpDir());
    await spool.insert(rec('dup'), false);
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    const results = await Promise.allSettled([
      spool.insert(rec('ok1'), false),
      spool.insert(rec('dup'), false),
      spool.reschedule('ghost', 'q', T0, 1, false),
      spool.updateMeta('ghost', {}),
      spool.updateMeta('ok1', cyclic),
      spool.insert(rec('ok2'), false),
    ]);
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'rejected', 'rejected', 'rejected', 'fulfilled']);
    const reasons = results.flatMap((r) => (r.status === 'rejected' ? [r.reason as SluiceError] : []));
    for (const e of reasons) expect(e.code).toBe('SLUICE_ERR_SPOOL');
    expect(reasons[0]!.message).toMatch(/insert of message dup failed: UNIQUE constraint failed/);
    expect(reasons[1]!.message).toContain('no message ghost');
    expect(await spool.size()).toBe(3);
    expect(spool.stats.failedCommits).toBe(0);
  });

  it('rejects every write of a batch whose transaction fails, naming the cause', async () => {
    const dir = tmpDir();
    const spool = open(dir);
    await spool.insert(rec('before'), false);
    // A trigger (added behind the spool's back) that rolls the whole transaction back.
    const db = new Database(path.join(dir, SPOOL_FILE));
    db.exec(`CREATE TRIGGER boom BEFORE INSERT ON messages WHEN NEW.id = 'boom' BEGIN SELECT RAISE(ROLLBACK, 'disk on fire'); END`);
    db.close();
    const results = await Promise.allSettled([spool.insert(rec('x'), false), spool.insert(rec('boom'), false), spool.remove('before')]);
    expect(results.map((r) => r.status)).toEqual(['rejected', 'rejected', 'rejected']);
    for (const r of results) {
      const e = (r as PromiseRejectedResult).reason as SluiceError;
      expect(e.code).toBe('SLUICE_ERR_SPOOL');
      expect(e.message).toMatch(/commit of 3 write\(s\) .* failed: disk on fire/);
    }
    expect(spool.stats.failedCommits).toBe(1);
    expect(await claimIds(spool, 'q', T0, 10)).toEqual(['before']); // nothing of the batch applied
    await spool.insert(rec('y'), false); // and the spool goes on working
    expect(await spool.size()).toBe(2);
  });

  it('applies the writes of one turn in call order', async () => {
    const spool = open(tmpDir());
    const turn = [
      spool.insert(rec('gone'), false),
      spool.remove('gone'),
      spool.insert(rec('moved'), false),
      spool.reschedule('moved', 'q', T0 + 7, 2, false),
      spool.updateMeta('moved', { v: 1 }),
      spool.updateMeta('moved', { v: 2 }),
      spool.remove('back'),
      spool.insert(rec('back'), false),
    ];
    expect(spool.stats.commits).toBe(0);
    await Promise.all(turn);
    expect(spool.stats.commits).toBe(1);
    const got = await spool.claimDue('q', T0 + 10, 10);
    expect(got.map((r) => [r.id, r.due, r.attempts, r.meta])).toEqual([
      ['back', T0, 0, { hook: 'h' }],
      ['moved', T0 + 7, 2, { v: 2 }],
    ]);
  });

  it('group-commits all the writes of one event-loop turn in one transaction', async () => {
    const spool = open(tmpDir());
    const writes: Promise<void>[] = [];
    for (let i = 0; i < 10_000; i++) writes.push(spool.insert(rec(`m${i}`, { due: T0 + i }), false));
    expect(spool.pendingWrites).toBe(10_000);
    await Promise.all(writes);
    expect(spool.stats).toMatchObject({ commits: 1, writes: 10_000 });

    // Two turns: two commits.
    await Promise.all([spool.remove('m0'), spool.remove('m1')]);
    await Promise.all([spool.remove('m2')]);
    expect(spool.stats).toMatchObject({ commits: 3, writes: 10_003 });
    expect(await spool.size()).toBe(9_997);
  });

  it('lets claimDue, counts and size see the writes queued before them', async () => {
    const spool = open(tmpDir());
    const w = [spool.insert(rec('a'), false), spool.insert(rec('b'), false)];
    const claimed = spool.claimDue('q', T0, 1); // same turn, writes not committed yet
    expect(spool.pendingWrites).toBe(0);
    expect((await claimed).map((r) => r.id)).toEqual(['a']);
    await Promise.all(w);
    const x = spool.insert(rec('c', { queue: 'z' }), false);
    expect(await spool.size()).toBe(3);
    expect((await spool.counts()).map((c) => c.queue)).toEqual(['q', 'z']);
    await x;
  });

  it('returns the data exactly as stored: bytes as Uint8Array, text as string', async () => {
    const spool = open(tmpDir());
    const bytes = new Uint8Array([0x00, 0xff, 0x00, 0x80, 0x7f, 0xfe, 0x00]);
    const text = 'héllo ✓ 😀 \u0000 end';
    const view = new Uint8Array(new Uint8Array([9, 1, 2, 3, 9]).buffer, 1, 3); // a view with an offset
    await Promise.all([
      spool.insert(rec('bytes', { data: bytes }), false),
      spool.insert(rec('text', { data: text }), false),
      spool.insert(rec('empty-bytes', { data: new Uint8Array(0) }), false),
      spool.insert(rec('empty-text', { data: '' }), false),
      spool.insert(rec('view', { data: view }), false),
      spool.insert(rec('buffer', { data: Buffer.from([1, 0, 255]) }), false),
    ]);
    const got = Object.fromEntries((await spool.claimDue('q', T0, 10)).map((r) => [r.id, r.data]));
    expect(got.bytes).toBeInstanceOf(Uint8Array);
    expect(Array.from(got.bytes as Uint8Array)).toEqual(Array.from(bytes));
    expect(got.text).toBe(text);
    expect(got['empty-bytes']).toBeInstanceOf(Uint8Array);
    expect((got['empty-bytes'] as Uint8Array).byteLength).toBe(0);
    expect(got['empty-text']).toBe('');
    expect(Array.from(got.view as Uint8Array)).toEqual([1, 2, 3]);
    expect(Array.from(got.buffer as Uint8Array)).toEqual([1, 0, 255]);
  });

  it('keeps millisecond timestamps and large integers exact', async () => {
    const spool = open(tmpDir());
    await spool.insert(rec('t', { due: 1_700_000_000_123, created: 1_699_999_999_999, attempts: 2 ** 31 + 1 }), false);
    await spool.insert(rec('max', { due: Number.MAX_SAFE_INTEGER }), false);
    const [t] = await spool.claimDue('q', 1_700_000_000_123, 10);
    expect(t).toMatchObject({ due: 1_700_000_000_123, created: 1_699_999_999_999, attempts: 2 ** 31 + 1 });
    expect(await spool.nextDue('q')).toBe(Number.MAX_SAFE_INTEGER);
    expect(await claimIds(spool, 'q', Number.MAX_SAFE_INTEGER, 10)).toEqual(['max']);
  });

  it('after a reopen, releaseAll puts every message at rest again', async () => {
    const dir = tmpDir();
    const first = open(dir);
    await Promise.all([first.insert(rec('h1'), true), first.insert(rec('h2', { due: T0 + 1 }), true), first.insert(rec('r'), false)]);
    await first.claimDue('q', T0, 1); // r is now held too
    const pendingAtClose = first.insert(rec('late'), true); // not awaited: close commits it
    await first.close();
    await pendingAtClose;

    const second = open(dir);
    expect(await second.counts()).toEqual([{ queue: 'q', atRest: 0, nextDue: null, total: 4 }]);
    expect(await second.releaseAll()).toBe(4);
    expect(await second.counts()).toEqual([{ queue: 'q', atRest: 4, nextDue: T0, total: 4 }]);
    expect(await claimIds(second, 'q', T0 + 1, 10)).toEqual(['h1', 'r', 'late', 'h2']);
  });

  it('close is idempotent, releases the lock and refuses later use', async () => {
    const dir = tmpDir();
    const spool = open(dir);
    expect(fs.existsSync(path.join(dir, LOCK_FILE))).toBe(true);
    await Promise.all([spool.close(), spool.close()]);
    await spool.close();
    expect(fs.existsSync(path.join(dir, LOCK_FILE))).toBe(false);
    expect((await rejection(spool.insert(rec('x'), false))).code).toBe('SLUICE_ERR_SPOOL');
    expect((await rejection(spool.remove('x'))).code).toBe('SLUICE_ERR_SPOOL');
    expect((await rejection(spool.claimDue('q', T0, 1))).message).toContain('closed');
  });

  it('refuses a second open of the same directory in the same process', () => {
    const dir = tmpDir();
    open(dir);
    expect(() => SqliteSpool.open(dir)).toThrow(expect.objectContaining({ code: 'SLUICE_ERR_SPOOL_LOCKED' }));
  });

  it('refuses a database that is not a sluice spool, and one from a newer sluice', async () => {
    const dir = tmpDir();
    const db = new Database(path.join(dir, SPOOL_FILE));
    db.exec('CREATE TABLE something (x)');
    db.close();
    expect(() => SqliteSpool.open(dir)).toThrow(expect.objectContaining({ code: 'SLUICE_ERR_SPOOL', message: expect.stringContaining('not a sluice spool') }));
    expect(fs.existsSync(path.join(dir, LOCK_FILE))).toBe(false); // the lock was given back

    const dir2 = tmpDir();
    await open(dir2).close();
    const db2 = new Database(path.join(dir2, SPOOL_FILE));
    db2.pragma(`user_version = ${SCHEMA_VERSION + 1}`);
    db2.close();
    expect(() => SqliteSpool.open(dir2)).toThrow(expect.objectContaining({ code: 'SLUICE_ERR_SPOOL', message: expect.stringContaining('newer') }));
  });

  it('stores a log hook message once: the record is rebuilt from the data', async () => {
    const dir = tmpDir();
    const spool = open(dir);
    const record = { type: 'Delivery', id: 'r1', size: 27_083, response: { code: 250, content: 'OK' }, meta: { k: [1, null] } };
    const data = `${JSON.stringify(record)}\n`;
    const meta = { tenant: 't', log_record: record, reception_protocol: 'LogRecord' };
    await spool.insert(rec('hooked', { data, meta, recordInData: true }), false);
    await spool.insert(rec('templated', { data: 'Delivery r1\n', meta, recordInData: false }), false);
    await spool.insert(rec('bytes', { data: new Uint8Array([1, 2]), meta, recordInData: true }), false); // only text data qualifies
    await spool.flush();

    const raw = new Database(path.join(dir, SPOOL_FILE), { readonly: true });
    const rows = raw.prepare('SELECT id, meta, record_in_data AS f FROM messages ORDER BY seq').all() as { id: string; meta: string; f: number }[];
    raw.close();
    expect(rows.map((r) => [r.id, r.f, 'log_record' in JSON.parse(r.meta)])).toEqual([['hooked', 1, false], ['templated', 0, true], ['bytes', 0, true]]);

    const claimed = await spool.claimDue('q', T0, 10);
    // The record is parsed when first read, then is a plain property that can be replaced.
    const lazy = claimed[0]!.meta;
    expect(Object.getOwnPropertyDescriptor(lazy, 'log_record')?.get).toBeTypeOf('function');
    expect(Object.keys(lazy)).toEqual(['tenant', 'reception_protocol', 'log_record']);
    expect(lazy.log_record).toEqual(record);
    expect(Object.getOwnPropertyDescriptor(lazy, 'log_record')?.value).toBe(lazy.log_record);

    expect(claimed.map((r) => [r.id, r.meta, r.recordInData ?? false])).toEqual([
      ['hooked', meta, true],
      ['templated', meta, false],
      ['bytes', meta, false],
    ]);

    // A meta update is stored whole (the policy may have changed log_record).
    await spool.updateMeta('hooked', { log_record: { changed: true } });
    await spool.reschedule('hooked', 'q', T0, 1, false);
    const [again] = await spool.claimDue('q', T0, 10);
    expect(again!.meta).toEqual({ log_record: { changed: true } });
    expect(again!.recordInData).toBeUndefined();

    // A lazy record can be replaced before it was ever read.
    await spool.insert(rec('w', { data, meta, recordInData: true }), false);
    const [w] = await spool.claimDue('q', T0, 10);
    w!.meta.log_record = 'replaced';
    expect(w!.meta.log_record).toBe('replaced');
    expect(JSON.parse(JSON.stringify(w!.meta))).toEqual({ tenant: 't', reception_protocol: 'LogRecord', log_record: 'replaced' });
  });

  it('migrates a version 1 spool, keeping its messages', async () => {
    const dir = tmpDir();
    const db = new Database(path.join(dir, SPOOL_FILE));
    db.exec(`CREATE TABLE messages (seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, queue TEXT NOT NULL, due INTEGER NOT NULL,
      attempts INTEGER NOT NULL, created INTEGER NOT NULL, held INTEGER NOT NULL, sender TEXT NOT NULL, recipients TEXT NOT NULL,
      meta TEXT NOT NULL, data BLOB);
      CREATE INDEX messages_claim ON messages (queue, held, due);`);
    db.prepare('INSERT INTO messages (id, queue, due, attempts, created, held, sender, recipients, meta, data) VALUES (?,?,?,?,?,?,?,?,?,?)')
      .run('old', 'q', T0, 2, T0, 1, 'from@example.com', '["to@example.com"]', '{"log_record":{"id":"x"}}', '{"id":"x"}\n');
    db.pragma('user_version = 1');
    db.close();
    const spool = open(dir);
    expect(await spool.releaseAll()).toBe(1);
    const [m] = await spool.claimDue('q', T0, 10);
    expect(m).toMatchObject({ id: 'old', attempts: 2, meta: { log_record: { id: 'x' } }, data: '{"id":"x"}\n' });
    await spool.close();
    const check = new Database(path.join(dir, SPOOL_FILE), { readonly: true });
    expect(check.pragma('user_version', { simple: true })).toBe(SCHEMA_VERSION);
    check.close();
  });

  it('works with synchronous=NORMAL too', async () => {
    const dir = tmpDir();
    const spool = open(dir, { synchronous: 'NORMAL' });
    await spool.insert(rec('n'), false);
    expect(await claimIds(spool, 'q', T0, 1)).toEqual(['n']);
  });
});

// ---- child processes ----

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const DIST_MODULE = new URL('../../../dist/queue/sqlite-spool.js', import.meta.url);

/** A node process running an ESM script that imports the built spool as `SqliteSpool`. */
class Child {
  readonly proc: ChildProcess;
  readonly lines: string[] = [];
  private partial = '';
  private waiters: (() => void)[] = [];
  readonly closed: Promise<void>;
  stderr = '';

  constructor(dir: string, body: string) {
    const script = path.join(dir, `child-${Math.random().toString(36).slice(2)}.mjs`);
    fs.writeFileSync(script, `import { SqliteSpool } from ${JSON.stringify(DIST_MODULE.href)};\n${body}\n`);
    this.proc = spawn(process.execPath, [script], { stdio: ['ignore', 'pipe', 'pipe'] });
    children.push(this.proc);
    this.proc.stdout!.on('data', (c: Buffer) => {
      const parts = (this.partial + c.toString()).split('\n');
      this.partial = parts.pop()!;
      this.lines.push(...parts);
      for (const w of this.waiters.splice(0)) w();
    });
    this.proc.stderr!.on('data', (c: Buffer) => (this.stderr += c.toString()));
    this.closed = new Promise((resolve) => this.proc.once('close', () => resolve()));
    void this.closed.then(() => {
      for (const w of this.waiters.splice(0)) w();
    });
  }

  /** Resolve once the output lines satisfy `pred`; reject if the child ends first. */
  async waitFor(pred: (lines: string[]) => boolean, what: string): Promise<void> {
    for (;;) {
      if (pred(this.lines)) return;
      if (this.proc.exitCode !== null || this.proc.signalCode !== null) {
        throw new Error(`child ended (${this.proc.exitCode ?? this.proc.signalCode}) before ${what}\nstderr: ${this.stderr}`);
      }
      await new Promise<void>((resolve) => this.waiters.push(resolve));
    }
  }

  async kill9(): Promise<void> {
    this.proc.kill('SIGKILL');
    await this.closed; // exited, reaped, and all its output read
  }
}

describe('SqliteSpool across processes', () => {
  beforeAll(() => {
    // The children load the compiled module; make sure it is there and current.
    const built = fileURLToPath(DIST_MODULE);
    if (!fs.existsSync(built)) throw new Error(`${built} is missing: run \`npx tsc -p tsconfig.json\` (npm test does) first`);
    for (const src of ['src/queue/sqlite-spool.ts', 'src/queue/data-dir-lock.ts']) {
      const js = path.join(ROOT, src.replace(/^src\//, 'dist/').replace(/\.ts$/, '.js'));
      if (fs.statSync(path.join(ROOT, src)).mtimeMs > fs.statSync(js).mtimeMs) {
        throw new Error(`${js} is older than ${src}: run \`npx tsc -p tsconfig.json\` (npm test does) first`);
      }
    }
  });

  it('keeps every acknowledged insert after kill -9', async () => {
    const dir = tmpDir();
    const data = path.join(dir, 'data');
    const child = new Child(
      dir,
      `const spool = SqliteSpool.open(${JSON.stringify(data)});
       const blob = new Uint8Array(600).fill(0xab);
       let n = 0;
       for (;;) {
         const batch = [];
         for (let k = 0; k < 50; k++) {
           const id = 'm' + String(n++).padStart(8, '0');
           batch.push(spool.insert({ id, queue: 'q', due: ${T0} + n, attempts: 0, created: ${T0}, sender: 's', recipients: ['r'], meta: { n }, data: blob }, false)
             .then(() => process.stdout.write(id + '\\n')));
         }
         await Promise.all(batch);
       }`,
    );
    await child.waitFor((l) => l.length >= 3_000, '3000 acknowledged inserts');
    await child.kill9();
    const acked = child.lines.filter((l) => /^m\d{8}$/.test(l));
    expect(acked.length).toBeGreaterThanOrEqual(3_000);

    const spool = open(data); // the dead child's lock is stale: taken over
    expect(await spool.releaseAll()).toBeGreaterThanOrEqual(acked.length);
    const stored = new Set<string>();
    let badData = 0;
    for (let round = 0; round < 1000; round++) {
      const got = await spool.claimDue('q', Number.MAX_SAFE_INTEGER, 10_000);
      if (got.length === 0) break;
      for (const r of got) {
        stored.add(r.id);
        const d = r.data as Uint8Array;
        if (d.byteLength !== 600 || d.some((b) => b !== 0xab)) badData++;
      }
    }
    expect(badData).toBe(0);
    const missing = acked.filter((id) => !stored.has(id));
    expect(missing).toEqual([]);
    expect(stored.size - acked.length).toBeLessThanOrEqual(50); // at most the batch killed between commit and ack
    await spool.close();

    const db = new Database(path.join(data, SPOOL_FILE), { readonly: true });
    try {
      expect(db.pragma('integrity_check', { simple: true })).toBe('ok');
    } finally {
      db.close();
    }
  });

  it('refuses a data directory another live process has open, and takes it over once that process was killed', async () => {
    const dir = tmpDir();
    const data = path.join(dir, 'data');
    const child = new Child(
      dir,
      `const spool = SqliteSpool.open(${JSON.stringify(data)});
       await spool.insert({ id: 'from-child', queue: 'q', due: ${T0}, attempts: 0, created: ${T0}, sender: 's', recipients: ['r'], meta: {}, data: 'x' }, true);
       process.stdout.write('ready ' + process.pid + '\\n');
       setInterval(() => {}, 1 << 30);`,
    );
    await child.waitFor((l) => l.some((x) => x.startsWith('ready ')), 'the child opened the spool');
    const pid = child.proc.pid!;
    expect(child.lines).toContain(`ready ${pid}`);

    let err: unknown;
    try {
      open(data);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(SluiceError);
    expect((err as SluiceError).code).toBe('SLUICE_ERR_SPOOL_LOCKED');
    expect((err as SluiceError).message).toContain(`pid ${pid}`);
    expect((err as SluiceError).message).toContain(data);

    await child.kill9();
    const spool = open(data);
    expect(fs.readFileSync(path.join(data, LOCK_FILE), 'utf8').trim()).toBe(String(process.pid));
    expect(await spool.releaseAll()).toBe(1);
    expect(await claimIds(spool, 'q', T0, 10)).toEqual(['from-child']);
  });
});
