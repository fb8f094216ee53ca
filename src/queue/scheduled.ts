/**
 * A scheduled queue: the messages of one queue name (`campaign:tenant@domain`,
 * or `N.log_hook` for a log hook) that are waiting for their due time.
 *
 * Waiting messages rest in the spool, not in memory; the queue keeps only
 * their count and the earliest due time, and pumps due messages into its
 * ready queue as room appears there. A message that is due when it arrives
 * and finds room goes straight to the ready queue without a spool read.
 */
import type { Clock, Timer } from './clock.js';
import type { QueueConfig } from './config.js';
import type { Message, QueueNameParts } from './message.js';
import type { ReadyQueue } from './ready.js';
import type { Spool, SpoolRecord } from './spool.js';
import { Message as MessageClass } from './message.js';

/**
 * Due messages that find the ready queue full wait in memory, up to this
 * many times max_ready, before they are left at rest in the spool: moving
 * them on later then needs no spool read and no extra write. Past that
 * bound they rest in the spool, so memory stays bounded however large the
 * backlog.
 */
const OVERFLOW_FACTOR = 4;

export interface Suspension {
  id: string;
  reason: string;
  /** unix ms */
  until: number;
}

/** What the queue needs from its manager for messages that cannot go to the ready queue. */
export interface ScheduledQueueHost {
  /** A due message reached a suspended queue: fail it transiently (with a retry). */
  suspendedAtPromotion(queue: ScheduledQueue, msg: Message, s: Suspension): void;
  /** A due message matched an active admin bounce. */
  bounceMatch(queue: ScheduledQueue, msg: Message): boolean;
  error(err: unknown, what: string): void;
}

export class ScheduledQueue {
  /** Messages of this queue at rest in the spool. */
  atRest = 0;
  /** Messages of this queue in memory (ready, in flight, held for retry). */
  held = 0;
  #nextDue: number | null = null;
  #timer: Timer | null = null;
  #timerAt = Infinity;
  #pumping = false;
  #pumpAgain = false;
  /** Due messages held in memory behind a full ready queue, oldest first. */
  readonly #overflow: Message[] = [];
  suspension: Suspension | null = null;
  delivered = 0;
  failed = 0;
  transientFailures = 0;

  constructor(
    readonly name: string,
    readonly parts: QueueNameParts,
    public config: Readonly<QueueConfig>,
    public readyQueue: ReadyQueue,
    private readonly spool: Spool,
    private readonly clock: Clock,
    private readonly host: ScheduledQueueHost,
  ) {}

  /** Total messages of this queue not yet finished. */
  get total(): number {
    return this.atRest + this.held;
  }

  /** Messages waiting for the ready queue: at rest in the spool, or held behind it. */
  get waiting(): number {
    return this.atRest + this.#overflow.length;
  }

  /** Whether a newly accepted message can stay in memory (ready queue, or the overflow behind it). */
  canTakeDirectly(msg: Message): boolean {
    return (msg.due === undefined || msg.due <= this.clock.now()) && this.#activeSuspension() === null &&
      (this.readyQueue.room() > 0 || this.#overflow.length < this.#overflowCap());
  }

  #overflowCap(): number {
    return OVERFLOW_FACTOR * this.readyQueue.pathConfig.max_ready;
  }

  /** Take the held overflow out (admin bounce). */
  drainOverflow(): Message[] {
    return this.#overflow.splice(0);
  }

  /** Whether `msg` is due and would go to the ready queue but for its being full. */
  isFullFor(msg: Message): boolean {
    return (msg.due === undefined || msg.due <= this.clock.now()) && this.#activeSuspension() === null && this.readyQueue.room() === 0;
  }

