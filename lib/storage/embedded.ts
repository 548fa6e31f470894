// The embedded storage driver: one SQLite file through better-sqlite3 (DESIGN §4).
//
// Durability: the database runs in WAL mode with synchronous=NORMAL. In WAL mode a commit appends
// the transaction to the -wal file with write() before the call returns, so once a write is
// acknowledged its bytes are in the operating system's page cache and survive the process being
// killed at any point (kill -9, OOM killer, a crash in a native module); recovery replays the WAL
// on the next open. What NORMAL gives up compared to FULL is the fsync on every commit, so only an
// operating-system crash or power loss can roll back the last few commits (the file itself stays
// consistent either way). FULL would cost a disk flush per stored message; the production driver
// for deployments that need power-loss durability is MongoDB with journaled writes. The offline
// spool's guarantee (a stored message survives kill -9) rests on exactly this.
//
// Throughput: writes of one event-loop turn share one commit (group commit, see write()), and
// their promises resolve only after it, so the guarantee above holds for every resolved write.
// The fsyncs NORMAL still costs happen at checkpoints, which a worker thread runs on a connection
// of its own (checkpointer.ts) so that they never stall the event loop.
//
// Concurrency: better-sqlite3 is synchronous, so every statement runs to completion on the event
// loop and statements of this process never interleave. A second process (the admin CLI while the
// server runs) can open the same file: WAL lets its readers run beside our writer, and busy_timeout
// makes a writer wait for the other's lock instead of failing at once. Read-modify-write sequences
// use BEGIN IMMEDIATE so they take the write lock up front and cannot be invalidated half-way.
//
// Memory: archive reads always carry a LIMIT (at most MAX_PAGE rows) and counts/deletes run inside
// SQLite, so no call materialises an archive. Expired entries are hidden by `expires_at > now` in
// every read and removed in small batches through a partial index on expires_at.
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import type { Logger } from '../log.js';
import { BackgroundCheckpointer } from './checkpointer.js';
import { newId } from './ids.js';
import {
  StorageError,
  type ArchiveAppend, type ArchiveItem, type ArchivePage, type ArchiveQuery, type ArchiveStore,
  type Json, type KeyValStore, type MapStore, type StorageDriver, type WriteOptions,
} from './types.js';
import { checkKey, checkName, checkQuery, checkTime, decode, encode } from './codec.js';

type Db = Database.Database;
type Statement = Database.Statement<unknown[]>;

/** Largest number of archive items one query returns; a larger or missing limit is cut to this. */
export const MAX_PAGE = 1000;

/** How long a statement waits for another process's lock before failing with 'io'. */
const BUSY_TIMEOUT_MS = 5000;
const DEFAULT_PURGE_INTERVAL_MS = 60_000;
/** Rows removed per purge statement: small enough that another process never waits long. */
const PURGE_BATCH = 500;
/** Batches per purge run before yielding to the event loop. */
const PURGE_BATCHES_PER_RUN = 20;
const SCHEMA_VERSION = 1;
const DEFAULT_CHECKPOINT_INTERVAL_MS = 100;
/**
 * Writes per commit at most. Under load one event-loop turn runs thousands of writes (every
 * session's stanzas of one poll), and until their commit each keeps its caller's state alive: the
 * stanza, its copies and the promise chains waiting. Those objects outlive the scavenges of V8's
 * young generation, are copied by each and promoted, and then cost a full collection too. On the
 * offline bench, commits of at most 256 writes halved the time spent in scavenges (about 750 ms
 * to 390 ms for 15,000 spooled messages). The extra commits cost less than that: COMMIT went from
 * 4% to 10% of the store phase's time and garbage collection from 24% to 11% (docs/benchmarks.md,
 * sixth run), since a commit's cost follows the pages it writes and the hot pages are few.
 */
export const DEFAULT_COMMIT_BATCH = 256;
/**
 * WAL size (in pages) at which the writer checkpoints inline although the background thread
 * does it (checkpointer.ts): only a bound should that thread fall behind. 16384 pages of 4 KiB
 * are journal_size_limit, so the WAL file does not grow past what it is truncated to anyway.
 */
const INLINE_CHECKPOINT_PAGES = 16384;

