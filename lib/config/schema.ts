// A small typed schema library for the YAML configuration. The core config and every plugin's
// options are declared with it, so all of them get the same behaviour: defaults filled in, unknown
// keys refused, and one-line errors that name the option's dotted path and its file:line:col.
//
// Units, chosen so that a value never needs a guess about its unit:
// - durations are strings with a unit (`250ms`, `30s`, `5m`, `1h`, `30d`, `2w`, or compounds such as
//   `1h30m`) and parse to milliseconds. A bare number is refused (is `30` seconds, as in ejabberd,
//   or milliseconds, as in Node?) except `0`, which means the same in every unit.
// - sizes are a plain integer of bytes, or a number with a unit: `KB`/`MB`/`GB`/`TB` are powers of
//   1000, `KiB`/`MiB`/`GiB`/`TiB` powers of 1024 (units are case-insensitive; `B` is always bytes).
import { JidError, prepDomain } from '../jid.js';
import { BootError } from '../errors.js';

export type Path = ReadonlyArray<string | number>;

/** Where values come from: turns a config path into "file:line:col" for error messages. */
export interface ParseContext {
  /**
   * Position of the node at `path`; when the path does not exist, the position of its nearest
   * existing ancestor. `at: 'key'` asks for the key of a mapping entry instead of its value.
   */
  locate(path: Path, at?: 'key' | 'value'): string | undefined;
}

/** A context without positions, for values that do not come from a file. */
export const NO_LOCATION: ParseContext = { locate: () => undefined };

export interface Schema<T> {
  readonly kind: string;
  /** One-line documentation. */
  readonly doc?: string;
  /** True when the value may be left out of the config (it has a default or is optional). */
  readonly hasDefault: boolean;
  /** The default as it would be written in the config file, for documentation. */
  readonly defaultText?: string;
  /** Nested schemas, for documentation: object fields, list items, mapping values, optional inner. */
  readonly fields?: Readonly<Record<string, Schema<unknown>>>;
  readonly item?: Schema<unknown>;
  readonly values?: Schema<unknown>;
  readonly inner?: Schema<unknown>;
  /** Validates and converts; `undefined` (key absent) gives the default or a 'required' error. */
  parse(value: unknown, path: Path, ctx: ParseContext): T;
  /** Human description of the accepted values, e.g. 'duration (e.g. 250ms, 30s, 5m, 1h, 30d)'. */
  describe(): string;
}

export type Infer<S> = S extends Schema<infer T> ? T : never;

/** Shows a path the way it is written in messages: `listen.0.port`. */
export function dottedPath(path: Path): string {
  return path.length === 0 ? '(top level)' : path.join('.');
}

function oneLine(text: string): string {
  return text.replace(/\s*[\r\n]+\s*/g, ' ').trim();
}

/** An invalid config value. The message is one line: "<file:line:col>: <dotted.path>: <problem>". */
export class ConfigError extends BootError {
  readonly path: string;
  readonly location?: string;
  readonly problem: string;
  constructor(path: Path, problem: string, location?: string) {
    const dotted = dottedPath(path);
    const text = oneLine(problem);
    super('CONFIG_INVALID', `${location ? `${location}: ` : ''}${dotted}: ${text}`);
    this.name = 'ConfigError';
    this.path = dotted;
    this.problem = text;
    if (location !== undefined) this.location = location;
  }
}

function fail(path: Path, ctx: ParseContext, problem: string, at: 'key' | 'value' = 'value'): never {
  throw new ConfigError(path, problem, ctx.locate(path, at));
}

/** Shows a config value briefly in an error message. */
function show(value: unknown): string {
  if (value === undefined) return 'nothing';
  if (value === null) return 'an empty value';
  if (typeof value === 'string') {
    const quoted = JSON.stringify(value);
    return quoted.length > 60 ? `${quoted.slice(0, 57)}..."` : quoted;
  }
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'a mapping';
  return String(value);
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && !Buffer.isBuffer(value);
}

