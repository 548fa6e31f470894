// The MongoDB storage driver (DESIGN §4), on the official driver. Same semantics as the embedded
// driver: the storage contract suite (test/helpers/storage-contract.ts) is the specification.
//
// Layout: one collection per store shape, not one per store name. The stores a deployment uses
// grow with its plugins, but the shapes do not: the indexes each shape's queries need are created
// once at start, purgeOwner is four deleteMany calls on a fixed list, and a new plugin needs no
// schema step. The store name is a field next to the owner.
//   kv               { owner, store, value, expiresAt? }                 keyval stores
//   map              { owner, store, key, value | num, expiresAt? }      map stores
//   archive          { owner, store, id, seq, ts, with?, value, expiresAt? }
//   archive_counters { owner, store, seq }                               archive order, see below
// `owner` leads every compound index: it is the natural shard key (all of a user's data lives on
// one shard, and a unique index must start with the shard key), and it is what purgeOwner
// filters on. The TTL indexes are the exception: MongoDB only expires through single-field
// indexes.
//
// Values are stored as their JSON text, not as BSON documents: JSON object keys may contain NUL,
// '.' or a leading '$', which BSON field names cannot hold faithfully, and a value the driver never
// queries into gains nothing from being a document. Map values that are numbers are the exception
// (`num`, a BSON number) so that increment is one atomic $inc on the server.
//
// Archive order: MongoDB has no autoincrement, and ObjectIds are ordered only per process and per
// second (a timestamp in seconds, then a per-process counter), so two writers (the server and
// parleyctl, or several servers) would interleave them out of insertion order and a MAM cursor
// could skip items. Each (owner, store) instead takes the next `seq` from a counter document with
// one findOneAndUpdate($inc); the counter is never decremented, so a cursor id keeps its place
// after newer items are deleted, as with the embedded driver's AUTOINCREMENT.
//
// Expiry: a TTL index (expireAfterSeconds: 0 on the expiresAt Date) removes expired documents,
// but MongoDB's TTL monitor runs only every 60 s, so every read also filters on
// `expiresAt not <= now` (true as well when the field is absent: the entry never expires).
// Times come from this process's clock, as with the embedded driver; servers sharing a database
// need synchronised clocks (NTP) for TTLs to end on time.
//
// Durability and consistency are whatever the connection string asks for: MongoDB's default
// write concern is majority (journaled on a replica set); Parley does not override the URI's
// writeConcern, readConcern or readPreference. Reads must go to the primary (the default) for
// the contract's read-your-writes behaviour.
import {
  Double, MongoAPIError, MongoClient, MongoServerError,
  type Collection, type Db, type Filter, type IndexDescription, type UpdateFilter,
} from 'mongodb';
import { MAX_PAGE } from './embedded.js';
import { newId } from './ids.js';
import {
  StorageError,
  type ArchiveAppend, type ArchiveItem, type ArchivePage, type ArchiveQuery, type ArchiveStore,
  type Json, type KeyValStore, type MapStore, type StorageDriver, type WriteOptions,
} from './types.js';
import { checkKey, checkName, checkQuery, checkTime, decode, encode } from './codec.js';

export interface MongoOptions {
  /** mongodb:// or mongodb+srv:// connection string. */
  uri: string;
  /** Database name; defaults to the one in the URI, else 'parley'. */
  database?: string;
  /**
   * How long connect (and later, each operation) waits for a usable server. When neither this
   * nor the URI sets it, the official driver's default (30 s) applies.
   */
  serverSelectionTimeoutMS?: number;
}

export const DEFAULT_DATABASE = 'parley';

/** Times an operation retries after losing a race on a unique index; two are enough in practice. */
const MAX_RACE_RETRIES = 5;

interface KvDoc { owner: string; store: string; value: string; expiresAt?: Date }
interface MapDoc { owner: string; store: string; key: string; value?: string; num?: number; expiresAt?: Date }
interface ArchiveDoc {
  owner: string; store: string; id: string; seq: number; ts: number; with?: string; value: string; expiresAt?: Date;
}
interface CounterDoc { owner: string; store: string; seq: number }

