// Persistence of PEP nodes and items. Two map stores, both owned by the account's bare JID (so
// deleting an account removes them): `pep_nodes` holds one record per node (configuration,
// the ids of its items in publication order, affiliations and explicit subscriptions), and
// `pep_items` holds each item under the key [node, id]. Keeping the order in the node record
// makes max_items eviction and "last published item" one read, without scanning items.
//
// Writes of one account are serialised by the caller (a per-owner lock). A publish writes the
// item first and the record second: if the record cannot be written, the item is put back as
// it was, so a failure never leaves a node that lists an item it does not have.
import type { MapStore } from '../../lib/storage/types.js';
import { isConfig, type NodeConfig } from './config.js';

export type Affiliation = 'member' | 'outcast';

export interface NodeRecord {
  config: NodeConfig;
  /** Item ids, oldest first. */
  items: string[];
  affiliations: Record<string, Affiliation>;
  /** Explicit subscriptions (XEP-0060 §6.1) by subscribed JID (bare or full). */
  subscriptions: Record<string, 'subscribed'>;
  created: number;
}

export interface StoredItem {
  /** The payload as XML, '' for an item without one. */
  payload: string;
  /** Full JID of the publishing resource (XEP-0060 §7.1.2.3; the account for server-made items). */
  publisher: string;
  ts: number;
}

export interface LoadedItem extends StoredItem {
  id: string;
}

function itemKey(node: string, id: string): string {
  // JSON keeps the two parts apart whatever characters they contain.
  return JSON.stringify([node, id]);
}

function isRecord(v: unknown): v is NodeRecord {
  return typeof v === 'object' && v !== null && isConfig((v as NodeRecord).config) && Array.isArray((v as NodeRecord).items);
}

export class PepStore {
  constructor(
    private readonly nodeStore: MapStore,
    private readonly itemStore: MapStore,
  ) {}

  async node(owner: string, node: string): Promise<NodeRecord | undefined> {
    const v: unknown = await this.nodeStore.get(owner, node);
    if (v === undefined) return undefined;
    if (!isRecord(v)) throw new Error(`unreadable PEP node ${node} of ${owner}`);
    return { ...v, affiliations: v.affiliations ?? {}, subscriptions: v.subscriptions ?? {} };
  }

  nodeNames(owner: string): Promise<string[]> {
    return this.nodeStore.keys(owner);
  }

  async setNode(owner: string, node: string, rec: NodeRecord): Promise<void> {
    await this.nodeStore.set(owner, node, rec as never);
  }

  async items(owner: string, node: string, ids: readonly string[]): Promise<LoadedItem[]> {
    if (ids.length === 0) return [];
    const found = await this.itemStore.getMany(owner, ids.map((id) => itemKey(node, id)));
    const out: LoadedItem[] = [];
    for (const id of ids) {
      const v = found.get(itemKey(node, id)) as StoredItem | undefined;
      if (v && typeof v.payload === 'string') out.push({ id, ...v });
    }
    return out;
  }

  /**
   * Stores an item and the node record that lists it; on failure the item is restored. `evicted`
   * ids are deleted afterwards (an orphan left by a failure there is never listed, only wasted).
   */
  async putItem(owner: string, node: string, id: string, item: StoredItem, rec: NodeRecord, evicted: readonly string[]): Promise<void> {
    const key = itemKey(node, id);
    const old = await this.itemStore.get(owner, key);
    await this.itemStore.set(owner, key, item as never);
    try {
      await this.setNode(owner, node, rec);
    } catch (err) {
      await (old === undefined ? this.itemStore.delete(owner, key) : this.itemStore.set(owner, key, old)).catch(() => undefined);
      throw err;
    }
    for (const e of evicted) await this.itemStore.delete(owner, itemKey(node, e));
  }

  /** Writes the record first (so the ids are no longer listed), then deletes the items. */
  async removeItems(owner: string, node: string, rec: NodeRecord, ids: readonly string[]): Promise<void> {
    await this.setNode(owner, node, rec);
    for (const id of ids) await this.itemStore.delete(owner, itemKey(node, id));
  }

  async deleteNode(owner: string, node: string, rec: NodeRecord): Promise<void> {
    // XEP-0060 §8.4: items go before the node; a record left by a failure still lists only
    // what remains.
    await this.removeItems(owner, node, { ...rec, items: [] }, rec.items);
    await this.nodeStore.delete(owner, node);
  }
}
