/**
 * Realistic KumoMTA log records (a Delivery record, about 620 bytes of JSON;
 * no null fields, which a Lua table cannot hold, so the batch body that Lua
 * encodes has the same fields as the baseline's) and the Messages that carry
 * them through a log hook, built as test/lua/seed-002.test.ts builds them:
 * data is the record JSON plus a newline, meta has log_record,
 * reception_protocol 'LogRecord' and the queue.
 */
import { Message } from '../../dist/queue/message.js';

const BASE_TS = 1_700_000_000; // seconds: fits fengari's 32-bit integers

/** A Delivery log record; `i` varies the ids, addresses and times. */
export function logRecord(i) {
  const hex = (n) => (n >>> 0).toString(16).padStart(8, '0');
  return {
    type: 'Delivery',
    id: `${hex(0x18b5e2a1 + i)}${hex(i * 2654435761)}${hex(i ^ 0x5bd1e995)}${hex(0xc0ffee + i)}`,
    sender: 'bounce@example.com',
    recipient: `user${i}@example.net`,
    queue: 'example.net',
    site: 'mx1.example.net:25',
    size: 27_083 + (i % 997),
    response: {
      code: 250,
      enhanced_code: { class: 2, subject: 0, detail: 0 },
      content: `OK ${hex(i * 40503)}`,
      command: '.\r\n',
    },
    peer_address: { name: 'mx1.example.net.', addr: '192.0.2.27' },
    timestamp: BASE_TS + i,
    num_attempts: 0,
    bounce_classification: 'Uncategorized',
    egress_pool: 'pool0',
    egress_source: 'ip-10',
    headers: { Subject: 'Your weekly summary', 'X-Customer-ID': `cust-${10_000 + (i % 5000)}` },
    delivery_protocol: 'ESMTP',
    reception_protocol: 'ESMTP',
  };
}

/** A log-hook Message carrying `record`, queued for hook `hookName`. */
export function logMessage(record, hookName = 'webhook') {
  return new Message({
    sender: record.sender,
    recipients: [record.recipient],
    data: `${JSON.stringify(record)}\n`,
    meta: { log_record: record, reception_protocol: 'LogRecord', queue: `${hookName}.log_hook` },
  });
}

/** `n` distinct messages, built before any timing starts. */
export function messageRing(n, hookName = 'webhook') {
  return Array.from({ length: n }, (_, i) => logMessage(logRecord(i), hookName));
}