// Index names are fixed so that queries can hint them (see MongoArchive.hint).
const INDEXES: Record<'kv' | 'map' | 'archive' | 'archive_counters', IndexDescription[]> = {
  kv: [
    { name: 'kv_owner_store', key: { owner: 1, store: 1 }, unique: true },
  ],
  map: [
    { name: 'map_owner_store_key', key: { owner: 1, store: 1, key: 1 }, unique: true },
  ],
  archive: [
    { name: 'archive_id', key: { owner: 1, store: 1, id: 1 }, unique: true },
    // expiresAt trails the archive indexes so that the liveness filter, and with it count()
    // (asked on every MAM query), is answered from index keys without fetching documents.
    { name: 'archive_seq', key: { owner: 1, store: 1, seq: 1, expiresAt: 1 } },
    { name: 'archive_with', key: { owner: 1, store: 1, with: 1, seq: 1, expiresAt: 1 } },
    { name: 'archive_ts', key: { owner: 1, store: 1, ts: 1, expiresAt: 1 } },
  ],
  archive_counters: [
    { name: 'archive_counters_owner_store', key: { owner: 1, store: 1 }, unique: true },
  ],
};

/** TTL index: documents without expiresAt are left out of it (partial), so it stays small. */
function ttlIndex(prefix: string): IndexDescription {
  return {
    name: `${prefix}_expiry`,
    key: { expiresAt: 1 },
    expireAfterSeconds: 0,
    partialFilterExpression: { expiresAt: { $exists: true } },
  };
}

/**
 * The database named in a connection string's path (mongodb://host/NAME?...), if any. The host
 * list never holds a raw '/' (socket paths are percent-encoded), so the first '/' after the
 * scheme starts the path.
 */
