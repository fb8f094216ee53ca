/**
 * The embedded spool: one SQLite database (`spool.db`) in the data directory,
 * through better-sqlite3 (synchronous calls; WAL; synchronous=FULL).
 *
 * Group commit: insert, reschedule, updateMeta and remove only queue the
 * write. The first write of an event-loop turn schedules a flush with
 * setImmediate; the flush runs every queued write, in call order, in one
 * transaction, and resolves their promises once it has committed (with
 * synchronous=FULL the WAL is fsynced before COMMIT returns). One fsync then
 * covers every write of the turn.
 *
 * A write that fails on its own (a duplicate id, an unknown id) rejects only
 * its own promise: SQLite undoes just that statement and the rest of the batch
 * commits. If the transaction itself fails (disk full, I/O error), it rolls
 * back and every write of the batch rejects with SLUICE_ERR_SPOOL.
 *
 * Reads (claimDue, counts, size, releaseAll) first flush the queued writes
 * synchronously, so they see every write made before them.
 *
 * Schema (user_version 2):
 *   messages(seq INTEGER PRIMARY KEY, id TEXT UNIQUE, queue, due, attempts,
 *            created, held 0/1, sender, recipients JSON, meta JSON, data,
 *            record_in_data 0/1)
 *   index messages_claim ON (queue, held, due)  -- rowid (seq) is implied last
 * `seq` is the rowid: it gives the insertion order that breaks ties between
 * equal due times, and the index (queue, held, due, seq) serves claimDue's
 * `ORDER BY due, seq` without sorting. `data` has BLOB affinity, so a string
 * stays TEXT and a Uint8Array stays a BLOB, byte for byte.
 *
 * `record_in_data` = 1 says the stored meta leaves out `log_record` because
 * `data` is that record's JSON (a log hook message without a template, see
 * SpoolRecord.recordInData): reading the row puts it back from `data`. A log
 * hook message is then stored once, not twice. Version 1 spools are migrated
 * by adding the column (0 for their rows).
 */
import path from 'node:path';
import Database from 'better-sqlite3';
import { SluiceError } from '../errors.js';
import { acquireDataDirLock, type DataDirLock } from './data-dir-lock.js';
import type { QueueCount, Spool, SpoolRecord } from './spool.js';

export const SPOOL_FILE = 'spool.db';
export const SCHEMA_VERSION = 2;

export interface SqliteSpoolOptions {
  /**
   * FULL (the default) fsyncs the WAL at every commit: a resolved write
   * survives a power loss. NORMAL survives a process crash but may lose the
   * last commits on a power loss or OS crash.
   */
  synchronous?: 'FULL' | 'NORMAL';
  /** How long a statement waits for a lock held by another connection, ms. @defaultValue 5000 */
  busyTimeoutMs?: number;
}

/** QueueCount plus the number of messages of the queue including the held ones. */
export interface SqliteQueueCount extends QueueCount {
  total: number;
}

/** Counters, for tests and metrics. */
export interface SpoolStats {
  /** group commits that succeeded */
  commits: number;
  /** writes committed by them */
  writes: number;
  /** group commits that failed (their writes were rejected) */
  failedCommits: number;
  /** claimDue calls that claimed at least one message */
  claims: number;
}

type Op =
  | { kind: 'insert'; params: unknown[]; id: string }
  | { kind: 'reschedule'; params: unknown[]; id: string }
  | { kind: 'updateMeta'; params: unknown[]; id: string }
  | { kind: 'remove'; params: unknown[]; id: string };

interface PendingOp {
  op: Op;
  resolve: () => void;
  reject: (err: unknown) => void;
  error?: SluiceError;
}

interface Row {
  seq: number;
  id: string;
  queue: string;
  due: number;
  attempts: number;
  created: number;
  sender: string;
  recipients: string;
  meta: string;
  data: Buffer | Uint8Array | string | null;
  record_in_data: number;
}

/** A message row as the insert statement takes it (see encodeInsert). */
export type InsertRow = [
  id: string, queue: string, due: number, attempts: number, created: number, held: 0 | 1,
  sender: string, recipients: string, meta: string, data: Uint8Array | string, recordInData: 0 | 1,
];

