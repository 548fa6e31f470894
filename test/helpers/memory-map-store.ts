// A small in-memory MapStore for unit tests that need no real driver. Values are copied through
// JSON on the way in and out, as a real store would, so a test cannot pass by sharing objects.
import type { Json, MapStore, WriteOptions } from '../../lib/storage/types.js';

interface Entry {
  json: string;
  expires?: number;
}

export class MemoryMapStore<V extends Json = Json> implements MapStore<V> {
  private readonly owners = new Map<string, Map<string, Entry>>();

  /** Every stored value as JSON text, for tests that search what was written. */
  dump(): string {
    const out: Record<string, Record<string, Json>> = {};
    for (const [owner, entries] of this.owners) {
      out[owner] = {};
      for (const [key, e] of entries) out[owner]![key] = JSON.parse(e.json) as Json;
    }
    return JSON.stringify(out);
  }

  private live(owner: string, key: string): Entry | undefined {
    const entries = this.owners.get(owner);
    const e = entries?.get(key);
    if (e?.expires !== undefined && e.expires <= Date.now()) {
      entries!.delete(key);
      return undefined;
    }
    return e;
  }

  private put(owner: string, key: string, value: V, options?: WriteOptions): void {
    let entries = this.owners.get(owner);
    if (!entries) this.owners.set(owner, (entries = new Map()));
    const entry: Entry = { json: JSON.stringify(value) };
    if (options?.ttlMs !== undefined) entry.expires = Date.now() + options.ttlMs;
    entries.set(key, entry);
  }

  async get(owner: string, key: string): Promise<V | undefined> {
    const e = this.live(owner, key);
    return e ? (JSON.parse(e.json) as V) : undefined;
  }

  async has(owner: string, key: string): Promise<boolean> {
    return this.live(owner, key) !== undefined;
  }

  async getMany(owner: string, keys: readonly string[]): Promise<Map<string, V>> {
    const out = new Map<string, V>();
    for (const key of keys) {
      const v = await this.get(owner, key);
      if (v !== undefined) out.set(key, v);
    }
    return out;
  }

  async set(owner: string, key: string, value: V, options?: WriteOptions): Promise<void> {
    this.put(owner, key, value, options);
  }

  async add(owner: string, key: string, value: V, options?: WriteOptions): Promise<boolean> {
    if (this.live(owner, key)) return false;
    this.put(owner, key, value, options);
    return true;
  }

  async delete(owner: string, key: string): Promise<boolean> {
    const existed = this.live(owner, key) !== undefined;
    this.owners.get(owner)?.delete(key);
    return existed;
  }

  async keys(owner: string): Promise<string[]> {
    return (await this.entries(owner)).map(([k]) => k);
  }

  async entries(owner: string): Promise<Array<[string, V]>> {
    const keys = [...(this.owners.get(owner)?.keys() ?? [])].sort();
    const out: Array<[string, V]> = [];
    for (const key of keys) {
      const v = await this.get(owner, key);
      if (v !== undefined) out.push([key, v]);
    }
    return out;
  }

  async clear(owner: string): Promise<number> {
    const n = (await this.keys(owner)).length;
    this.owners.delete(owner);
    return n;
  }

  async increment(owner: string, key: string, by = 1, options?: WriteOptions): Promise<number> {
    const e = this.live(owner, key);
    if (!e) {
      this.put(owner, key, by as V, options);
      return by;
    }
    const next = (JSON.parse(e.json) as number) + by;
    e.json = JSON.stringify(next);
    return next;
  }
}