// Owner comes first in every key so that purgeOwner (owner only) and the per-store lookups
// (owner and store) both use the same indexes; equality on both columns works in either order.
// Archive order is the AUTOINCREMENT seq, never reused, so a cursor id always keeps its place even
// after the newest items were deleted. The archive indexes carry expires_at so that the liveness
// test, and with it count() (asked on every MAM query), is answered from the index alone.
// archive_items_ts serves time-range queries without a cursor (a client syncing "since X" would
// otherwise walk the archive from its oldest item). STRICT keeps a bug from storing a non-text value.
const SCHEMA = `
CREATE TABLE IF NOT EXISTS kv_items (
  owner TEXT NOT NULL,
  store TEXT NOT NULL,
  value TEXT NOT NULL,
  expires_at INTEGER,
  UNIQUE (owner, store)
) STRICT;
CREATE INDEX IF NOT EXISTS kv_items_expiry ON kv_items (expires_at) WHERE expires_at IS NOT NULL;

CREATE TABLE IF NOT EXISTS map_items (
  owner TEXT NOT NULL,
  store TEXT NOT NULL,
  key TEXT NOT NULL,
  value TEXT NOT NULL,
  expires_at INTEGER,
  UNIQUE (owner, store, key)
) STRICT;
CREATE INDEX IF NOT EXISTS map_items_expiry ON map_items (expires_at) WHERE expires_at IS NOT NULL;

CREATE TABLE IF NOT EXISTS archive_items (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  owner TEXT NOT NULL,
  store TEXT NOT NULL,
  id TEXT NOT NULL,
  ts INTEGER NOT NULL,
  with_jid TEXT,
  value TEXT NOT NULL,
  expires_at INTEGER
) STRICT;
CREATE UNIQUE INDEX IF NOT EXISTS archive_items_id ON archive_items (owner, store, id);
CREATE INDEX IF NOT EXISTS archive_items_seq ON archive_items (owner, store, seq, expires_at);
CREATE INDEX IF NOT EXISTS archive_items_with ON archive_items (owner, store, with_jid, seq, expires_at);
CREATE INDEX IF NOT EXISTS archive_items_ts ON archive_items (owner, store, ts, expires_at);
CREATE INDEX IF NOT EXISTS archive_items_expiry ON archive_items (expires_at)
  WHERE expires_at IS NOT NULL;
`;

const LIVE = '(expires_at IS NULL OR expires_at > ?)';

export interface EmbeddedOptions {
  /** Database file, or ':memory:' for a private in-memory database (tests). */
  path: string;
  /** How often expired entries are removed from disk; reads hide them regardless. */
  purgeIntervalMs?: number;
  /**
   * How often a worker thread checkpoints the WAL into the database file (checkpointer.ts);
   * 0 leaves checkpoints to SQLite, inline on the writer every 1000 pages. Not for ':memory:'.
   */
  checkpointIntervalMs?: number;
  /**
   * Most writes one commit covers (DEFAULT_COMMIT_BATCH): a fuller batch commits at the next
   * microtask checkpoint instead of at the end of the event-loop turn. See write().
   */
  commitBatch?: number;
  /** Where a failed background purge or checkpoint is reported; both are retried. */
  log?: Logger;
}

/** The writes of one transaction, told their outcome when it commits or fails. */
interface Batch {
  waiters: Array<{ done: () => void; failed: (err: StorageError) => void }>;
  /** Its commit is queued as a microtask already (the batch reached the commit cap). */
  full: boolean;
}

interface ValueRow { value: string; expires_at: number | null }
interface ArchiveRow { id: string; ts: number; with_jid: string | null; value: string }

/** The absolute expiry time for a write, or null when it never expires. */
function expiry(options: WriteOptions | undefined, now: number): number | null {
  const ttl = options?.ttlMs;
  if (ttl === undefined) return null;
  if (typeof ttl !== 'number' || !Number.isFinite(ttl) || ttl < 0) {
    throw new StorageError('invalid', 'ttlMs must be a non-negative number');
  }
  return now + Math.ceil(ttl);
}

function isLive(expiresAt: number | null, now: number): boolean {
  return expiresAt === null || expiresAt > now;
}

export class EmbeddedDriver implements StorageDriver {
  readonly name = 'embedded';
  readonly path: string;
  private readonly db: Db;
  private readonly statements = new Map<string, Statement>();
  private readonly log: Logger | undefined;
  private readonly commitCap: number;
  private timer: NodeJS.Timeout | undefined;
  private readonly checkpointer: BackgroundCheckpointer | undefined;
  /** Handles of this process with a write batch open. */
  private static readonly batching = new Set<EmbeddedDriver>();
  /** The open transaction of this event-loop turn's writes (see write()). */
  private batch: Batch | undefined;
  private closed = false;

  private constructor(db: Db, options: EmbeddedOptions, checkpointer: BackgroundCheckpointer | undefined) {
    this.db = db;
    this.path = options.path;
    this.log = options.log;
    this.checkpointer = checkpointer;
    this.commitCap = options.commitBatch ?? DEFAULT_COMMIT_BATCH;
    const interval = options.purgeIntervalMs ?? DEFAULT_PURGE_INTERVAL_MS;
    if (interval > 0) {
      this.timer = setInterval(() => this.backgroundPurge(), interval);
      // The purge must never keep a process alive that has nothing else to do (CLI, tests).
      this.timer.unref();
    }
  }

