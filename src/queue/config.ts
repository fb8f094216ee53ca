/**
 * Queue and egress-path configuration: what `kumo.make_queue_config{...}`
 * and `kumo.make_egress_path{...}` accept, with KumoMTA's names and
 * defaults. Unknown keys are errors; SMTP-only keys of the egress path are
 * accepted (so shaping files written for KumoMTA load) and have no effect.
 *
 * Defaults (KumoMTA's code, kumomta-facts §5–6):
 *   retry_interval 20m · max_retry_interval none · max_age 7 days
 *   reap_interval 10m · refresh_interval 1m · refresh_strategy Ttl
 *   connection_limit 32 · max_ready 1024 · max_deliveries_per_connection 1024
 *   idle_timeout 5s · custom_lua batch_size 1, min_batch_size 1, max_batch_latency 0s
 * The log_hooks helper overrides retry_interval to 1m and max_retry_interval to 20m.
 */
import {
  OptionError, asMap, boolean, duration, integerField, isLuaFloat, markLuaFloat, oneOf, parseRecord, string, unsigned,
  type FieldParser, type Schema,
} from '../config/schema.js';
import { describe } from '../config/duration.js';

export interface CustomLuaProtocol {
  kind: 'custom_lua';
  constructor: string;
  batch_size: number;
  min_batch_size: number;
  /** @defaultValue 0 (ms) */
  max_batch_latency: number;
}

export interface MaildirProtocol {
  kind: 'maildir';
  maildir_path: string;
  dir_mode?: number;
  file_mode?: number;
}

export interface SmtpProtocol {
  kind: 'smtp';
  options: Record<string, unknown>;
}

export type DeliveryProtocol = CustomLuaProtocol | MaildirProtocol | SmtpProtocol;

export interface QueueConfig {
  /** Base of the exponential backoff, ms. @defaultValue 20 minutes */
  retry_interval: number;
  /** Cap on one retry delay, ms. @defaultValue none */
  max_retry_interval?: number;
  /** Age after which a message expires instead of being retried, ms. @defaultValue 7 days */
  max_age: number;
  egress_pool?: string;
  /** Throttle spec such as "10/s". @defaultValue none */
  max_message_rate?: string;
  /** @defaultValue { smtp = {} } */
  protocol: DeliveryProtocol;
  /** @defaultValue 10 minutes */
  reap_interval: number;
  /** @defaultValue 1 minute */
  refresh_interval: number;
  timerwheel_tick_interval?: number;
  strategy: 'SingletonTimerWheel' | 'SingletonTimerWheelV2' | 'TimerWheel' | 'SkipList';
  refresh_strategy: 'Ttl' | 'Epoch';
  provider_name?: string;
  shrink_policy: unknown[];
}

const CUSTOM_LUA_SCHEMA: Schema<Omit<CustomLuaProtocol, 'kind'>> = {
  constructor: { parse: string },
  batch_size: { parse: unsigned(65535), default: () => 1 },
  min_batch_size: { parse: unsigned(65535), default: () => 1 },
  max_batch_latency: { parse: duration, default: () => 0 },
};

const parseProtocol: FieldParser<DeliveryProtocol> = (v) => {
  const obj = asMap(v);
  if ('custom_lua' in obj) {
    if (Object.keys(obj).length !== 1) throw new OptionError('custom_lua must be the only key of protocol');
    const p = parseRecord('custom_lua', CUSTOM_LUA_SCHEMA, obj.custom_lua);
    if (p.batch_size < 1) throw new OptionError('custom_lua: batch_size must be at least 1');
    return Object.freeze({ kind: 'custom_lua', ...p });
  }
  if ('maildir_path' in obj) {
    const p = parseRecord('maildir', {
      maildir_path: { parse: string },
      dir_mode: { parse: unsigned(0o7777), optional: true },
      file_mode: { parse: unsigned(0o7777), optional: true },
    }, obj);
    return Object.freeze({ kind: 'maildir', ...p });
  }
  if ('smtp' in obj) return Object.freeze({ kind: 'smtp', options: asMap(obj.smtp) });
  if ('xfer' in obj) throw new OptionError('the xfer protocol is not supported by sluice');
  throw new OptionError(`invalid protocol ${describe(v)}: expected {custom_lua={...}}, {maildir_path=...} or {smtp={...}}`);
};

const throttleSpec: FieldParser<string> = (v) => {
  const s = string(v, '');
  if (!/^\s*(local:)?[\d,_]+\s*\/\s*(s|sec|second|m|min|minute|h|hr|hour|d|day)\s*$/i.test(s)) {
    throw new OptionError(`invalid throttle "${s}": expected a rate such as "10/s" or "1,000/hr"`);
  }
  return s;
};

export const QUEUE_CONFIG_SCHEMA: Schema<QueueConfig> = {
  retry_interval: { parse: duration, default: () => 20 * 60_000 },
  max_retry_interval: { parse: duration, optional: true },
  max_age: { parse: duration, default: () => 7 * 86_400_000 },
  egress_pool: { parse: string, optional: true },
  max_message_rate: { parse: throttleSpec, optional: true },
  protocol: { parse: parseProtocol, default: () => Object.freeze({ kind: 'smtp', options: {} }) as SmtpProtocol },
  reap_interval: { parse: duration, default: () => 10 * 60_000 },
  refresh_interval: { parse: duration, default: () => 60_000 },
  timerwheel_tick_interval: { parse: duration, optional: true },
  strategy: { parse: oneOf(['SingletonTimerWheel', 'SingletonTimerWheelV2', 'TimerWheel', 'SkipList'] as const), default: () => 'SingletonTimerWheel' },
  refresh_strategy: { parse: oneOf(['Ttl', 'Epoch'] as const), default: () => 'Ttl' },
  provider_name: { parse: string, optional: true },
  shrink_policy: { parse: (v) => (Array.isArray(v) ? v : []), default: () => [] },
};