export function databaseFromUri(uri: string): string | undefined {
  const m = /^mongodb(?:\+srv)?:\/\/[^/?#]*\/([^?#]*)/.exec(uri);
  if (!m || m[1] === '') return undefined;
  try {
    return decodeURIComponent(m[1]!);
  } catch {
    return m[1];
  }
}

/** The connection string without its password, for messages and logs. */
export function redactUri(uri: string): string {
  return uri.replace(/^(mongodb(?:\+srv)?:\/\/)([^@/?#]*)@/, (_all, scheme: string, userinfo: string) => {
    const colon = userinfo.indexOf(':');
    return `${scheme}${colon === -1 ? userinfo : `${userinfo.slice(0, colon)}:***`}@`;
  });
}

function oneLine(err: unknown): string {
  const text = err instanceof Error ? err.message : String(err);
  return text.replace(/\s*[\r\n]+\s*/g, ' ').trim();
}

function isDuplicateKey(err: unknown): boolean {
  return err instanceof MongoServerError && err.code === 11000;
}

/**
 * A map value as document fields: finite numbers natively (so increment can $inc them), the rest
 * as JSON text. -0 becomes 0 and NaN/Infinity become null, as a JSON round trip does.
 */
function mapFields(value: unknown): { value: string } | { num: number } {
  if (typeof value === 'number' && Number.isFinite(value)) return { num: value === 0 ? 0 : value };
  return { value: encode(value) };
}

function mapValue<V>(doc: Pick<MapDoc, 'value' | 'num'>): V {
  return (typeof doc.num === 'number' ? doc.num : decode<V>(doc.value)) as V;
}

/** The expiry Date for a write, or undefined when it never expires. */
function expiry(options: WriteOptions | undefined, now: number): Date | undefined {
  const ttl = options?.ttlMs;
  if (ttl === undefined) return undefined;
  if (typeof ttl !== 'number' || !Number.isFinite(ttl) || ttl < 0) {
    throw new StorageError('invalid', 'ttlMs must be a non-negative number');
  }
  return new Date(now + Math.ceil(ttl));
}

function isLive(expiresAt: Date | undefined | null, now: number): boolean {
  return !(expiresAt instanceof Date) || expiresAt.getTime() > now;
}

/**
 * The liveness filter. `$not: {$lte}` also matches documents without the field (no expiry),
 * where `{$gt}` alone would not, and unlike an $or it keeps index bounds on one field.
 */
function live(now: number): { expiresAt: { $not: { $lte: Date } } } {
  return { expiresAt: { $not: { $lte: new Date(now) } } };
}

export class MongoDriver implements StorageDriver {
  readonly name = 'mongodb';
  readonly database: string;
  /** @internal */ readonly kv: Collection<KvDoc>;
  /** @internal */ readonly map_: Collection<MapDoc>;
  /** @internal */ readonly archive_: Collection<ArchiveDoc>;
  /** @internal */ readonly counters: Collection<CounterDoc>;
  private readonly client: MongoClient;
  private closed = false;

  private constructor(client: MongoClient, db: Db) {
    this.client = client;
    this.database = db.databaseName;
    this.kv = db.collection<KvDoc>('kv');
    this.map_ = db.collection<MapDoc>('map');
    this.archive_ = db.collection<ArchiveDoc>('archive');
    this.counters = db.collection<CounterDoc>('archive_counters');
  }

  /**
   * Connects, checks that a server answers and creates the indexes (a no-op when they exist).
   * Throws StorageError('io') with a one-line message, the password left out, on failure.
   */
  static async open(options: MongoOptions): Promise<MongoDriver> {
    const where = redactUri(options.uri);
    const clientOptions: { appName: string; serverSelectionTimeoutMS?: number } = { appName: 'parley' };
    // An explicit option wins over the URI's; only pass one when it was asked for here.
    if (options.serverSelectionTimeoutMS !== undefined) clientOptions.serverSelectionTimeoutMS = options.serverSelectionTimeoutMS;
    let client: MongoClient;
    try {
      client = new MongoClient(options.uri, clientOptions);
    } catch (err) {
      throw new StorageError('io', `invalid MongoDB connection string ${where}: ${oneLine(err)}`, { cause: err });
    }
    try {
      await client.connect();
      const db = client.db(options.database ?? databaseFromUri(options.uri) ?? DEFAULT_DATABASE);
      const driver = new MongoDriver(client, db);
      await driver.createIndexes(db);
      return driver;
    } catch (err) {
      await client.close().catch(() => undefined);
      throw new StorageError('io', `cannot use MongoDB at ${where}: ${oneLine(err)}`, { cause: err });
    }
  }

  private async createIndexes(db: Db): Promise<void> {
    for (const [name, indexes] of Object.entries(INDEXES)) {
      const all = name === 'archive_counters' ? indexes : [...indexes, ttlIndex(name)];
      await db.collection(name).createIndexes(all);
    }
  }

  keyval<V extends Json = Json>(store: string): KeyValStore<V> {
    checkName('store', store);
    return new MongoKeyVal<V>(this, store);
  }

  map<V extends Json = Json>(store: string): MapStore<V> {
    checkName('store', store);
    return new MongoMap<V>(this, store);
  }

  archive<V extends Json = Json>(store: string): ArchiveStore<V> {
    checkName('store', store);
    return new MongoArchive<V>(this, store);
  }

  async purgeOwner(owner: string): Promise<void> {
    checkName('owner', owner);
    await this.run(async () => {
      await this.kv.deleteMany({ owner });
      await this.map_.deleteMany({ owner });
      await this.archive_.deleteMany({ owner });
      // The counters go last: an append racing with the purge then at worst leaves an item
      // behind, never an item whose seq is reused after its counter was dropped.
      await this.counters.deleteMany({ owner });
    });
  }

  async close(): Promise<void> {
    // Closing twice is harmless so that shutdown paths need no bookkeeping of their own.
    if (this.closed) return;
    this.closed = true;
    await this.client.close();
  }

  /** @internal Runs `fn` unless closed, mapping driver failures to StorageError. */
  async run<T>(fn: () => Promise<T>): Promise<T> {
    if (this.closed) throw new StorageError('closed', 'the storage driver is closed');
    try {
      return await fn();
    } catch (err) {
      throw this.toStorageError(err);
    }
  }

  /** @internal The next archive position of (owner, store); strictly increasing. */
  async nextSeq(owner: string, store: string): Promise<number> {
    const doc = await this.counters.findOneAndUpdate(
      { owner, store },
      { $inc: { seq: 1 } },
      { upsert: true, returnDocument: 'after', projection: { _id: 0, seq: 1 } },
    );
    if (!doc || typeof doc.seq !== 'number') throw new StorageError('io', 'the archive counter returned no value');
    return doc.seq;
  }

  private toStorageError(err: unknown): StorageError {
    if (err instanceof StorageError) return err;
    // Operations still in flight when close() ran fail with one of the driver's "closed" errors.
    if (this.closed || (err instanceof MongoAPIError && /closed|not connected|must be connected/i.test(err.message))) {
      return new StorageError('closed', 'the storage driver is closed', { cause: err });
    }
    if (isDuplicateKey(err)) return new StorageError('conflict', 'duplicate key', { cause: err });
    const name = err instanceof Error ? err.name : 'Error';
    return new StorageError('io', `${name}: ${oneLine(err)}`, { cause: err });
  }
}

class MongoKeyVal<V extends Json> implements KeyValStore<V> {
  constructor(private readonly d: MongoDriver, private readonly store: string) {}

  async get(owner: string): Promise<V | undefined> {
    checkName('owner', owner);
    return this.d.run(async () => {
      const doc = await this.d.kv.findOne({ owner, store: this.store, ...live(Date.now()) },
        { projection: { _id: 0, value: 1 } });
      return doc ? decode<V>(doc.value) : undefined;
    });
  }

  async set(owner: string, value: V, options?: WriteOptions): Promise<void> {
    checkName('owner', owner);
    const text = encode(value);
    const expiresAt = expiry(options, Date.now());
    await this.d.run(async () => {
      // A replacement, so that a set without TTL also drops an earlier expiresAt.
      const doc: KvDoc = { owner, store: this.store, value: text };
      if (expiresAt) doc.expiresAt = expiresAt;
      await upsertRetrying(() => this.d.kv.replaceOne({ owner, store: this.store }, doc, { upsert: true }));
    });
  }

  async delete(owner: string): Promise<boolean> {
    checkName('owner', owner);
    return this.d.run(async () => {
      const doc = await this.d.kv.findOneAndDelete({ owner, store: this.store }, { projection: { expiresAt: 1 } });
      // An expired entry is removed as well, but it was already gone for every reader.
      return doc !== null && isLive(doc.expiresAt, Date.now());
    });
  }
}

/**
 * Runs an upsert whose filter is equality on a unique index. Two concurrent upserts of an absent
 * key can both try to insert; the loser gets a duplicate-key error (servers since 4.2 retry this
 * themselves, older paths do not) and simply runs again, now as an update.
 */
async function upsertRetrying<T>(op: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await op();
    } catch (err) {
      if (!isDuplicateKey(err) || attempt >= MAX_RACE_RETRIES) throw err;
    }
  }
}

