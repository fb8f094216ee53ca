import fs from 'node:fs';
import fsp, { type FileHandle } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { parseLocalLogsParams, type RecordType } from '../../../src/logging/hook-config.js';
import { LocalLogError, LocalLogWriter, readLocalLogLines, readLocalLogs, segmentName, type LocalLogWriterOptions } from '../../../src/logging/local-logs.js';
import { TemplateRenderError, TemplateSyntaxError } from '../../../src/logging/template.js';
import type { JsonLogRecord } from '../../../src/logging/record.js';

const T0 = Date.UTC(2026, 0, 1, 12, 0, 0, 123);

let dir: string;
let writers: LocalLogWriter[] = [];

beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-local-logs-'));
});

afterEach(async () => {
  await Promise.all(writers.map((w) => w.close()));
  writers = [];
  vi.restoreAllMocks();
  fs.rmSync(dir, { recursive: true, force: true });
});

let seq = 0;
function rec(type: RecordType = 'Delivery', extra: Partial<JsonLogRecord> = {}): JsonLogRecord {
  seq++;
  return {
    type,
    id: seq.toString(16).padStart(32, '0'),
    sender: 'news@shop.example',
    recipient: 'alice@mail.example',
    queue: 'mail.example',
    site: '',
    size: 100,
    response: { code: 250, enhanced_code: null, content: 'OK', command: null },
    peer_address: null,
    timestamp: 1767268800,
    event_time: '2026-01-01T12:00:00.123000000Z',
    created: 1767268800,
    created_time: '2026-01-01T12:00:00.100000000Z',
    num_attempts: 0,
    bounce_classification: 'Uncategorized',
    egress_pool: null,
    egress_source: null,
    source_address: null,
    feedback_report: null,
    meta: {},
    headers: {},
    delivery_protocol: null,
    reception_protocol: 'ESMTP',
    nodeid: '5b0c7e44-2d1a-4c59-9d55-0b7a3c1f9e21',
    ...extra,
  };
}

function writer(options: Record<string, unknown>, opts: LocalLogWriterOptions = {}): LocalLogWriter {
  const w = new LocalLogWriter(parseLocalLogsParams({ log_dir: dir, ...options }), opts);
  writers.push(w);
  return w;
}

function segments(d = dir): string[] {
  return fs.readdirSync(d).sort();
}

const isReadOnly = (p: string): boolean => (fs.statSync(p).mode & 0o222) === 0;

/** A controllable clock. */
function clock(start = T0): { now: () => number; advance: (ms: number) => void } {
  let t = start;
  return { now: () => t, advance: (ms) => (t += ms) };
}

describe('LocalLogWriter: records', () => {
  it('appends one JSON line per record and reads them back', async () => {
    const w = writer({});
    const records = [rec(), rec('Reception'), rec('Bounce')];
    for (const r of records) w.write(r);
    await w.flush();
    expect(await readLocalLogs(dir)).toEqual(records);
    const [name] = segments();
    expect(segments()).toHaveLength(1);
    expect(name).toMatch(/^\d{8}-\d{6}\.\d{6}$/);
    const text = fs.readFileSync(path.join(dir, name as string), 'utf8');
    expect(text).toBe(records.map((r) => `${JSON.stringify(r)}\n`).join(''));
  });

  it('creates log_dir, nested', async () => {
    const nested = path.join(dir, 'a', 'b');
    const w = new LocalLogWriter(parseLocalLogsParams({ log_dir: nested }));
    writers.push(w);
    w.write(rec());
    await w.flush();
    expect(await readLocalLogs(nested)).toHaveLength(1);
  });

  it('per_record enable=false suppresses a type', async () => {
    const w = writer({ per_record: { TransientFailure: { enable: false } } });
    w.write(rec('Delivery'));
    w.write(rec('TransientFailure'));
    w.write(rec('Bounce'));
    await w.flush();
    expect((await readLocalLogs(dir)).map((r) => r.type)).toEqual(['Delivery', 'Bounce']);
  });

  it('Any applies to the types not listed', async () => {
    const w = writer({ per_record: { Any: { enable: false }, Bounce: { enable: true } } });
    for (const t of ['Reception', 'Delivery', 'Bounce', 'Expiration'] as const) w.write(rec(t));
    await w.flush();
    expect((await readLocalLogs(dir)).map((r) => r.type)).toEqual(['Bounce']);
  });

  it('writes template output: own entry first, Any otherwise, JSON for an own entry without one', async () => {
    const w = writer({
      per_record: {
        Any: { template: '{{ type }} {{ id }}' },
        Bounce: { template: 'BOUNCE code={{ response.code }}\n' },
        Delivery: { enable: true },
      },
    });
    const a = rec('Reception');
    const b = rec('Bounce');
    const d = rec('Delivery');
    w.write(a);
    w.write(b);
    w.write(d);
    await w.flush();
    expect(await readLocalLogLines(dir)).toEqual([`Reception ${a.id}`, 'BOUNCE code=250', JSON.stringify(d)]);
  });

  it('rejects a template that does not compile when constructed', () => {
    expect(() => writer({ per_record: { Delivery: { template: '{{ id ' } } })).toThrow(TemplateSyntaxError);
    expect(() => writer({ per_record: { Delivery: { template: '{{ id ' } } })).toThrow(/in template 'Delivery' line 1, column 7/);
  });

  it('reports a render error and keeps going', async () => {
    const errors: Error[] = [];
    const w = writer({ per_record: { Bounce: { template: '{{ nope.attr }}' } } }, { onError: (e) => errors.push(e) });
    w.write(rec('Bounce'));
    const d = rec('Delivery');
    w.write(d);
    await w.flush();
    expect(errors).toHaveLength(1);
    expect(errors[0]).toBeInstanceOf(TemplateRenderError);
    expect(await readLocalLogs(dir)).toEqual([d]);
  });

  it('exposes what to capture for buildRecord', () => {
    const w = writer({ meta: ['tenant'], headers: ['Subject'] });
    expect(w.capture).toEqual({ meta: ['tenant'], headers: ['Subject'] });
  });
});