/** Renders a value the way it would be written in YAML flow style, for documentation. */
function yamlText(value: unknown): string {
  if (typeof value === 'string') {
    // Plain when YAML would read it back as the same string; quoted otherwise.
    const plain = /^[A-Za-z_./][\w./@+-]*$/.test(value) && !/^(true|false|null|yes|no|on|off|~)$/i.test(value);
    return plain ? value : `'${value.replace(/'/g, "''")}'`;
  }
  if (Array.isArray(value)) return `[${value.map(yamlText).join(', ')}]`;
  if (isPlainObject(value)) {
    return `{${Object.entries(value).map(([k, v]) => `${k}: ${yamlText(v)}`).join(', ')}}`;
  }
  return value === undefined ? '~' : String(value);
}

// Deep copies defaults so that a caller mutating its parsed config cannot change later parses.
function copy<T>(value: T): T {
  return value === undefined ? value : structuredClone(value);
}

export interface CommonOptions<T> {
  doc?: string;
  /** Extra rule on the converted value; returns what is wrong, or undefined when it is fine. */
  check?: (value: T) => string | undefined;
}

/**
 * Base for the value schemas: handles absent values (default or 'required'), the extra `check`
 * and documentation; subclasses convert a present value in `convert`.
 */
abstract class BaseSchema<T> implements Schema<T> {
  abstract readonly kind: string;
  readonly doc?: string;
  readonly hasDefault: boolean;
  readonly defaultText?: string;
  readonly fields?: Readonly<Record<string, Schema<unknown>>>;
  readonly item?: Schema<unknown>;
  readonly values?: Schema<unknown>;
  readonly inner?: Schema<unknown>;
  private readonly check?: (value: T) => string | undefined;
  private readonly configDefault: unknown;
  private parsedDefault?: { value: T };

  constructor(options: CommonOptions<T> & { default?: unknown }, defaultText?: (d: unknown) => string) {
    if (options.doc !== undefined) this.doc = options.doc;
    if (options.check) this.check = options.check;
    this.configDefault = options.default;
    this.hasDefault = options.default !== undefined;
    if (options.default !== undefined) this.defaultText = (defaultText ?? yamlText)(options.default);
  }

  abstract describe(): string;
  protected abstract convert(value: unknown, path: Path, ctx: ParseContext): T;

  /** What an absent value means; object schemas override this to fill in their fields. */
  protected absent(path: Path, ctx: ParseContext): T {
    if (!this.hasDefault) fail(path, ctx, `missing (expected ${this.describe()})`);
    if (!this.parsedDefault) this.parsedDefault = { value: this.fromDefault(this.configDefault, path) };
    return copy(this.parsedDefault.value);
  }

  /**
   * Converts the default given in code. It goes through the same conversion as a configured value
   * (so '60s' becomes 60000); an invalid default is a programming error, reported with its path.
   */
  protected fromDefault(value: unknown, path: Path): T {
    return this.convertChecked(value, path, NO_LOCATION);
  }

  protected convertChecked(value: unknown, path: Path, ctx: ParseContext): T {
    const out = this.convert(value, path, ctx);
    const problem = this.check?.(out);
    if (problem !== undefined) fail(path, ctx, problem);
    return out;
  }

  parse(value: unknown, path: Path, ctx: ParseContext): T {
    if (value === undefined) return this.absent(path, ctx);
    return this.convertChecked(value, path, ctx);
  }

  protected expected(value: unknown, path: Path, ctx: ParseContext, hint = ''): never {
    fail(path, ctx, `expected ${this.describe()}, got ${show(value)}${hint}`);
  }
}

function rangeText(min: number | undefined, max: number | undefined, fmt: (n: number) => string = String): string {
  if (min !== undefined && max !== undefined) return ` from ${fmt(min)} to ${fmt(max)}`;
  if (min !== undefined) return ` of at least ${fmt(min)}`;
  if (max !== undefined) return ` of at most ${fmt(max)}`;
  return '';
}

// ---------------------------------------------------------------------------------------------
// Scalars

export interface StringOptions extends CommonOptions<string> {
  default?: string;
  pattern?: RegExp;
  minLength?: number;
  maxLength?: number;
}

