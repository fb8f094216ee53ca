/**
 * `kumo.configure_local_logs`: log records appended to segment files in
 * `log_dir`, one body per record (compact JSON, or the per_record template's
 * output), each ending in `\n`.
 *
 * As in KumoMTA (crates/kumod/src/logging/files.rs):
 * - A segment is named by its creation time in UTC, `YYYYMMDD-HHMMSS.ffffff`
 *   (plus the per_record `suffix`). KumoMTA's `%.f` has a variable number of
 *   digits; sluice always writes six (ms plus a per-writer counter), so names
 *   are fixed-width, sort chronologically and stay unique within one ms.
 * - A segment is finished after the record that takes it to
 *   `max_file_size` bytes (header excluded), or once it is older than
 *   `max_segment_duration` (checked on every record and by a timer, so an
 *   idle segment is closed too).
 * - A finished segment loses its write permission bits: the signal KumoMTA's
 *   tailer uses for "complete". Files already in a log directory are marked
 *   the same way when the writer first uses it.
 * - per_record: `enable`, `template`, and for local logs also `log_dir`,
 *   `suffix` and `segment_header` (the type's own entry, else `Any`).
 *
 * Differences: segments are plain text. KumoMTA zstd-compresses them;
 * `compression_level` is accepted and ignored. `back_pressure`,
 * `min_free_space` and `min_free_inodes` are ignored too (see `pending` for
 * the backlog). `filter_event` is the caller's business.
 *
 * write() never blocks and never throws: bodies are queued and appended by a
 * single background task in batches (one write per batch), in order. Errors
 * go to `onError`; the records of a segment that cannot be written are
 * dropped and the next record starts a new segment.
 */
import fsp, { type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import type { LocalLogsParams, LogRecordParams, RecordType } from './hook-config.js';
import { isEnabled, type CaptureSpec, type JsonLogRecord } from './record.js';
import { compilePerRecordTemplates, renderRecordBody, type CompiledTemplate } from './template.js';

export interface LocalLogWriterOptions {
  /** Called for every write or render error; @defaultValue process.emitWarning */
  onError?: (err: Error) => void;
  /** Clock for segment names and ages, unix ms. @defaultValue Date.now */
  now?: () => number;
  /** Upper bound on one append, in characters. @defaultValue 1 MiB */
  maxBatchBytes?: number;
}

/** A write failure, naming the segment; `code` is the errno code (`ENOTDIR`, ...). */
export class LocalLogError extends Error {
  readonly code: string | undefined;

  constructor(
    message: string,
    readonly path: string,
    cause?: unknown,
  ) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = 'LocalLogError';
    this.code = (cause as { code?: unknown } | undefined)?.code as string | undefined;
  }
}

interface Stream {
  dir: string;
  suffix: string;
  current: Segment | null;
}

interface Segment {
  stream: Stream;
  micros: number;
  path: string;
  openedAt: number;
  header: string | undefined;
  /** Bytes of record bodies assigned to this segment. */
  bytes: number;
  /** Bodies not yet written, one per record. */
  pending: string[];
  queued: boolean;
  done: boolean;
  failed: boolean;
  handle: FileHandle | undefined;
  timer: NodeJS.Timeout | undefined;
}

const DEFAULT_BATCH = 1 << 20;

interface FlushWaiter {
  target: number;
  resolve: () => void;
}

/** `20260101-120000.123456` for a time in microseconds since the epoch, UTC. */
export function segmentName(micros: number): string {
  const ms = Math.floor(micros / 1000);
  const d = new Date(ms);
  const p = (n: number, w = 2): string => String(n).padStart(w, '0');
  const frac = p(micros - Math.floor(micros / 1_000_000) * 1_000_000, 6);
  return `${p(d.getUTCFullYear(), 4)}${p(d.getUTCMonth() + 1)}${p(d.getUTCDate())}-${p(d.getUTCHours())}${p(d.getUTCMinutes())}${p(d.getUTCSeconds())}.${frac}`;
}