  /** Opens (creating when needed) the database file; throws StorageError('io') on failure. */
  static open(options: EmbeddedOptions): EmbeddedDriver {
    const memory = options.path === ':memory:';
    if (options.commitBatch !== undefined && (!Number.isSafeInteger(options.commitBatch) || options.commitBatch < 1)) {
      throw new StorageError('invalid', 'commitBatch must be a positive integer');
    }
    let db: Db;
    try {
      if (!memory) mkdirSync(dirname(options.path), { recursive: true });
      db = new Database(options.path, { timeout: BUSY_TIMEOUT_MS });
    } catch (err) {
      throw new StorageError('io', `cannot open ${options.path}: ${(err as Error).message}`, { cause: err });
    }
    try {
      if (!memory) {
        const mode = db.pragma('journal_mode = WAL', { simple: true });
        if (String(mode).toLowerCase() !== 'wal') {
          throw new Error(`the database refused WAL mode (journal_mode is ${String(mode)})`);
        }
      }
      db.pragma('synchronous = NORMAL');
      db.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`);
      // Checkpoints leave the -wal file at its high-water mark; cap what stays on disk.
      db.pragma('journal_size_limit = 67108864');
      migrate(db);
    } catch (err) {
      db.close();
      if (err instanceof StorageError) throw err;
      throw new StorageError('io', `cannot open ${options.path}: ${(err as Error).message}`, { cause: err });
    }
    const interval = options.checkpointIntervalMs ?? DEFAULT_CHECKPOINT_INTERVAL_MS;
    let checkpointer: BackgroundCheckpointer | undefined;
    if (!memory && interval > 0) {
      db.pragma(`wal_autocheckpoint = ${INLINE_CHECKPOINT_PAGES}`);
      checkpointer = BackgroundCheckpointer.start({ path: options.path, intervalMs: interval, log: options.log });
    }
    return new EmbeddedDriver(db, options, checkpointer);
  }

  keyval<V extends Json = Json>(store: string): KeyValStore<V> {
    checkName('store', store);
    return new EmbeddedKeyVal<V>(this, store);
  }

  map<V extends Json = Json>(store: string): MapStore<V> {
    checkName('store', store);
    return new EmbeddedMap<V>(this, store);
  }

  archive<V extends Json = Json>(store: string): ArchiveStore<V> {
    checkName('store', store);
    return new EmbeddedArchive<V>(this, store);
  }

  async purgeOwner(owner: string): Promise<void> {
    checkName('owner', owner);
    await this.write(() => this.transaction(() => {
      this.stmt('DELETE FROM kv_items WHERE owner = ?').run(owner);
      this.stmt('DELETE FROM map_items WHERE owner = ?').run(owner);
      this.stmt('DELETE FROM archive_items WHERE owner = ?').run(owner);
    }));
  }

  /**
   * Removes expired entries from disk, stopping after `maxBatches` full batches of rows; returns
   * how many rows went. Reads never depend on this: it only reclaims space.
   */
  async purgeExpired(maxBatches = Number.POSITIVE_INFINITY): Promise<number> {
    return this.exec(() => this.purgeSync(maxBatches).removed);
  }

  async close(): Promise<void> {
    // Closing twice is harmless so that shutdown paths need no bookkeeping of their own.
    if (this.closed) return;
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    // Writes already run are committed, not dropped: their callers are waiting for this commit.
    if (this.batch) this.commitBatch(this.batch);
    // First, so that this connection is the last one and its close checkpoints and removes the WAL.
    await this.checkpointer?.stop();
    this.statements.clear();
    try {
      // Lets SQLite refresh its planner statistics when they went stale; cheap when they did not.
      this.db.pragma('optimize');
    } catch {
      // Only an optimisation: a busy or read-only file must not stop the close itself.
    }
    this.db.close();
  }

  /** @internal Runs `fn` against the open database, mapping SQLite failures to StorageError. */
  exec<T>(fn: () => T): T {
    if (this.closed) throw new StorageError('closed', 'the storage driver is closed');
    try {
      return fn();
    } catch (err) {
      throw toStorageError(err);
    }
  }

  /**
   * @internal Runs a write at once, inside the transaction of the current event-loop turn
   * (group commit), and resolves once that transaction has committed. Every write issued before
   * the loop reaches its check phase (all sessions whose data arrived in the same poll, or writes a
   * caller issues together) shares one commit, up to `commitBatch` writes (DEFAULT_COMMIT_BATCH
   * says why there is a cap): a commit writes each page it changed to the WAL, and
   * writes that touch the same pages (the end of the same indexes) then write them once. A failing
   * write fails alone: a statement that fails undoes only itself, and multi-statement writes run
   * in a savepoint (transaction() nests). Reads on this connection see a write as soon as it ran;
   * they are told nothing about durability, and a write is only reported done after its commit,
   * unless the caller passed `durable` (WriteOptions): then it is reported done once it ran, and the
   * commit goes to that callback.
   */
  write<T>(fn: () => T, durable?: (commit: Promise<void>) => void): Promise<T> {
    let batch: Batch;
    const result = this.exec(() => {
      batch = this.batch ?? this.openBatch();
      try {
        return fn();
      } catch (err) {
        // Some failures (I/O, a full disk) roll back the whole transaction, and with it the
        // writes that ran before this one: they must not be reported as done.
        if (!this.db.inTransaction) this.failBatch(batch, err);
        throw err;
      }
    });
    // A full batch commits once the code that issued this write has run to its next await, so
    // writes a caller issues together still share a commit.
    if (!batch!.full && batch!.waiters.length + 1 >= this.commitCap) {
      batch!.full = true;
      queueMicrotask(() => this.commitBatch(batch));
    }
    if (durable) {
      const commit = new Promise<void>((resolve, reject) => {
        batch.waiters.push({ done: resolve, failed: reject });
      });
      // Whoever passed `durable` awaits it; this only keeps a failure from going unhandled meanwhile.
      commit.catch(() => undefined);
      durable(commit);
      return Promise.resolve(result);
    }
    return new Promise<T>((resolve, reject) => {
      batch.waiters.push({ done: () => resolve(result), failed: reject });
    });
  }

  private openBatch(): Batch {
    // Another handle of this process (tests, a CLI command run in-process) holding the write lock
    // until its own commit would make BEGIN wait for a commit this same thread has to run: it
    // commits now instead.
    for (const other of EmbeddedDriver.batching) if (other.batch) other.commitBatch(other.batch);
    this.stmt('BEGIN IMMEDIATE').run();
    EmbeddedDriver.batching.add(this);
    const batch: Batch = { waiters: [], full: false };
    this.batch = batch;
    setImmediate(() => this.commitBatch(batch));
    return batch;
  }

  private commitBatch(batch: Batch): void {
    if (this.batch !== batch) return;
    this.batch = undefined;
    EmbeddedDriver.batching.delete(this);
    try {
      this.stmt('COMMIT').run();
    } catch (err) {
      this.failBatch(batch, err);
      return;
    }
    for (const w of batch.waiters) w.done();
  }

  private failBatch(batch: Batch, err: unknown): void {
    if (this.batch === batch) {
      this.batch = undefined;
      EmbeddedDriver.batching.delete(this);
    }
    try {
      if (this.db.inTransaction) this.stmt('ROLLBACK').run();
    } catch {
      // Nothing more to undo: the transaction is gone either way.
    }
    const cause = toStorageError(err);
    const failure = new StorageError(cause.code === 'closed' ? 'closed' : 'io',
      `the write was rolled back: ${cause.message}`, { cause });
    for (const w of batch.waiters.splice(0)) w.failed(failure);
  }

  /** @internal A prepared statement, prepared once per SQL text. */
  stmt(sql: string): Statement {
    let s = this.statements.get(sql);
    if (!s) {
      s = this.db.prepare(sql);
      this.statements.set(sql, s);
    }
    return s;
  }

  /** @internal */
  transaction<T>(fn: () => T): T {
    return this.db.transaction(fn).immediate();
  }

  /**
   * @internal A consistent snapshot for multi-statement reads. Inside this connection's open
   * transaction (a write batch) the reads already see one state, since this connection holds the
   * write lock and its statements run one at a time: a savepoint would only cost two statements.
   */
  snapshot<T>(fn: () => T): T {
    if (this.db.inTransaction) return fn();
    return this.db.transaction(fn).deferred();
  }

  private purgeSync(maxBatches: number): { removed: number; more: boolean } {
    const now = Date.now();
    let removed = 0;
    let full = 0;
    for (const table of ['kv_items', 'map_items', 'archive_items']) {
      // Each batch is its own short transaction found through the partial expiry index, so the
      // purge never scans a table and never holds the write lock for long.
      const del = this.stmt(`DELETE FROM ${table} WHERE rowid IN (SELECT rowid FROM ${table} ` +
        'WHERE expires_at <= ? LIMIT ?)');
      for (;;) {
        const { changes } = del.run(now, PURGE_BATCH);
        removed += changes;
        if (changes < PURGE_BATCH) break;
        // Only full batches count against the budget: a short one means the table is done.
        if (++full >= maxBatches) return { removed, more: true };
      }
    }
    return { removed, more: false };
  }

  private backgroundPurge(): void {
    if (this.closed) return;
    // The purge is housekeeping: when another process holds the write lock it must not block this
    // process's event loop for the busy timeout, so it gives up at once and tries next interval.
    this.db.pragma('busy_timeout = 0');
    try {
      const { more } = this.purgeSync(PURGE_BATCHES_PER_RUN);
      // A large backlog is worked off in slices so other work gets the event loop between them.
      if (more) setImmediate(() => this.backgroundPurge());
    } catch (err) {
      const busy = err instanceof Database.SqliteError && err.code.startsWith('SQLITE_BUSY');
      this.log?.[busy ? 'debug' : 'warn']('purging expired storage entries failed; retrying on the next interval', {
        err: err instanceof Error ? err : new Error(String(err)),
      });
    } finally {
      this.db.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`);
    }
  }
}