class MongoMap<V extends Json> implements MapStore<V> {
  constructor(private readonly d: MongoDriver, private readonly store: string) {}

  private get col(): Collection<MapDoc> {
    return this.d.map_;
  }

  async get(owner: string, key: string): Promise<V | undefined> {
    checkName('owner', owner);
    checkKey(key);
    return this.d.run(async () => {
      const doc = await this.col.findOne({ owner, store: this.store, key, ...live(Date.now()) },
        { projection: { _id: 0, value: 1, num: 1 } });
      return doc ? mapValue<V>(doc) : undefined;
    });
  }

  async has(owner: string, key: string): Promise<boolean> {
    checkName('owner', owner);
    checkKey(key);
    return this.d.run(async () => {
      const doc = await this.col.findOne({ owner, store: this.store, key, ...live(Date.now()) }, { projection: { _id: 1 } });
      return doc !== null;
    });
  }

  async getMany(owner: string, keys: readonly string[]): Promise<Map<string, V>> {
    checkName('owner', owner);
    if (!Array.isArray(keys)) throw new StorageError('invalid', 'keys must be an array');
    keys.forEach(checkKey);
    const out = new Map<string, V>();
    if (keys.length === 0) return out;
    return this.d.run(async () => {
      const docs = await this.col.find(
        { owner, store: this.store, key: { $in: [...new Set(keys)] }, ...live(Date.now()) },
        { projection: { _id: 0, key: 1, value: 1, num: 1 } },
      ).toArray();
      for (const doc of docs) out.set(doc.key, mapValue<V>(doc));
      return out;
    });
  }