class StringSchema extends BaseSchema<string> {
  readonly kind = 'string';
  constructor(private readonly o: StringOptions) {
    super(o);
  }

  describe(): string {
    let text = 'string';
    if (this.o.minLength === 1 && this.o.maxLength === undefined) text = 'non-empty string';
    else if (this.o.minLength !== undefined || this.o.maxLength !== undefined) {
      text += ` with length${rangeText(this.o.minLength, this.o.maxLength)}`;
    }
    if (this.o.pattern) text += ` matching ${String(this.o.pattern)}`;
    return text;
  }

  protected convert(value: unknown, path: Path, ctx: ParseContext): string {
    if (typeof value !== 'string') {
      // YAML reads `version: 1.0` or `name: 2024` as numbers; quoting is the fix.
      const quote = typeof value === 'number' || typeof value === 'boolean' ? ' (put it in quotes)' : '';
      this.expected(value, path, ctx, quote);
    }
    const { minLength, maxLength, pattern } = this.o;
    if ((minLength !== undefined && value.length < minLength) || (maxLength !== undefined && value.length > maxLength)) {
      this.expected(value, path, ctx);
    }
    if (pattern && !pattern.test(value)) this.expected(value, path, ctx);
    return value;
  }
}

export interface IntOptions extends CommonOptions<number> {
  default?: number;
  min?: number;
  max?: number;
}

class IntSchema extends BaseSchema<number> {
  kind = 'int';
  constructor(private readonly o: IntOptions, private readonly name = 'integer') {
    super(o);
  }

  describe(): string {
    return `${this.name}${rangeText(this.o.min, this.o.max)}`;
  }

  protected convert(value: unknown, path: Path, ctx: ParseContext): number {
    if (typeof value !== 'number' || !Number.isSafeInteger(value)) {
      const quoted = typeof value === 'string' && /^\s*-?\d+\s*$/.test(value) ? ' (remove the quotes)' : '';
      this.expected(value, path, ctx, quoted);
    }
    if ((this.o.min !== undefined && value < this.o.min) || (this.o.max !== undefined && value > this.o.max)) {
      this.expected(value, path, ctx);
    }
    return value;
  }
}

class PortSchema extends IntSchema {
  override kind = 'port';
  constructor(o: IntOptions) {
    super({ ...o, min: o.min ?? 0, max: o.max ?? 65535 }, 'port number');
  }
}

class BoolSchema extends BaseSchema<boolean> {
  readonly kind = 'bool';
  constructor(o: CommonOptions<boolean> & { default?: boolean }) {
    super(o);
  }

  describe(): string {
    return 'true or false';
  }

  protected convert(value: unknown, path: Path, ctx: ParseContext): boolean {
    if (typeof value !== 'boolean') {
      // YAML 1.2 (which Parley reads) no longer treats yes/no/on/off as booleans.
      const hint = typeof value === 'string' && /^(yes|no|on|off|y|n)$/i.test(value) ? ' (YAML 1.2 booleans are true and false)' : '';
      this.expected(value, path, ctx, hint);
    }
    return value;
  }
}

const DURATION_UNITS: Record<string, number> = {
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
  w: 604_800_000,
};

/**
 * Longest delay to give a Node timer: they take at most 2^31-1 ms (about 24.8 days) and fire at
 * once when given more. A round number, so that messages can say it plainly.
 */
export const MAX_TIMER_MS = 24 * 86_400_000;

/** Parses a duration string to milliseconds; undefined when it does not follow the rule. */
export function parseDuration(value: unknown): number | undefined {
  if (value === 0) return 0;
  if (typeof value !== 'string') return undefined;
  const text = value.trim();
  if (text === '0') return 0;
  const part = /(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)(?![a-z])\s*/gy;
  let total = 0;
  let end = 0;
  let m: RegExpExecArray | null;
  while ((m = part.exec(text)) !== null) {
    total += Number(m[1]) * DURATION_UNITS[m[2]!]!;
    end = part.lastIndex;
  }
  if (end === 0 || end !== text.length) return undefined;
  return Math.round(total);
}