export class LocalLogWriter {
  readonly #params: Readonly<LocalLogsParams>;
  readonly #onError: (err: Error) => void;
  readonly #now: () => number;
  readonly #maxBatch: number;
  readonly #templates: Map<string, CompiledTemplate>;
  readonly #streams = new Map<string, Stream>();
  readonly #streamByType = new Map<RecordType, Stream>();
  readonly #dirs = new Map<string, Promise<void>>();
  /** Segments with work to do (pending bodies, or finished and not yet closed), in order. */
  readonly #queue: Segment[] = [];
  #draining = false;
  #lastMicros = 0;
  #accepted = 0;
  #completed = 0;
  #flushWaiters: FlushWaiter[] = [];
  #idleWaiters: Array<() => void> = [];
  #closed = false;
  #closing: Promise<void> | undefined;

  /** Throws TemplateSyntaxError for a per_record template that does not compile. */
  constructor(params: Readonly<LocalLogsParams>, options: LocalLogWriterOptions = {}) {
    this.#params = params;
    this.#onError = options.onError ?? ((err) => process.emitWarning(err));
    this.#now = options.now ?? Date.now;
    this.#maxBatch = options.maxBatchBytes ?? DEFAULT_BATCH;
    this.#templates = compilePerRecordTemplates(params.per_record);
  }

