/**
 * `POST /api/inject/v1`: KumoMTA's injection API. One message per
 * recipient; each is accepted durably before the reply (a Reception record
 * with reception_protocol "HTTP", then queued). The reply counts successes
 * and names the recipients that failed.
 *
 *   { "envelope_sender": "a@example.com",
 *     "recipients": [{ "email": "b@example.com", "metadata": {...} }],
 *     "content": "Subject: hi\r\n\r\nbody"  |  { "subject", "text_body", "html_body", "from", "headers", ... } }
 */
import type { Engine } from '../../engine.js';
import type { Route } from '../server.js';
import { HttpError } from '../server.js';
import { bad, kind, map, object, string, boolean, type Json } from '../validate.js';

const FIELDS = ['envelope_sender', 'recipients', 'content', 'substitutions', 'template_dialect', 'deferred_spool', 'deferred_generation', 'trace_headers'];
const RECIPIENT_FIELDS = ['email', 'name', 'substitutions', 'metadata'];
const CONTENT_FIELDS = ['text_body', 'html_body', 'amp_html_body', 'subject', 'from', 'reply_to', 'headers', 'attachments'];

interface Recipient {
  email: string;
  name?: string;
  metadata?: Json;
}

export function injectRoutes(engine: () => Engine): Route[] {
  return [{
    method: 'POST',
    path: '/api/inject/v1',
    handler: async (req) => {
      const body = object(req.body, '', FIELDS);
      const sender = string(body, 'envelope_sender', '', true);
      if (sender !== '' && !isAddress(sender)) throw bad('envelope_sender', `'${sender}' is not an email address`);
      const recipients = parseRecipients(body.recipients);
      const content = body.content;
      if (content === undefined) throw bad('content', 'is required');
      boolean(body, 'deferred_spool', '');
      const out = { success_count: 0, fail_count: 0, failed_recipients: [] as string[], errors: [] as string[] };
      for (const r of recipients) {
        try {
          const data = typeof content === 'string' ? content : buildMessage(object(content, 'content', CONTENT_FIELDS), sender, r);
          await engine().inject({ sender, recipients: [r.email], data, meta: r.metadata ?? {} });
          out.success_count++;
        } catch (err) {
          if (err instanceof HttpError) throw err;
          out.fail_count++;
          out.failed_recipients.push(r.email);
          out.errors.push(`${r.email}: ${(err as Error).message}`);
        }
      }
      return { json: out };
    },
  }];
}

function parseRecipients(v: unknown): Recipient[] {
  if (!Array.isArray(v)) throw bad('recipients', v === undefined ? 'is required' : `expected an array, got ${kind(v)}`);
  if (v.length === 0) throw bad('recipients', 'must name at least one recipient');
  return v.map((item, i) => {
    const field = `recipients[${i}]`;
    const o = object(item, field, RECIPIENT_FIELDS);
    const email = string(o, 'email', field, true);
    if (!isAddress(email)) throw bad(`${field}.email`, `'${email}' is not an email address`);
    return { email, name: string(o, 'name', field), metadata: map(o, 'metadata', field) };
  });
}

function isAddress(s: string): boolean {
  return /^[^@\s<>]+@[^@\s<>]+$/.test(s);
}

/** A simple RFC 5322 message from the structured content form. */
function buildMessage(c: Json, sender: string, r: Recipient): string {
  const headers: string[] = [];
  const from = string(c, 'from', 'content') ?? sender;
  headers.push(`From: ${from}`);
  headers.push(`To: ${r.name ? `"${r.name}" <${r.email}>` : r.email}`);
  const subject = string(c, 'subject', 'content');
  if (subject !== undefined) headers.push(`Subject: ${subject}`);
  const replyTo = string(c, 'reply_to', 'content');
  if (replyTo !== undefined) headers.push(`Reply-To: ${replyTo}`);
  for (const [k, v] of Object.entries(map(c, 'headers', 'content') ?? {})) {
    if (typeof v !== 'string') throw bad(`content.headers.${k}`, `expected a string, got ${kind(v)}`);
    headers.push(`${k}: ${v}`);
  }
  headers.push(`Date: ${new Date().toUTCString()}`, 'MIME-Version: 1.0');
  const text = string(c, 'text_body', 'content');
  const html = string(c, 'html_body', 'content');
  if (text !== undefined && html !== undefined) {
    const boundary = `sluice-${Math.random().toString(36).slice(2)}`;
    headers.push(`Content-Type: multipart/alternative; boundary="${boundary}"`);
    return `${headers.join('\r\n')}\r\n\r\n--${boundary}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n${text}\r\n--${boundary}\r\nContent-Type: text/html; charset=utf-8\r\n\r\n${html}\r\n--${boundary}--\r\n`;
  }
  headers.push(`Content-Type: ${html !== undefined ? 'text/html' : 'text/plain'}; charset=utf-8`);
  return `${headers.join('\r\n')}\r\n\r\n${html ?? text ?? ''}\r\n`;
}
