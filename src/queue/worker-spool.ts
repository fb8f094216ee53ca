/**
 * The SQLite spool on its own thread. `WorkerSpool` implements `Spool` on the
 * main thread by forwarding every call to a `SqliteSpool` that runs in a
 * worker thread (`spool-worker.ts`), so that SQLite's statements and, above
 * all, the fsync of every group commit no longer stop the event loop that
 * accepts records and delivers messages.
 *
 * Nothing about durability changes: the worker's SqliteSpool commits with
 * synchronous=FULL, and a write's promise resolves here only after the
 * worker reported its commit.
 *
 * Batching: the calls of one event-loop turn go to the worker in one
 * message, in call order. The worker hands them to its SqliteSpool in that
 * order; calls that arrive while it is committing queue up and share its
 * next commit. So the two threads overlap: the main thread prepares the next
 * batch while the worker fsyncs the last one.
 *
 * The data directory lock is taken and released here, on the main thread,
 * around the worker's life: a second open in the same process is refused as
 * before.
 *
 * If the worker dies (it should not), every pending and later call rejects
 * with SLUICE_ERR_SPOOL naming the cause.
 */
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import { SluiceError, type ErrorCode } from '../errors.js';
import { acquireDataDirLock, type DataDirLock } from './data-dir-lock.js';
import type { QueueCount, Spool, SpoolRecord } from './spool.js';
import { decodeRow, encodeInsert, SPOOL_FILE, type InsertRow, type SpoolRow, type SpoolStats, type SqliteQueueCount, type SqliteSpoolOptions } from './sqlite-spool.js';
import type { SpoolCall, SpoolReply, WorkerData } from './spool-worker.js';

/**
 * The worker's module. Built code runs `spool-worker.js` next to this file;
 * sources run through a TypeScript loader (the tests) use the built one in
 * dist/, since a worker thread does not go through that loader.
 */
function workerUrl(): URL {
  const here = new URL(import.meta.url);
  if (here.pathname.endsWith('.ts')) return new URL('../../dist/queue/spool-worker.js', here);
  return new URL('./spool-worker.js', here);
}

/** A write whose message cannot be written as JSON (a cycle, a BigInt) fails alone, at once. */
function cannotStore(err: unknown): Promise<never> {
  return Promise.reject(new SluiceError('SLUICE_ERR_SPOOL', `cannot store message: ${(err as Error).message}`, { cause: err }));
}

interface Pending {
  resolve: (v: unknown) => void;
  reject: (e: unknown) => void;
}

export class WorkerSpool implements Spool {
  readonly dataDir: string;
  readonly file: string;
  /** The worker's counters, as of its last reply. */
  readonly stats: SpoolStats = { commits: 0, writes: 0, failedCommits: 0, claims: 0 };

  readonly #worker: Worker;
  readonly #lock: DataDirLock;
  readonly #pending = new Map<number, Pending>();
  #nextId = 1;
  #outbox: SpoolCall[] = [];
  #timer: NodeJS.Immediate | undefined;
  #failure: SluiceError | undefined;
  #closing: Promise<void> | undefined;

  /**
   * Take the data directory lock, start the worker and open the spool in it.
   * Rejects with the open's own error (SLUICE_ERR_SPOOL_LOCKED, a newer
   * schema, ...).
   */
  static async open(dataDir: string, opts: SqliteSpoolOptions = {}): Promise<WorkerSpool> {
    const lock = acquireDataDirLock(dataDir);
    let spool: WorkerSpool;
    try {
      spool = new WorkerSpool(path.resolve(dataDir), lock, opts);
    } catch (err) {
      lock.release();
      throw err;
    }
    try {
      await spool.#call('ready', []);
    } catch (err) {
      await spool.#stop();
      throw err;
    }
    return spool;
  }