  /**
   * A message was stored held (see canTakeDirectly): hand it to the ready
   * queue, or keep it in the overflow behind a full one. Null when neither
   * has room (the caller leaves it at rest).
   */
  admitHeld(msg: Message): 'ready' | 'overflow' | null {
    this.held++;
    if (this.#overflow.length === 0 && this.readyQueue.insert(msg)) return 'ready';
    if (this.#overflow.length < this.#overflowCap()) {
      if (this.#overflow.length > 0) this.readyQueue.fullCount++;
      this.#overflow.push(msg);
      return 'overflow';
    }
    this.held--;
    return null;
  }

  /** A message is now at rest in the spool, due at `due`. */
  noteAtRest(due: number): void {
    this.atRest++;
    if (this.#nextDue === null || due < this.#nextDue) this.#nextDue = due;
    this.#wakeAt(due);
  }

  /** At start: `count` messages of this queue are in the spool, the earliest due at `nextDue`. */
  restoreAtRest(count: number, nextDue: number | null): void {
    this.atRest += count;
    if (nextDue !== null && (this.#nextDue === null || nextDue < this.#nextDue)) this.#nextDue = nextDue;
  }

  /** A held message finished (delivered, bounced, expired) or went back to rest. */
  release(): void {
    this.held = Math.max(0, this.held - 1);
  }

  /** Move due messages from the spool to the ready queue while there is room. */
  pump(): void {
    if (this.#pumping) {
      this.#pumpAgain = true;
      return;
    }
    this.#pumping = true;
    this.#pumpLoop()
      .catch((err: unknown) => this.host.error(err, `pumping queue ${this.name}`))
      .finally(() => {
        this.#pumping = false;
        if (this.#pumpAgain) {
          this.#pumpAgain = false;
          this.pump();
        }
      });
  }

  /** Move the overflow on; false while some of it still waits for room. */
  #pumpOverflow(): boolean {
    const suspension = this.#activeSuspension();
    while (this.#overflow.length > 0) {
      if (!suspension && this.readyQueue.room() === 0) return false;
      const msg = this.#overflow.shift() as Message;
      if (this.host.bounceMatch(this, msg)) continue;
      if (suspension) this.host.suspendedAtPromotion(this, msg, suspension);
      else this.readyQueue.insert(msg);
    }
    return true;
  }

  async #pumpLoop(): Promise<void> {
    if (this.readyQueue.stopping || !this.#pumpOverflow()) return;
    for (;;) {
      if (this.atRest === 0 || this.readyQueue.stopping) return;
      const now = this.clock.now();
      if (this.#nextDue !== null && this.#nextDue > now) {
        this.#wakeAt(this.#nextDue);
        return;
      }
      const suspension = this.#activeSuspension();
      const room = suspension ? 256 : this.readyQueue.room();
      if (room === 0) return;
      const claimed = await this.spool.claimDue(this.name, now, room);
      this.atRest = Math.max(0, this.atRest - claimed.length);
      for (const rec of claimed) {
        const msg = messageFromRecord(rec);
        this.held++;
        if (this.host.bounceMatch(this, msg)) continue;
        if (suspension) this.host.suspendedAtPromotion(this, msg, suspension);
        else if (!this.readyQueue.insert(msg)) {
          this.held--;
          await this.spool.reschedule(msg.id, this.name, now, msg.numAttempts, false);
          this.noteAtRest(now);
          return;
        }
      }
      if (claimed.length < room) {
        this.#nextDue = this.atRest > 0 ? await this.spool.nextDue(this.name) : null;
        if (this.#nextDue === null) return;
      }
    }
  }

  #activeSuspension(): Suspension | null {
    if (this.suspension && this.suspension.until <= this.clock.now()) this.suspension = null;
    return this.suspension;
  }

  #wakeAt(due: number): void {
    if (due >= this.#timerAt) return;
    this.#timer?.cancel();
    this.#timerAt = due;
    this.#timer = this.clock.setTimer(due - this.clock.now(), () => {
      this.#timer = null;
      this.#timerAt = Infinity;
      this.pump();
    });
  }

  stop(): void {
    this.#timer?.cancel();
    this.#timer = null;
    this.#timerAt = Infinity;
  }
}

export function messageFromRecord(rec: SpoolRecord): Message {
  return new MessageClass({
    id: rec.id,
    sender: rec.sender,
    recipients: rec.recipients,
    data: rec.data,
    meta: rec.meta,
    created: rec.created,
    numAttempts: rec.attempts,
    due: rec.due,
  });
}

export function recordFromMessage(msg: Message, queue: string, due: number): SpoolRecord {
  return {
    id: msg.id,
    queue,
    due,
    attempts: msg.numAttempts,
    created: msg.created,
    sender: msg.sender,
    recipients: msg.recipients,
    meta: msg.meta,
    data: msg.data,
    recordInData: msg.recordOfData !== undefined && msg.meta.log_record === msg.recordOfData,
  };
}