  async set(owner: string, key: string, value: V, options?: WriteOptions): Promise<void> {
    checkName('owner', owner);
    checkKey(key);
    const fields = mapFields(value);
    const expiresAt = expiry(options, Date.now());
    await this.d.run(async () => {
      const doc: MapDoc = { owner, store: this.store, key, ...fields };
      if (expiresAt) doc.expiresAt = expiresAt;
      await upsertRetrying(() => this.col.replaceOne({ owner, store: this.store, key }, doc, { upsert: true }));
    });
  }

  async add(owner: string, key: string, value: V, options?: WriteOptions): Promise<boolean> {
    checkName('owner', owner);
    checkKey(key);
    const fields = mapFields(value);
    expiry(options, Date.now());
    return this.d.run(async () => {
      const now = Date.now();
      const expiresAt = expiry(options, now);
      const set: Partial<MapDoc> = { ...fields };
      if (expiresAt) set.expiresAt = expiresAt;
      const unset: Record<string, ''> = {};
      for (const f of ['value', 'num', 'expiresAt'] as const) if (!(f in set)) unset[f] = '';
      try {
        // Matches only an expired entry, which is overwritten in place. With no entry at all the
        // upsert inserts one. With a live entry the filter does not match, so the upsert tries
        // to insert and the unique index refuses it: that refusal is the "already present"
        // answer, decided atomically by the server even for concurrent adds.
        await this.col.updateOne(
          { owner, store: this.store, key, expiresAt: { $lte: new Date(now) } },
          { $set: set, $unset: unset },
          { upsert: true },
        );
        return true;
      } catch (err) {
        if (isDuplicateKey(err)) return false;
        throw err;
      }
    });
  }

  async delete(owner: string, key: string): Promise<boolean> {
    checkName('owner', owner);
    checkKey(key);
    return this.d.run(async () => {
      const doc = await this.col.findOneAndDelete({ owner, store: this.store, key }, { projection: { expiresAt: 1 } });
      return doc !== null && isLive(doc.expiresAt, Date.now());
    });
  }

  async keys(owner: string): Promise<string[]> {
    checkName('owner', owner);
    return this.d.run(async () => {
      // Sorted by the unique index, in binary (UTF-8 byte) order like the embedded driver.
      const docs = await this.col.find({ owner, store: this.store, ...live(Date.now()) },
        { projection: { _id: 0, key: 1 }, sort: { key: 1 } }).toArray();
      return docs.map((d) => d.key);
    });
  }

  async entries(owner: string): Promise<Array<[string, V]>> {
    checkName('owner', owner);
    return this.d.run(async () => {
      const docs = await this.col.find({ owner, store: this.store, ...live(Date.now()) },
        { projection: { _id: 0, key: 1, value: 1, num: 1 }, sort: { key: 1 } }).toArray();
      return docs.map((d): [string, V] => [d.key, mapValue<V>(d)]);
    });
  }

  async clear(owner: string): Promise<number> {
    checkName('owner', owner);
    return this.d.run(async () => {
      // Live entries first, counted: the result is what a reader could still see. Expired
      // leftovers go uncounted instead of waiting for the TTL monitor.
      const { deletedCount } = await this.col.deleteMany({ owner, store: this.store, ...live(Date.now()) });
      await this.col.deleteMany({ owner, store: this.store });
      return deletedCount;
    });
  }