  /** The meta and headers records for this log should capture (give to buildRecord). */
  get capture(): CaptureSpec {
    return { meta: this.#params.meta, headers: this.#params.headers };
  }

  /** Records accepted and not yet written (or dropped). */
  get pending(): number {
    return this.#accepted - this.#completed;
  }

  /** Queue `record` for its segment. Never throws; problems go to onError. */
  write(record: JsonLogRecord): void {
    if (this.#closed) {
      this.#report(new Error(`local log for ${this.#params.log_dir} is closed; ${record.type} record ${record.id} dropped`));
      return;
    }
    if (!isEnabled(this.#params.per_record, record.type)) return;
    let body: string;
    try {
      body = renderRecordBody(record, this.#templateFor(record.type));
    } catch (err) {
      this.#report(err instanceof Error ? err : new Error(String(err)));
      return;
    }
    const stream = this.#streamFor(record.type);
    const now = this.#now();
    let seg = stream.current;
    if (seg && (seg.failed || this.#expired(seg, now))) {
      this.#rotate(stream);
      seg = null;
    }
    if (!seg) seg = this.#newSegment(stream, now, this.#recordParams(record.type)?.segment_header);
    seg.pending.push(body);
    seg.bytes += Buffer.byteLength(body);
    this.#accepted++;
    this.#enqueue(seg);
    if (seg.bytes >= this.#params.max_file_size || this.#expired(seg, now)) this.#rotate(stream);
  }

  /** Resolves once every record written before the call is in its file (or reported as failed). */
  flush(): Promise<void> {
    const target = this.#accepted;
    if (this.#completed >= target) return Promise.resolve();
    return new Promise((resolve) => this.#flushWaiters.push({ target, resolve }));
  }

  /** Write what is queued, finish every open segment and stop. Later writes are reported and dropped. */
  close(): Promise<void> {
    if (this.#closing) return this.#closing;
    this.#closed = true;
    for (const stream of this.#streams.values()) this.#rotate(stream);
    this.#closing = new Promise((resolve) => {
      if (!this.#draining && this.#queue.length === 0) resolve();
      else this.#idleWaiters.push(resolve);
    });
    return this.#closing;
  }

  // ---- segments

  #recordParams(type: RecordType): Readonly<LogRecordParams> | undefined {
    const pr = this.#params.per_record;
    return pr[type] ?? pr.Any;
  }

  #templateFor(type: RecordType): CompiledTemplate | undefined {
    return this.#params.per_record[type] ? this.#templates.get(type) : this.#templates.get('Any');
  }

  #streamFor(type: RecordType): Stream {
    let stream = this.#streamByType.get(type);
    if (!stream) {
      const rp = this.#recordParams(type);
      const dir = rp?.log_dir ?? this.#params.log_dir;
      const suffix = rp?.suffix ?? '';
      const key = `${path.resolve(dir)}\0${suffix}`;
      stream = this.#streams.get(key);
      if (!stream) {
        stream = { dir, suffix, current: null };
        this.#streams.set(key, stream);
      }
      this.#streamByType.set(type, stream);
    }
    return stream;
  }

  #expired(seg: Segment, now: number): boolean {
    const max = this.#params.max_segment_duration;
    return max !== undefined && now - seg.openedAt >= max;
  }

  #nextMicros(now: number): number {
    let micros = Math.floor(now) * 1000;
    if (micros <= this.#lastMicros) micros = this.#lastMicros + 1;
    this.#lastMicros = micros;
    return micros;
  }

  #newSegment(stream: Stream, now: number, header: string | undefined): Segment {
    const micros = this.#nextMicros(now);
    const seg: Segment = {
      stream,
      micros,
      path: path.join(stream.dir, segmentName(micros) + stream.suffix),
      openedAt: now,
      header: header === '' ? undefined : header,
      bytes: 0,
      pending: [],
      queued: false,
      done: false,
      failed: false,
      handle: undefined,
      timer: undefined,
    };
    stream.current = seg;
    const max = this.#params.max_segment_duration;
    if (max !== undefined) this.#arm(seg, max);
    return seg;
  }

  /** Close an idle segment once it is old enough (KumoMTA's expiry deadline). */
  #arm(seg: Segment, delay: number): void {
    seg.timer = setTimeout(() => {
      seg.timer = undefined;
      if (seg.done || seg.stream.current !== seg) return;
      const max = this.#params.max_segment_duration as number;
      const age = this.#now() - seg.openedAt;
      if (age >= max) this.#rotate(seg.stream);
      else this.#arm(seg, Math.max(1, max - age));
    }, Math.min(Math.max(1, delay), 2 ** 31 - 1));
    seg.timer.unref();
  }

  /** Finish the stream's current segment; the next record starts a new one. */
  #rotate(stream: Stream): void {
    const seg = stream.current;
    if (!seg) return;
    stream.current = null;
    seg.done = true;
    if (seg.timer) clearTimeout(seg.timer);
    seg.timer = undefined;
    this.#enqueue(seg);
  }

  #enqueue(seg: Segment): void {
    if (!seg.queued) {
      seg.queued = true;
      this.#queue.push(seg);
    }
    if (!this.#draining) {
      // start on the next microtask, so that a burst of writes makes one batch
      this.#draining = true;
      queueMicrotask(() => void this.#drain());
    }
  }

  async #drain(): Promise<void> {
    try {
      while (this.#queue.length > 0) {
        const seg = this.#queue[0] as Segment;
        if (seg.pending.length > 0) {
          await this.#writeBatch(seg);
          continue;
        }
        this.#queue.shift();
        seg.queued = false;
        if (seg.done) await this.#finish(seg);
      }
    } catch (err) {
      // #writeBatch and #finish catch their own errors; this is a bug guard
      this.#report(err instanceof Error ? err : new Error(String(err)));
    } finally {
      this.#draining = false;
      this.#settle();
      if (this.#queue.length > 0) {
        this.#draining = true;
        void this.#drain();
      } else {
        const idle = this.#idleWaiters;
        this.#idleWaiters = [];
        for (const resolve of idle) resolve();
      }
    }
  }

  async #writeBatch(seg: Segment): Promise<void> {
    let k = 0;
    let size = 0;
    while (k < seg.pending.length && (k === 0 || size < this.#maxBatch)) size += (seg.pending[k++] as string).length;
    const batch = seg.pending.splice(0, k);
    if (!seg.failed) {
      try {
        const handle = seg.handle ?? (await this.#open(seg));
        await handle.appendFile(batch.join(''));
      } catch (err) {
        seg.failed = true;
        const lost = batch.length + seg.pending.length;
        this.#report(new LocalLogError(`local log segment ${seg.path}: ${(err as Error).message}; ${lost} record${lost === 1 ? '' : 's'} lost`, seg.path, err));
      }
    }
    if (seg.failed) {
      // drop the rest of this segment; the next record opens a new one
      this.#completed += seg.pending.length;
      seg.pending = [];
    }
    this.#completed += batch.length;
    this.#settle();
  }

  async #open(seg: Segment): Promise<FileHandle> {
    await this.#ensureDir(seg.stream.dir);
    let handle: FileHandle;
    for (let attempt = 0; ; attempt++) {
      try {
        handle = await fsp.open(seg.path, 'ax');
        break;
      } catch (err) {
        if ((err as { code?: string }).code !== 'EEXIST' || attempt >= 1000) throw err;
        // a segment of that name exists (an earlier run): take the next free microsecond
        seg.micros = this.#nextMicros(0);
        seg.path = path.join(seg.stream.dir, segmentName(seg.micros) + seg.stream.suffix);
      }
    }
    seg.handle = handle;
    if (seg.header !== undefined) await handle.appendFile(seg.header);
    return handle;
  }

  #ensureDir(dir: string): Promise<void> {
    let ready = this.#dirs.get(dir);
    if (!ready) {
      ready = (async () => {
        await fsp.mkdir(dir, { recursive: true });
        await markExistingDone(dir);
      })();
      this.#dirs.set(dir, ready);
      ready.catch(() => this.#dirs.delete(dir));
    }
    return ready;
  }

  async #finish(seg: Segment): Promise<void> {
    const handle = seg.handle;
    if (!handle) return;
    seg.handle = undefined;
    try {
      const st = await handle.stat();
      await handle.chmod(st.mode & 0o7777 & ~0o222);
    } catch {
      // marking done is advisory
    }
    try {
      await handle.close();
    } catch (err) {
      this.#report(new LocalLogError(`local log segment ${seg.path}: close failed: ${(err as Error).message}`, seg.path, err));
    }
  }

  #settle(): void {
    if (this.#flushWaiters.length === 0) return;
    const done = this.#completed;
    const still: FlushWaiter[] = [];
    for (const w of this.#flushWaiters) {
      if (w.target <= done) w.resolve();
      else still.push(w);
    }
    this.#flushWaiters = still;
  }

  #report(err: Error): void {
    try {
      this.#onError(err);
    } catch (thrown) {
      queueMicrotask(() => {
        throw thrown;
      });
    }
  }
}

