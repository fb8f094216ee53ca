/**
 * How a ready queue reaches its destination: a Connector opens connections,
 * a connection delivers batches and reports an Outcome. One implementation
 * per protocol: Lua (`custom_lua`) and maildir.
 */
import type { Message } from '../queue/message.js';
import type { Outcome } from './disposition.js';

export interface DeliveryConnection {
  /** Deliver one batch (one message when the protocol is not batched). */
  deliver(batch: readonly Message[]): Promise<Outcome>;
  close(): Promise<void>;
}

export interface Connector {
  /** Messages per call: 1 for `send`, more for `send_batch`. */
  readonly batchSize: number;
  readonly minBatchSize: number;
  /** ms */
  readonly maxBatchLatency: number;
  /** Fields that every delivery record of this path carries. */
  readonly recordFields: { deliveryProtocol: string; peerName: string; peerAddr: string };
  open(): Promise<DeliveryConnection>;
}
