/**
 * Event logs over HTTP, on klev's paths and JSON shapes (klev-facts §1), so
 * a klev client pointed at sluice works:
 *
 *   POST   /logs                     {metadata?, compacting?, trim_seconds?, trim_size?, trim_count?, compact_seconds?, expire_seconds?}
 *   GET    /logs[?metadata=]         {"logs": [...]}
 *   GET    /log/{id}  PATCH /log/{id}  DELETE /log/{id}  GET /log/{id}/stats
 *   POST   /messages/{log_id}        {encoding, messages: [{time?, key?, value?}]}  → {"next_offset": N}
 *   POST   /message/{log_id}         {encoding, time?, key?, value?}                → {"next_offset": N}
 *   GET    /messages/{log_id}?offset=&len=&poll=&encoding=   → {next_offset, encoding, messages}
 *   GET    /message/{log_id}[?offset=&encoding=]             → {encoding, offset, time, key?, value?}
 *
 * Errors are `{"code": "...", "message": "..."}` with kebab-case codes.
 */
import type { Route } from '../server.js';
import { HttpError } from '../server.js';
import { LogError, type EventLog, type EventLogStore, type LogMessage, type NewMessage } from '../../egress/log-store.js';
import { bad, boolean, kind, object, string, type Json } from '../validate.js';

const LOG_FIELDS = ['metadata', 'compacting', 'trim_seconds', 'trim_size', 'trim_count', 'compact_seconds', 'expire_seconds'];
const NUMBER_FIELDS = ['trim_seconds', 'trim_size', 'trim_count', 'compact_seconds', 'expire_seconds'] as const;
/** Most messages in one publish or one consume. */
export const MAX_BATCH = 10_000;
/** Longest long-poll wait, ms. */
export const MAX_POLL_MS = 60_000;

/** Run a handler, turning store errors into HTTP errors. */
export async function klev<T>(fn: () => T | Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof LogError) throw new HttpError(err.status, err.code, err.message);
    throw err;
  }
}

export function logJson(l: EventLog): Json {
  const out: Json = { log_id: l.log_id, metadata: l.metadata, compacting: l.compacting };
  for (const k of NUMBER_FIELDS) if (l[k] !== undefined) out[k] = l[k];
  return out;
}

function logSettings(body: unknown, allowCompacting: boolean): Json {
  const o = object(body ?? {}, '', allowCompacting ? LOG_FIELDS : LOG_FIELDS.filter((f) => f !== 'compacting'));
  const out: Json = {};
  const metadata = string(o, 'metadata', '');
  if (metadata !== undefined) out.metadata = metadata;
  const compacting = boolean(o, 'compacting', '');
  if (compacting !== undefined) out.compacting = compacting;
  for (const k of NUMBER_FIELDS) {
    const v = o[k];
    if (v === undefined || v === null) continue;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) throw bad(k, `expected a non-negative integer, got ${kind(v)}`);
    out[k] = v;
  }
  if ((out.compact_seconds !== undefined || out.expire_seconds !== undefined) && allowCompacting && out.compacting !== true) {
    throw new HttpError(400, 'log-compact-not-allowed', 'compact_seconds and expire_seconds need compacting: true');
  }
  return out;
}

type Encoding = 'string' | 'base64';

function encodingOf(v: unknown, field = 'encoding'): Encoding {
  if (v === undefined || v === null || v === '') return 'string';
  if (v !== 'string' && v !== 'base64') throw new HttpError(400, 'message-encoding-invalid', `${field}: expected "string" or "base64", got ${JSON.stringify(v)}`);
  return v;
}

function decode(v: unknown, enc: Encoding, field: string): Buffer | null {
  if (v === undefined || v === null) return null;
  if (typeof v !== 'string') throw bad(field, `expected a string, got ${kind(v)}`);
  if (enc === 'string') return Buffer.from(v, 'utf8');
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(v) || v.length % 4 === 1) throw new HttpError(400, 'message-encoding-invalid', `${field}: not valid base64`);
  return Buffer.from(v, 'base64');
}

function parseMessage(o: Json, enc: Encoding, field: string): NewMessage {
  const time = o.time;
  if (time !== undefined && time !== null && (typeof time !== 'number' || !Number.isInteger(time) || time < 0)) throw bad(`${field}time`, `expected unix microseconds, got ${kind(time)}`);
  return { time: (time as number | undefined) ?? undefined, key: decode(o.key, enc, `${field}key`), value: decode(o.value, enc, `${field}value`) };
}

