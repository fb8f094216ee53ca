/**
 * The engine: a policy, a spool, the queues and the loggers, started and
 * closed in a fixed order. The daemon adds the HTTP API, signals and reload
 * on top; tests drive the engine directly.
 *
 * Start: policy (top level, pre_init, init) → spool → loggers → queues
 * (restored from the spool). Close: stop the queues (sessions finish the
 * batch in hand and close their connections) → flush the loggers → close
 * the spool.
 */
import { LuaVM } from './lua/vm.js';
import { LogHub } from './logging/hooks.js';
import { createLogger, type Logger } from './logging/logger.js';
import { response, type JsonLogRecord } from './logging/record.js';
import { systemClock, type Clock } from './queue/clock.js';
import { QueueManager } from './queue/manager.js';
import { Message } from './queue/message.js';
import type { Spool } from './queue/spool.js';
import { WorkerSpool } from './queue/worker-spool.js';
import { SluiceError } from './errors.js';
import type { LuaServices } from './lua/modules/sluice.js';
import type { RecordEvent } from './logging/record.js';

export interface EngineOptions {
  policyPath: string;
  dataDir: string;
  clock?: Clock;
  logger?: Logger;
  instructionLimit?: number;
  rand?: () => number;
  /** Use this spool instead of opening the SQLite one in dataDir. */
  spool?: Spool;
  /** Host services for the policy's `require 'sluice'`. */
  services?: LuaServices;
}

export class Engine {
  #vm: LuaVM;
  readonly spool: Spool;
  readonly manager: QueueManager;
  readonly hub: LogHub;
  readonly clock: Clock;
  readonly logger: Logger;
  #closing: Promise<void> | null = null;
  readonly #recordListeners: Array<(msg: Message, event: RecordEvent) => void> = [];

  private constructor(vm: LuaVM, spool: Spool, opts: EngineOptions, logger: Logger) {
    this.#vm = vm;
    this.spool = spool;
    this.clock = opts.clock ?? systemClock;
    this.logger = logger;
    const policy = () => this.#vm;
    this.manager = new QueueManager({
      spool,
      clock: this.clock,
      logger,
      policy,
      rand: opts.rand,
      log: (msg, event) => this.#record(msg, { ...event, when: event.when ?? this.clock.now() }),
    });
    this.hub = new LogHub({
      settings: vm.settings,
      policy,
      insert: (msg, o) => this.manager.insert(msg, o),
      logger,
      now: () => this.clock.now(),
    });
  }

  static async start(opts: EngineOptions): Promise<Engine> {
    const logger = opts.logger ?? createLogger();
    const vm = await LuaVM.load({ policyPath: opts.policyPath, logger, instructionLimit: opts.instructionLimit, services: opts.services });
    await vm.startup();
    const spool = opts.spool ?? (await WorkerSpool.open(opts.dataDir));
    const engine = new Engine(vm, spool, opts, logger);
    let restored: number;
    try {
      restored = await engine.manager.restore();
    } catch (err) {
      // Do not leave the spool open (and the data directory locked) behind a failed start.
      await engine.close().catch(() => undefined);
      throw err;
    }
    if (restored > 0) logger.info({ messages: restored }, 'restored queued messages from the spool');
    return engine;
  }

  /** The policy version used for new work. */
  get policy(): LuaVM {
    return this.#vm;
  }

  /** Use a new policy version for new work (in-flight work finishes on the old one). */
  setPolicy(vm: LuaVM): void {
    this.#vm = vm;
  }

  /** Accept a message (Reception record, then queued). Resolves once durable. */
  async inject(init: { sender: string; recipients: string[]; data: string | Uint8Array; meta?: Record<string, unknown> }, receptionProtocol = 'HTTP'): Promise<Message> {
    this.#assertRunning();
    const msg = new Message({ ...init, meta: { reception_protocol: receptionProtocol, ...init.meta }, created: this.clock.now() });
    await this.manager.insert(msg);
    this.#record(msg, { type: 'Reception', response: response(250, ''), when: this.clock.now() });
    return msg;
  }

  /** Call `fn` for every record sluice makes (after the loggers had it). */
  onRecord(fn: (msg: Message, event: RecordEvent) => void): void {
    this.#recordListeners.push(fn);
  }

  #record(msg: Message, event: RecordEvent): void {
    this.hub.log(msg, event);
    for (const fn of this.#recordListeners) {
      try {
        fn(msg, event);
      } catch (err) {
        this.logger.error({ err: (err as Error).message }, 'record listener failed');
      }
    }
  }

  /** Offer log records made elsewhere to the log hooks; resolves with how many hook messages were queued. */
  publishRecords(records: readonly JsonLogRecord[]): Promise<number> {
    this.#assertRunning();
    return this.hub.submit(records);
  }

  close(): Promise<void> {
    this.#closing ??= (async () => {
      const errors: unknown[] = [];
      for (const step of [() => this.manager.stop(), () => this.hub.close(), () => this.spool.close()]) {
        try {
          await step();
        } catch (err) {
          errors.push(err);
          this.logger.error({ err: err instanceof Error ? err.message : String(err) }, 'error while closing');
        }
      }
      if (errors.length > 0) throw errors[0];
    })();
    return this.#closing;
  }

  #assertRunning(): void {
    if (this.#closing) throw new SluiceError('SLUICE_ERR_SHUTTING_DOWN', 'sluice is shutting down and accepts no new work');
  }
}
