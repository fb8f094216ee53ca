/**
 * Options of `kumo.configure_log_hook`, `kumo.configure_local_logs` and
 * `kumo.configure_log_disposition_hook`, strict as KumoMTA's
 * (`deny_unknown_fields`). Defaults: back_pressure 128000, meta and headers
 * empty, every record type enabled, no template.
 */
import { OptionError, asMap, boolean, duration, parseRecord, string, stringList, unsigned, type FieldParser, type Schema } from '../config/schema.js';

export const RECORD_TYPES = [
  'Reception', 'Delivery', 'TransientFailure', 'Bounce', 'Expiration', 'AdminBounce', 'OOB', 'Feedback',
  'Rejection', 'AdminRebind', 'DeferredInjectionRebind', 'Delayed', 'XferOut', 'XferIn',
] as const;
export type RecordType = (typeof RECORD_TYPES)[number];

export interface LogRecordParams {
  /** @defaultValue true */
  enable: boolean;
  /** A minijinja template for the record body. @defaultValue none (compact JSON) */
  template?: string;
  suffix?: string;
  log_dir?: string;
  segment_header?: string;
}

const LOG_RECORD_PARAMS: Schema<LogRecordParams> = {
  enable: { parse: boolean, default: () => true },
  template: { parse: string, optional: true },
  suffix: { parse: string, optional: true },
  log_dir: { parse: string, optional: true },
  segment_header: { parse: string, optional: true },
};

export type PerRecord = Readonly<Partial<Record<RecordType | 'Any', Readonly<LogRecordParams>>>>;

const perRecord: FieldParser<PerRecord> = (v) => {
  const out: Record<string, Readonly<LogRecordParams>> = {};
  for (const [k, params] of Object.entries(asMap(v))) {
    if (k !== 'Any' && !(RECORD_TYPES as readonly string[]).includes(k)) {
      throw new OptionError(`unknown variant \`${k}\`, expected \`Any\` or one of ${RECORD_TYPES.map((t) => `\`${t}\``).join(', ')}`);
    }
    out[k] = parseRecord(`per_record.${k}`, LOG_RECORD_PARAMS, params);
  }
  return Object.freeze(out);
};

export interface LogHookParams {
  name: string;
  /** @defaultValue 128000 */
  back_pressure: number;
  meta: string[];
  headers: string[];
  per_record: PerRecord;
  /** @defaultValue false */
  deferred_spool: boolean;
}

export const LOG_HOOK_SCHEMA: Schema<LogHookParams> = {
  name: { parse: string },
  back_pressure: { parse: unsigned(), default: () => 128_000 },
  meta: { parse: stringList(), default: () => [] },
  headers: { parse: stringList(), default: () => [] },
  per_record: { parse: perRecord, default: () => Object.freeze({}) },
  deferred_spool: { parse: boolean, default: () => false },
};

export function parseLogHookParams(input: unknown): Readonly<LogHookParams> {
  return parseRecord('LogHookParams', LOG_HOOK_SCHEMA, input);
}

export interface LocalLogsParams {
  log_dir: string;
  /** Rotate a segment when it reaches this many bytes. @defaultValue 1,000,000,000 */
  max_file_size: number;
  back_pressure: number;
  compression_level: number;
  /** Rotate a segment when it is this old, ms. @defaultValue none */
  max_segment_duration?: number;
  meta: string[];
  headers: string[];
  per_record: PerRecord;
  filter_event?: string;
  min_free_space?: unknown;
  min_free_inodes?: unknown;
}

export const LOCAL_LOGS_SCHEMA: Schema<LocalLogsParams> = {
  log_dir: { parse: string },
  max_file_size: { parse: unsigned(), default: () => 1_000_000_000 },
  back_pressure: { parse: unsigned(), default: () => 128_000 },
  compression_level: { parse: unsigned(22), default: () => 0 },
  max_segment_duration: { parse: duration, optional: true },
  meta: { parse: stringList(), default: () => [] },
  headers: { parse: stringList(), default: () => [] },
  per_record: { parse: perRecord, default: () => Object.freeze({}) },
  filter_event: { parse: string, optional: true },
  min_free_space: { parse: (v) => v, optional: true },
  min_free_inodes: { parse: (v) => v, optional: true },
};

export function parseLocalLogsParams(input: unknown): Readonly<LocalLogsParams> {
  return parseRecord('LocalLogsParams', LOCAL_LOGS_SCHEMA, input);
}

export interface DispositionHookParams {
  name: string;
  per_record: PerRecord;
}

export function parseDispositionHookParams(input: unknown): Readonly<DispositionHookParams> {
  return parseRecord('DispositionHookParams', {
    name: { parse: string },
    per_record: { parse: perRecord, default: () => Object.freeze({}) },
  }, input);
}