describe('LocalLogWriter: segments', () => {
  it('names segments by their UTC creation time, microseconds, unique within one ms', async () => {
    const c = clock();
    const w = writer({ max_file_size: 1 }, { now: c.now });
    for (let i = 0; i < 4; i++) w.write(rec());
    await w.close();
    expect(segments()).toEqual(['20260101-120000.123000', '20260101-120000.123001', '20260101-120000.123002', '20260101-120000.123003']);
    expect(segmentName(T0 * 1000 + 7)).toBe('20260101-120000.123007');
  });

  it('rotates by size: every record once, in order, segments near max_file_size', async () => {
    const sample = `${JSON.stringify(rec())}\n`.length;
    const max = sample * 3;
    const w = writer({ max_file_size: max });
    const records = Array.from({ length: 20 }, (_, i) => rec(i % 2 ? 'Delivery' : 'TransientFailure'));
    for (const r of records) w.write(r);
    await w.flush();
    const names = segments();
    expect(names.length).toBe(7);
    // order preserved across segments, nothing lost or repeated
    expect((await readLocalLogs(dir)).map((r) => r.id)).toEqual(records.map((r) => r.id));
    for (const name of names) expect(fs.statSync(path.join(dir, name)).size).toBeLessThanOrEqual(max + sample);
    // finished segments are marked done (no write bits); the open one is not
    await w.close();
    for (const name of names) expect(isReadOnly(path.join(dir, name))).toBe(true);
  });

  it('a record larger than max_file_size gets a segment of its own', async () => {
    const w = writer({ max_file_size: 10 });
    w.write(rec());
    w.write(rec());
    await w.flush();
    expect(segments()).toHaveLength(2);
  });

  it('rotates by age with an injected clock', async () => {
    const c = clock();
    const w = writer({ max_segment_duration: '1m' }, { now: c.now });
    const r1 = rec();
    const r2 = rec();
    const r3 = rec();
    w.write(r1);
    c.advance(30_000);
    w.write(r2);
    await w.flush();
    expect(segments()).toEqual(['20260101-120000.123000']);
    c.advance(30_000); // the segment is now 60 s old
    w.write(r3);
    await w.flush();
    expect(segments()).toEqual(['20260101-120000.123000', '20260101-120100.123000']);
    expect(await readLocalLogs(path.join(dir))).toEqual([r1, r2, r3]);
    await vi.waitFor(() => expect(isReadOnly(path.join(dir, '20260101-120000.123000'))).toBe(true));
    expect(isReadOnly(path.join(dir, '20260101-120100.123000'))).toBe(false);
  });

  it('closes an idle segment once it is older than max_segment_duration', async () => {
    const w = writer({ max_segment_duration: '50ms' });
    w.write(rec());
    await w.flush();
    const [name] = segments();
    expect(isReadOnly(path.join(dir, name as string))).toBe(false);
    await vi.waitFor(() => expect(isReadOnly(path.join(dir, name as string))).toBe(true), { timeout: 5000, interval: 10 });
    w.write(rec());
    await w.flush();
    expect(segments()).toHaveLength(2);
  });

  it('honours per_record log_dir, suffix and segment_header', async () => {
    const other = path.join(dir, 'deliveries');
    const w = writer({
      per_record: {
        Delivery: { log_dir: other, suffix: '.csv', segment_header: 'type,id\n', template: '{{ type }},{{ id }}' },
      },
    });
    const d1 = rec('Delivery');
    const r = rec('Reception');
    const d2 = rec('Delivery');
    for (const x of [d1, r, d2]) w.write(x);
    await w.flush();
    const csv = fs.readdirSync(other);
    expect(csv).toHaveLength(1);
    expect(csv[0]).toMatch(/^\d{8}-\d{6}\.\d{6}\.csv$/);
    expect(fs.readFileSync(path.join(other, csv[0] as string), 'utf8')).toBe(`type,id\nDelivery,${d1.id}\nDelivery,${d2.id}\n`);
    expect(segments().filter((n) => n !== 'deliveries')).toHaveLength(1);
  });

  it('marks segments already in log_dir as done, and never reuses a name', async () => {
    const c = clock();
    const old = path.join(dir, '20260101-120000.123000');
    fs.writeFileSync(old, 'old\n', { mode: 0o644 });
    const w = writer({}, { now: c.now });
    w.write(rec());
    await w.close();
    expect(isReadOnly(old)).toBe(true);
    expect(fs.readFileSync(old, 'utf8')).toBe('old\n');
    expect(segments()).toEqual(['20260101-120000.123000', '20260101-120000.123001']);
  });
});

