/**
 * The spool: durable storage of every accepted message, behind a narrow
 * interface so that the queue logic holds no SQL (an embedded SQLite spool
 * now, a PostgreSQL one for several nodes later).
 *
 * The spool is also the scheduled queue's backing store. A message is either
 * *held* (its object is in memory: in a ready queue, in flight, or waiting on
 * an in-memory timer) or *at rest* (only in the spool, waiting for its due
 * time). Memory therefore stays bounded by what is ready or in flight, however
 * large the backlog: at rest, a message costs nothing in memory.
 *
 * Writes are group-committed: every write made during one turn of the event
 * loop goes into one transaction, and each write's promise resolves once that
 * transaction is durable. A message counts as accepted only after its insert
 * resolved.
 */
export interface SpoolRecord {
  id: string;
  queue: string;
  /** unix ms; when the message is next due */
  due: number;
  attempts: number;
  /** unix ms */
  created: number;
  sender: string;
  recipients: string[];
  meta: Record<string, unknown>;
  data: Uint8Array | string;
  /**
   * `data` is the JSON of `meta.log_record` (a log hook message without a
   * template): a spool may store the record once and rebuild it from data.
   */
  recordInData?: boolean;
}

export interface QueueCount {
  queue: string;
  /** messages at rest in this queue */
  atRest: number;
  /** earliest due time among them, unix ms */
  nextDue: number | null;
}

export interface Spool {
  /** Store a new message. `held` says whether its object stays in memory. */
  insert(rec: SpoolRecord, held: boolean): Promise<void>;
  /** Record a new due time and attempt count (after a transient failure) and whether the object stays in memory. */
  reschedule(id: string, queue: string, due: number, attempts: number, held: boolean): Promise<void>;
  /** Update the stored meta (after a policy changed it). */
  updateMeta(id: string, meta: Record<string, unknown>): Promise<void>;
  /** Forget a message (delivered, bounced or expired). */
  remove(id: string): Promise<void>;
  /**
   * Take up to `limit` messages of `queue` that are at rest and due at or
   * before `now`, oldest due first, and mark them held.
   */
  claimDue(queue: string, now: number, limit: number): Promise<SpoolRecord[]>;
  /** The earliest due time among the messages of `queue` at rest, or null. */
  nextDue(queue: string): Promise<number | null>;
  /** Per queue: messages at rest and their earliest due time. */
  counts(): Promise<QueueCount[]>;
  /** At start: every message of the previous run is at rest again (nothing is in memory yet). */
  releaseAll(): Promise<number>;
  /** Total messages stored. */
  size(): Promise<number>;
  /** Commit what is pending and close. */
  close(): Promise<void>;
  /** Group-commit counters, for metrics (a spool without group commit leaves this out). */
  readonly stats?: { readonly commits: number; readonly writes: number; readonly failedCommits: number };
}
