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

export function createLogger(options: LoggerOptions = {}, base: LogFields = {}): Logger {
  const min = LEVELS[options.level ?? 'info'];
  const write = options.write ?? ((line: string) => process.stderr.write(line + '\n'));
  const tty = options.isTTY ?? Boolean(process.stderr.isTTY);
  const pretty = options.format === 'pretty' || (options.format !== 'json' && tty);

  const emit = (level: LogLevel, msg: string, fields?: LogFields): void => {
    if (LEVELS[level] < min) return;
    const all = redact({ ...base, ...fields });
    if (pretty) {
      const time = new Date().toISOString().slice(11, 23);
      const extra = Object.entries(all)
        .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`)
        .join(' ');
      write(`${time} ${level.toUpperCase().padEnd(5)} ${msg}${extra ? '  ' + extra : ''}`);
    } else {
      write(JSON.stringify({ time: new Date().toISOString(), level, msg, ...all }));
    }
  };

  return {
    debug: (m, f) => emit('debug', m, f),
    info: (m, f) => emit('info', m, f),
    warn: (m, f) => emit('warn', m, f),
    error: (m, f) => emit('error', m, f),
    child: (fields) => createLogger(options, { ...base, ...fields }),
    enabled: (level) => LEVELS[level] >= min,
  };
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