/** Writes milliseconds back in the largest unit that divides them: 60000 -> '1m'. */
export function formatDuration(ms: number): string {
  if (ms === 0) return '0';
  for (const unit of ['w', 'd', 'h', 'm', 's'] as const) {
    const size = DURATION_UNITS[unit]!;
    if (ms % size === 0) return `${ms / size}${unit}`;
  }
  return `${ms}ms`;
}

export interface DurationOptions extends CommonOptions<number> {
  /** In milliseconds, or a duration string. */
  default?: number | string;
  min?: number | string;
  max?: number | string;
}

function durationBound(bound: number | string | undefined): number | undefined {
  if (bound === undefined || typeof bound === 'number') return bound;
  const ms = parseDuration(bound);
  if (ms === undefined) throw new TypeError(`invalid duration bound ${JSON.stringify(bound)}`);
  return ms;
}

class DurationSchema extends BaseSchema<number> {
  readonly kind = 'duration';
  private readonly min?: number;
  private readonly max?: number;
  constructor(o: DurationOptions) {
    super(o, (d) => (typeof d === 'number' ? formatDuration(d) : String(d)));
    const min = durationBound(o.min);
    const max = durationBound(o.max);
    if (min !== undefined) this.min = min;
    if (max !== undefined) this.max = max;
  }

  describe(): string {
    return `duration${rangeText(this.min, this.max, formatDuration)} (e.g. 250ms, 30s, 5m, 1h, 30d)`;
  }

  // Defaults written in code may be plain milliseconds; values in a config file must carry a unit.
  protected override fromDefault(value: unknown, path: Path): number {
    return typeof value === 'number' ? this.convertChecked(formatDuration(value), path, NO_LOCATION) : super.fromDefault(value, path);
  }

  protected convert(value: unknown, path: Path, ctx: ParseContext): number {
    const ms = parseDuration(value);
    if (ms === undefined) {
      const hint = typeof value === 'number' ? ` (add a unit, e.g. '${value}s' or '${value}ms')` : '';
      this.expected(value, path, ctx, hint);
    }
    if ((this.min !== undefined && ms < this.min) || (this.max !== undefined && ms > this.max)) {
      this.expected(value, path, ctx);
    }
    return ms;
  }
}

const SIZE_UNITS: Record<string, number> = {
  b: 1,
  kb: 1000,
  mb: 1000 ** 2,
  gb: 1000 ** 3,
  tb: 1000 ** 4,
  kib: 1024,
  mib: 1024 ** 2,
  gib: 1024 ** 3,
  tib: 1024 ** 4,
};

/** Parses a size (bytes, or a number with a unit) to bytes; undefined when malformed. */
export function parseSize(value: unknown): number | undefined {
  if (typeof value === 'number') return Number.isSafeInteger(value) && value >= 0 ? value : undefined;
  if (typeof value !== 'string') return undefined;
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(value);
  if (!m) return undefined;
  const factor = m[2] === '' ? 1 : SIZE_UNITS[m[2]!.toLowerCase()];
  if (factor === undefined) return undefined;
  const bytes = Math.round(Number(m[1]) * factor);
  return Number.isSafeInteger(bytes) ? bytes : undefined;
}

/** Writes bytes in the largest binary (or else decimal) unit that divides them: 262144 -> '256KiB'. */
export function formatSize(bytes: number): string {
  for (const [unit, size] of [['TiB', 1024 ** 4], ['GiB', 1024 ** 3], ['MiB', 1024 ** 2], ['KiB', 1024],
    ['TB', 1000 ** 4], ['GB', 1000 ** 3], ['MB', 1000 ** 2], ['KB', 1000]] as const) {
    if (bytes !== 0 && bytes % size === 0) return `${bytes / size}${unit}`;
  }
  return String(bytes);
}

export interface SizeOptions extends CommonOptions<number> {
  /** In bytes, or a size string. */
  default?: number | string;
  min?: number | string;
  max?: number | string;
}