/** Remove the write bits of the files already in `dir` (KumoMTA: "mark existing logs as done"). */
async function markExistingDone(dir: string): Promise<void> {
  let entries;
  try {
    entries = await fsp.readdir(dir, { withFileTypes: true });
  } catch {
    return;
  }
  await Promise.all(
    entries
      .filter((e) => e.isFile() && !e.name.startsWith('.'))
      .map(async (e) => {
        const p = path.join(dir, e.name);
        try {
          const st = await fsp.stat(p);
          if (st.mode & 0o222) await fsp.chmod(p, st.mode & 0o7777 & ~0o222);
        } catch {
          // advisory
        }
      }),
  );
}

async function segmentsOf(dir: string): Promise<Array<{ name: string; text: string }>> {
  const entries = await fsp.readdir(dir, { withFileTypes: true });
  const names = entries
    .filter((e) => e.isFile() && !e.name.startsWith('.'))
    .map((e) => e.name)
    .sort();
  const out: Array<{ name: string; text: string }> = [];
  for (const name of names) {
    const buf = await fsp.readFile(path.join(dir, name));
    if (buf.length >= 4 && buf.readUInt32LE(0) === 0xfd2fb528) {
      throw new Error(`${path.join(dir, name)}: zstd-compressed segment (written by KumoMTA); sluice reads plain-text segments only`);
    }
    out.push({ name, text: buf.toString('utf8') });
  }
  return out;
}

/** Every non-empty line of every segment in `dir`, segments in name (time) order. */
export async function readLocalLogLines(dir: string): Promise<string[]> {
  const lines: string[] = [];
  for (const { text } of await segmentsOf(dir)) {
    for (const line of text.split('\n')) if (line !== '') lines.push(line);
  }
  return lines;
}

/** Every record in `dir` (JSON segments), in segment name order then line order. */
export async function readLocalLogs(dir: string): Promise<JsonLogRecord[]> {
  const records: JsonLogRecord[] = [];
  for (const { name, text } of await segmentsOf(dir)) {
    const lines = text.split('\n');
    for (let i = 0; i < lines.length; i++) {
      const line = lines[i] as string;
      if (line === '') continue;
      try {
        records.push(JSON.parse(line) as JsonLogRecord);
      } catch (err) {
        throw new Error(`${path.join(dir, name)}:${i + 1}: not a JSON record: ${(err as Error).message}`);
      }
    }
  }
  return records;
}
