/**
 * A ready queue: messages that are due and waiting for a delivery session,
 * per destination (for Lua: `unspecified-><site>@lua:<constructor>`).
 *
 * Bounded by the path's `max_ready`: a scheduled queue only moves a message
 * here when there is room, so what is in memory stays bounded however large
 * the backlog. Sessions are started up to KumoMTA's ideal count for the
 * backlog, `ceil(connection_limit · (1 − e^(−0.023·ready)))`, never more than
 * `connection_limit` and never more than there are messages.
 */
import type { Clock, Timer } from './clock.js';
import type { EgressPathConfig } from './config.js';
import type { Message } from './message.js';
import type { Connector } from '../delivery/connector.js';
import type { Outcome } from '../delivery/disposition.js';
import { Session } from '../delivery/session.js';

export interface DeliveryContext {
  readyQueue: ReadyQueue;
  sessionId: string;
}

/** Receives every finished batch; the queue manager decides what happens to each message. */
export interface OutcomeSink {
  settle(batch: readonly Message[], outcome: Outcome, ctx: DeliveryContext): void;
  /** The ready queue has room again. */
  onRoom(readyQueue: ReadyQueue): void;
}

export class ReadyQueue {
  readonly #fifo: Message[] = [];
  #head = 0;
  readonly #sessions = new Set<Session>();
  readonly #waiters = new Set<() => void>();
  #stopping = false;
  /** Messages handed to sessions and not yet settled. */
  inFlight = 0;
  /** Times a message found no room here (ready_full). */
  fullCount = 0;
  totalSessions = 0;

  constructor(
    readonly name: string,
    readonly site: string,
    readonly connector: Connector,
    public pathConfig: Readonly<EgressPathConfig>,
    readonly clock: Clock,
    readonly sink: OutcomeSink,
  ) {}

  get size(): number {
    return this.#fifo.length - this.#head;
  }

  get sessionCount(): number {
    return this.#sessions.size;
  }

  /** Room for `n` more messages. */
  room(): number {
    return Math.max(0, this.pathConfig.max_ready - this.size);
  }

  /** Add a message; false when full (the caller keeps it scheduled). */
  insert(msg: Message): boolean {
    if (this.#stopping) return false;
    if (this.size >= this.pathConfig.max_ready) {
      this.fullCount++;
      return false;
    }
    this.#fifo.push(msg);
    this.#wake();
    this.#maintainSessions();
    return true;
  }

  /** Take up to `n` messages, oldest first. */
  pop(n: number): Message[] {
    const out: Message[] = [];
    while (out.length < n && this.#head < this.#fifo.length) {
      out.push(this.#fifo[this.#head] as Message);
      this.#fifo[this.#head] = undefined as unknown as Message;
      this.#head++;
    }
    if (this.#head > 1024 && this.#head * 2 > this.#fifo.length) {
      this.#fifo.splice(0, this.#head);
      this.#head = 0;
    }
    if (out.length > 0) {
      this.inFlight += out.length;
      this.sink.onRoom(this);
    }
    return out;
  }

  /** Resolve when a message arrives or at `deadline` (unix ms), whichever is first. */
  waitForWork(deadline: number): Promise<void> {
    if (this.size > 0 || this.#stopping) return Promise.resolve();
    return new Promise((resolve) => {
      let timer: Timer | null = null;
      const done = () => {
        this.#waiters.delete(done);
        timer?.cancel();
        resolve();
      };
      this.#waiters.add(done);
      timer = this.clock.setTimer(deadline - this.clock.now(), done);
    });
  }

  /** A session finished a batch. */
  settled(batch: readonly Message[], outcome: Outcome, sessionId: string): void {
    this.inFlight -= batch.length;
    this.sink.settle(batch, outcome, { readyQueue: this, sessionId });
    this.#maintainSessions();
  }

  get stopping(): boolean {
    return this.#stopping;
  }

  /** Stop starting sessions, let running ones finish their batch, close them; resolves when all ended. */
  async stop(): Promise<void> {
    this.#stopping = true;
    this.#wake();
    await Promise.all([...this.#sessions].map((s) => s.done));
  }

  /** Take every waiting message out (shutdown, suspension); they stay in the spool. */
  drain(): Message[] {
    const out = this.#fifo.slice(this.#head);
    this.#fifo.length = 0;
    this.#head = 0;
    return out;
  }

  #wake(): void {
    for (const w of [...this.#waiters]) w();
  }

  #maintainSessions(): void {
    if (this.#stopping) return;
    const ready = this.size;
    if (ready === 0) return;
    const limit = Math.max(1, this.pathConfig.connection_limit);
    const ideal = Math.min(Math.ceil(limit * (1 - Math.exp(-0.023 * ready))), ready, limit);
    while (this.#sessions.size < ideal) {
      const session = new Session(this);
      this.#sessions.add(session);
      this.totalSessions++;
      void session.done.then(() => {
        this.#sessions.delete(session);
        this.#maintainSessions();
      });
      // Start on a microtask, as KumoMTA's maintainer spawns dispatchers: a burst
      // inserted in one go (a pump, a restore) is all ready before the first pop.
      queueMicrotask(() => session.start());
    }
  }
}