function migrate(db: Db): void {
  db.transaction(() => {
    const version = db.pragma('user_version', { simple: true }) as number;
    if (version > SCHEMA_VERSION) {
      throw new StorageError('invalid',
        `the database has schema version ${version}; this Parley understands up to ${SCHEMA_VERSION}`);
    }
    if (version < SCHEMA_VERSION) {
      db.exec(SCHEMA);
      db.pragma(`user_version = ${SCHEMA_VERSION}`);
    }
  }).immediate();
}

function toStorageError(err: unknown): StorageError {
  if (err instanceof StorageError) return err;
  if (err instanceof Database.SqliteError) {
    if (err.code === 'SQLITE_CONSTRAINT_UNIQUE' || err.code === 'SQLITE_CONSTRAINT_PRIMARYKEY') {
      return new StorageError('conflict', err.message, { cause: err });
    }
    return new StorageError('io', `${err.code}: ${err.message}`, { cause: err });
  }
  if (err instanceof TypeError && /database connection is not open/.test(err.message)) {
    return new StorageError('closed', 'the storage driver is closed', { cause: err });
  }
  return new StorageError('io', err instanceof Error ? err.message : String(err), { cause: err });
}

class EmbeddedKeyVal<V extends Json> implements KeyValStore<V> {
  constructor(private readonly d: EmbeddedDriver, private readonly store: string) {}