function sizeBound(bound: number | string | undefined): number | undefined {
  if (bound === undefined) return undefined;
  const bytes = parseSize(bound);
  if (bytes === undefined) throw new TypeError(`invalid size bound ${JSON.stringify(bound)}`);
  return bytes;
}

class SizeSchema extends BaseSchema<number> {
  readonly kind = 'size';
  private readonly min?: number;
  private readonly max?: number;
  constructor(o: SizeOptions) {
    super(o, (d) => (typeof d === 'number' ? formatSize(d) : String(d)));
    const min = sizeBound(o.min);
    const max = sizeBound(o.max);
    if (min !== undefined) this.min = min;
    if (max !== undefined) this.max = max;
  }

  describe(): string {
    return `size${rangeText(this.min, this.max, formatSize)} (bytes, or e.g. 256KiB, 10MiB, 1GB)`;
  }

  protected convert(value: unknown, path: Path, ctx: ParseContext): number {
    const bytes = parseSize(value);
    if (bytes === undefined) {
      const hint = typeof value === 'string' && /^\s*[\d.]+\s*[kmgt]\s*$/i.test(value) ? ' (write KiB for 1024 or KB for 1000)' : '';
      this.expected(value, path, ctx, hint);
    }
    if ((this.min !== undefined && bytes < this.min) || (this.max !== undefined && bytes > this.max)) {
      this.expected(value, path, ctx);
    }
    return bytes;
  }
}

class EnumSchema<V extends string> extends BaseSchema<V> {
  readonly kind = 'enum';
  constructor(private readonly choices: readonly V[], o: CommonOptions<V> & { default?: V }) {
    super(o);
  }

  describe(): string {
    return `one of ${this.choices.join(', ')}`;
  }

  protected convert(value: unknown, path: Path, ctx: ParseContext): V {
    if (typeof value !== 'string' || !(this.choices as readonly string[]).includes(value)) {
      const near = typeof value === 'string' ? this.choices.find((c) => c.toLowerCase() === value.toLowerCase()) : undefined;
      this.expected(value, path, ctx, near ? ` (did you mean ${near}?)` : '');
    }
    return value as V;
  }
}

class DomainSchema extends BaseSchema<string> {
  readonly kind = 'domain';
  constructor(o: CommonOptions<string> & { default?: string }) {
    super(o);
  }

  describe(): string {
    return 'domain name';
  }

  protected convert(value: unknown, path: Path, ctx: ParseContext): string {
    if (typeof value !== 'string') this.expected(value, path, ctx);
    let domain: string;
    try {
      domain = prepDomain(value);
    } catch (err) {
      if (!(err instanceof JidError)) throw err;
      fail(path, ctx, `expected a domain name, got ${show(value)} (${err.message})`);
    }
    // A port or URL scheme is a common slip (`example.com:5222`); JIDs have no room for either.
    if (!domain.startsWith('[') && domain.includes(':')) {
      fail(path, ctx, `expected a domain name, got ${show(value)} (no port or scheme: just the name)`);
    }
    return domain;
  }
}

class RawSchema extends BaseSchema<unknown> {
  readonly kind = 'raw';
  // Nothing to refuse: an absent value passes through as undefined, like any other value.
  override readonly hasDefault = true;
  constructor(o: CommonOptions<unknown> & { default?: unknown }) {
    super(o);
  }

  protected override absent(path: Path): unknown {
    return this.defaultText === undefined ? undefined : super.absent(path, NO_LOCATION);
  }

  describe(): string {
    return 'any value';
  }

  protected convert(value: unknown): unknown {
    return value;
  }
}

// ---------------------------------------------------------------------------------------------
// Collections

export interface ArrayOptions<T> extends CommonOptions<T[]> {
  /** Written as in the config file; each item goes through the item schema (filling its defaults). */
  default?: readonly unknown[];
  minLength?: number;
  maxLength?: number;
  /** Refuse the same item twice (compared after conversion). */
  unique?: boolean;
}

