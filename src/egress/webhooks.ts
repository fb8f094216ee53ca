/**
 * Egress webhooks: each follows one event log and POSTs its messages to a
 * destination, one message per request, in offset order, at least once.
 *
 * - The cursor (`next_deliver_offset`) moves only on a 2xx reply, so a
 *   failing message holds the later ones back (klev's model).
 * - Failures are retried with exponential backoff and jitter: 1 s doubling
 *   up to 5 minutes, ±20 %, per attempt.
 * - A webhook that has failed without a success for longer than the
 *   configured age goes inactive with an `inactive_reason`; re-activating
 *   it resumes from the same cursor.
 * - Every request carries Standard Webhooks headers (`webhook-id`
 *   `<webhook_id>_<offset>`, stable across retries; `webhook-timestamp`;
 *   `webhook-signature` with one entry per valid secret) and klev's
 *   `X-Klev-Signature: t=...;v1=...`.
 * - A new webhook starts at the log's next offset: it delivers what is
 *   published after it was created.
 */
import http from 'node:http';
import { Pool } from 'undici';
import type { Logger } from '../logging/logger.js';
import { LogError, type EventLogStore, type LogMessage } from './log-store.js';
import { prefixedId } from './ksuid.js';
import { KLEV_SIGNATURE_HEADER, klevSignatureHeader, newSecret, standardWebhookHeaders } from './signature.js';

export type Payload = 'message' | 'key' | 'value';

export interface EgressWebhook {
  webhook_id: string;
  log_id: string;
  destination: string;
  payload: Payload;
  metadata: string;
}

export interface WebhookStatus {
  webhook_id: string;
  active: boolean;
  inactive_reason?: string;
  available_offset: number;
  next_deliver_offset: number;
  next_offset: number;
  deliver_offset?: number;
  deliver_time?: number;
  deliver_resp?: string;
  deliver_error?: string;
  next_deliver_time?: number;
}

interface Row {
  hook: EgressWebhook;
  secret: string;
  old_secret: string | null;
  /** unix ms after which the old secret no longer signs */
  old_secret_expires: number;
  active: boolean;
  inactive_reason: string | null;
  next_deliver_offset: number;
  deliver_offset: number | null;
  deliver_time: number | null;
  deliver_resp: string | null;
  deliver_error: string | null;
  next_deliver_time: number | null;
  /** unix ms of the first failure since the last success */
  failing_since: number | null;
  attempts: number;
}

export interface WebhookOptions {
  /** A webhook failing for longer than this goes inactive, ms. @defaultValue 3 days */
  maxFailureAgeMs?: number;
  /** Request timeout, ms. @defaultValue 30 s */
  timeoutMs?: number;
  /** First retry delay, ms. @defaultValue 1 s */
  retryBaseMs?: number;
  /** Longest retry delay, ms. @defaultValue 5 min */
  retryMaxMs?: number;
  logger: Logger;
}

export class EgressWebhooks {
  readonly #rows = new Map<string, Row>();
  readonly #runners = new Map<string, Runner>();
  readonly #stmts;
  readonly #o: Required<Omit<WebhookOptions, 'logger'>> & { logger: Logger };
  #closed = false;

  constructor(
    readonly logs: EventLogStore,
    opts: WebhookOptions,
  ) {
    this.#o = { maxFailureAgeMs: 3 * 86_400_000, timeoutMs: 30_000, retryBaseMs: 1000, retryMaxMs: 300_000, ...opts };
    const db = logs.db;
    db.exec('CREATE TABLE IF NOT EXISTS egress_webhooks (webhook_id TEXT PRIMARY KEY, state TEXT NOT NULL, created INTEGER NOT NULL)');
    this.#stmts = {
      upsert: db.prepare('INSERT INTO egress_webhooks (webhook_id, state, created) VALUES (?, ?, ?) ON CONFLICT(webhook_id) DO UPDATE SET state = excluded.state'),
      remove: db.prepare('DELETE FROM egress_webhooks WHERE webhook_id = ?'),
      all: db.prepare<[], { webhook_id: string; state: string }>('SELECT webhook_id, state FROM egress_webhooks ORDER BY rowid'),
    };
    for (const r of this.#stmts.all.all()) this.#rows.set(r.webhook_id, JSON.parse(r.state) as Row);
  }