const DDL = `
CREATE TABLE messages (
  seq        INTEGER PRIMARY KEY,
  id         TEXT    NOT NULL UNIQUE,
  queue      TEXT    NOT NULL,
  due        INTEGER NOT NULL,
  attempts   INTEGER NOT NULL,
  created    INTEGER NOT NULL,
  held       INTEGER NOT NULL,
  sender     TEXT    NOT NULL,
  recipients TEXT    NOT NULL,
  meta       TEXT    NOT NULL,
  data       BLOB,
  record_in_data INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX messages_claim ON messages (queue, held, due);
`;

export class SqliteSpool implements Spool {
  readonly dataDir: string;
  readonly file: string;
  readonly stats: SpoolStats = { commits: 0, writes: 0, failedCommits: 0, claims: 0 };

  private readonly db: Database.Database;
  private readonly synchronous: 'FULL' | 'NORMAL';
  private readonly lock: DataDirLock;
  private pending: PendingOp[] = [];
  private flushTimer: NodeJS.Immediate | undefined;
  private closed = false;
  private closing: Promise<void> | undefined;

  private readonly stmts: {
    insert: Database.Statement;
    reschedule: Database.Statement;
    updateMeta: Database.Statement;
    remove: Database.Statement;
    selectDue: Database.Statement<[string, number, number], Row>;
    markHeld: Database.Statement<[number]>;
    nextDue: Database.Statement<[string], { due: number | null }>;
    counts: Database.Statement<[], { queue: string; atRest: number; nextDue: number | null; total: number }>;
    size: Database.Statement<[], { n: number }>;
    releaseAll: Database.Statement;
  };
  private readonly commitBatch: (ops: PendingOp[]) => void;
  private readonly claimTx: (queue: string, now: number, limit: number) => Row[];

  /**
   * Open (or create) the spool of a data directory. Takes the data directory
   * lock first: a second process on the same directory gets
   * SLUICE_ERR_SPOOL_LOCKED.
   */
  static open(dataDir: string, opts: SqliteSpoolOptions = {}): SqliteSpool {
    const lock = acquireDataDirLock(dataDir);
    try {
      return new SqliteSpool(path.resolve(dataDir), lock, opts);
    } catch (err) {
      lock.release();
      throw err;
    }
  }

  /**
   * Open the spool without taking the data directory lock, for a caller that
   * holds it already (the spool thread of WorkerSpool, whose main thread
   * holds the lock).
   */
  static openUnlocked(dataDir: string, opts: SqliteSpoolOptions = {}): SqliteSpool {
    return new SqliteSpool(path.resolve(dataDir), { path: '', release: () => undefined }, opts);
  }

