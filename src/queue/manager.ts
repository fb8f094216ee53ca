/**
 * The queue manager: finds (or creates) the scheduled queue for a message,
 * accepts it durably, and decides what each delivery outcome means for it —
 * the record to log, and whether the message is removed, retried or expired.
 */
import type { Clock } from './clock.js';
import type { Logger } from '../logging/logger.js';
import type { LuaVM } from '../lua/vm.js';
import type { Spool } from './spool.js';
import type { Outcome } from '../delivery/disposition.js';
import type { Connector } from '../delivery/connector.js';
import { parseEgressPathConfig, parseQueueConfig, type EgressPathConfig, type QueueConfig } from './config.js';
import { parseQueueName, type Message } from './message.js';
import { ReadyQueue, type DeliveryContext, type OutcomeSink } from './ready.js';
import { ScheduledQueue, messageFromRecord, recordFromMessage, type ScheduledQueueHost, type Suspension } from './scheduled.js';
import { decideRetry } from './retry.js';
import { response, type RecordEvent } from '../logging/record.js';
import { EgressPathHandle, QueueConfigHandle } from '../lua/modules/kumo-config.js';
import { LuaConnector } from '../delivery/lua-connector.js';
import { MaildirConnector } from '../delivery/maildir.js';
import { randomUUID } from 'node:crypto';

export interface QueueManagerOptions {
  spool: Spool;
  clock: Clock;
  logger: Logger;
  /** The policy version to use for new work. */
  policy: () => LuaVM;
  /** Log a record about a message (local logs, hooks). */
  log: (msg: Message, event: RecordEvent) => void;
  /** Random numbers for jitter. @defaultValue Math.random */
  rand?: () => number;
}

export interface AdminBounce {
  id: string;
  reason: string;
  queueNames?: string[];
  domain?: string;
  tenant?: string;
  campaign?: string;
  until: number;
  bounced: number;
}

export interface QueueStats {
  name: string;
  scheduled: number;
  ready: number;
  in_flight: number;
  delivered: number;
  failed: number;
  transient_failures: number;
  suspended: string | null;
  ready_queue: string;
}

export class QueueManager implements OutcomeSink, ScheduledQueueHost {
  readonly #scheduled = new Map<string, ScheduledQueue>();
  readonly #pending = new Map<string, Promise<ScheduledQueue>>();
  readonly #ready = new Map<string, ReadyQueue>();
  readonly #pumpSoon = new Set<ScheduledQueue>();
  #pumpScheduled = false;
  readonly bounces: AdminBounce[] = [];
  readonly #o: QueueManagerOptions;
  readonly #rand: () => number;
  #stopping = false;
  readonly totals = { delivered: 0, transfail: 0, fail: 0, expired: 0, admin_bounced: 0 };

  constructor(opts: QueueManagerOptions) {
    this.#o = opts;
    this.#rand = opts.rand ?? Math.random;
  }