class ArraySchema<T> extends BaseSchema<T[]> {
  readonly kind = 'array';
  override readonly item: Schema<T>;
  constructor(item: Schema<T>, private readonly o: ArrayOptions<T>) {
    super(o);
    this.item = item;
  }

  describe(): string {
    const { minLength: min, maxLength: max } = this.o;
    const count = min !== undefined && max !== undefined ? ` (${min} to ${max} items)`
      : min !== undefined ? ` (at least ${min} item${min === 1 ? '' : 's'})`
        : max !== undefined ? ` (at most ${max} item${max === 1 ? '' : 's'})`
          : '';
    const item = this.item.kind === 'object' ? 'mappings' : this.item.describe();
    return `list of ${item.includes(',') ? `(${item})` : item}${count}`;
  }

  protected convert(value: unknown, path: Path, ctx: ParseContext): T[] {
    // `key:` with nothing after it is an empty list.
    const items = value === null ? [] : value;
    if (!Array.isArray(items)) this.expected(value, path, ctx);
    if (this.o.minLength !== undefined && items.length < this.o.minLength) {
      fail(path, ctx, `expected at least ${this.o.minLength} item(s), got ${items.length}`);
    }
    if (this.o.maxLength !== undefined && items.length > this.o.maxLength) {
      fail(path, ctx, `expected at most ${this.o.maxLength} item(s), got ${items.length}`);
    }
    const out = items.map((v, i) => this.item.parse(v, [...path, i], ctx));
    if (this.o.unique) {
      const seen = new Map<string, number>();
      out.forEach((v, i) => {
        const key = JSON.stringify(v);
        const first = seen.get(key);
        if (first !== undefined) fail([...path, i], ctx, `duplicate of item ${first} (${show(v)})`);
        seen.set(key, i);
      });
    }
    return out;
  }
}

/** Reports a problem at a path relative to the object being refined. */
export type Issue = (relPath: Path, problem: string, at?: 'key' | 'value') => never;

export interface ObjectOptions<T> extends CommonOptions<T> {
  /** Rules across fields, run after the fields were converted. */
  refine?: (value: T, issue: Issue) => void;
}

/** Edit distance, to suggest the key that was probably meant. */
function distance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0]!;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const cur = row[j]!;
      row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = cur;
    }
  }
  return row[b.length]!;
}

function suggestion(key: string, valid: readonly string[]): string {
  // A shortened or lengthened name (`starttls` for `starttls_required`) is far by edit distance.
  const lower = key.toLowerCase();
  const affix = lower.length >= 3 ? valid.find((v) => v.startsWith(lower) || lower.startsWith(v)) : undefined;
  if (affix !== undefined) return `did you mean '${affix}'? `;
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const candidate of valid) {
    const d = distance(key.toLowerCase(), candidate.toLowerCase());
    if (d < bestDistance) {
      best = candidate;
      bestDistance = d;
    }
  }
  return best !== undefined && bestDistance <= Math.max(2, Math.floor(key.length / 3)) ? `did you mean '${best}'? ` : '';
}

type Shape = Record<string, Schema<any>>;
type ObjectOf<S extends Shape> = { [K in keyof S]: Infer<S[K]> };

class ObjectSchema<S extends Shape> extends BaseSchema<ObjectOf<S>> {
  readonly kind = 'object';
  override readonly fields: S;
  override readonly hasDefault: boolean;
  private readonly refine?: (value: ObjectOf<S>, issue: Issue) => void;
  constructor(shape: S, o: ObjectOptions<ObjectOf<S>>) {
    super(o);
    this.fields = shape;
    // A mapping whose every key may be left out may itself be left out.
    this.hasDefault = Object.values(shape).every((f) => f.hasDefault);
    if (o.refine) this.refine = o.refine;
  }

  describe(): string {
    return 'mapping';
  }

  protected override absent(path: Path, ctx: ParseContext): ObjectOf<S> {
    // Missing keys are then reported one by one, each with its own path.
    return this.parse({}, path, ctx);
  }

