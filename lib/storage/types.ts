// The three store shapes every feature uses (DESIGN §4), behind one driver interface.
// Values are JSON-serialisable; stanzas are stored as their XML string.
// `owner` is who the data belongs to: a bare JID for user data, a host name for host-wide data.
// Every call is async even when a driver is synchronous, so drivers can be swapped.
// A write's promise resolves once the write is durable as the driver defines it (the embedded
// driver: committed to its WAL, so it survives the process being killed). Writes issued without
// awaiting each other may share one commit (the embedded driver commits every write of one
// event-loop turn together), which is how a caller makes related writes cheap; each still
// succeeds or fails on its own, and only awaited writes are ordered.

/** JSON-serialisable value. */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

export interface WriteOptions {
  /** Time to live in milliseconds; the entry disappears from every read once it has passed. */
  ttlMs?: number;
  /**
   * Lets the caller go on before the write is durable. A driver that commits writes in groups
   * (the embedded driver) then resolves the call as soon as the write has been applied (later
   * reads of this process see it, and a refused write, a conflict say, is reported as usual) and
   * hands the commit to this callback; whoever passed it must wait for that promise before telling
   * anyone that the write is safe (a client's stream management `h`). A driver whose writes are
   * durable once they resolve (MongoDB with journaled writes) never calls it.
   */
  durable?: (commit: Promise<void>) => void;
}

/** One value per owner (roster, vCard, private XML). */
export interface KeyValStore<V extends Json = Json> {
  get(owner: string): Promise<V | undefined>;
  set(owner: string, value: V, options?: WriteOptions): Promise<void>;
  delete(owner: string): Promise<boolean>;
}

/** Values per owner + key (accounts under their host, blocklists, PEP nodes, PINs, counters). */
export interface MapStore<V extends Json = Json> {
  get(owner: string, key: string): Promise<V | undefined>;
  /** Whether the key exists (and has not expired), without reading its value. */
  has(owner: string, key: string): Promise<boolean>;
  /** Batch lookup; the result holds only keys that exist. */
  getMany(owner: string, keys: readonly string[]): Promise<Map<string, V>>;
  set(owner: string, key: string, value: V, options?: WriteOptions): Promise<void>;
  /** Stores only when the key is absent (or expired); returns whether it stored. */
  add(owner: string, key: string, value: V, options?: WriteOptions): Promise<boolean>;
  delete(owner: string, key: string): Promise<boolean>;
  /** Keys in ascending order. */
  keys(owner: string): Promise<string[]>;
  entries(owner: string): Promise<Array<[string, V]>>;
  /** Deletes all keys of the owner; returns how many. */
  clear(owner: string): Promise<number>;
  /**
   * Atomically adds `by` to a numeric counter (absent or expired counts as 0) and returns the new
   * value; the TTL is set only when the counter is created, so a window ends on time.
   */
  increment(owner: string, key: string, by?: number, options?: WriteOptions): Promise<number>;
}

export interface ArchiveItem<V extends Json = Json> {
  /** Unique per store and owner; generated when not given. */
  id: string;
  /** Milliseconds since the epoch. */
  ts: number;
  /** The other party (bare JID), when the item has one. */
  with?: string;
  value: V;
}

export interface ArchiveAppend<V extends Json = Json> {
  id?: string;
  ts?: number;
  with?: string;
  value: V;
}

export interface ArchiveQuery {
  /** Inclusive lower bound on ts. */
  start?: number;
  /** Inclusive upper bound on ts. */
  end?: number;
  with?: string;
  /** Only these ids. */
  ids?: readonly string[];
  /** Items strictly after this id (in archive order). */
  after?: string;
  /** Items strictly before this id (in archive order). */
  before?: string;
  /** Maximum items returned. */
  limit?: number;
  /**
   * Take the newest matching items first (the last page). Results are always returned in
   * ascending archive order.
   */
  reverse?: boolean;
}

export interface ArchivePage<V extends Json = Json> {
  items: Array<ArchiveItem<V>>;
  /** True when no further matching items exist beyond this page in the query's direction. */
  complete: boolean;
}

/** Append-only, time-ordered items per owner (offline spool, MAM, MUC history, uploads). */
export interface ArchiveStore<V extends Json = Json> {
  /** Returns the item's id. Throws StorageError('conflict') when the id exists. */
  append(owner: string, item: ArchiveAppend<V>, options?: WriteOptions): Promise<string>;
  query(owner: string, query?: ArchiveQuery): Promise<ArchivePage<V>>;
  get(owner: string, id: string): Promise<ArchiveItem<V> | undefined>;
  /**
   * Replaces the value of a live item in place: its id, ts, with, expiry and place in archive
   * order stay (cursors clients hold keep working). False when there is no such live item.
   */
  replace(owner: string, id: string, value: V): Promise<boolean>;
  count(owner: string, query?: ArchiveQuery): Promise<number>;
  /** Deletes the matching items (limit/reverse ignored); returns how many. */
  delete(owner: string, query: ArchiveQuery, options?: Pick<WriteOptions, 'durable'>): Promise<number>;
  /** Deletes everything of the owner; returns how many. */
  clear(owner: string): Promise<number>;
}

export type StoreShape = 'keyval' | 'map' | 'archive';

export interface StorageDriver {
  readonly name: string;
  keyval<V extends Json = Json>(store: string): KeyValStore<V>;
  map<V extends Json = Json>(store: string): MapStore<V>;
  archive<V extends Json = Json>(store: string): ArchiveStore<V>;
  /** Removes everything a user owns in every store (account deletion). */
  purgeOwner(owner: string): Promise<void>;
  close(): Promise<void>;
}

export type StorageErrorCode = 'conflict' | 'invalid' | 'closed' | 'io';

export class StorageError extends Error {
  readonly code: StorageErrorCode;
  constructor(code: StorageErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'StorageError';
    this.code = code;
  }
}