  /** Start delivering for every active webhook. */
  start(): void {
    for (const row of this.#rows.values()) if (row.active) this.#run(row);
  }

  async create(input: { log_id: string; destination: string; payload: Payload; metadata: string }): Promise<EgressWebhook & { secret: string }> {
    if (!this.logs.has(input.log_id)) throw new LogError(400, 'egress-webhook-log-id-field-invalid', `log ${input.log_id} not found`);
    // klev's field order (the seed's output): webhook_id, metadata, log_id, destination, payload
    const hook: EgressWebhook = { webhook_id: prefixedId('ewh'), metadata: input.metadata, log_id: input.log_id, destination: input.destination, payload: input.payload };
    const row: Row = {
      hook, secret: newSecret(), old_secret: null, old_secret_expires: 0, active: true, inactive_reason: null,
      next_deliver_offset: this.logs.nextOffset(input.log_id), deliver_offset: null, deliver_time: null, deliver_resp: null,
      deliver_error: null, next_deliver_time: null, failing_since: null, attempts: 0,
    };
    await this.#save(row);
    this.#rows.set(hook.webhook_id, row);
    this.#run(row);
    return { ...hook, secret: row.secret };
  }

  list(metadata?: string): EgressWebhook[] {
    return [...this.#rows.values()].map((r) => r.hook).filter((h) => metadata === undefined || h.metadata === metadata);
  }

  get(id: string): EgressWebhook {
    return this.#row(id).hook;
  }

  async update(id: string, changes: { metadata?: string; destination?: string; active?: boolean }): Promise<EgressWebhook> {
    const row = this.#row(id);
    // Only a new destination or a change of state interrupts the delivery loop (a metadata change must not abort a request in flight).
    const wake = (changes.destination !== undefined && changes.destination !== row.hook.destination) || (changes.active !== undefined && changes.active !== row.active);
    if (changes.metadata !== undefined) row.hook = { ...row.hook, metadata: changes.metadata };
    if (changes.destination !== undefined) row.hook = { ...row.hook, destination: changes.destination };
    if (changes.active === true && !row.active) {
      if (!this.logs.has(row.hook.log_id)) throw new LogError(400, 'egress-webhook-log-id-field-invalid', `log ${row.hook.log_id} no longer exists`);
      row.active = true;
      row.inactive_reason = null;
      row.failing_since = null;
      row.attempts = 0;
    } else if (changes.active === false && row.active) {
      row.active = false;
      row.inactive_reason = 'deactivated by request';
    }
    await this.#save(row);
    if (wake) this.#runners.get(id)?.refresh();
    if (row.active) this.#run(row);
    return row.hook;
  }

  /** A new secret; the old one keeps signing for `expireSeconds`. */
  async rotate(id: string, expireSeconds: number): Promise<EgressWebhook & { secret: string }> {
    const row = this.#row(id);
    row.old_secret = expireSeconds > 0 ? row.secret : null;
    row.old_secret_expires = expireSeconds > 0 ? Date.now() + expireSeconds * 1000 : 0;
    row.secret = newSecret();
    await this.#save(row);
    return { ...row.hook, secret: row.secret };
  }

  async delete(id: string): Promise<EgressWebhook> {
    const row = this.#row(id);
    await this.#runners.get(id)?.stop(); // before the row is removed: a delivery finishing now saves the row
    this.#runners.delete(id);
    this.#rows.delete(id);
    await this.logs.commit.run(() => this.#stmts.remove.run(id));
    return row.hook;
  }

  status(id: string): WebhookStatus {
    const r = this.#row(id);
    const next = this.logs.has(r.hook.log_id) ? this.logs.nextOffset(r.hook.log_id) : r.next_deliver_offset;
    const out: WebhookStatus = {
      webhook_id: id,
      active: r.active,
      available_offset: Math.max(0, next - 1),
      next_deliver_offset: r.next_deliver_offset,
      next_offset: r.next_deliver_offset,
    };
    if (r.inactive_reason) out.inactive_reason = r.inactive_reason;
    if (r.deliver_offset !== null) out.deliver_offset = r.deliver_offset;
    if (r.deliver_time !== null) out.deliver_time = r.deliver_time;
    if (r.deliver_resp !== null) out.deliver_resp = r.deliver_resp;
    if (r.deliver_error !== null) out.deliver_error = r.deliver_error;
    if (r.next_deliver_time !== null) out.next_deliver_time = r.next_deliver_time;
    return out;
  }

  /** Secrets that sign now: the current one, and the previous one during its grace period. */
  signingSecrets(row: Row): string[] {
    return row.old_secret && row.old_secret_expires > Date.now() ? [row.secret, row.old_secret] : [row.secret];
  }

  async close(): Promise<void> {
    this.#closed = true;
    await Promise.all([...this.#runners.values()].map((r) => r.stop()));
    this.#runners.clear();
  }

  #row(id: string): Row {
    const r = this.#rows.get(id);
    if (!r) throw new LogError(404, 'egress-webhook-not-found', `egress webhook ${id} not found`);
    return r;
  }

  #save(row: Row): Promise<void> {
    return this.logs.commit.run(() => this.#stmts.upsert.run(row.hook.webhook_id, JSON.stringify(row), Date.now()));
  }

  #run(row: Row): void {
    if (this.#closed || this.#runners.has(row.hook.webhook_id)) return;
    const runner = new Runner(row, this, this.#o, (r) => this.#save(r));
    this.#runners.set(row.hook.webhook_id, runner);
    void runner.done.then(() => {
      if (this.#runners.get(row.hook.webhook_id) === runner) this.#runners.delete(row.hook.webhook_id);
    });
  }
}

/** How often a delivering webhook writes its cursor, ms. */
const CURSOR_SAVE_MS = 100;

/** The delivery loop of one webhook. */
class Runner {
  readonly done: Promise<void>;
  #stopped = false;
  #abort = new AbortController();
  #pool: Pool | null = null;
  #origin = '';
  #lastSave = 0;
  #unsaved = false;
  #saveTimer: NodeJS.Timeout | null = null;

  constructor(
    private readonly row: Row,
    private readonly hooks: EgressWebhooks,
    private readonly o: Required<Omit<WebhookOptions, 'logger'>> & { logger: Logger },
    private readonly save: (row: Row) => Promise<void>,
  ) {
    this.done = this.#loop().catch((err: unknown) => o.logger.error({ webhook_id: row.hook.webhook_id, err: (err as Error).message }, 'egress webhook loop failed'));
  }

  /** The webhook changed (destination, active): pick it up. */
  refresh(): void {
    if (!this.row.active) void this.stop();
    this.#abort.abort();
    this.#abort = new AbortController();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    this.#abort.abort();
    await this.done;
    if (this.#unsaved) await this.#saveNow();
    await this.#pool?.close().catch(() => undefined);
  }

  /**
   * After a success the cursor is written at most every CURSOR_SAVE_MS, not
   * per message: a durable write per message would cap one webhook at the
   * disk's fsync rate. Delivery is at least once, so after a crash the
   * messages delivered since the last write are sent again; a clean stop
   * writes the cursor.
   */
  #saveSoon(): Promise<void> | undefined {
    this.#unsaved = true;
    if (Date.now() - this.#lastSave >= CURSOR_SAVE_MS) return this.#saveNow();
    this.#saveTimer ??= setTimeout(() => {
      this.#saveTimer = null;
      if (this.#unsaved && !this.#stopped) void this.#saveNow().catch(() => undefined);
    }, CURSOR_SAVE_MS);
    return undefined;
  }

  #saveNow(): Promise<void> {
    if (this.#saveTimer) clearTimeout(this.#saveTimer);
    this.#saveTimer = null;
    this.#unsaved = false;
    this.#lastSave = Date.now();
    return this.save(this.row);
  }

  async #loop(): Promise<void> {
    const { logs } = this.hooks;
    const row = this.row;
    let buffer: LogMessage[] = [];
    while (!this.#stopped && row.active) {
      if (!logs.has(row.hook.log_id)) {
        row.active = false;
        row.inactive_reason = `log ${row.hook.log_id} was deleted`;
        await this.#saveNow();
        return;
      }
      if (buffer.length === 0 || buffer[0]!.offset < row.next_deliver_offset) {
        buffer = logs.read(row.hook.log_id, row.next_deliver_offset, 256).messages;
      }
      const msg = buffer[0];
      if (!msg) {
        await logs.waitForPublish(row.hook.log_id, 60_000, this.#abort.signal);
        continue;
      }
      const ok = await this.#deliver(msg);
      if (ok) {
        buffer.shift();
        continue;
      }
      if (!row.active || this.#stopped) return;
      const delay = Math.min(this.o.retryBaseMs * 2 ** Math.min(row.attempts - 1, 30), this.o.retryMaxMs);
      const jittered = Math.round(delay * (0.8 + Math.random() * 0.4));
      row.next_deliver_time = Math.floor((Date.now() + jittered) / 1000);
      await this.#saveNow();
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, jittered);
        this.#abort.signal.addEventListener('abort', () => {
          clearTimeout(t);
          resolve();
        }, { once: true });
      });
    }
  }

  async #deliver(msg: LogMessage): Promise<boolean> {
    const row = this.row;
    const hook = row.hook;
    const { body, contentType } = payloadBody(hook.payload, msg);
    const t = Math.floor(Date.now() / 1000);
    const secrets = this.hooks.signingSecrets(row);
    const headers: Record<string, string> = {
      'content-type': contentType,
      [KLEV_SIGNATURE_HEADER]: klevSignatureHeader(secrets, t, body),
      ...standardWebhookHeaders(`${hook.webhook_id}_${msg.offset}`, secrets, t, body),
    };
    const now = Date.now();
    row.deliver_offset = msg.offset;
    row.deliver_time = Math.floor(now / 1000);
    try {
      const url = new URL(hook.destination);
      const res = await this.#poolFor(url).request({
        method: 'POST',
        path: `${url.pathname}${url.search}`,
        headers,
        body,
        headersTimeout: this.o.timeoutMs,
        bodyTimeout: this.o.timeoutMs,
        signal: this.#abort.signal,
      });
      await res.body.dump({ limit: 64 * 1024 }).catch(() => undefined);
      row.deliver_resp = formatResponse(res.statusCode, res.headers);
      if (res.statusCode >= 200 && res.statusCode < 300) {
        row.deliver_error = null;
        row.next_deliver_offset = msg.offset + 1;
        row.next_deliver_time = row.deliver_time;
        row.failing_since = null;
        row.attempts = 0;
        await this.#saveSoon();
        return true;
      }
      row.deliver_error = `the destination answered ${res.statusCode}`;
    } catch (err) {
      if (this.#stopped) return false;
      row.deliver_resp = null;
      row.deliver_error = (err as Error).message;
    }
    row.attempts++;
    row.failing_since ??= now;
    if (now - row.failing_since > this.o.maxFailureAgeMs) {
      row.active = false;
      row.inactive_reason = `deliveries failing since ${new Date(row.failing_since).toISOString()}: ${row.deliver_error}`;
      this.o.logger.warn({ webhook_id: hook.webhook_id, reason: row.inactive_reason }, 'egress webhook made inactive');
      await this.#saveNow();
    }
    return false;
  }