export function messageJson(m: LogMessage, enc: Encoding): Json {
  const out: Json = { offset: m.offset, time: m.time };
  if (m.key !== null) out.key = Buffer.from(m.key).toString(enc === 'base64' ? 'base64' : 'utf8');
  if (m.value !== null) out.value = Buffer.from(m.value).toString(enc === 'base64' ? 'base64' : 'utf8');
  return out;
}

function intParam(q: URLSearchParams, name: string, dflt: number, min: number, max: number): number {
  const raw = q.get(name);
  if (raw === null || raw === '') return dflt;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min || n > max) throw bad(name, `expected an integer from ${min} to ${max}, got '${raw}'`);
  return n;
}

export function logRoutes(store: () => EventLogStore): Route[] {
  return [
    { method: 'POST', path: '/logs', handler: (req) => klev(async () => ({ json: logJson(await store().create({ metadata: '', compacting: false, ...(logSettings(req.body, true) as object) })) })) },
    { method: 'GET', path: '/logs', handler: (req) => klev(() => ({ json: { logs: store().list(req.query.get('metadata') ?? undefined).map(logJson) } })) },
    { method: 'GET', path: '/log/:id', handler: (req) => klev(() => ({ json: logJson(store().get(req.params.id as string)) })) },
    { method: 'PATCH', path: '/log/:id', handler: (req) => klev(async () => ({ json: logJson(await store().update(req.params.id as string, logSettings(req.body, false))) })) },
    { method: 'DELETE', path: '/log/:id', handler: (req) => klev(async () => ({ json: logJson(await store().delete(req.params.id as string)) })) },
    { method: 'GET', path: '/log/:id/stats', handler: (req) => klev(() => ({ json: store().stats(req.params.id as string) })) },
    {
      method: 'POST', path: '/messages/:log_id',
      handler: (req) => klev(async () => {
        const o = object(req.body, '', ['encoding', 'messages']);
        const enc = encodingOf(o.encoding);
        if (!Array.isArray(o.messages)) throw bad('messages', `expected an array, got ${kind(o.messages)}`);
        if (o.messages.length > MAX_BATCH) throw new HttpError(400, 'message-publish-limited', `at most ${MAX_BATCH} messages per publish`);
        const msgs = o.messages.map((m, i) => parseMessage(object(m, `messages[${i}]`, ['time', 'key', 'value']), enc, `messages[${i}].`));
        return { json: { next_offset: await store().publish(req.params.log_id as string, msgs) } };
      }),
    },
    {
      method: 'POST', path: '/message/:log_id',
      handler: (req) => klev(async () => {
        const o = object(req.body, '', ['encoding', 'time', 'key', 'value']);
        const msg = parseMessage(o, encodingOf(o.encoding), '');
        return { json: { next_offset: await store().publish(req.params.log_id as string, [msg]) } };
      }),
    },
    {
      method: 'GET', path: '/messages/:log_id',
      handler: (req) => klev(async () => {
        const id = req.params.log_id as string;
        const enc = encodingOf(req.query.get('encoding'));
        const offset = intParam(req.query, 'offset', -2, -2, Number.MAX_SAFE_INTEGER);
        const len = intParam(req.query, 'len', 100, 1, MAX_BATCH);
        const poll = intParam(req.query, 'poll', 0, 0, MAX_POLL_MS);
        let r = store().read(id, offset, len);
        if (r.messages.length === 0 && poll > 0) {
          await store().waitForPublish(id, poll);
          r = store().read(id, r.nextOffset, len);
        }
        return { json: { next_offset: r.nextOffset, encoding: enc, messages: r.messages.map((m) => messageJson(m, enc)) } };
      }),
    },
    {
      method: 'GET', path: '/message/:log_id',
      handler: (req) => klev(() => {
        const enc = encodingOf(req.query.get('encoding'));
        const id = req.params.log_id as string;
        const raw = req.query.get('offset');
        // -1 (or none): the last message; -2: the oldest one still kept.
        let offset = raw === null || raw === '' || raw === '-1' ? undefined : intParam(req.query, 'offset', -2, -2, Number.MAX_SAFE_INTEGER);
        if (offset === -2) offset = store().read(id, -2, 1).messages[0]?.offset ?? store().nextOffset(id);
        return { json: { encoding: enc, ...messageJson(store().getOne(id, offset), enc) } };
      }),
    },
  ];
}