  private constructor(dataDir: string, lock: DataDirLock, opts: SqliteSpoolOptions) {
    this.dataDir = dataDir;
    this.lock = lock;
    this.file = path.join(dataDir, SPOOL_FILE);
    const sync = opts.synchronous ?? 'FULL';
    if (sync !== 'FULL' && sync !== 'NORMAL') {
      throw new SluiceError('SLUICE_ERR_SPOOL', `spool synchronous mode must be FULL or NORMAL, not ${String(sync)}`);
    }
    this.synchronous = sync;
    let db: Database.Database | undefined;
    try {
      db = new Database(this.file);
      db.pragma(`busy_timeout = ${Math.max(0, Math.trunc(opts.busyTimeoutMs ?? 5000))}`);
      const mode = db.pragma('journal_mode = WAL', { simple: true });
      if (String(mode).toLowerCase() !== 'wal') {
        throw new Error(`the file system refused WAL mode (journal_mode is ${String(mode)})`);
      }
      db.pragma(`synchronous = ${sync}`);
      migrate(db);
    } catch (err) {
      db?.close();
      if (err instanceof SluiceError) throw err;
      throw new SluiceError('SLUICE_ERR_SPOOL', `cannot open the spool ${this.file}: ${(err as Error).message}`, { cause: err });
    }
    this.db = db;

    this.stmts = {
      insert: db.prepare(
        `INSERT INTO messages (id, queue, due, attempts, created, held, sender, recipients, meta, data, record_in_data)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      ),
      reschedule: db.prepare(`UPDATE messages SET queue = ?, due = ?, attempts = ?, held = ? WHERE id = ?`),
      updateMeta: db.prepare(`UPDATE messages SET meta = ?, record_in_data = 0 WHERE id = ?`),
      remove: db.prepare(`DELETE FROM messages WHERE id = ?`),
      selectDue: db.prepare<[string, number, number], Row>(
        `SELECT seq, id, queue, due, attempts, created, sender, recipients, meta, data, record_in_data
         FROM messages WHERE queue = ? AND held = 0 AND due <= ? ORDER BY due, seq LIMIT ?`,
      ),
      markHeld: db.prepare<[number]>(`UPDATE messages SET held = 1 WHERE seq = ?`),
      nextDue: db.prepare<[string], { due: number | null }>(`SELECT MIN(due) AS due FROM messages WHERE queue = ? AND held = 0`),
      counts: db.prepare<[], { queue: string; atRest: number; nextDue: number | null; total: number }>(
        `SELECT queue,
                SUM(held = 0) AS atRest,
                MIN(CASE WHEN held = 0 THEN due END) AS nextDue,
                COUNT(*) AS total
         FROM messages GROUP BY queue ORDER BY queue`,
      ),
      size: db.prepare<[], { n: number }>(`SELECT COUNT(*) AS n FROM messages`),
      releaseAll: db.prepare(`UPDATE messages SET held = 0 WHERE held <> 0`),
    };

    this.commitBatch = db.transaction((ops: PendingOp[]) => {
      for (const p of ops) {
        try {
          this.apply(p.op, p);
        } catch (err) {
          // A constraint error undoes only its own statement: fail that write
          // alone. Anything else (or a constraint error that rolled the whole
          // transaction back) fails the batch.
          if (isConstraintError(err) && db.inTransaction) {
            p.error = new SluiceError('SLUICE_ERR_SPOOL', `spool ${p.op.kind} of message ${p.op.id} failed: ${(err as Error).message}`, { cause: err });
          } else {
            throw err;
          }
        }
      }
    });

    this.claimTx = db.transaction((queue: string, now: number, limit: number) => {
      const rows = this.stmts.selectDue.all(queue, now, limit);
      for (const r of rows) this.stmts.markHeld.run(r.seq);
      return rows;
    });
  }

  // ---- writes (group-committed) ----

  insert(rec: SpoolRecord, held: boolean): Promise<void> {
    return this.enqueue(() => ({ kind: 'insert', id: rec.id, params: encodeInsert(rec, held) }));
  }

  /** insert() of a row already encoded with encodeInsert (by the thread that made the message). */
  insertRow(row: InsertRow): Promise<void> {
    return this.enqueue(() => ({ kind: 'insert', id: row[0], params: row }));
  }

  reschedule(id: string, queue: string, due: number, attempts: number, held: boolean): Promise<void> {
    return this.enqueue(() => ({ kind: 'reschedule', id, params: [queue, due, attempts, held ? 1 : 0, id] }));
  }

  updateMeta(id: string, meta: Record<string, unknown>): Promise<void> {
    return this.enqueue(() => ({ kind: 'updateMeta', id, params: [JSON.stringify(meta ?? {}), id] }));
  }

  /** updateMeta() with the meta already written as JSON. */
  updateMetaJson(id: string, metaJson: string): Promise<void> {
    return this.enqueue(() => ({ kind: 'updateMeta', id, params: [metaJson, id] }));
  }

  remove(id: string): Promise<void> {
    return this.enqueue(() => ({ kind: 'remove', id, params: [id] }));
  }

  // ---- reads (flush first, then synchronous) ----

  claimDue(queue: string, now: number, limit: number): Promise<SpoolRecord[]> {
    return this.claimDueRows(queue, now, limit).then((rows) => rows.map(decodeRow));
  }

  /** claimDue() without decoding the rows (decodeRow), for the thread that will use them to do it. */
  claimDueRows(queue: string, now: number, limit: number): Promise<SpoolRow[]> {
    return this.read('claimDue', () => {
      if (!(limit > 0)) return [];
      // The held flag only matters within this run (releaseAll resets it at
      // start), so the claim does not need its own fsync: it is committed with
      // synchronous=NORMAL, which still survives a process crash, and the next
      // FULL commit fsyncs it along with its own writes.
      const full = this.synchronous === 'FULL';
      if (full) this.db.pragma('synchronous = NORMAL');
      let rows: Row[];
      try {
        rows = this.claimTx(queue, now, Math.trunc(limit));
      } finally {
        if (full) this.db.pragma('synchronous = FULL');
      }
      if (rows.length > 0) this.stats.claims++;
      return rows;
    });
  }

  nextDue(queue: string): Promise<number | null> {
    return this.read('nextDue', () => this.stmts.nextDue.get(queue)?.due ?? null);
  }

  counts(): Promise<SqliteQueueCount[]> {
    return this.read('counts', () =>
      this.stmts.counts.all().map((r) => ({ queue: r.queue, atRest: r.atRest, nextDue: r.nextDue, total: r.total })),
    );
  }

  /** Marks every message at rest; returns how many messages the spool holds (all of them now at rest). */
  releaseAll(): Promise<number> {
    return this.read('releaseAll', () => {
      this.stmts.releaseAll.run();
      return this.stmts.size.get()!.n;
    });
  }

  size(): Promise<number> {
    return this.read('size', () => this.stmts.size.get()!.n);
  }

  /** Commit what is pending, close the database and release the data directory lock. Idempotent. */
  close(): Promise<void> {
    if (!this.closing) {
      this.closing = new Promise<void>((resolve) => {
        try {
          this.flush();
        } finally {
          this.closed = true;
          try {
            this.db.close();
          } finally {
            this.lock.release();
          }
        }
        resolve();
      });
    }
    return this.closing;
  }

  /** Writes queued and not yet committed. */
  get pendingWrites(): number {
    return this.pending.length;
  }

  /**
   * Commit every queued write now, in one transaction. Runs on its own once
   * per event-loop turn; exposed for callers that need the writes durable
   * before going on synchronously.
   */
  flush(): void {
    if (this.flushTimer) {
      clearImmediate(this.flushTimer);
      this.flushTimer = undefined;
    }
    const batch = this.pending;
    if (batch.length === 0) return;
    this.pending = [];
    try {
      this.commitBatch(batch);
    } catch (err) {
      this.stats.failedCommits++;
      const e = new SluiceError(
        'SLUICE_ERR_SPOOL',
        `spool commit of ${batch.length} write(s) to ${this.file} failed: ${(err as Error).message}`,
        { cause: err },
      );
      for (const p of batch) p.reject(e);
      return;
    }
    this.stats.commits++;
    this.stats.writes += batch.length;
    for (const p of batch) {
      if (p.error) p.reject(p.error);
      else p.resolve();
    }
  }

  // ---- internals ----

  private enqueue(make: () => Op): Promise<void> {
    if (this.closed || this.closing) {
      return Promise.reject(new SluiceError('SLUICE_ERR_SPOOL', `the spool ${this.file} is closed`));
    }
    let op: Op;
    try {
      op = make(); // JSON.stringify may throw (a cycle, a BigInt): that fails this write alone, now
    } catch (err) {
      return Promise.reject(new SluiceError('SLUICE_ERR_SPOOL', `cannot store message: ${(err as Error).message}`, { cause: err }));
    }
    return new Promise<void>((resolve, reject) => {
      this.pending.push({ op, resolve, reject });
      if (!this.flushTimer) this.flushTimer = setImmediate(() => this.flush());
    });
  }

  private apply(op: Op, p: PendingOp): void {
    switch (op.kind) {
      case 'insert':
        this.stmts.insert.run(op.params);
        return;
      case 'remove':
        this.stmts.remove.run(op.params); // removing an unknown id is not an error
        return;
      case 'reschedule':
      case 'updateMeta': {
        const r = (op.kind === 'reschedule' ? this.stmts.reschedule : this.stmts.updateMeta).run(op.params);
        if (r.changes === 0) {
          p.error = new SluiceError('SLUICE_ERR_SPOOL', `spool ${op.kind}: no message ${op.id} in the spool`);
        }
        return;
      }
    }
  }

  private read<T>(what: string, fn: () => T): Promise<T> {
    if (this.closed || this.closing) {
      return Promise.reject(new SluiceError('SLUICE_ERR_SPOOL', `the spool ${this.file} is closed`));
    }
    try {
      this.flush();
      return Promise.resolve(fn());
    } catch (err) {
      if (err instanceof SluiceError) return Promise.reject(err);
      return Promise.reject(new SluiceError('SLUICE_ERR_SPOOL', `spool ${what} on ${this.file} failed: ${(err as Error).message}`, { cause: err }));
    }
  }
}

function migrate(db: Database.Database): void {
  const version = db.pragma('user_version', { simple: true }) as number;
  if (version === SCHEMA_VERSION) return;
  if (version > SCHEMA_VERSION) {
    throw new SluiceError(
      'SLUICE_ERR_SPOOL',
      `the spool ${db.name} has schema version ${version}, newer than this sluice supports (${SCHEMA_VERSION}); run a newer sluice`,
    );
  }
  if (version === 1) {
    db.transaction(() => {
      db.exec('ALTER TABLE messages ADD COLUMN record_in_data INTEGER NOT NULL DEFAULT 0');
      db.pragma(`user_version = ${SCHEMA_VERSION}`);
    }).immediate();
    return;
  }
  // version 0: a new database (or one that is not a sluice spool)
  db.transaction(() => {
    const tables = db.prepare(`SELECT name FROM sqlite_master WHERE type = 'table'`).all() as { name: string }[];
    if (tables.length > 0) {
      throw new SluiceError(
        'SLUICE_ERR_SPOOL',
        `${db.name} is not a sluice spool (it has tables ${tables.map((t) => t.name).join(', ')} but no schema version)`,
      );
    }
    db.exec(DDL);
    db.pragma(`user_version = ${SCHEMA_VERSION}`);
  }).immediate();
}

function isConstraintError(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && code.startsWith('SQLITE_CONSTRAINT');
}

/**
 * The insert statement's parameters for a record. Throws if meta or
 * recipients cannot be written as JSON (a cycle, a BigInt).
 */
export function encodeInsert(rec: SpoolRecord, held: boolean): InsertRow {
  const meta = rec.meta ?? {};
  let metaJson: string;
  let recordInData: 0 | 1 = 0;
  if (rec.recordInData && meta.log_record !== undefined && typeof rec.data === 'string') {
    // The record is the data's JSON already: store the rest of meta only.
    const { log_record: _, ...rest } = meta;
    metaJson = JSON.stringify(rest);
    recordInData = 1;
  } else {
    metaJson = JSON.stringify(meta);
  }
  return [rec.id, rec.queue, rec.due, rec.attempts, rec.created, held ? 1 : 0, rec.sender, JSON.stringify(rec.recipients), metaJson, rec.data, recordInData];
}

/** A message row as claimDueRows returns it. */
export type SpoolRow = Omit<Row, 'seq'>;

/** A stored row back to the record that was inserted. */
export function decodeRow(r: SpoolRow): SpoolRecord {
  let data: Uint8Array | string;
  if (typeof r.data === 'string') data = r.data;
  else if (r.data == null) data = new Uint8Array(0);
  else data = new Uint8Array(r.data.buffer, r.data.byteOffset, r.data.byteLength);
  const meta = JSON.parse(r.meta) as Record<string, unknown>;
  const rec: SpoolRecord = {
    id: r.id,
    queue: r.queue,
    due: r.due,
    attempts: r.attempts,
    created: r.created,
    sender: r.sender,
    recipients: JSON.parse(r.recipients) as string[],
    meta,
    data,
  };
  if (r.record_in_data && typeof data === 'string') {
    lazyRecord(meta, data);
    rec.recordInData = true;
  }
  return rec;
}

/**
 * `meta.log_record` parsed from `data` when first read: delivering an
 * unbatched hook message sends `data` and never looks at the record. The
 * property turns into a plain one on the first read or write.
 */
function lazyRecord(meta: Record<string, unknown>, data: string): void {
  const settle = (value: unknown) => {
    Object.defineProperty(meta, 'log_record', { value, writable: true, enumerable: true, configurable: true });
    return value;
  };
  Object.defineProperty(meta, 'log_record', {
    enumerable: true,
    configurable: true,
    get: () => settle(JSON.parse(data)),
    set: settle,
  });
}