  async get(owner: string): Promise<V | undefined> {
    checkName('owner', owner);
    return this.d.exec(() => {
      const row = this.d.stmt(`SELECT value FROM kv_items WHERE owner = ? AND store = ? AND ${LIVE}`)
        .get(owner, this.store, Date.now()) as { value: string } | undefined;
      return row ? decode<V>(row.value) : undefined;
    });
  }

  async set(owner: string, value: V, options?: WriteOptions): Promise<void> {
    checkName('owner', owner);
    const text = encode(value);
    await this.d.write(() => {
      this.d.stmt('INSERT INTO kv_items (owner, store, value, expires_at) VALUES (?, ?, ?, ?) ' +
        'ON CONFLICT (owner, store) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at')
        .run(owner, this.store, text, expiry(options, Date.now()));
    }, options?.durable);
  }

  async delete(owner: string): Promise<boolean> {
    checkName('owner', owner);
    return this.d.write(() => {
      // An expired entry is removed too, but it was already invisible, so it does not count.
      const row = this.d.stmt('DELETE FROM kv_items WHERE owner = ? AND store = ? RETURNING expires_at')
        .get(owner, this.store) as { expires_at: number | null } | undefined;
      return row !== undefined && isLive(row.expires_at, Date.now());
    });
  }
}

class EmbeddedMap<V extends Json> implements MapStore<V> {
  constructor(private readonly d: EmbeddedDriver, private readonly store: string) {}

  async get(owner: string, key: string): Promise<V | undefined> {
    checkName('owner', owner);
    checkKey(key);
    return this.d.exec(() => {
      const row = this.d.stmt('SELECT value FROM map_items WHERE owner = ? AND store = ? AND key = ? ' +
        `AND ${LIVE}`).get(owner, this.store, key, Date.now()) as { value: string } | undefined;
      return row ? decode<V>(row.value) : undefined;
    });
  }

  async has(owner: string, key: string): Promise<boolean> {
    checkName('owner', owner);
    checkKey(key);
    return this.d.exec(() => this.d.stmt('SELECT 1 FROM map_items WHERE owner = ? AND store = ? AND key = ? ' +
      `AND ${LIVE}`).get(owner, this.store, key, Date.now()) !== undefined);
  }