  protected convert(value: unknown, path: Path, ctx: ParseContext): ObjectOf<S> {
    // `key:` with nothing after it means "all defaults", as an absent key does.
    const input = value === null ? {} : value;
    if (!isPlainObject(input)) this.expected(value, path, ctx);
    const valid = Object.keys(this.fields);
    for (const key of Object.keys(input)) {
      if (!Object.hasOwn(this.fields, key)) {
        fail([...path, key], ctx, `unknown key '${key}' (${suggestion(key, valid)}valid keys: ${valid.join(', ')})`, 'key');
      }
    }
    const out: Record<string, unknown> = {};
    for (const [key, field] of Object.entries(this.fields)) {
      out[key] = field.parse(input[key], [...path, key], ctx);
    }
    const result = out as ObjectOf<S>;
    this.refine?.(result, (rel, problem, at) => fail([...path, ...rel], ctx, problem, at));
    return result;
  }
}

export interface RecordOptions<T> extends CommonOptions<Record<string, T>> {
  /** Written as in the config file; each value goes through the value schema. */
  default?: Readonly<Record<string, unknown>>;
  /** Validates and normalises the keys (e.g. s.domain()); two keys that normalise alike are refused. */
  key?: Schema<string>;
  /** Placeholder for the key in documentation, e.g. 'host'. */
  keyName?: string;
}

class RecordSchema<T> extends BaseSchema<Record<string, T>> {
  readonly kind = 'record';
  override readonly values: Schema<T>;
  readonly keyName: string;
  constructor(values: Schema<T>, private readonly o: RecordOptions<T>) {
    super(o);
    this.values = values;
    this.keyName = o.keyName ?? 'name';
  }

  describe(): string {
    const value = this.values.kind === 'object' ? 'mapping' : this.values.describe();
    return `mapping of ${this.o.key ? this.o.key.describe() : this.keyName} to ${value}`;
  }

  protected convert(value: unknown, path: Path, ctx: ParseContext): Record<string, T> {
    const input = value === null ? {} : value;
    if (!isPlainObject(input)) this.expected(value, path, ctx);
    const out: Record<string, T> = {};
    const original = new Map<string, string>();
    for (const [rawKey, v] of Object.entries(input)) {
      const keyPath = [...path, rawKey];
      const key = this.o.key ? this.o.key.parse(rawKey, keyPath, { locate: (p) => ctx.locate(p, 'key') }) : rawKey;
      const earlier = original.get(key);
      if (earlier !== undefined) fail(keyPath, ctx, `'${rawKey}' is the same as '${earlier}'`, 'key');
      original.set(key, rawKey);
      // Own property even for keys like __proto__, which plain assignment would not create.
      Object.defineProperty(out, key, { value: this.values.parse(v, keyPath, ctx), enumerable: true, writable: true, configurable: true });
    }
    return out;
  }
}

class OptionalSchema<T> implements Schema<T | undefined> {
  readonly kind: string;
  readonly doc?: string;
  readonly hasDefault = true;
  readonly inner: Schema<T>;
  constructor(inner: Schema<T>) {
    this.inner = inner;
    this.kind = inner.kind;
    if (inner.doc !== undefined) this.doc = inner.doc;
  }

  describe(): string {
    return this.inner.describe();
  }

  parse(value: unknown, path: Path, ctx: ParseContext): T | undefined {
    // An empty value (`key:`) leaves the option unset, as leaving it out does.
    return value === undefined || value === null ? undefined : this.inner.parse(value, path, ctx);
  }
}

// ---------------------------------------------------------------------------------------------

