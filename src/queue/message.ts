/**
 * A message: what moves through the queues. Log records become messages
 * too (their data is the record JSON), exactly as in KumoMTA.
 */
import { randomHex } from '../random.js';

export interface MessageInit {
  id?: string;
  sender: string;
  recipients: string[];
  data: string | Uint8Array;
  meta?: Record<string, unknown>;
  /** Creation time, unix ms. @defaultValue now */
  created?: number;
  numAttempts?: number;
  /** When the message is next due, unix ms; undefined means now. */
  due?: number;
}

export class Message {
  readonly id: string;
  sender: string;
  recipients: string[];
  data: string | Uint8Array;
  meta: Record<string, unknown>;
  readonly created: number;
  numAttempts: number;
  due: number | undefined;
  /**
   * The log record whose JSON `data` is (a log hook message without a
   * template). While `meta.log_record` is still this object, the spool
   * stores the record once.
   */
  recordOfData: object | undefined;

  constructor(init: MessageInit) {
    this.created = init.created ?? Date.now();
    this.id = init.id ?? newMessageId(this.created);
    this.sender = init.sender;
    this.recipients = init.recipients;
    this.data = init.data;
    this.meta = init.meta ?? {};
    this.numAttempts = init.numAttempts ?? 0;
    this.due = init.due;
  }

  getMeta(key: string): unknown {
    return this.meta[key];
  }

  setMeta(key: string, value: unknown): void {
    if (value === null || value === undefined) delete this.meta[key];
    else this.meta[key] = value;
  }

  /** The data as text (UTF-8). */
  text(): string {
    return typeof this.data === 'string' ? this.data : Buffer.from(this.data).toString('utf8');
  }

  /** Size of the data in bytes. */
  size(): number {
    return typeof this.data === 'string' ? Buffer.byteLength(this.data) : this.data.byteLength;
  }

  /** The scheduled queue this message belongs to (kumomta-facts §5.5). */
  queueName(): string {
    const q = this.meta.queue;
    if (typeof q === 'string' && q !== '') return q;
    return composeQueueName({
      campaign: metaString(this.meta.campaign),
      tenant: metaString(this.meta.tenant),
      domain: domainOf(this.recipients[0] ?? ''),
      routingDomain: metaString(this.meta.routing_domain),
    });
  }
}

function metaString(v: unknown): string | undefined {
  return typeof v === 'string' && v !== '' ? v : undefined;
}

export interface QueueNameParts {
  campaign?: string;
  tenant?: string;
  domain: string;
  routingDomain?: string;
}

/** `campaign:tenant@domain!routing_domain`, dropping absent parts. */
export function composeQueueName(p: QueueNameParts): string {
  let name = p.domain;
  if (p.routingDomain) name = `${name}!${p.routingDomain}`;
  if (p.campaign !== undefined || p.tenant !== undefined) {
    name = `${p.campaign !== undefined ? `${p.campaign}:` : ''}${p.tenant ?? ''}@${name}`;
  }
  return name;
}

/** Split a scheduled-queue name into its parts. */
export function parseQueueName(name: string): QueueNameParts {
  const at = name.indexOf('@');
  let prefix = '';
  let rest = name;
  if (at >= 0) {
    prefix = name.slice(0, at);
    rest = name.slice(at + 1);
  }
  const bang = rest.indexOf('!');
  const domain = bang >= 0 ? rest.slice(0, bang) : rest;
  const routingDomain = bang >= 0 ? rest.slice(bang + 1) : undefined;
  if (at < 0) return { domain, routingDomain };
  const colon = prefix.indexOf(':');
  if (colon >= 0) {
    const tenant = prefix.slice(colon + 1);
    return { campaign: prefix.slice(0, colon), tenant: tenant === '' ? undefined : tenant, domain, routingDomain };
  }
  return { tenant: prefix, domain, routingDomain };
}

export function domainOf(address: string): string {
  const at = address.lastIndexOf('@');
  return at >= 0 ? address.slice(at + 1) : '';
}

export function userOf(address: string): string {
  const at = address.lastIndexOf('@');
  return at >= 0 ? address.slice(0, at) : address;
}

/**
 * 32 lowercase hex digits, like KumoMTA's spool ids. The first 12 digits are
 * the creation time in unix ms, so ids sort by age and `created` can be read
 * back from an id; the rest are random.
 */
export function newMessageId(created = Date.now()): string {
  return created.toString(16).padStart(12, '0').slice(-12) + randomHex(10);
}

/** The creation time (unix ms) encoded in an id made by newMessageId. */
export function createdFromId(id: string): number {
  return parseInt(id.slice(0, 12), 16);
}