  /**
   * Accept a message: resolve its queue, store it, and route it. Resolves
   * once the message is durable (unless `deferSpool`).
   */
  async insert(msg: Message, opts: { deferSpool?: boolean } = {}): Promise<void> {
    if (this.#stopping) throw new Error('the queue manager is stopping');
    const sq = await this.#queueFor(msg.queueName());
    if (this.bounceMatch(sq, msg, false)) return;
    const direct = sq.canTakeDirectly(msg);
    const due = msg.due ?? this.#o.clock.now();
    if (!opts.deferSpool) await this.#o.spool.insert(recordFromMessage(msg, sq.name, due), direct);
    const held = direct ? sq.admitHeld(msg) : null;
    if (held === 'ready') return;
    // Due now but no room in the ready queue: it waits (in memory behind the
    // ready queue, or at rest in the spool) and moves on as soon as room
    // appears (KumoMTA would delay it 0-60 s).
    const delayed = () => this.#log(msg, { type: 'Delayed', response: response(400, `Context: Received, ReadyQueueWasFull. Next due when ${sq.readyQueue.name} has room`), queue: sq.name });
    if (held === 'overflow') return delayed();
    if (direct) await this.#o.spool.reschedule(msg.id, sq.name, due, msg.numAttempts, false);
    sq.noteAtRest(due);
    if (direct || sq.isFullFor(msg)) {
      if (!direct) sq.readyQueue.fullCount++;
      delayed();
    }
  }

  /** At start: every stored message is scheduled again with its attempts and due time. */
  async restore(): Promise<number> {
    await this.#o.spool.releaseAll();
    let total = 0;
    for (const c of await this.#o.spool.counts()) {
      const sq = await this.#queueFor(c.queue);
      sq.restoreAtRest(c.atRest, c.nextDue);
      total += c.atRest;
      sq.pump();
    }
    return total;
  }

  settle(batch: readonly Message[], outcome: Outcome, ctx: DeliveryContext): void {
    const rq = ctx.readyQueue;
    const fields = rq.connector.recordFields;
    const base = {
      site: rq.name,
      peerAddress: { name: fields.peerName, addr: fields.peerAddr },
      deliveryProtocol: fields.deliveryProtocol,
      egressPool: 'unspecified',
      egressSource: 'unspecified',
      sessionId: ctx.sessionId,
    };
    for (const msg of batch) {
      const sq = this.#scheduled.get(msg.queueName()) ?? this.#scheduledByReady(rq);
      if (outcome.kind === 'delivered') {
        this.#log(msg, { ...base, type: 'Delivery', response: outcome.response, queue: sq?.name });
        this.#finish(msg, sq);
        this.totals.delivered++;
        if (sq) sq.delivered++;
      } else if (outcome.kind === 'bounce') {
        this.#log(msg, { ...base, type: 'Bounce', response: outcome.response, queue: sq?.name });
        this.#finish(msg, sq);
        this.totals.fail++;
        if (sq) sq.failed++;
      } else {
        this.#log(msg, { ...base, type: 'TransientFailure', response: outcome.response, queue: sq?.name });
        this.totals.transfail++;
        if (sq) {
          sq.transientFailures++;
          this.#retry(msg, sq);
        }
      }
    }
  }

  onRoom(rq: ReadyQueue): void {
    for (const sq of this.#scheduled.values()) {
      if (sq.readyQueue === rq && sq.waiting > 0) this.#pumpSoon.add(sq);
    }
    if (this.#pumpSoon.size > 0 && !this.#pumpScheduled) {
      this.#pumpScheduled = true;
      setImmediate(() => {
        this.#pumpScheduled = false;
        const list = [...this.#pumpSoon];
        this.#pumpSoon.clear();
        for (const sq of list) sq.pump();
      });
    }
  }

  suspendedAtPromotion(sq: ScheduledQueue, msg: Message, s: Suspension): void {
    this.#log(msg, { type: 'TransientFailure', response: response(451, `KumoMTA internal: scheduled queue is suspended: ${s.reason}`, { class: 4, subject: 4, detail: 4 }), queue: sq.name });
    this.totals.transfail++;
    this.#retry(msg, sq);
  }

  /** Whether `msg` matches an active admin bounce; if so it is bounced and removed. */
  bounceMatch(sq: ScheduledQueue, msg: Message, stored = true): boolean {
    const now = this.#o.clock.now();
    const rule = this.bounces.find((b) => b.until > now && matches(b, sq));
    if (!rule) return false;
    rule.bounced++;
    this.totals.admin_bounced++;
    this.#log(msg, { type: 'AdminBounce', response: response(551, `Administrator bounced with reason: ${rule.reason}`, { class: 5, subject: 7, detail: 1 }), site: 'localhost', queue: sq.name });
    if (stored) this.#finish(msg, sq);
    return true;
  }

  error(err: unknown, what: string): void {
    this.#o.logger.error({ err: err instanceof Error ? err.message : String(err) }, `error ${what}`);
  }

  /** Add an admin bounce: matching queued messages (and new ones until it expires) are bounced. */
  async adminBounce(rule: Omit<AdminBounce, 'id' | 'bounced'>): Promise<AdminBounce> {
    const b: AdminBounce = { ...rule, id: randomUUID(), bounced: 0 };
    this.bounces.push(b);
    for (const sq of this.#scheduled.values()) {
      if (!matches(b, sq)) continue;
      for (const msg of sq.drainOverflow()) this.bounceMatch(sq, msg);
      for (const msg of sq.readyQueue.drain()) {
        if (msg.queueName() === sq.name) this.bounceMatch(sq, msg);
        else sq.readyQueue.insert(msg);
      }
      for (;;) {
        const recs = await this.#o.spool.claimDue(sq.name, Number.MAX_SAFE_INTEGER, 1000);
        if (recs.length === 0) break;
        sq.atRest = Math.max(0, sq.atRest - recs.length);
        for (const rec of recs) {
          const msg = messageFromRecord(rec);
          sq.held++;
          this.bounceMatch(sq, msg);
        }
      }
    }
    return b;
  }

  cancelBounce(id: string): boolean {
    const i = this.bounces.findIndex((b) => b.id === id);
    if (i < 0) return false;
    this.bounces.splice(i, 1);
    return true;
  }

  /** Suspend matching scheduled queues until `until`. */
  suspend(match: { queueNames?: string[]; domain?: string; tenant?: string; campaign?: string }, reason: string, until: number): Suspension {
    const s: Suspension = { id: randomUUID(), reason, until };
    for (const sq of this.#scheduled.values()) {
      if (matches(match, sq)) sq.suspension = s;
    }
    this.#suspensions.push({ ...match, s });
    return s;
  }

  readonly #suspensions: Array<{ queueNames?: string[]; domain?: string; tenant?: string; campaign?: string; s: Suspension }> = [];

  /** Active suspensions. */
  suspensions(): Suspension[] {
    const now = this.#o.clock.now();
    return this.#suspensions.filter((x) => x.s.until > now).map((x) => x.s);
  }

  resume(id: string): boolean {
    let found = false;
    for (const sq of this.#scheduled.values()) {
      if (sq.suspension?.id === id) {
        sq.suspension = null;
        found = true;
        sq.pump();
      }
    }
    const i = this.#suspensions.findIndex((x) => x.s.id === id);
    if (i >= 0) this.#suspensions.splice(i, 1);
    return found || i >= 0;
  }

  stats(): QueueStats[] {
    return [...this.#scheduled.values()].map((sq) => ({
      name: sq.name,
      scheduled: sq.waiting,
      ready: sq.readyQueue.size,
      in_flight: sq.readyQueue.inFlight,
      delivered: sq.delivered,
      failed: sq.failed,
      transient_failures: sq.transientFailures,
      suspended: sq.suspension && sq.suspension.until > this.#o.clock.now() ? sq.suspension.reason : null,
      ready_queue: sq.readyQueue.name,
    }));
  }