export function parseQueueConfig(input: unknown): Readonly<QueueConfig> {
  return parseRecord('QueueConfig', QUEUE_CONFIG_SCHEMA, input);
}

/** The delay before retry `attempt` (0-based), ms: retry_interval·2^n capped by max_retry_interval, whole seconds. */
export function delayForAttempt(cfg: Pick<QueueConfig, 'retry_interval' | 'max_retry_interval'>, attempt: number): number {
  const base = Math.floor(cfg.retry_interval / 1000);
  let secs = base === 0 ? 0 : base * 2 ** attempt;
  if (!Number.isFinite(secs)) secs = Number.MAX_SAFE_INTEGER;
  if (cfg.max_retry_interval !== undefined) secs = Math.min(secs, Math.floor(cfg.max_retry_interval / 1000));
  return secs * 1000;
}

export interface EgressPathConfig {
  /** Concurrent sessions for this path. @defaultValue 32 */
  connection_limit: number;
  /** Ready-queue capacity. @defaultValue 1024 */
  max_ready: number;
  /** Messages per session before close(). @defaultValue 1024 */
  max_deliveries_per_connection: number;
  /** A session with no work for this long is closed, ms. @defaultValue 5 s */
  idle_timeout: number;
  max_message_rate?: string;
  max_connection_rate?: string;
  /** @defaultValue 100 */
  consecutive_connection_failures_before_delay: number;
  system_shutdown_timeout?: number;
  /** @defaultValue 600 s for Lua */
  dispatcher_progress_watchdog_timeout: number;
  refresh_interval: number;
  refresh_strategy: 'Ttl' | 'Epoch';
  provider_name?: string;
  suspended: boolean;
}

const connectionLimit: FieldParser<number> = integerField((v) => {
  if (typeof v === 'number') return unsigned()(v, 'connection_limit');
  if (typeof v === 'string') {
    const digits = v.replace(/^local:/, '').replace(/[,_]/g, '');
    if (/^\d+$/.test(digits)) return Number(digits);
  }
  throw new OptionError(`invalid value ${describe(v)}: expected a number, or a string such as "1,000" or "local:10"`);
});

/** SMTP-only keys of KumoMTA's EgressPathConfig: accepted, no effect on Lua or maildir delivery. */
const SMTP_ONLY_KEYS = [
  'enable_tls', 'enable_mta_sts', 'enable_dane', 'enable_pipelining', 'enable_rset', 'tls_prefer_openssl',
  'openssl_cipher_list', 'openssl_cipher_suites', 'openssl_options', 'rustls_cipher_suites', 'tls_certificate',
  'tls_private_key', 'smtp_port', 'ehlo_domain', 'connect_timeout', 'banner_timeout', 'ehlo_timeout',
  'starttls_timeout', 'mail_from_timeout', 'rcpt_to_timeout', 'data_timeout', 'data_dot_timeout',
  'rset_timeout', 'auth_timeout', 'max_recipients_per_batch', 'prohibited_hosts', 'skip_hosts',
  'allow_smtp_auth_plain_without_tls', 'smtp_auth_plain_username', 'smtp_auth_plain_password',
  'aggressive_connection_opening', 'reconnect_strategy', 'source_selection_rate', 'remember_broken_tls',
  'opportunistic_tls_reconnect_on_failed_handshake', 'use_lmtp', 'try_next_host_on_transport_error',
  'ignore_8bit_checks', 'additional_message_rate_throttles', 'additional_connection_limits',
  'additional_source_selection_rates', 'max_connection_rate_per_source', 'mx_rollup', 'client_timeouts',
];

const anyValue: FieldParser<unknown> = (v) => v;

export const EGRESS_PATH_SCHEMA: Schema<EgressPathConfig> = {
  connection_limit: { parse: connectionLimit, default: () => 32 },
  max_ready: { parse: unsigned(), default: () => 1024 },
  max_deliveries_per_connection: { parse: unsigned(), default: () => 1024 },
  idle_timeout: { parse: duration, default: () => 5000 },
  max_message_rate: { parse: throttleSpec, optional: true },
  max_connection_rate: { parse: throttleSpec, optional: true },
  consecutive_connection_failures_before_delay: { parse: unsigned(), default: () => 100 },
  system_shutdown_timeout: { parse: duration, optional: true },
  dispatcher_progress_watchdog_timeout: { parse: duration, default: () => 600_000 },
  refresh_interval: { parse: duration, default: () => 60_000 },
  refresh_strategy: { parse: oneOf(['Ttl', 'Epoch'] as const), default: () => 'Ttl' },
  provider_name: { parse: string, optional: true },
  suspended: { parse: boolean, default: () => false },
};

export function parseEgressPathConfig(input: unknown): Readonly<EgressPathConfig> {
  const obj = input === undefined || input === null ? {} : asMap(input);
  const own: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(obj)) {
    if (SMTP_ONLY_KEYS.includes(k)) anyValue(v, k);
    else {
      own[k] = v;
      if (isLuaFloat(obj, k)) markLuaFloat(own, k);
    }
  }
  try {
    return parseRecord('EgressPathConfig', EGRESS_PATH_SCHEMA, own);
  } catch (err) {
    if (err instanceof OptionError && err.kind === 'unknown') {
      throw new OptionError(err.message.replace(/expected one of .*?( \(did|$)/, (_m, tail) => `expected one of ${[...Object.keys(EGRESS_PATH_SCHEMA), ...SMTP_ONLY_KEYS].map((n) => `\`${n}\``).join(', ')}${tail ?? ''}`), err.field, 'unknown');
    }
    throw err;
  }
}
