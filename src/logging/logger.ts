/**
 * Structured logs (pino, JSON lines on stderr). `SLUICE_LOG_LEVEL` sets the
 * level; `SLUICE_LOG_PRETTY=1` or a terminal on stderr gives one readable
 * line per entry instead of JSON.
 */
import { pino, type Logger as PinoLogger, type DestinationStream } from 'pino';

export type Logger = Pick<PinoLogger, 'info' | 'warn' | 'error' | 'debug' | 'child' | 'level'>;

export interface LoggerOptions {
  level?: string;
  /** Write to this stream instead of stderr (tests). */
  destination?: NodeJS.WritableStream;
}

export function createLogger(opts: LoggerOptions = {}): Logger {
  const level = opts.level ?? process.env.SLUICE_LOG_LEVEL ?? 'info';
  const dest = opts.destination ?? process.stderr;
  const pretty = process.env.SLUICE_LOG_PRETTY === '1' || (dest === process.stderr && process.stderr.isTTY);
  if (pretty) return pino({ level, base: undefined, timestamp: false }, readableLines(dest));
  return pino({ level, base: undefined, timestamp: pino.stdTimeFunctions.isoTime }, dest as DestinationStream);
}

const LEVELS: Record<number, string> = { 10: 'TRACE', 20: 'DEBUG', 30: 'INFO', 40: 'WARN', 50: 'ERROR', 60: 'FATAL' };

/** A tiny formatter for terminals: `HH:MM:SS LEVEL message key=value`. */
function readableLines(dest: NodeJS.WritableStream): DestinationStream {
  return {
    write(line: string): void {
      try {
        const { level, msg, time: _t, ...rest } = JSON.parse(line) as Record<string, unknown>;
        const extra = Object.entries(rest)
          .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`)
          .join(' ');
        const t = new Date().toISOString().slice(11, 19);
        dest.write(`${t} ${LEVELS[level as number] ?? level} ${msg ?? ''}${extra ? ` ${extra}` : ''}\n`);
      } catch {
        dest.write(line);
      }
    },
  };
}
