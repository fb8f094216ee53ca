/**
 * klev-style event logs, durable in the data directory's SQLite database
 * (the spool's file, its own tables). A log is an append-only sequence of
 * messages `{offset, time (unix µs), key?, value?}`; offsets start at 0 and
 * only grow. Publishing is group-committed and resolves with `next_offset`
 * once durable. Consumers read from an offset, optionally waiting (long
 * poll) for new messages.
 *
 * Retention (checked after publishes and every few seconds): by age
 * (`trim_seconds`), size (`trim_size` bytes) or count (`trim_count`); and for
 * compacting logs, by key: a message superseded by a newer one with the same
 * key goes after `compact_seconds`, a delete marker (no value) after
 * `expire_seconds`.
 */
import path from 'node:path';
import Database from 'better-sqlite3';
import { EventEmitter } from 'node:events';
import { GroupCommit } from './group-commit.js';
import { prefixedId } from './ksuid.js';
import { SluiceError } from '../errors.js';

export interface LogSettings {
  metadata: string;
  compacting: boolean;
  trim_seconds?: number;
  trim_size?: number;
  trim_count?: number;
  compact_seconds?: number;
  expire_seconds?: number;
}

export interface EventLog extends LogSettings {
  log_id: string;
}

export interface LogMessage {
  offset: number;
  /** unix µs */
  time: number;
  key: Buffer | null;
  value: Buffer | null;
}

export interface NewMessage {
  time?: number;
  key?: Buffer | null;
  value?: Buffer | null;
}

export class LogError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

interface LogState {
  log: EventLog;
  nextOffset: number;
  /** The next offset after the last durable message: readers never look past it (offsets being committed are not readable yet). */
  durable: number;
  /** Recently published messages by offset, shared by every reader (fan-out). */
  recent: Map<number, LogMessage>;
}

const RECENT_PER_LOG = 4096;
export const DB_FILE = 'spool.db';

export class EventLogStore {
  readonly #db: Database.Database;
  readonly #commit: GroupCommit;
  readonly #logs = new Map<string, LogState>();
  readonly #events = new EventEmitter();
  readonly #stmts;
  #retentionTimer: NodeJS.Timeout | null = null;
  now: () => number = Date.now;