  /**
   * The policy changed: resolve every queue's config and egress path again
   * with the new version. A queue whose protocol changed moves to a new
   * ready queue; messages already in the old one finish there.
   */
  async refreshConfigs(): Promise<void> {
    const fresh = new Map<string, ReadyQueue>();
    for (const sq of this.#scheduled.values()) {
      try {
        const config = await this.#resolveQueueConfig(sq.name, sq.parts);
        sq.config = config;
        const rq = await this.#readyQueueFor(config, sq.parts, fresh);
        sq.readyQueue = rq;
        sq.pump();
      } catch (err) {
        this.error(err, `refreshing the config of queue ${sq.name}; it keeps its previous config`);
      }
    }
  }

  readyQueues(): ReadyQueue[] {
    return [...this.#ready.values()];
  }

  scheduledQueues(): ScheduledQueue[] {
    return [...this.#scheduled.values()];
  }

  /** Stop: no new sessions; running sessions finish their batch and close. */
  async stop(): Promise<void> {
    this.#stopping = true;
    for (const sq of this.#scheduled.values()) sq.stop();
    await Promise.all([...this.#ready.values()].map((rq) => rq.stop()));
  }

  #log(msg: Message, event: RecordEvent): void {
    try {
      this.#o.log(msg, event);
    } catch (err) {
      this.error(err, 'logging a record');
    }
  }

  /** The message is done: forget it. */
  #finish(msg: Message, sq: ScheduledQueue | undefined): void {
    sq?.release();
    this.#o.spool.remove(msg.id).catch((err: unknown) => this.error(err, `removing ${msg.id} from the spool`));
  }

  #retry(msg: Message, sq: ScheduledQueue): void {
    const now = this.#o.clock.now();
    const decision = decideRetry(sq.config, msg, now, this.#rand);
    msg.numAttempts = decision.attempts;
    if (decision.kind === 'expire') {
      this.#log(msg, { type: 'Expiration', response: response(551, decision.content, { class: 5, subject: 4, detail: 7 }), queue: sq.name });
      this.totals.expired++;
      this.#finish(msg, sq);
      return;
    }
    msg.due = decision.due;
    sq.release();
    this.#o.spool.reschedule(msg.id, sq.name, decision.due, decision.attempts, false).then(
      () => sq.noteAtRest(decision.due),
      (err: unknown) => this.error(err, `rescheduling ${msg.id}`),
    );
  }

  #scheduledByReady(rq: ReadyQueue): ScheduledQueue | undefined {
    for (const sq of this.#scheduled.values()) if (sq.readyQueue === rq) return sq;
    return undefined;
  }

  async #queueFor(name: string): Promise<ScheduledQueue> {
    const existing = this.#scheduled.get(name);
    if (existing) return existing;
    let pending = this.#pending.get(name);
    if (!pending) {
      pending = this.#createQueue(name).finally(() => this.#pending.delete(name));
      this.#pending.set(name, pending);
    }
    return pending;
  }

  async #createQueue(name: string): Promise<ScheduledQueue> {
    const parts = parseQueueName(name);
    const config = await this.#resolveQueueConfig(name, parts);
    const rq = await this.#readyQueueFor(config, parts);
    const sq = new ScheduledQueue(name, parts, config, rq, this.#o.spool, this.#o.clock, this);
    for (const x of this.#suspensions) if (x.s.until > this.#o.clock.now() && matches(x, sq)) sq.suspension = x.s;
    this.#scheduled.set(name, sq);
    return sq;
  }

  async #resolveQueueConfig(name: string, parts: ReturnType<typeof parseQueueName>): Promise<Readonly<QueueConfig>> {
    const vm = this.#o.policy();
    const r = await vm.fire('get_queue_config', [parts.domain, parts.tenant ?? null, parts.campaign ?? null, parts.routingDomain ?? null], 'refs');
    if (!r.handled) return parseQueueConfig({});
    const v = r.values[0];
    if (v instanceof QueueConfigHandle) return v.config;
    throw new Error(`get_queue_config for queue '${name}' must return kumo.make_queue_config{...}, got ${typeof v}`);
  }

  async #readyQueueFor(config: Readonly<QueueConfig>, parts: ReturnType<typeof parseQueueName>, refreshed?: Map<string, ReadyQueue>): Promise<ReadyQueue> {
    const protocol = config.protocol;
    const site = parts.routingDomain ?? parts.domain;
    let name: string;
    if (protocol.kind === 'custom_lua') name = `unspecified->${site}@lua:${protocol.constructor}`;
    else if (protocol.kind === 'maildir') name = `unspecified->maildir:${protocol.maildir_path}`;
    else throw new Error(`queue for domain '${parts.domain}' uses the SMTP protocol, which sluice does not deliver; return a custom_lua or maildir_path protocol from get_queue_config`);
    const existing = refreshed ? refreshed.get(name) : this.#ready.get(name);
    if (existing) return existing;
    const path = await this.#resolvePathConfig(site, name);
    const current = this.#ready.get(name);
    if (refreshed && current && sameProtocol(current, protocol)) {
      current.pathConfig = path;
      refreshed.set(name, current);
      return current;
    }
    let connector: Connector;
    if (protocol.kind === 'custom_lua') {
      connector = new LuaConnector(protocol, { domain: parts.domain, tenant: parts.tenant, campaign: parts.campaign }, this.#o.policy, this.#o.logger);
    } else connector = new MaildirConnector(protocol);
    const again = refreshed ? refreshed.get(name) : this.#ready.get(name);
    if (again) return again;
    const rq = new ReadyQueue(name, site, connector, path, this.#o.clock, this);
    this.#ready.set(name, rq);
    refreshed?.set(name, rq);
    return rq;
  }

  async #resolvePathConfig(site: string, readyName: string): Promise<Readonly<EgressPathConfig>> {
    const vm = this.#o.policy();
    const r = await vm.fire('get_egress_path_config', [site, 'unspecified', site], 'refs');
    if (!r.handled) return parseEgressPathConfig({});
    const v = r.values[0];
    if (v instanceof EgressPathHandle) return v.config;
    throw new Error(`get_egress_path_config for '${readyName}' must return kumo.make_egress_path{...}`);
  }
}

function sameProtocol(rq: ReadyQueue, p: QueueConfig['protocol']): boolean {
  const c = rq.connector;
  if (p.kind === 'custom_lua') return c instanceof LuaConnector && JSON.stringify(c.protocol) === JSON.stringify(p);
  if (p.kind === 'maildir') return c instanceof MaildirConnector && JSON.stringify(c.protocol) === JSON.stringify(p);
  return false;
}

function matches(m: { queueNames?: string[]; domain?: string; tenant?: string; campaign?: string }, sq: ScheduledQueue): boolean {
  if (m.queueNames && !m.queueNames.includes(sq.name)) return false;
  if (m.domain !== undefined && m.domain !== sq.parts.domain) return false;
  if (m.tenant !== undefined && m.tenant !== sq.parts.tenant) return false;
  if (m.campaign !== undefined && m.campaign !== sq.parts.campaign) return false;
  return true;
}