describe('LocalLogWriter: batching, flush, close, errors', () => {
  it('appends a burst of records in a few writes', async () => {
    const probe: FileHandle = await fsp.open(path.join(dir, '.probe'), 'w');
    const proto = Object.getPrototypeOf(probe) as FileHandle;
    await probe.close();
    const spy = vi.spyOn(proto, 'appendFile');
    const w = writer({});
    const records = Array.from({ length: 1000 }, () => rec());
    for (const r of records) w.write(r);
    expect(w.pending).toBe(1000);
    await w.flush();
    expect(w.pending).toBe(0);
    expect(spy.mock.calls.length).toBeGreaterThanOrEqual(1);
    expect(spy.mock.calls.length).toBeLessThanOrEqual(2);
    expect((await readLocalLogs(dir)).length).toBe(1000);
  });

  it('flush resolves at once when nothing is pending, and covers writes made before it', async () => {
    const w = writer({});
    await w.flush();
    w.write(rec());
    const first = w.flush();
    w.write(rec());
    await first;
    expect((await readLocalLogs(dir)).length).toBeGreaterThanOrEqual(1);
    await w.flush();
    expect(await readLocalLogs(dir)).toHaveLength(2);
  });

  it('close writes everything, finishes the segment, and later writes are reported', async () => {
    const errors: Error[] = [];
    const w = writer({}, { onError: (e) => errors.push(e) });
    const records = [rec(), rec()];
    for (const r of records) w.write(r);
    const closing = w.close();
    expect(w.close()).toBe(closing);
    await closing;
    expect(await readLocalLogs(dir)).toEqual(records);
    expect(isReadOnly(path.join(dir, segments()[0] as string))).toBe(true);
    expect(() => w.write(rec())).not.toThrow();
    expect(errors).toHaveLength(1);
    expect(errors[0]?.message).toMatch(/is closed/);
    await w.flush();
    expect(await readLocalLogs(dir)).toEqual(records);
  });

  it('reports an unwritable directory through onError, never to the caller', async () => {
    const file = path.join(dir, 'not-a-dir');
    fs.writeFileSync(file, '');
    const errors: Error[] = [];
    const w = new LocalLogWriter(parseLocalLogsParams({ log_dir: path.join(file, 'logs') }), { onError: (e) => errors.push(e) });
    writers.push(w);
    expect(() => {
      w.write(rec());
      w.write(rec());
    }).not.toThrow();
    await w.flush();
    expect(w.pending).toBe(0);
    expect(errors).toHaveLength(1);
    expect(errors[0]).toBeInstanceOf(LocalLogError);
    expect((errors[0] as LocalLogError).code).toBe('ENOTDIR');
    expect(errors[0]?.message).toMatch(/2 records lost/);
    // the next record tries again (and fails again)
    w.write(rec());
    await w.flush();
    expect(errors).toHaveLength(2);
    await w.close();
  });
});

describe('readLocalLogs', () => {
  it('reads segments in name order and names a bad line', async () => {
    fs.writeFileSync(path.join(dir, '20260101-120001.000000'), `${JSON.stringify(rec('Bounce'))}\n`);
    fs.writeFileSync(path.join(dir, '20260101-120000.000000'), `${JSON.stringify(rec('Reception'))}\n\n`);
    expect((await readLocalLogs(dir)).map((r) => r.type)).toEqual(['Reception', 'Bounce']);
    fs.writeFileSync(path.join(dir, '20260101-120002.000000'), 'Delivery abc\n');
    await expect(readLocalLogs(dir)).rejects.toThrow(/20260101-120002\.000000:1: not a JSON record/);
  });

  it('refuses zstd segments with a clear message', async () => {
    fs.writeFileSync(path.join(dir, '20260101-120000'), Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0, 0]));
    await expect(readLocalLogs(dir)).rejects.toThrow(/zstd-compressed segment/);
  });
});
