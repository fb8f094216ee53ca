/**
 * The `custom_lua` protocol: each session calls the policy's constructor
 * once, then `send` or `send_batch` per batch, then `close`. Sessions use
 * the policy version current when they start; in-flight sessions finish on
 * the version they started with.
 */
import type { LuaVM } from '../lua/vm.js';
import type { Logger } from '../logging/logger.js';
import type { Message } from '../queue/message.js';
import type { CustomLuaProtocol } from '../queue/config.js';
import type { Connector, DeliveryConnection } from './connector.js';
import { classifyResult, type Outcome } from './disposition.js';
import { LuaConnection } from './lua-connection.js';

export class LuaConnector implements Connector {
  readonly batchSize: number;
  readonly minBatchSize: number;
  readonly maxBatchLatency: number;
  readonly recordFields: Connector['recordFields'];

  constructor(
    readonly protocol: CustomLuaProtocol,
    readonly scope: { domain: string; tenant?: string; campaign?: string },
    private readonly policy: () => LuaVM,
    private readonly logger: Logger,
  ) {
    this.batchSize = protocol.batch_size;
    this.minBatchSize = Math.max(1, Math.min(protocol.min_batch_size, protocol.batch_size));
    this.maxBatchLatency = protocol.max_batch_latency;
    this.recordFields = { deliveryProtocol: 'Lua', peerName: `Lua via ${protocol.constructor}`, peerAddr: '0.0.0.0' };
  }

  async open(): Promise<DeliveryConnection> {
    const conn = await LuaConnection.open(this.policy(), this.protocol.constructor, this.scope.domain, this.scope.tenant, this.scope.campaign);
    const batched = this.batchSize > 1;
    const logger = this.logger;
    return {
      async deliver(batch: readonly Message[]): Promise<Outcome> {
        const method = batched ? 'send_batch' : 'send';
        try {
          const text = batched ? await conn.sendBatch(batch) : await conn.send(batch[0] as Message);
          return classifyResult({ ok: true, text }, method);
        } catch (error) {
          return classifyResult({ ok: false, error }, method);
        }
      },
      async close(): Promise<void> {
        const err = await conn.close();
        if (err) logger.warn({ err: err.message }, 'error in connection close(); ignored');
      },
    };
  }
}