  #poolFor(url: URL): Pool {
    if (this.#pool && this.#origin === url.origin) return this.#pool;
    void this.#pool?.close().catch(() => undefined);
    this.#origin = url.origin;
    this.#pool = new Pool(url.origin, { connections: 1, pipelining: 1 });
    return this.#pool;
  }
}

/** The request body for a payload type: the klev GetOut JSON, or the raw key or value. */
export function payloadBody(payload: Payload, msg: LogMessage): { body: Buffer; contentType: string } {
  if (payload === 'key') return { body: msg.key ?? Buffer.alloc(0), contentType: 'application/octet-stream' };
  if (payload === 'value') return { body: msg.value ?? Buffer.alloc(0), contentType: 'application/octet-stream' };
  const out: Record<string, unknown> = { encoding: 'base64', offset: msg.offset, time: msg.time };
  if (msg.key !== null) out.key = Buffer.from(msg.key).toString('base64');
  if (msg.value !== null) out.value = Buffer.from(msg.value).toString('base64');
  return { body: Buffer.from(JSON.stringify(out)), contentType: 'application/json' };
}

/** `HTTP/1.1 200 OK\r\nContent-Length: 0\r\n...\r\n\r\n`, as klev shows the last reply. */
export function formatResponse(status: number, headers: Record<string, string | string[] | undefined>): string {
  const lines = [`HTTP/1.1 ${status} ${http.STATUS_CODES[status] ?? ''}`.trimEnd()];
  for (const [k, v] of Object.entries(headers)) {
    if (v === undefined) continue;
    const name = k.split('-').map((p) => p.charAt(0).toUpperCase() + p.slice(1)).join('-');
    for (const x of Array.isArray(v) ? v : [v]) lines.push(`${name}: ${x}`);
  }
  return `${lines.join('\r\n')}\r\n\r\n`;
}
