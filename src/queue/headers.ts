/**
 * Reading RFC 5322 headers out of message data, for the header accessors of
 * the Message object and for log-record header capture. Folded lines are
 * unfolded; names keep their original case.
 */
import type { Message } from './message.js';

export interface Header {
  name: string;
  value: string;
}

export function parseHeaders(data: string): Header[] {
  const end = data.search(/\r?\n\r?\n/);
  const block = end >= 0 ? data.slice(0, end) : data;
  const out: Header[] = [];
  for (const line of block.split(/\r?\n/)) {
    if (/^[ \t]/.test(line) && out.length > 0) {
      const last = out[out.length - 1] as Header;
      last.value += ` ${line.trim()}`;
      continue;
    }
    const colon = line.indexOf(':');
    if (colon <= 0) {
      if (out.length === 0) return [];
      break;
    }
    out.push({ name: line.slice(0, colon), value: line.slice(colon + 1).trim() });
  }
  return out;
}

export function getHeaders(m: Message): Header[] {
  return parseHeaders(m.text());
}