  async increment(owner: string, key: string, by = 1, options?: WriteOptions): Promise<number> {
    checkName('owner', owner);
    checkKey(key);
    if (typeof by !== 'number' || !Number.isFinite(by)) {
      throw new StorageError('invalid', 'increment must be a finite number');
    }
    expiry(options, Date.now());
    return this.d.run(async () => {
      // The bound keeps a counter from overflowing to Infinity: such an entry does not match and
      // is reported below instead of being written.
      // (Range operators only match numbers, so the bound also stands for "holds a number".)
      const bound = by >= 0 ? { $lte: Number.MAX_VALUE - by } : { $gte: -Number.MAX_VALUE - by };
      for (let attempt = 1; ; attempt++) {
        const now = Date.now();
        const expiresAt = expiry(options, now);
        // $inc by a double, so counters follow JavaScript arithmetic (no int32 wrap-around).
        const update: UpdateFilter<MapDoc> = { $inc: { num: new Double(by) } };
        // The TTL is only set when the counter is created, so a rate-limit window ends on time.
        if (expiresAt) update.$setOnInsert = { expiresAt };
        try {
          const doc = await this.col.findOneAndUpdate(
            { owner, store: this.store, key, num: bound, ...live(now) },
            update,
            { upsert: true, returnDocument: 'after', projection: { _id: 0, num: 1 } },
          );
          if (!doc || typeof doc.num !== 'number') throw new StorageError('io', 'increment returned no counter');
          return doc.num;
        } catch (err) {
          // A duplicate key means an entry exists that the filter did not match: expired,
          // not a number, about to overflow, or created by a concurrent call just now.
          if (!isDuplicateKey(err)) throw err;
        }
        const existing = await this.col.findOne({ owner, store: this.store, key });
        if (existing && isLive(existing.expiresAt, now)) {
          if (typeof existing.num !== 'number') {
            throw new StorageError('invalid', `${this.store}/${key} holds a non-numeric value`);
          }
          if (!Number.isFinite(existing.num + by)) throw new StorageError('invalid', `${this.store}/${key} would overflow`);
        } else if (existing) {
          // Expired: it counts as 0, so it goes and the counter starts again with its own TTL.
          await this.col.deleteOne({ _id: existing._id, expiresAt: { $lte: new Date(now) } });
        }
        if (attempt >= MAX_RACE_RETRIES) throw new StorageError('io', `${this.store}/${key}: increment kept losing races`);
      }
    });
  }
}

class MongoArchive<V extends Json> implements ArchiveStore<V> {
  constructor(private readonly d: MongoDriver, private readonly store: string) {}

  private get col(): Collection<ArchiveDoc> {
    return this.d.archive_;
  }

  async append(owner: string, item: ArchiveAppend<V>, options?: WriteOptions): Promise<string> {
    checkName('owner', owner);
    if (typeof item !== 'object' || item === null) throw new StorageError('invalid', 'item must be an object');
    const id = item.id ?? newId();
    checkName('id', id);
    const ts = item.ts ?? Date.now();
    checkTime('ts', ts);
    if (item.with !== undefined) checkName('with', item.with);
    const text = encode(item.value);
    expiry(options, Date.now());
    return this.d.run(async () => {
      for (let attempt = 1; ; attempt++) {
        const now = Date.now();
        const doc: ArchiveDoc = { owner, store: this.store, id, seq: await this.d.nextSeq(owner, this.store), ts, value: text };
        if (item.with !== undefined) doc.with = item.with;
        const expiresAt = expiry(options, now);
        if (expiresAt) doc.expiresAt = expiresAt;
        try {
          await this.col.insertOne(doc);
          return id;
        } catch (err) {
          if (!isDuplicateKey(err)) throw err;
        }
        const existing = await this.col.findOne({ owner, store: this.store, id }, { projection: { expiresAt: 1 } });
        if (existing && isLive(existing.expiresAt, now)) {
          throw new StorageError('conflict', `archive item ${id} already exists`);
        }
        // An expired item is gone for every reader, so its id is free again. The seq taken for
        // the failed insert is simply skipped: order needs increasing numbers, not dense ones.
        if (existing) await this.col.deleteOne({ _id: existing._id, expiresAt: { $lte: new Date(now) } });
        if (attempt >= MAX_RACE_RETRIES) throw new StorageError('conflict', `archive item ${id} already exists`);
      }
    });
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
    return this.d.run(async () => {
      const filter = await this.where(owner, query, Date.now());
      // One document beyond the page tells whether the page is the last one in this direction.
      const docs = await this.col.find(filter, {
        sort: { seq: reverse ? -1 : 1 },
        limit: limit + 1,
        hint: hint(query),
        projection: { _id: 0, id: 1, ts: 1, with: 1, value: 1 },
      }).toArray();
      const complete = docs.length <= limit;
      if (!complete) docs.pop();
      if (reverse) docs.reverse();
      return { items: docs.map((doc) => toItem<V>(doc)), complete };
    });
  }