  async getMany(owner: string, keys: readonly string[]): Promise<Map<string, V>> {
    checkName('owner', owner);
    if (!Array.isArray(keys)) throw new StorageError('invalid', 'keys must be an array');
    keys.forEach(checkKey);
    const out = new Map<string, V>();
    if (keys.length === 0) return out;
    return this.d.exec(() => {
      // The keys travel as one JSON array so the SQL text (and its prepared statement) stays the
      // same whatever the batch size, and no bound-parameter limit applies.
      const rows = this.d.stmt('SELECT key, value FROM map_items WHERE owner = ? AND store = ? ' +
        `AND key IN (SELECT value FROM json_each(?)) AND ${LIVE}`)
        .all(owner, this.store, JSON.stringify(keys), Date.now()) as Array<{ key: string; value: string }>;
      for (const row of rows) out.set(row.key, decode<V>(row.value));
      return out;
    });
  }

  async set(owner: string, key: string, value: V, options?: WriteOptions): Promise<void> {
    checkName('owner', owner);
    checkKey(key);
    const text = encode(value);
    await this.d.write(() => {
      this.d.stmt('INSERT INTO map_items (owner, store, key, value, expires_at) VALUES (?, ?, ?, ?, ?) ' +
        'ON CONFLICT (owner, store, key) DO UPDATE SET value = excluded.value, ' +
        'expires_at = excluded.expires_at')
        .run(owner, this.store, key, text, expiry(options, Date.now()));
    }, options?.durable);
  }

  async add(owner: string, key: string, value: V, options?: WriteOptions): Promise<boolean> {
    checkName('owner', owner);
    checkKey(key);
    const text = encode(value);
    return this.d.write(() => {
      const now = Date.now();
      // One statement: insert, or overwrite only a row that has expired; otherwise change nothing.
      const { changes } = this.d.stmt(
        'INSERT INTO map_items (owner, store, key, value, expires_at) VALUES (?, ?, ?, ?, ?) ' +
        'ON CONFLICT (owner, store, key) DO UPDATE SET value = excluded.value, ' +
        'expires_at = excluded.expires_at ' +
        'WHERE map_items.expires_at IS NOT NULL AND map_items.expires_at <= ?')
        .run(owner, this.store, key, text, expiry(options, now), now);
      return changes > 0;
    }, options?.durable);
  }

  async delete(owner: string, key: string): Promise<boolean> {
    checkName('owner', owner);
    checkKey(key);
    return this.d.write(() => {
      const row = this.d.stmt('DELETE FROM map_items WHERE owner = ? AND store = ? AND key = ? ' +
        'RETURNING expires_at').get(owner, this.store, key) as { expires_at: number | null } | undefined;
      return row !== undefined && isLive(row.expires_at, Date.now());
    });
  }

  async keys(owner: string): Promise<string[]> {
    checkName('owner', owner);
    return this.d.exec(() => {
      const rows = this.d.stmt('SELECT key FROM map_items WHERE owner = ? AND store = ? ' +
        `AND ${LIVE} ORDER BY key`).all(owner, this.store, Date.now()) as Array<{ key: string }>;
      return rows.map((r) => r.key);
    });
  }

  async entries(owner: string): Promise<Array<[string, V]>> {
    checkName('owner', owner);
    return this.d.exec(() => {
      const rows = this.d.stmt('SELECT key, value FROM map_items WHERE owner = ? AND store = ? ' +
        `AND ${LIVE} ORDER BY key`).all(owner, this.store, Date.now()) as Array<{ key: string; value: string }>;
      return rows.map((r): [string, V] => [r.key, decode<V>(r.value)]);
    });
  }

  async clear(owner: string): Promise<number> {
    checkName('owner', owner);
    return this.d.write(() => this.d.transaction(() => {
      const now = Date.now();
      // Expired rows go first and uncounted, so the result is what a reader could still see.
      this.d.stmt('DELETE FROM map_items WHERE owner = ? AND store = ? AND expires_at <= ?')
        .run(owner, this.store, now);
      return this.d.stmt('DELETE FROM map_items WHERE owner = ? AND store = ?').run(owner, this.store).changes;
    }));
  }