  constructor(dataDir: string) {
    let db: Database.Database;
    try {
      db = new Database(path.join(dataDir, DB_FILE));
      db.pragma('busy_timeout = 5000');
      db.pragma('journal_mode = WAL');
      db.pragma('synchronous = FULL');
      db.exec(`
        CREATE TABLE IF NOT EXISTS event_logs (
          log_id TEXT PRIMARY KEY, settings TEXT NOT NULL, next_offset INTEGER NOT NULL, created INTEGER NOT NULL);
        CREATE TABLE IF NOT EXISTS event_messages (
          log_id TEXT NOT NULL, offset INTEGER NOT NULL, time INTEGER NOT NULL, key BLOB, value BLOB,
          PRIMARY KEY (log_id, offset)) WITHOUT ROWID;
        CREATE INDEX IF NOT EXISTS event_messages_key ON event_messages (log_id, key);
      `);
    } catch (err) {
      throw new SluiceError('SLUICE_ERR_SPOOL', `cannot open the event log store in ${dataDir}: ${(err as Error).message}`, { cause: err });
    }
    this.#db = db;
    this.#commit = new GroupCommit(db, 'the event log store');
    this.#events.setMaxListeners(0);
    this.#stmts = {
      insertLog: db.prepare('INSERT INTO event_logs (log_id, settings, next_offset, created) VALUES (?, ?, 0, ?)'),
      updateLog: db.prepare('UPDATE event_logs SET settings = ? WHERE log_id = ?'),
      setNext: db.prepare('UPDATE event_logs SET next_offset = ? WHERE log_id = ?'),
      deleteLog: db.prepare('DELETE FROM event_logs WHERE log_id = ?'),
      deleteMessages: db.prepare('DELETE FROM event_messages WHERE log_id = ?'),
      insertMessage: db.prepare('INSERT INTO event_messages (log_id, offset, time, key, value) VALUES (?, ?, ?, ?, ?)'),
      read: db.prepare<[string, number, number], LogMessage>('SELECT offset, time, key, value FROM event_messages WHERE log_id = ? AND offset >= ? ORDER BY offset LIMIT ?'),
      last: db.prepare<[string], LogMessage>('SELECT offset, time, key, value FROM event_messages WHERE log_id = ? ORDER BY offset DESC LIMIT 1'),
      first: db.prepare<[string], { offset: number }>('SELECT offset FROM event_messages WHERE log_id = ? ORDER BY offset LIMIT 1'),
      stats: db.prepare<[string], { count: number; size: number }>('SELECT COUNT(*) AS count, COALESCE(SUM(LENGTH(key)), 0) + COALESCE(SUM(LENGTH(value)), 0) AS size FROM event_messages WHERE log_id = ?'),
      trimBefore: db.prepare('DELETE FROM event_messages WHERE log_id = ? AND offset < ?'),
      trimTime: db.prepare('DELETE FROM event_messages WHERE log_id = ? AND time < ?'),
      offsetAtCount: db.prepare<[string, number], { offset: number }>('SELECT offset FROM event_messages WHERE log_id = ? ORDER BY offset DESC LIMIT 1 OFFSET ?'),
      sizes: db.prepare<[string], { offset: number; size: number }>('SELECT offset, COALESCE(LENGTH(key), 0) + COALESCE(LENGTH(value), 0) AS size FROM event_messages WHERE log_id = ? ORDER BY offset DESC'),
      compactUpdates: db.prepare(`DELETE FROM event_messages AS m WHERE m.log_id = ? AND m.key IS NOT NULL AND m.time < ?
        AND EXISTS (SELECT 1 FROM event_messages n WHERE n.log_id = m.log_id AND n.key = m.key AND n.offset > m.offset)`),
      compactDeletes: db.prepare('DELETE FROM event_messages WHERE log_id = ? AND key IS NOT NULL AND value IS NULL AND time < ?'),
      all: db.prepare<[], { log_id: string; settings: string; next_offset: number }>('SELECT log_id, settings, next_offset FROM event_logs ORDER BY rowid'),
    };
    for (const row of this.#stmts.all.all()) {
      this.#logs.set(row.log_id, { log: { log_id: row.log_id, ...(JSON.parse(row.settings) as LogSettings) }, nextOffset: row.next_offset, durable: row.next_offset, recent: new Map() });
    }
  }

  /** Check retention every `ms` (unref'd timer). */
  startRetention(ms = 5000): void {
    this.#retentionTimer = setInterval(() => this.applyRetention(), ms);
    this.#retentionTimer.unref();
  }

  async create(settings: LogSettings): Promise<EventLog> {
    const log: EventLog = { log_id: prefixedId('log'), ...settings };
    await this.#commit.run(() => this.#stmts.insertLog.run(log.log_id, JSON.stringify(settings), Date.now()));
    this.#logs.set(log.log_id, { log, nextOffset: 0, durable: 0, recent: new Map() });
    return log;
  }

  list(metadata?: string): EventLog[] {
    return [...this.#logs.values()].map((s) => s.log).filter((l) => metadata === undefined || l.metadata === metadata);
  }

  get(logId: string): EventLog {
    return this.#state(logId).log;
  }

  has(logId: string): boolean {
    return this.#logs.has(logId);
  }

  async update(logId: string, changes: Partial<Omit<LogSettings, 'compacting'>>): Promise<EventLog> {
    const s = this.#state(logId);
    const log: EventLog = { ...s.log, ...changes };
    const { log_id: _id, ...settings } = log;
    await this.#commit.run(() => this.#stmts.updateLog.run(JSON.stringify(settings), logId));
    s.log = log;
    return log;
  }

  async delete(logId: string): Promise<EventLog> {
    const s = this.#state(logId);
    await this.#commit.run(() => {
      this.#stmts.deleteMessages.run(logId);
      this.#stmts.deleteLog.run(logId);
    });
    this.#logs.delete(logId);
    this.#events.emit(`deleted:${logId}`);
    this.#events.emit(`publish:${logId}`);
    return s.log;
  }

  stats(logId: string): { size: number; count: number } {
    this.#state(logId);
    return this.#stmts.stats.get(logId) as { size: number; count: number };
  }

  /** The offset the next publish will get. */
  nextOffset(logId: string): number {
    return this.#state(logId).nextOffset;
  }

  /** Append messages; resolves with the next offset once they are durable. */
  async publish(logId: string, messages: readonly NewMessage[]): Promise<number> {
    const s = this.#state(logId);
    const nowUs = this.now() * 1000;
    const first = s.nextOffset;
    const rows: LogMessage[] = messages.map((m, i) => ({
      offset: first + i,
      time: m.time && m.time > 0 ? m.time : nowUs,
      key: m.key ?? null,
      value: m.value ?? null,
    }));
    s.nextOffset = first + rows.length;
    const next = s.nextOffset;
    try {
      await this.#commit.run(() => {
        for (const r of rows) this.#stmts.insertMessage.run(logId, r.offset, r.time, r.key, r.value);
        this.#stmts.setNext.run(next, logId);
      });
    } catch (err) {
      if (s.nextOffset === next) s.nextOffset = first;
      throw err;
    }
    s.durable = Math.max(s.durable, next);
    for (const r of rows) s.recent.set(r.offset, r);
    if (s.recent.size > RECENT_PER_LOG) {
      for (const k of s.recent.keys()) {
        if (s.recent.size <= RECENT_PER_LOG) break;
        s.recent.delete(k);
      }
    }
    this.#events.emit(`publish:${logId}`);
    return next;
  }

  /**
   * Up to `len` messages from `offset` on (offsets that were trimmed are
   * skipped). -2 is the oldest available, -1 the next to be written.
   */
  read(logId: string, offset: number, len: number): { nextOffset: number; messages: LogMessage[] } {
    const s = this.#state(logId);
    let from = offset;
    const end = s.durable;
    if (from === -2) from = this.#stmts.first.get(logId)?.offset ?? end;
    else if (from === -1) from = end;
    else if (from < 0) throw new LogError(400, 'message-offset-invalid', `offset ${offset} is not valid: use an offset ≥ 0, -2 (oldest) or -1 (newest)`);
    if (from >= end || len <= 0) return { nextOffset: Math.max(from, 0), messages: [] };
    const cached: LogMessage[] = [];
    for (let o = from; o < end && cached.length < len; o++) {
      const m = s.recent.get(o);
      if (!m) break;
      cached.push(m);
    }
    const messages = cached.length === len || from + cached.length === end ? cached : this.#stmts.read.all(logId, from, len);
    const last = messages[messages.length - 1];
    return { nextOffset: last ? last.offset + 1 : end, messages };
  }

  /** The message at `offset`, or the last one when offset is undefined. */
  getOne(logId: string, offset?: number): LogMessage {
    this.#state(logId);
    const m = offset === undefined ? this.#stmts.last.get(logId) : this.read(logId, offset, 1).messages.find((x) => x.offset === offset);
    if (!m) throw new LogError(404, 'message-not-found', offset === undefined ? `log ${logId} has no messages` : `no message at offset ${offset} in log ${logId}`);
    return m;
  }

  /** Resolve when a message is published to `logId` (or it is deleted), or after `ms`. */
  waitForPublish(logId: string, ms: number, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.#events.off(`publish:${logId}`, done);
        signal?.removeEventListener('abort', done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.#events.once(`publish:${logId}`, done);
      signal?.addEventListener('abort', done);
    });
  }

  onDeleted(logId: string, fn: () => void): () => void {
    this.#events.once(`deleted:${logId}`, fn);
    return () => this.#events.off(`deleted:${logId}`, fn);
  }

  /** Apply every log's retention settings now. */
  applyRetention(): void {
    const nowUs = this.now() * 1000;
    for (const s of this.#logs.values()) {
      const { log } = s;
      const id = log.log_id;
      let trimmedBefore = -1;
      if (log.trim_seconds) this.#stmts.trimTime.run(id, nowUs - log.trim_seconds * 1e6);
      if (log.trim_count !== undefined && log.trim_count >= 0) {
        const edge = this.#stmts.offsetAtCount.get(id, log.trim_count);
        if (edge) trimmedBefore = Math.max(trimmedBefore, edge.offset + 1);
      }
      if (log.trim_size !== undefined && log.trim_size >= 0) {
        let total = 0;
        for (const row of this.#stmts.sizes.iterate(id)) {
          total += row.size;
          if (total > log.trim_size) {
            trimmedBefore = Math.max(trimmedBefore, row.offset + 1);
            break;
          }
        }
      }
      if (trimmedBefore >= 0) this.#stmts.trimBefore.run(id, trimmedBefore);
      if (log.compacting) {
        if (log.compact_seconds !== undefined) this.#stmts.compactUpdates.run(id, nowUs - log.compact_seconds * 1e6);
        if (log.expire_seconds !== undefined) this.#stmts.compactDeletes.run(id, nowUs - log.expire_seconds * 1e6);
      }
      for (const o of [...s.recent.keys()]) {
        if (o < trimmedBefore) s.recent.delete(o);
      }
      if (log.trim_seconds || log.compacting) s.recent.clear();
    }
  }

  close(): void {
    if (this.#retentionTimer) clearInterval(this.#retentionTimer);
    this.#commit.close();
    this.#db.close();
  }

  /** The store's connection, for the egress webhook tables. */
  get db(): Database.Database {
    return this.#db;
  }

  get commit(): GroupCommit {
    return this.#commit;
  }

  #state(logId: string): LogState {
    const s = this.#logs.get(logId);
    if (!s) throw new LogError(404, 'log-not-found', `log ${logId} not found`);
    return s;
  }
}
