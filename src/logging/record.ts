/**
 * Log records in KumoMTA's JSON schema (kumomta-facts §3.5): one per event in
 * a message's life. Field order matches KumoMTA's serializer; optional TLS
 * fields, `provider_name` and `session_id` are omitted when absent, every
 * other optional field is written as null.
 */
import { randomUUID } from 'node:crypto';
import type { RecordType } from './hook-config.js';
import type { Message } from '../queue/message.js';
import { parseHeaders } from '../queue/headers.js';

export interface EnhancedCode {
  class: number;
  subject: number;
  detail: number;
}

export interface Response {
  code: number;
  enhanced_code: EnhancedCode | null;
  content: string;
  command: string | null;
}

export interface PeerAddress {
  name: string;
  addr: string;
}

export interface JsonLogRecord {
  type: RecordType;
  id: string;
  sender: string;
  recipient: string | string[];
  queue: string;
  site: string;
  size: number;
  response: Response;
  peer_address: PeerAddress | null;
  timestamp: number;
  event_time: string;
  created: number;
  created_time: string;
  num_attempts: number;
  bounce_classification: string;
  egress_pool: string | null;
  egress_source: string | null;
  source_address: unknown;
  feedback_report: unknown;
  meta: Record<string, unknown>;
  headers: Record<string, string | string[]>;
  delivery_protocol: string | null;
  reception_protocol: string | null;
  nodeid: string;
  provider_name?: string;
  session_id?: string;
}

/** This process's node id (a UUID), as in every record's `nodeid`. */
export const NODE_ID = randomUUID();

/** What an event adds to the message's own fields. */
export interface RecordEvent {
  type: RecordType;
  response: Response;
  site?: string;
  peerAddress?: PeerAddress | null;
  deliveryProtocol?: string | null;
  egressPool?: string | null;
  egressSource?: string | null;
  providerName?: string;
  sessionId?: string;
  /** unix ms; @defaultValue now */
  when?: number;
  /** The queue to name; @defaultValue the message's queue */
  queue?: string;
}

export function response(code: number, content: string, enhanced: EnhancedCode | null = null, command: string | null = null): Response {
  return { code, enhanced_code: enhanced, content: content.replace(/\r?\n|\r/g, ' '), command };
}

/** What a logger captures from the message. */
export interface CaptureSpec {
  meta: readonly string[];
  headers: readonly string[];
}

/**
 * Build the record for `event` on `message`, capturing the meta and headers
 * the logger asks for (each logger has its own list).
 */
export function buildRecord(message: Message, event: RecordEvent, capture: CaptureSpec): JsonLogRecord {
  const when = event.when ?? Date.now();
  const rp = message.meta.reception_protocol;
  const record: JsonLogRecord = {
    type: event.type,
    id: message.id,
    sender: message.sender,
    recipient: message.recipients.length === 1 ? (message.recipients[0] as string) : [...message.recipients],
    queue: event.queue ?? message.queueName(),
    site: event.site ?? '',
    size: message.size(),
    response: event.response,
    peer_address: event.peerAddress ?? null,
    timestamp: Math.floor(when / 1000),
    event_time: rfc3339(when),
    created: Math.floor(message.created / 1000),
    created_time: rfc3339(message.created),
    num_attempts: message.numAttempts,
    bounce_classification: 'Uncategorized',
    egress_pool: event.egressPool ?? null,
    egress_source: event.egressSource ?? null,
    source_address: null,
    feedback_report: null,
    meta: captureMeta(message.meta, capture.meta),
    headers: capture.headers.length > 0 ? captureHeaders(message.text(), capture.headers) : {},
    delivery_protocol: event.deliveryProtocol ?? null,
    reception_protocol: typeof rp === 'string' ? rp : null,
    nodeid: NODE_ID,
  };
  if (event.providerName !== undefined) record.provider_name = event.providerName;
  if (event.sessionId !== undefined) record.session_id = event.sessionId;
  return record;
}

/** `2026-01-01T00:00:00.123000000Z`: RFC 3339 with nanosecond digits, as KumoMTA writes it. */
export function rfc3339(ms: number): string {
  if (ms === lastRfc3339Ms) return lastRfc3339;
  const s = new Date(ms).toISOString().replace(/\.(\d{3})Z$/, '.$1000000Z');
  lastRfc3339Ms = ms;
  lastRfc3339 = s;
  return s;
}
// Records made in the same second share their timestamps: remember the last one.
let lastRfc3339Ms = NaN;
let lastRfc3339 = '';

/**
 * Meta capture (§3.4): an exact name is included when present and not null;
 * a name ending in `*` is a case-sensitive prefix and includes nulls; `*`
 * matches every key.
 */
export function captureMeta(meta: Record<string, unknown>, names: readonly string[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  if (names.length === 0) return out;
  for (const name of names) {
    if (name.endsWith('*')) {
      const prefix = name.slice(0, -1);
      for (const [k, v] of Object.entries(meta)) if (k.startsWith(prefix)) out[k] = v ?? null;
    } else {
      const v = meta[name];
      if (v !== undefined && v !== null) out[name] = v;
    }
  }
  return out;
}

/**
 * Header capture (§3.4): names match case-insensitively, `*` at the end is a
 * prefix; the key is the header's name as it first appears; a repeated
 * header becomes an array of its values.
 */
export function captureHeaders(data: string, names: readonly string[]): Record<string, string | string[]> {
  const wanted = names.map((n) => n.toLowerCase());
  const out: Record<string, string | string[]> = {};
  const keyOf = new Map<string, string>();
  for (const h of parseHeaders(data)) {
    const lower = h.name.toLowerCase();
    const match = wanted.some((w) => (w.endsWith('*') ? lower.startsWith(w.slice(0, -1)) : lower === w));
    if (!match) continue;
    const k = keyOf.get(lower) ?? h.name;
    keyOf.set(lower, k);
    const prev = out[k];
    if (prev === undefined) out[k] = h.value;
    else if (Array.isArray(prev)) prev.push(h.value);
    else out[k] = [prev, h.value];
  }
  return out;
}

/** Whether `per_record` enables records of `type` (listed type, else `Any`, else on). */
export function isEnabled(perRecord: Readonly<Record<string, { enable: boolean } | undefined>>, type: RecordType): boolean {
  const own = perRecord[type];
  if (own) return own.enable;
  const any = perRecord.Any;
  return any ? any.enable : true;
}

/** The template for `type`: its own entry's (even if none), else `Any`'s. */
export function templateFor(perRecord: Readonly<Record<string, { template?: string } | undefined>>, type: RecordType): string | undefined {
  const own = perRecord[type];
  if (own) return own.template;
  return perRecord.Any?.template;
}