  async increment(owner: string, key: string, by = 1, options?: WriteOptions): Promise<number> {
    checkName('owner', owner);
    checkKey(key);
    if (typeof by !== 'number' || !Number.isFinite(by)) {
      throw new StorageError('invalid', 'increment must be a finite number');
    }
    return this.d.write(() => this.d.transaction(() => {
      const now = Date.now();
      const row = this.d.stmt('SELECT value, expires_at FROM map_items WHERE owner = ? AND store = ? ' +
        'AND key = ?').get(owner, this.store, key) as ValueRow | undefined;
      if (row && isLive(row.expires_at, now)) {
        const current = decode<unknown>(row.value);
        if (typeof current !== 'number') {
          throw new StorageError('invalid', `${this.store}/${key} holds a non-numeric value`);
        }
        const next = current + by;
        if (!Number.isFinite(next)) throw new StorageError('invalid', `${this.store}/${key} would overflow`);
        // The expiry stays as set at creation, so a rate-limit window ends on time.
        this.d.stmt('UPDATE map_items SET value = ? WHERE owner = ? AND store = ? AND key = ?')
          .run(encode(next), owner, this.store, key);
        return next;
      }
      this.d.stmt('INSERT INTO map_items (owner, store, key, value, expires_at) VALUES (?, ?, ?, ?, ?) ' +
        'ON CONFLICT (owner, store, key) DO UPDATE SET value = excluded.value, ' +
        'expires_at = excluded.expires_at')
        .run(owner, this.store, key, encode(by), expiry(options, now));
      return by;
    }), options?.durable);
  }
}

interface Where {
  /** The INDEXED BY clause naming the index this query shape walks. */
  index: string;
  sql: string;
  params: unknown[];
}

class EmbeddedArchive<V extends Json> implements ArchiveStore<V> {
  constructor(private readonly d: EmbeddedDriver, private readonly store: string) {}

  async append(owner: string, item: ArchiveAppend<V>, options?: WriteOptions): Promise<string> {
    checkName('owner', owner);
    if (typeof item !== 'object' || item === null) throw new StorageError('invalid', 'item must be an object');
    const id = item.id ?? newId();
    checkName('id', id);
    const ts = item.ts ?? Date.now();
    checkTime('ts', ts);
    if (item.with !== undefined) checkName('with', item.with);
    const text = encode(item.value);
    return this.d.write(() => {
      const now = Date.now();
      const insert = this.d.stmt('INSERT INTO archive_items (owner, store, id, ts, with_jid, value, ' +
        'expires_at) VALUES (?, ?, ?, ?, ?, ?, ?)');
      const params = [owner, this.store, id, ts, item.with ?? null, text, expiry(options, now)];
      try {
        // The common case is one autocommit INSERT; the unique index detects a taken id.
        insert.run(...params);
        return id;
      } catch (err) {
        if (toStorageError(err).code !== 'conflict') throw err;
      }
      return this.d.transaction(() => {
        const existing = this.d.stmt('SELECT seq, expires_at FROM archive_items WHERE owner = ? ' +
          'AND store = ? AND id = ?').get(owner, this.store, id) as { seq: number; expires_at: number | null } | undefined;
        if (existing && isLive(existing.expires_at, now)) {
          throw new StorageError('conflict', `archive item ${id} already exists`);
        }
        // An expired item is gone for every reader, so its id is free again.
        if (existing) this.d.stmt('DELETE FROM archive_items WHERE seq = ?').run(existing.seq);
        insert.run(...params);
        return id;
      });
    }, options?.durable);
  }

  async query(owner: string, query: ArchiveQuery = {}): Promise<ArchivePage<V>> {
    checkName('owner', owner);
    checkQuery(query);
    let limit = MAX_PAGE;
    if (query.limit !== undefined) {
      if (!Number.isSafeInteger(query.limit) || query.limit < 0) {
        throw new StorageError('invalid', 'limit must be a non-negative integer');
      }
      limit = Math.min(query.limit, MAX_PAGE);
    }
    const reverse = query.reverse === true;
    return this.d.exec(() => this.d.snapshot(() => {
      const where = this.where(owner, query, Date.now());
      const order = `ORDER BY seq ${reverse ? 'DESC' : 'ASC'}`;
      // The page is chosen on index entries alone, and only its rows are read from the table, so
      // even a plan that has to sort (time range, ids) sorts integers and keeps at most limit + 1.
      // One row beyond the page tells whether the page is the last one in this direction.
      const rows = this.d.stmt('SELECT id, ts, with_jid, value FROM archive_items WHERE seq IN ' +
        `(SELECT seq FROM archive_items ${where.index} WHERE ${where.sql} ${order} LIMIT ?) ${order}`)
        .all(...where.params, limit + 1) as ArchiveRow[];
      const complete = rows.length <= limit;
      if (!complete) rows.pop();
      if (reverse) rows.reverse();
      return { items: rows.map((r) => toItem<V>(r)), complete };
    }));
  }

  async get(owner: string, id: string): Promise<ArchiveItem<V> | undefined> {
    checkName('owner', owner);
    checkName('id', id);
    return this.d.exec(() => {
      const row = this.d.stmt('SELECT id, ts, with_jid, value FROM archive_items WHERE owner = ? ' +
        `AND store = ? AND id = ? AND ${LIVE}`).get(owner, this.store, id, Date.now()) as ArchiveRow | undefined;
      return row ? toItem<V>(row) : undefined;
    });
  }