  async get(owner: string, id: string): Promise<ArchiveItem<V> | undefined> {
    checkName('owner', owner);
    checkName('id', id);
    return this.d.run(async () => {
      const doc = await this.col.findOne({ owner, store: this.store, id, ...live(Date.now()) },
        { projection: { _id: 0, id: 1, ts: 1, with: 1, value: 1 } });
      return doc ? toItem<V>(doc) : undefined;
    });
  }

  async replace(owner: string, id: string, value: V): Promise<boolean> {
    checkName('owner', owner);
    checkName('id', id);
    const text = encode(value);
    return this.d.run(async () => {
      const { matchedCount } = await this.col.updateOne({ owner, store: this.store, id, ...live(Date.now()) }, { $set: { value: text } });
      return matchedCount > 0;
    });
  }

  async count(owner: string, query: ArchiveQuery = {}): Promise<number> {
    checkName('owner', owner);
    checkQuery(query);
    return this.d.run(async () => this.col.countDocuments(await this.where(owner, query, Date.now()), { hint: hint(query) }));
  }

  async delete(owner: string, query: ArchiveQuery): Promise<number> {
    checkName('owner', owner);
    checkQuery(query ?? {});
    return this.d.run(async () => {
      const { deletedCount } = await this.col.deleteMany(await this.where(owner, query ?? {}, Date.now()));
      return deletedCount;
    });
  }

  async clear(owner: string): Promise<number> {
    checkName('owner', owner);
    return this.d.run(async () => {
      const { deletedCount } = await this.col.deleteMany({ owner, store: this.store, ...live(Date.now()) });
      await this.col.deleteMany({ owner, store: this.store });
      return deletedCount;
    });
  }

  /** Resolves a cursor id to its place in archive order; an unknown id is an error, not "no items". */
  private async seqOf(owner: string, id: string, now: number): Promise<number> {
    const doc = await this.col.findOne({ owner, store: this.store, id, ...live(now) }, { projection: { _id: 0, seq: 1 } });
    if (!doc) throw new StorageError('invalid', `no archive item with id ${id}`);
    return doc.seq;
  }

  private async where(owner: string, q: ArchiveQuery, now: number): Promise<Filter<ArchiveDoc>> {
    const filter: Filter<ArchiveDoc> = { owner, store: this.store, ...live(now) };
    if (q.start !== undefined || q.end !== undefined) {
      const ts: { $gte?: number; $lte?: number } = {};
      if (q.start !== undefined) ts.$gte = q.start;
      if (q.end !== undefined) ts.$lte = q.end;
      filter.ts = ts;
    }
    if (q.with !== undefined) filter.with = q.with;
    if (q.ids !== undefined) filter.id = { $in: [...new Set(q.ids)] };
    if (q.after !== undefined || q.before !== undefined) {
      const seq: { $gt?: number; $lt?: number } = {};
      if (q.after !== undefined) seq.$gt = await this.seqOf(owner, q.after, now);
      if (q.before !== undefined) seq.$lt = await this.seqOf(owner, q.before, now);
      filter.seq = seq;
    }
    return filter;
  }
}

/**
 * The index each query shape walks, as the embedded driver chooses it: the planner's trial runs
 * favour an index that yields archive order and would then walk a user's whole archive to find a
 * few ids or a recent time range.
 * - ids: the unique id index, then a sort of at most that many documents;
 * - a cursor (after/before): the seq range is the tight bound, per contact when `with` is given;
 * - a time range without a cursor: the ts index, sorting only the items in the range;
 * - otherwise the contact's index or the owner's seq index, both already in archive order.
 */
function hint(q: ArchiveQuery): string {
  if (q.ids !== undefined) return 'archive_id';
  if (q.after !== undefined || q.before !== undefined || (q.start === undefined && q.end === undefined)) {
    return q.with !== undefined ? 'archive_with' : 'archive_seq';
  }
  return 'archive_ts';
}

function toItem<V extends Json>(doc: Pick<ArchiveDoc, 'id' | 'ts' | 'with' | 'value'>): ArchiveItem<V> {
  const item: ArchiveItem<V> = { id: doc.id, ts: doc.ts, value: decode<V>(doc.value) };
  if (typeof doc.with === 'string') item.with = doc.with;
  return item;
}