export const s = {
  string(o: StringOptions = {}): Schema<string> {
    return new StringSchema(o);
  },
  int(o: IntOptions = {}): Schema<number> {
    return new IntSchema(o);
  },
  bool(o: CommonOptions<boolean> & { default?: boolean } = {}): Schema<boolean> {
    return new BoolSchema(o);
  },
  /** Milliseconds; see the unit rule at the top of this file. */
  duration(o: DurationOptions = {}): Schema<number> {
    return new DurationSchema(o);
  },
  /** Bytes; see the unit rule at the top of this file. */
  size(o: SizeOptions = {}): Schema<number> {
    return new SizeSchema(o);
  },
  enum<const V extends string>(values: readonly V[], o: CommonOptions<V> & { default?: NoInfer<V> } = {}): Schema<V> {
    return new EnumSchema(values, o);
  },
  array<T>(item: Schema<T>, o: ArrayOptions<T> = {}): Schema<T[]> {
    return new ArraySchema(item, o);
  },
  /**
   * A mapping with fixed keys. Unknown keys are refused (naming the valid ones); absent keys get
   * their defaults; an absent or empty mapping whose keys all have defaults parses to them.
   */
  object<S extends Shape>(shape: S, o: ObjectOptions<ObjectOf<S>> = {}): Schema<ObjectOf<S>> {
    return new ObjectSchema(shape, o);
  },
  /** A mapping from free-form names to values of one schema; an empty value is an empty mapping. */
  record<T>(values: Schema<T>, o: RecordOptions<T> = {}): Schema<Record<string, T>> {
    return new RecordSchema(values, o);
  },
  /** May be absent or empty; then undefined. */
  optional<T>(schema: Schema<T>): Schema<T | undefined> {
    return new OptionalSchema(schema);
  },
  /** A hostname, prepared (lowercased, normalised) as JID domainparts are. */
  domain(o: CommonOptions<string> & { default?: string } = {}): Schema<string> {
    return new DomainSchema(o);
  },
  /** 0..65535; 0 asks the system for a free port (tests). */
  port(o: IntOptions = {}): Schema<number> {
    return new PortSchema(o);
  },
  /** Any value, passed through; for option maps that plugins validate themselves later. */
  raw(o: CommonOptions<unknown> & { default?: unknown } = {}): Schema<unknown> {
    return new RawSchema(o);
  },
};

/** Validates `value` found at `path` (e.g. ['modules', 'ping']) against `schema`. */
export function validate<T>(schema: Schema<T>, value: unknown, path: Path, ctx: ParseContext): T {
  return schema.parse(value, path, ctx);
}

/**
 * Lists the options of a schema as YAML: each option is a key whose comment gives its type,
 * default and documentation, nested as in the config file. Lists of mappings show one `- ` item;
 * mappings of free-form names show a `<name>:` placeholder. The output parses as YAML, so tests can
 * walk it.
 */
export function documentSchema(schema: Schema<unknown>, indent = 0): string {
  const lines: string[] = [];
  const unwrap = (sch: Schema<unknown>): Schema<unknown> => sch.inner ?? sch;
  const comment = (sch: Schema<unknown>): string => {
    const parts = [unwrap(sch).describe()];
    if (sch.inner) parts.push('optional');
    else if (sch.defaultText !== undefined) parts.push(`default: ${sch.defaultText}`);
    else if (!sch.hasDefault) parts.push('required');
    if (sch.doc) parts.push(sch.doc);
    return parts.join('; ');
  };
  const children = (sch: Schema<unknown>, pad: number): void => {
    const inner = unwrap(sch);
    if (inner.fields) {
      for (const [key, field] of Object.entries(inner.fields)) entry(key, field, pad);
    } else if (inner.item) {
      const item = unwrap(inner.item);
      if (item.fields) {
        // The first field carries the list dash; the rest align under it, as YAML wants.
        const start = lines.length;
        children(item, pad + 2);
        if (lines.length > start) lines[start] = `${' '.repeat(pad)}- ${lines[start]!.slice(pad + 2)}`;
      }
    } else if (inner.values) {
      const values = unwrap(inner.values);
      if (values.fields || values.item || values.values) {
        const name = (inner as Partial<RecordSchema<unknown>>).keyName ?? 'name';
        lines.push(`${' '.repeat(pad)}<${name}>:  # ${comment(inner.values)}`);
        children(values, pad + 2);
      }
    }
  };
  const entry = (key: string, sch: Schema<unknown>, pad: number): void => {
    lines.push(`${' '.repeat(pad)}${key}:  # ${comment(sch)}`);
    children(sch, pad + 2);
  };
  children(schema, indent);
  return lines.join('\n') + '\n';
}
