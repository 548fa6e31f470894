// Structured logs: one JSON object a line, or a readable line when writing to a terminal.
// Secrets never reach a log line: fields whose name looks like a secret are replaced.

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
export type LogFields = Record<string, unknown>;

export interface Logger {
  debug(msg: string, fields?: LogFields): void;
  info(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  error(msg: string, fields?: LogFields): void;
  /** A logger that adds these fields to every line (e.g. a session id or plugin name). */
  child(fields: LogFields): Logger;
  enabled(level: LogLevel): boolean;
}

const LEVELS: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };
const SECRET_FIELD = /pass|secret|pin|token|sasl|credential|authorization/i;

export interface LoggerOptions {
  level?: LogLevel;
  format?: 'json' | 'pretty' | 'auto';
  write?: (line: string) => void;
  isTTY?: boolean;
}

function redact(fields: LogFields): LogFields {
  const out: LogFields = {};
  for (const [k, v] of Object.entries(fields)) {
    if (v instanceof Error) out[k] = { message: v.message, name: v.name, stack: v.stack };
    else out[k] = SECRET_FIELD.test(k) ? '[redacted]' : v;
  }
  return out;
}

interface LogSink {
  min: number;
  pretty: boolean;
  write: (line: string) => void;
}

// A class rather than closures: every session has a child logger, and methods on the prototype
// keep each one to a few fields (memory per idle session matters at scale).
class StructuredLogger implements Logger {
  constructor(private readonly sink: LogSink, private readonly base: LogFields) {}

  private emit(level: LogLevel, msg: string, fields?: LogFields): void {
    if (LEVELS[level] < this.sink.min) return;
    const all = redact(fields ? { ...this.base, ...fields } : this.base);
    if (this.sink.pretty) {
      const time = new Date().toISOString().slice(11, 23);
      const extra = Object.entries(all)
        .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`)
        .join(' ');
      this.sink.write(`${time} ${level.toUpperCase().padEnd(5)} ${msg}${extra ? '  ' + extra : ''}`);
    } else {
      this.sink.write(JSON.stringify({ time: new Date().toISOString(), level, msg, ...all }));
    }
  }

  debug(msg: string, fields?: LogFields): void {
    this.emit('debug', msg, fields);
  }
  info(msg: string, fields?: LogFields): void {
    this.emit('info', msg, fields);
  }
  warn(msg: string, fields?: LogFields): void {
    this.emit('warn', msg, fields);
  }
  error(msg: string, fields?: LogFields): void {
    this.emit('error', msg, fields);
  }
  child(fields: LogFields): Logger {
    return new StructuredLogger(this.sink, { ...this.base, ...fields });
  }
  enabled(level: LogLevel): boolean {
    return LEVELS[level] >= this.sink.min;
  }
}

export function createLogger(options: LoggerOptions = {}, base: LogFields = {}): Logger {
  const tty = options.isTTY ?? Boolean(process.stderr.isTTY);
  return new StructuredLogger({
    min: LEVELS[options.level ?? 'info'],
    pretty: options.format === 'pretty' || (options.format !== 'json' && tty),
    write: options.write ?? ((line: string) => process.stderr.write(line + '\n')),
  }, base);
}

/** Discards everything; for tests and tools that must stay quiet. */
export const silentLogger: Logger = {
  debug() {},
  info() {},
  warn() {},
  error() {},
  child() {
    return silentLogger;
  },
  enabled() {
    return false;
  },
};
