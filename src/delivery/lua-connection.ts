/**
 * A connection that a policy defines in Lua: the constructor event
 * (`make.<name>`) returns a table with `send` (or `send_batch`) and an
 * optional `close`. This class calls them; what each outcome means for the
 * queue is decided in disposition.ts.
 */
import { LuaError, SluiceError } from '../errors.js';
import { LuaRef, type LuaVM } from '../lua/vm.js';
import { MessageHandle } from '../lua/modules/message.js';
import type { Message } from '../queue/message.js';

export class LuaConnection {
  readonly #vm: LuaVM;
  readonly #conn: LuaRef;
  readonly #constructorName: string;
  #closed = false;

  private constructor(vm: LuaVM, conn: LuaRef, constructorName: string) {
    this.#vm = vm;
    this.#conn = conn;
    this.#constructorName = constructorName;
  }

  /** Call the constructor event with `(domain, tenant, campaign)`. */
  static async open(vm: LuaVM, constructorName: string, domain: string, tenant?: string, campaign?: string): Promise<LuaConnection> {
    if (!vm.hasHandler(constructorName)) {
      throw new SluiceError('SLUICE_ERR_NO_HANDLER', `no handler is registered for the constructor event '${constructorName}'`);
    }
    const { values } = await vm.fire(constructorName, [domain, tenant ?? null, campaign ?? null], 'refs');
    const conn = values[0];
    if (!(conn instanceof LuaRef) || !vm.isTable(conn)) {
      throw new LuaError(`invalid connection object: ${constructorName} must return a table, got ${describe(conn)}`, '', 'SLUICE_ERR_LUA_BAD_RETURN');
    }
    return new LuaConnection(vm, conn, constructorName);
  }

  get vm(): LuaVM {
    return this.#vm;
  }

  /** `connection:send(msg)`; resolves to the disposition text the policy returned. */
  async send(message: Message): Promise<string> {
    const values = await this.#vm.callMethod(
      { label: `sender:send method of ${this.#constructorName}`, event: this.#constructorName },
      this.#conn, 'send', [new MessageHandle(this.#vm, message)],
    );
    return dispositionText(values[0], 'send');
  }

  /** `connection:send_batch(msgs)`, with `msgs` an array even for one message. */
  async sendBatch(messages: readonly Message[]): Promise<string> {
    const values = await this.#vm.callMethod(
      { label: `sender:send_batch method of ${this.#constructorName}`, event: this.#constructorName },
      this.#conn, 'send_batch', [messages.map((m) => new MessageHandle(this.#vm, m))],
    );
    return dispositionText(values[0], 'send_batch');
  }

  /** `connection:close()` if the table has one; errors are returned, not thrown. */
  async close(): Promise<Error | null> {
    if (this.#closed) return null;
    this.#closed = true;
    try {
      if (this.#vm.hasMethod(this.#conn, 'close')) {
        await this.#vm.callMethod({ label: `sender:close method of ${this.#constructorName}`, event: this.#constructorName }, this.#conn, 'close', []);
      }
      return null;
    } catch (err) {
      return err as Error;
    } finally {
      this.#conn.release();
    }
  }
}

/** A returned string or number is the disposition; anything else is an error, as in KumoMTA. */
function dispositionText(v: unknown, method: string): string {
  if (typeof v === 'string') return v;
  if (typeof v === 'number') return String(v);
  throw new LuaError(`sender:${method} method failed: error converting Lua ${describe(v)} to String`, '', 'SLUICE_ERR_LUA_BAD_RETURN');
}

function describe(v: unknown): string {
  if (v === null || v === undefined) return 'nil';
  if (v instanceof LuaRef) return 'table';
  return typeof v;
}
