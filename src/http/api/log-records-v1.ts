/**
 * `POST /api/log-records/v1`: hand sluice log records made elsewhere — by a
 * KumoMTA node's `new_json` hook (one object per request) or a batched hook
 * (an array) — for fan-out through sluice's own log hooks, as if sluice had
 * made them. Replies `{"accepted": N, "queued": M}` once every queued hook
 * message is durable.
 *
 * Fields follow KumoMTA's record schema; `type`, `sender` and `recipient`
 * are required, the rest get KumoMTA's defaults when absent. Unknown fields
 * and wrong types are 400s naming the field.
 */
import { randomHex } from '../../random.js';
import type { Engine } from '../../engine.js';
import type { Route } from '../server.js';
import { RECORD_TYPES } from '../../logging/hook-config.js';
import { NODE_ID, rfc3339, type JsonLogRecord } from '../../logging/record.js';
import { bad, kind, object, type Json } from '../validate.js';

const RECORD_FIELDS = [
  'type', 'id', 'sender', 'recipient', 'queue', 'site', 'size', 'response', 'peer_address', 'timestamp', 'event_time',
  'created', 'created_time', 'num_attempts', 'bounce_classification', 'egress_pool', 'egress_source', 'source_address',
  'feedback_report', 'meta', 'headers', 'delivery_protocol', 'reception_protocol', 'nodeid', 'tls_cipher',
  'tls_protocol_version', 'tls_peer_subject_name', 'provider_name', 'session_id',
];

const OPTIONAL_FIELDS = ['tls_cipher', 'tls_protocol_version', 'tls_peer_subject_name', 'provider_name', 'session_id'] as const;

/** Most records accepted in one request. */
export const MAX_RECORDS_PER_REQUEST = 10_000;

export function logRecordRoutes(engine: () => Engine): Route[] {
  return [{
    method: 'POST',
    path: '/api/log-records/v1',
    handler: async (req) => {
      const body = req.body;
      if (body === undefined) throw bad('body', 'a log record object or an array of them is required');
      const list = Array.isArray(body) ? body : [body];
      if (list.length > MAX_RECORDS_PER_REQUEST) throw bad('body', `at most ${MAX_RECORDS_PER_REQUEST} records per request, got ${list.length}`);
      const records = list.map((r, i) => parseRecord(r, Array.isArray(body) ? `[${i}]` : ''));
      const queued = await engine().publishRecords(records);
      return { json: { accepted: records.length, queued } };
    },
  }];
}

export function parseRecord(v: unknown, field: string): JsonLogRecord {
  const o = object(v, field, RECORD_FIELDS);
  const f = (k: string) => (field ? `${field}.${k}` : k);
  const type = o.type;
  if (typeof type !== 'string' || !(RECORD_TYPES as readonly string[]).includes(type)) {
    throw bad(f('type'), `expected one of ${RECORD_TYPES.join(', ')}, got ${JSON.stringify(type)}`);
  }
  if (typeof o.sender !== 'string') throw bad(f('sender'), `expected a string, got ${kind(o.sender)}`);
  const recipient = o.recipient;
  const okRecipient = typeof recipient === 'string' || (Array.isArray(recipient) && recipient.length > 0 && recipient.every((x) => typeof x === 'string'));
  if (!okRecipient) throw bad(f('recipient'), `expected a string or a non-empty array of strings, got ${kind(recipient)}`);
  for (const k of ['id', 'queue', 'site', 'event_time', 'created_time', 'bounce_classification', 'nodeid']) {
    if (o[k] !== undefined && typeof o[k] !== 'string') throw bad(f(k), `expected a string, got ${kind(o[k])}`);
  }
  for (const k of ['size', 'timestamp', 'created', 'num_attempts']) {
    if (o[k] !== undefined && (typeof o[k] !== 'number' || !Number.isInteger(o[k]))) throw bad(f(k), `expected an integer, got ${kind(o[k])}`);
  }
  for (const k of ['meta', 'headers']) {
    if (o[k] !== undefined && (typeof o[k] !== 'object' || o[k] === null || Array.isArray(o[k]))) throw bad(f(k), `expected an object, got ${kind(o[k])}`);
  }
  for (const k of ['egress_pool', 'egress_source', 'delivery_protocol', 'reception_protocol']) {
    if (o[k] !== undefined && o[k] !== null && typeof o[k] !== 'string') throw bad(f(k), `expected a string or null, got ${kind(o[k])}`);
  }
  const response = o.response === undefined ? { code: 250, enhanced_code: null, content: '', command: null } : parseResponse(o.response, f('response'));
  const timestamp = (o.timestamp as number | undefined) ?? Math.floor(Date.now() / 1000);
  const created = (o.created as number | undefined) ?? timestamp;
  // One object literal in buildRecord's field order: every record gets the
  // same hidden class, which keeps building and serialising it fast.
  const record: JsonLogRecord = {
    type: type as JsonLogRecord['type'],
    id: (o.id as string | undefined) ?? randomHex(16),
    sender: o.sender,
    recipient: recipient as string | string[],
    queue: (o.queue as string | undefined) ?? '',
    site: (o.site as string | undefined) ?? '',
    size: (o.size as number | undefined) ?? 0,
    response,
    peer_address: (o.peer_address as JsonLogRecord['peer_address'] | undefined) ?? null,
    timestamp,
    event_time: (o.event_time as string | undefined) ?? rfc3339(timestamp * 1000),
    created,
    created_time: (o.created_time as string | undefined) ?? rfc3339(created * 1000),
    num_attempts: (o.num_attempts as number | undefined) ?? 0,
    bounce_classification: (o.bounce_classification as string | undefined) ?? 'Uncategorized',
    egress_pool: (o.egress_pool as string | null | undefined) ?? null,
    egress_source: (o.egress_source as string | null | undefined) ?? null,
    source_address: o.source_address ?? null,
    feedback_report: o.feedback_report ?? null,
    meta: (o.meta as Record<string, unknown> | undefined) ?? {},
    headers: (o.headers as JsonLogRecord['headers'] | undefined) ?? {},
    delivery_protocol: (o.delivery_protocol as string | null | undefined) ?? null,
    reception_protocol: (o.reception_protocol as string | null | undefined) ?? null,
    nodeid: (o.nodeid as string | undefined) ?? NODE_ID,
  };
  // The optional fields, only when given (KumoMTA leaves them out otherwise).
  for (const k of OPTIONAL_FIELDS) if (o[k] !== undefined) (record as unknown as Json)[k] = o[k];
  return record;
}

function parseResponse(v: unknown, field: string): JsonLogRecord['response'] {
  const o = object(v, field, ['code', 'enhanced_code', 'content', 'command']);
  if (typeof o.code !== 'number' || !Number.isInteger(o.code)) throw bad(`${field}.code`, `expected an integer, got ${kind(o.code)}`);
  if (o.content !== undefined && typeof o.content !== 'string') throw bad(`${field}.content`, `expected a string, got ${kind(o.content)}`);
  return {
    code: o.code,
    enhanced_code: (o.enhanced_code as JsonLogRecord['response']['enhanced_code']) ?? null,
    content: (o.content as string | undefined) ?? '',
    command: (o.command as string | null | undefined) ?? null,
  };
}