  async replace(owner: string, id: string, value: V): Promise<boolean> {
    checkName('owner', owner);
    checkName('id', id);
    const text = encode(value);
    return this.d.write(() => this.d.stmt('UPDATE archive_items SET value = ? WHERE owner = ? AND store = ? AND id = ? ' +
      `AND ${LIVE}`).run(text, owner, this.store, id, Date.now()).changes > 0);
  }

  async count(owner: string, query: ArchiveQuery = {}): Promise<number> {
    checkName('owner', owner);
    checkQuery(query);
    return this.d.exec(() => this.d.snapshot(() => {
      const where = this.where(owner, query, Date.now());
      const row = this.d.stmt(`SELECT count(*) AS n FROM archive_items ${where.index} WHERE ${where.sql}`)
        .get(...where.params) as { n: number };
      return row.n;
    }));
  }

  async delete(owner: string, query: ArchiveQuery, options?: Pick<WriteOptions, 'durable'>): Promise<number> {
    checkName('owner', owner);
    checkQuery(query ?? {});
    // One modifying statement (the cursor lookups in where() only read), so no savepoint.
    return this.d.write(() => {
      const where = this.where(owner, query ?? {}, Date.now());
      return this.d.stmt(`DELETE FROM archive_items ${where.index} WHERE ${where.sql}`).run(...where.params).changes;
    }, options?.durable);
  }

  async clear(owner: string): Promise<number> {
    checkName('owner', owner);
    return this.d.write(() => this.d.transaction(() => {
      this.d.stmt('DELETE FROM archive_items WHERE owner = ? AND store = ? AND expires_at <= ?')
        .run(owner, this.store, Date.now());
      return this.d.stmt('DELETE FROM archive_items WHERE owner = ? AND store = ?').run(owner, this.store).changes;
    }));
  }

  /** Resolves a cursor id to its place in archive order; an unknown id is an error, not "no rows". */
  private seqOf(owner: string, id: string, now: number): number {
    const row = this.d.stmt('SELECT seq FROM archive_items WHERE owner = ? AND store = ? AND id = ? ' +
      `AND ${LIVE}`).get(owner, this.store, id, now) as { seq: number } | undefined;
    if (!row) throw new StorageError('invalid', `no archive item with id ${id}`);
    return row.seq;
  }

  /**
   * The WHERE clause of a query. Its text depends only on which filters are present, so the
   * statement cache holds at most one entry per combination.
   */
  private where(owner: string, q: ArchiveQuery, now: number): Where {
    const parts = ['owner = ?', 'store = ?'];
    const params: unknown[] = [owner, this.store];
    if (q.start !== undefined) { parts.push('ts >= ?'); params.push(q.start); }
    if (q.end !== undefined) { parts.push('ts <= ?'); params.push(q.end); }
    if (q.with !== undefined) { parts.push('with_jid = ?'); params.push(q.with); }
    if (q.ids !== undefined) {
      parts.push('id IN (SELECT value FROM json_each(?))');
      params.push(JSON.stringify(q.ids));
    }
    if (q.after !== undefined) { parts.push('seq > ?'); params.push(this.seqOf(owner, q.after, now)); }
    if (q.before !== undefined) { parts.push('seq < ?'); params.push(this.seqOf(owner, q.before, now)); }
    parts.push(LIVE);
    params.push(now);
    return { index: indexFor(q), sql: parts.join(' AND '), params };
  }
}

/**
 * The index each query shape walks. Without statistics SQLite prefers any index that yields
 * archive order and would then walk an owner's whole archive to find a few ids or a recent time
 * range, so the choice is made here from what is selective:
 * - ids: the unique id index, then a sort of at most that many seqs;
 * - a cursor (after/before): the seq range is the tight bound, per contact when `with` is given;
 * - a time range without a cursor: the ts index (a client syncing "since X" must not walk the
 *   history before X), sorting only the seqs in the range;
 * - otherwise the contact's index or the owner's seq index, both already in archive order.
 */
function indexFor(q: ArchiveQuery): string {
  if (q.ids !== undefined) return 'INDEXED BY archive_items_id';
  if (q.after !== undefined || q.before !== undefined || (q.start === undefined && q.end === undefined)) {
    return q.with !== undefined ? 'INDEXED BY archive_items_with' : 'INDEXED BY archive_items_seq';
  }
  return 'INDEXED BY archive_items_ts';
}

function toItem<V extends Json>(row: ArchiveRow): ArchiveItem<V> {
  const item: ArchiveItem<V> = { id: row.id, ts: row.ts, value: decode<V>(row.value) };
  if (row.with_jid !== null) item.with = row.with_jid;
  return item;
}
