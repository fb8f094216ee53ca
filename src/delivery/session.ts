/**
 * One delivery session (KumoMTA's dispatcher, kumomta-facts §6.3): pop what
 * is ready, open a connection, deliver batch after batch, close.
 *
 *   - no message at the start → end without opening a connection
 *   - the connection fails to open → every popped message fails transiently
 *   - a batch is sent once it holds `min_batch_size` messages, or when
 *     `max_batch_latency` has passed since its first message
 *   - no message for `idle_timeout` → close
 *   - `max_deliveries_per_connection` messages delivered → close (a new
 *     session takes over if work remains)
 *   - an outcome that closes the connection (a Lua error, a 421) → close
 *     and end; the next messages get a new session and a new constructor call
 *   - shutdown → finish the batch in hand, close
 */
import { randomUUID } from 'node:crypto';
import type { Message } from '../queue/message.js';
import type { ReadyQueue } from '../queue/ready.js';
import type { DeliveryConnection } from './connector.js';
import { connectFailure } from './disposition.js';

export class Session {
  readonly id = randomUUID();
  readonly done: Promise<void>;
  #resolveDone!: () => void;

  constructor(private readonly rq: ReadyQueue) {
    this.done = new Promise((resolve) => (this.#resolveDone = resolve));
  }

  start(): void {
    this.#run().then(this.#resolveDone, this.#resolveDone);
  }

  async #run(): Promise<void> {
    const rq = this.rq;
    const connector = rq.connector;
    let batch = rq.pop(connector.batchSize);
    if (batch.length === 0) return;
    // The first batch waits for min_batch_size / max_batch_latency too, before the constructor runs.
    if (batch.length < connector.minBatchSize) batch = await this.#nextBatch(batch);
    let conn: DeliveryConnection;
    try {
      conn = await connector.open();
    } catch (err) {
      rq.settled(batch, connectFailure(err), this.id);
      return;
    }
    let delivered = 0;
    try {
      for (;;) {
        delivered += batch.length;
        const outcome = await conn.deliver(batch);
        rq.settled(batch, outcome, this.id);
        if (outcome.kind === 'transient' && outcome.closeConnection) return;
        if (rq.stopping) return;
        if (delivered >= rq.pathConfig.max_deliveries_per_connection) return;
        batch = await this.#nextBatch();
        if (batch.length === 0) return;
      }
    } finally {
      await conn.close();
    }
  }

  /** Wait for the next batch under min_batch_size / max_batch_latency / idle_timeout. */
  async #nextBatch(batch: Message[] = []): Promise<Message[]> {
    const rq = this.rq;
    const { batchSize, minBatchSize, maxBatchLatency } = rq.connector;
    let batchStart: number | null = batch.length > 0 ? rq.clock.now() : null;
    for (;;) {
      if (rq.stopping && batch.length === 0) return batch;
      batch.push(...rq.pop(batchSize - batch.length));
      const now = rq.clock.now();
      if (batch.length >= minBatchSize || (batch.length > 0 && (rq.stopping || maxBatchLatency === 0))) return batch;
      if (batch.length > 0 && batchStart === null) batchStart = now;
      const idleDeadline = now + rq.pathConfig.idle_timeout;
      const deadline = batchStart === null ? idleDeadline : Math.min(idleDeadline, batchStart + maxBatchLatency);
      if (now >= deadline) return batch;
      await rq.waitForWork(deadline);
      if (rq.clock.now() >= deadline && rq.size === 0) return batch;
    }
  }
}