  private constructor(dataDir: string, lock: DataDirLock, opts: SqliteSpoolOptions) {
    this.dataDir = dataDir;
    this.file = path.join(dataDir, SPOOL_FILE);
    this.#lock = lock;
    const workerData: WorkerData = { dataDir, opts };
    // The thread's objects are short-lived rows: a small young generation keeps its memory small.
    this.#worker = new Worker(workerUrl(), { workerData, name: 'sluice-spool', resourceLimits: { maxYoungGenerationSizeMb: 8 } });
    this.#worker.on('message', (replies: SpoolReply[]) => this.#onReplies(replies));
    this.#worker.on('error', (err) => this.#fail(`the spool thread failed: ${err.message}`, err));
    this.#worker.on('exit', (code) => {
      if (!this.#failure) this.#fail(`the spool thread exited (code ${code})`);
    });
    // The thread keeps the process alive only while a call waits for it.
    this.#worker.unref();
  }

  insert(rec: SpoolRecord, held: boolean): Promise<void> {
    // Encoded here: JSON text crosses to the thread much faster than an object graph.
    let row: InsertRow;
    try {
      row = encodeInsert(rec, held);
    } catch (err) {
      return cannotStore(err);
    }
    return this.#call('insertRow', [row]) as Promise<void>;
  }

  reschedule(id: string, queue: string, due: number, attempts: number, held: boolean): Promise<void> {
    return this.#call('reschedule', [id, queue, due, attempts, held]) as Promise<void>;
  }

  updateMeta(id: string, meta: Record<string, unknown>): Promise<void> {
    let json: string;
    try {
      json = JSON.stringify(meta ?? {});
    } catch (err) {
      return cannotStore(err);
    }
    return this.#call('updateMetaJson', [id, json]) as Promise<void>;
  }

  remove(id: string): Promise<void> {
    return this.#call('remove', [id]) as Promise<void>;
  }

  claimDue(queue: string, now: number, limit: number): Promise<SpoolRecord[]> {
    return (this.#call('claimDueRows', [queue, now, limit]) as Promise<SpoolRow[]>).then((rows) => rows.map(decodeRow));
  }

  nextDue(queue: string): Promise<number | null> {
    return this.#call('nextDue', [queue]) as Promise<number | null>;
  }

  counts(): Promise<SqliteQueueCount[]> {
    return this.#call('counts', []) as Promise<SqliteQueueCount[]>;
  }

  releaseAll(): Promise<number> {
    return this.#call('releaseAll', []) as Promise<number>;
  }

  size(): Promise<number> {
    return this.#call('size', []) as Promise<number>;
  }

  /** Commit what is pending, close the database, stop the thread and release the lock. Idempotent. */
  close(): Promise<void> {
    if (!this.#closing) {
      const closed = this.#failure ? Promise.resolve() : this.#call('close', []).then(() => undefined);
      this.#closing = closed.finally(() => this.#stop());
    }
    return this.#closing;
  }

  /** Calls sent or about to be sent whose reply has not come yet. */
  get pendingCalls(): number {
    return this.#pending.size;
  }

  // ---- internals ----

  #call(method: SpoolCall['method'], args: unknown[]): Promise<unknown> {
    if (this.#failure) return Promise.reject(this.#failure);
    if (this.#closing && method !== 'close') {
      return Promise.reject(new SluiceError('SLUICE_ERR_SPOOL', `the spool ${this.file} is closed`));
    }
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      if (this.#pending.size === 0) this.#worker.ref();
      this.#pending.set(id, { resolve, reject });
      this.#outbox.push({ id, method, args });
      this.#timer ??= setImmediate(() => this.#post());
    });
  }

  #post(): void {
    this.#timer = undefined;
    const batch = this.#outbox;
    if (batch.length === 0) return;
    this.#outbox = [];
    // Only strings, numbers and byte arrays cross (meta is JSON by now): nothing here can fail to copy.
    this.#worker.postMessage(batch);
  }

  #onReplies(replies: SpoolReply[]): void {
    for (const r of replies) {
      if (r.stats) Object.assign(this.stats, r.stats);
      this.#settle(r);
    }
  }

  #settle(r: SpoolReply): void {
    const p = this.#pending.get(r.id);
    if (!p) return;
    this.#pending.delete(r.id);
    if (this.#pending.size === 0) this.#worker.unref();
    if (r.ok) p.resolve(r.value);
    else p.reject(new SluiceError(r.error.code as ErrorCode, r.error.message));
  }

  #fail(message: string, cause?: unknown): void {
    if (this.#failure) return;
    this.#failure = new SluiceError('SLUICE_ERR_SPOOL', `${message}; ${this.file} keeps what was committed`, { cause });
    if (this.#timer) clearImmediate(this.#timer);
    this.#timer = undefined;
    this.#outbox = [];
    for (const p of this.#pending.values()) p.reject(this.#failure);
    this.#pending.clear();
    this.#worker.unref();
  }

  async #stop(): Promise<void> {
    this.#failure ??= new SluiceError('SLUICE_ERR_SPOOL', `the spool ${this.file} is closed`);
    try {
      await this.#worker.terminate();
    } finally {
      this.#lock.release();
    }
  }
}

export type { QueueCount };
