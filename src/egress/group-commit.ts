/**
 * Group commit for a better-sqlite3 connection: writes queued during one
 * event-loop turn run in one transaction (one fsync), and each write's
 * promise resolves once that transaction is durable.
 */
import type Database from 'better-sqlite3';
import { SluiceError } from '../errors.js';

interface Pending {
  write: () => void;
  resolve: () => void;
  reject: (err: Error) => void;
}

export class GroupCommit {
  #pending: Pending[] = [];
  #timer: NodeJS.Immediate | undefined;
  #closed = false;
  readonly #commit: (batch: Pending[]) => void;
  commits = 0;

  constructor(
    db: Database.Database,
    private readonly what: string,
  ) {
    this.#commit = db.transaction((batch: Pending[]) => {
      for (const p of batch) p.write();
    });
  }

  /** Queue `write` (synchronous statements) for the next commit. */
  run(write: () => void): Promise<void> {
    if (this.#closed) return Promise.reject(new SluiceError('SLUICE_ERR_SPOOL', `${this.what} is closed`));
    return new Promise((resolve, reject) => {
      this.#pending.push({ write, resolve, reject });
      this.#timer ??= setImmediate(() => this.flush());
    });
  }

  flush(): void {
    if (this.#timer) clearImmediate(this.#timer);
    this.#timer = undefined;
    const batch = this.#pending;
    if (batch.length === 0) return;
    this.#pending = [];
    try {
      this.#commit(batch);
    } catch (err) {
      const e = new SluiceError('SLUICE_ERR_SPOOL', `${this.what}: commit of ${batch.length} write(s) failed: ${(err as Error).message}`, { cause: err });
      for (const p of batch) p.reject(e);
      return;
    }
    this.commits++;
    for (const p of batch) p.resolve();
  }

  close(): void {
    this.flush();
    this.#closed = true;
  }
}
