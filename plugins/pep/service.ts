// The PEP service of one host (XEP-0163 over XEP-0060): nodes on every account's bare JID, their
// items, access models, explicit subscriptions, and the notifications that follow each change.
// The protocol layer (protocol.ts) parses requests and calls these operations; conversions
// (avatar.ts, bookmarks.ts) call them too, as the server, with `origin: 'server'`.
//
// Who may read (XEP-0060 §4.5, §6.5.9): the owner always; an outcast never (forbidden); then by
// access model — open: anyone; presence: contacts subscribed to the owner's presence ('from' or
// 'both' in the owner's roster), else not-authorized + presence-subscription-required; roster:
// contacts in one of roster_groups_allowed, else not-authorized + not-in-roster-group;
// whitelist: members, else not-allowed + closed-node. A member may read whatever the model.
//
// Who is notified (XEP-0163 §4.3): the resources in the owner's audience (caps.ts) that announce
// `<node>+notify` and may read the node, the owner's own resources included; and explicit
// subscribers that may still read it. A subscriber that lost access (a roster or configuration
// change) is unsubscribed when next met, and told so (XEP-0163 §9.1, XEP-0060 §8.8.4). Nothing is
// sent to JIDs the owner blocks (XEP-0163 §4.3.3). Notifications come from the owner's bare JID,
// as headline messages by default, each with its own id so bounces can be recognised.
import { randomUUID } from 'node:crypto';
import xml from '@xmpp/xml';
import { parse, type Element } from 'ltx';
import { StanzaError } from '../../lib/errors.js';
import { Jid } from '../../lib/jid.js';
import type { PluginContext } from '../../lib/plugin/types.js';
import { KeyedLock } from '../../lib/util/keyed-lock.js';
import { serialize } from '../../lib/xml/serialize.js';
import type { BlockingApi } from '../blocking/api.js';
import { hasFrom, type RosterApi } from '../roster/api.js';
import type { CapsTracker } from './caps.js';
import {
  applyConfig, configForm, defaultConfig, resolveMaxItems, unmetPreconditions,
  type AccessModel, type NodeConfig,
} from './config.js';
import { NS_ADDRESS, NS_DELAY, NS_PUBSUB, NS_PUBSUB_EVENT, pubsubError, unsupported } from './ns.js';
import type { LoadedItem, NodeRecord, PepStore } from './store.js';

export interface PepOptions {
  default_access_model: AccessModel;
  default_max_items: number;
  open_nodes: string[];
  max_items: number;
  max_nodes: number;
  max_payload_size: number;
  max_id_length: number;
  caps_query_timeout: number;
  caps_cache_size: number;
}

/** Argument of the `pep/changed` event, emitted on the owner's host after a change is stored. */
export interface PepChange {
  owner: string;
  node: string;
  kind: 'publish' | 'retract' | 'delete' | 'purge';
  /** publish: the item; retract: the removed ids. */
  item?: LoadedItem;
  ids?: string[];
  /** 'client' for a request of the account's own client, 'server' for conversions. */
  origin: 'client' | 'server';
}

export const CHANGED_EVENT = 'pep/changed';

export interface PublishRequest {
  id?: string;
  payload: Element;
}

export interface PublishOptions {
  /** Full JID of the publishing resource (the owner's bare JID for the server). */
  publisher: string;
  /** publish-options: checked against an existing node, applied to a new one. */
  preconditions?: Partial<NodeConfig>;
  /** Configuration for a node this publish creates (server-made nodes), under the preconditions. */
  createWith?: Partial<NodeConfig>;
  origin: 'client' | 'server';
}

interface Verdict {
  error?: StanzaError;
  /** The reader has a subscription to the owner's presence (for the XEP-0033 replyto). */
  presence: boolean;
}

function stamp(ms: number): string {
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

export class PepService {
  private readonly lock = new KeyedLock();
  /** Last item of nodes that do not persist items (XEP-0060 §6.5.7), by owner NUL node. */
  private readonly transient = new Map<string, LoadedItem>();

  constructor(
    private readonly ctx: PluginContext<PepOptions>,
    readonly store: PepStore,
    private readonly caps: CapsTracker,
  ) {}

  private get o(): PepOptions {
    return this.ctx.options;
  }

  private roster(): RosterApi {
    const api = this.ctx.use<RosterApi>('roster');
    if (!api) throw new Error('the roster service is not available');
    return api;
  }

  /** The configuration a new node starts from. */
  defaultsFor(node: string): NodeConfig {
    const access = this.o.open_nodes.includes(node) ? 'open' : this.o.default_access_model;
    return defaultConfig(access, this.o.default_max_items);
  }

  checkName(what: 'node' | 'item id', name: string): void {
    if (Buffer.byteLength(name) > this.o.max_id_length) {
      throw new StanzaError('not-acceptable', `the ${what} is longer than ${this.o.max_id_length} bytes`);
    }
  }

  async node(owner: string, node: string): Promise<NodeRecord> {
    const rec = await this.store.node(owner, node);
    if (!rec) throw new StanzaError('item-not-found', `no node ${node}`);
    return rec;
  }

  // ---------- access ----------

  async verdict(owner: string, reader: string, rec: NodeRecord): Promise<Verdict> {
    if (reader === owner) return { presence: true };
    const affiliation = rec.affiliations[reader];
    if (affiliation === 'outcast') return { presence: false, error: new StanzaError('forbidden', 'the owner has banned you from this node') };
    const item = await this.roster().item(owner, reader);
    const presence = hasFrom(item?.subscription);
    if (affiliation === 'member') return { presence };
    const config = rec.config;
    switch (config.access_model) {
      case 'open':
        return { presence };
      case 'presence':
        return presence ? { presence } : { presence, error: pubsubError('not-authorized', 'presence-subscription-required') };
      case 'roster':
        return item && item.groups.some((g) => config.roster_groups_allowed.includes(g))
          ? { presence }
          : { presence, error: pubsubError('not-authorized', 'not-in-roster-group') };
      case 'whitelist':
        return { presence, error: pubsubError('not-allowed', 'closed-node') };
    }
  }

  async mayRead(owner: string, reader: string, rec: NodeRecord): Promise<boolean> {
    return (await this.verdict(owner, reader, rec)).error === undefined;
  }

  private async blocked(owner: string, jid: string): Promise<boolean> {
    const blocking = this.ctx.use<BlockingApi>('blocking');
    const parsed = Jid.tryParse(jid);
    return blocking !== undefined && parsed !== undefined && await blocking.isBlocked(owner, parsed);
  }

  // ---------- publishing ----------

  checkPayload(payload: Element): string {
    const text = serialize(payload);
    const size = Buffer.byteLength(text);
    if (size > this.o.max_payload_size) {
      throw pubsubError('not-acceptable', 'payload-too-big', `the item is ${size} bytes; this server takes at most ${this.o.max_payload_size}`);
    }
    return text;
  }

  private async countCheck(owner: string): Promise<void> {
    if ((await this.store.nodeNames(owner)).length >= this.o.max_nodes) {
      throw new StanzaError('policy-violation', `an account has at most ${this.o.max_nodes} nodes`);
    }
  }

  private newRecord(config: NodeConfig): NodeRecord {
    return { config, items: [], affiliations: {}, subscriptions: {}, created: Date.now() };
  }

  async publish(owner: string, node: string, req: PublishRequest, opts: PublishOptions): Promise<string> {
    this.checkName('node', node);
    if (req.id !== undefined) this.checkName('item id', req.id);
    const payloadXml = this.checkPayload(req.payload);
    const id = req.id ?? randomUUID();
    const item: LoadedItem = { id, payload: payloadXml, publisher: opts.publisher, ts: Date.now() };
    const rec = await this.lock.run(owner, async () => {
      let rec = await this.store.node(owner, node);
      const pre = opts.preconditions ?? {};
      if (!rec) {
        await this.countCheck(owner);
        rec = this.newRecord(applyConfig(applyConfig(this.defaultsFor(node), opts.createWith ?? {}), pre));
      } else {
        const unmet = unmetPreconditions(rec.config, pre, this.o.max_items);
        if (unmet.length > 0) {
          throw pubsubError('conflict', 'precondition-not-met', `the node's configuration differs in ${unmet.join(', ')}`);
        }
      }
      if (rec.config.persist_items) {
        const items = rec.items.filter((i) => i !== id);
        items.push(id);
        const evicted = items.splice(0, Math.max(0, items.length - resolveMaxItems(rec.config, this.o.max_items)));
        rec = { ...rec, items };
        await this.store.putItem(owner, node, id, { payload: item.payload, publisher: item.publisher, ts: item.ts }, rec, evicted);
      } else {
        await this.store.setNode(owner, node, rec);
        this.transient.set(`${owner}\u0000${node}`, item);
      }
      return rec;
    });
    if (rec.config.deliver_notifications) {
      await this.broadcast(owner, node, rec, () => this.itemsEvent(node, [item], rec.config), opts.publisher);
    }
    await this.ctx.emit(CHANGED_EVENT, { owner, node, kind: 'publish', item, origin: opts.origin } satisfies PepChange);
    return id;
  }

  async retract(owner: string, node: string, ids: string[], notify: boolean | undefined, origin: 'client' | 'server'): Promise<void> {
    const rec = await this.lock.run(owner, async () => {
      const rec = await this.node(owner, node);
      const key = `${owner}\u0000${node}`;
      const last = this.transient.get(key);
      for (const id of ids) {
        if (!rec.items.includes(id) && last?.id !== id) throw new StanzaError('item-not-found', `no item ${id}`);
      }
      if (last && ids.includes(last.id)) this.transient.delete(key);
      const next = { ...rec, items: rec.items.filter((i) => !ids.includes(i)) };
      await this.store.removeItems(owner, node, next, ids.filter((i) => rec.items.includes(i)));
      return next;
    });
    if (notify ?? rec.config.notify_retract) {
      const event = (): Element => xml('event', { xmlns: NS_PUBSUB_EVENT },
        xml('items', { node }, ...ids.map((id) => xml('retract', { id }))));
      await this.broadcast(owner, node, rec, event);
    }
    await this.ctx.emit(CHANGED_EVENT, { owner, node, kind: 'retract', ids, origin } satisfies PepChange);
  }

  // ---------- reading ----------

  /** Items of a node in publication order; `max` takes the newest. */
  async items(owner: string, node: string, rec: NodeRecord, o: { ids?: string[]; max?: number } = {}): Promise<LoadedItem[]> {
    let ids = rec.items;
    if (o.ids) ids = rec.items.filter((i) => o.ids!.includes(i));
    if (o.max !== undefined) ids = ids.slice(Math.max(0, ids.length - o.max));
    const found = await this.store.items(owner, node, ids);
    const last = this.transient.get(`${owner}\u0000${node}`);
    if (last && !rec.config.persist_items && (!o.ids || o.ids.includes(last.id))) found.push(last);
    return found;
  }

  async lastItem(owner: string, node: string, rec: NodeRecord): Promise<LoadedItem | undefined> {
    return (await this.items(owner, node, rec, { max: 1 })).pop();
  }

  itemElement(item: LoadedItem, withPayload: boolean, publisher: boolean): Element {
    const attrs: Record<string, string> = { id: item.id };
    if (publisher) attrs.publisher = Jid.tryParse(item.publisher)?.bare ?? item.publisher;
    const el = xml('item', attrs);
    if (withPayload && item.payload !== '') el.append(parse(item.payload));
    return el;
  }

  private itemsEvent(node: string, items: LoadedItem[], config: NodeConfig): Element {
    return xml('event', { xmlns: NS_PUBSUB_EVENT },
      xml('items', { node }, ...items.map((i) => this.itemElement(i, config.deliver_payloads, false))));
  }

  // ---------- owner operations ----------

  async create(owner: string, node: string, config: Partial<NodeConfig>): Promise<void> {
    this.checkName('node', node);
    await this.lock.run(owner, async () => {
      if (await this.store.node(owner, node)) throw new StanzaError('conflict', `the node ${node} exists`);
      await this.countCheck(owner);
      await this.store.setNode(owner, node, this.newRecord(applyConfig(this.defaultsFor(node), config)));
    });
  }

  async configure(owner: string, node: string, changes: Partial<NodeConfig>): Promise<void> {
    const rec = await this.lock.run(owner, async () => {
      const rec = await this.node(owner, node);
      const config = applyConfig(rec.config, changes);
      let keep = rec.items;
      if (!config.persist_items) keep = [];
      else keep = keep.slice(Math.max(0, keep.length - resolveMaxItems(config, this.o.max_items)));
      const next: NodeRecord = { ...rec, config, items: keep };
      await this.store.removeItems(owner, node, next, rec.items.filter((i) => !keep.includes(i)));
      if (config.persist_items) this.transient.delete(`${owner}\u0000${node}`);
      return next;
    });
    if (rec.config.notify_config) {
      await this.broadcast(owner, node, rec, () => xml('event', { xmlns: NS_PUBSUB_EVENT },
        xml('configuration', { node }, ...(rec.config.deliver_payloads ? [configForm(rec.config, 'result')] : []))));
    }
  }

  async deleteNode(owner: string, node: string, redirect: string | undefined, origin: 'client' | 'server'): Promise<void> {
    const rec = await this.lock.run(owner, async () => {
      const rec = await this.node(owner, node);
      await this.store.deleteNode(owner, node, rec);
      this.transient.delete(`${owner}\u0000${node}`);
      return rec;
    });
    if (rec.config.notify_delete) {
      await this.broadcast(owner, node, rec, () => xml('event', { xmlns: NS_PUBSUB_EVENT },
        xml('delete', { node }, ...(redirect ? [xml('redirect', { uri: redirect })] : []))));
    }
    await this.ctx.emit(CHANGED_EVENT, { owner, node, kind: 'delete', origin } satisfies PepChange);
  }

  async purge(owner: string, node: string, origin: 'client' | 'server'): Promise<void> {
    const rec = await this.lock.run(owner, async () => {
      const rec = await this.node(owner, node);
      if (!rec.config.persist_items) throw unsupported('persistent-items', 'this node does not persist items');
      const next = { ...rec, items: [] };
      await this.store.removeItems(owner, node, next, rec.items);
      return next;
    });
    if (rec.config.notify_retract) {
      await this.broadcast(owner, node, rec, () => xml('event', { xmlns: NS_PUBSUB_EVENT }, xml('purge', { node })));
    }
    await this.ctx.emit(CHANGED_EVENT, { owner, node, kind: 'purge', origin } satisfies PepChange);
  }

  /** Changes a node record under the owner's lock (affiliations, subscriptions). */
  async update(owner: string, node: string, fn: (rec: NodeRecord) => NodeRecord): Promise<NodeRecord> {
    return this.lock.run(owner, async () => {
      const next = fn(await this.node(owner, node));
      await this.store.setNode(owner, node, next);
      return next;
    });
  }

  // ---------- notifications ----------

  private message(owner: string, to: string, config: NodeConfig, event: Element, extra: Element[] = []): Element {
    const attrs: Record<string, string> = { from: owner, to, id: `pep-${randomUUID()}` };
    if (config.notification_type === 'headline') attrs.type = 'headline';
    return xml('message', attrs, event, ...extra);
  }

  /**
   * Sends an event to everyone who should get it: the audience with +notify for the node and the
   * explicit subscribers, each once, if they may read the node. `publisher` adds the XEP-0033
   * replyto for readers who share presence with the owner (XEP-0163 §4.3.1).
   */
  async broadcast(owner: string, node: string, rec: NodeRecord, event: () => Element, publisher?: string): Promise<void> {
    const verdicts = new Map<string, Verdict>();
    const judge = async (bare: string): Promise<Verdict> => {
      let v = verdicts.get(bare);
      if (!v) {
        v = await this.verdict(owner, bare, rec);
        verdicts.set(bare, v);
      }
      return v;
    };
    const targets = new Map<string, Verdict>();
    const subscribedBares = new Set<string>();
    const lost: string[] = [];
    for (const jid of Object.keys(rec.subscriptions)) {
      const parsed = Jid.tryParse(jid);
      if (!parsed) continue;
      const v = await judge(parsed.bare);
      if (v.error) {
        lost.push(jid);
        continue;
      }
      if (await this.blocked(owner, jid)) continue;
      targets.set(jid, v);
      if (parsed.resource === '') subscribedBares.add(parsed.bare);
    }
    const wanted = `${node}+notify`;
    for (const [jid, features] of this.caps.audience(owner)) {
      if (!features.has(wanted) || targets.has(jid)) continue;
      const bare = Jid.tryParse(jid)?.bare;
      // A bare-JID subscription already reaches this resource through the bare JID.
      if (!bare || subscribedBares.has(bare)) continue;
      const v = await judge(bare);
      if (v.error || await this.blocked(owner, jid)) continue;
      targets.set(jid, v);
    }
    for (const [to, v] of targets) {
      const extra = publisher && v.presence && Jid.tryParse(publisher)?.resource
        ? [xml('addresses', { xmlns: NS_ADDRESS }, xml('address', { type: 'replyto', jid: publisher }))]
        : [];
      await this.ctx.route(this.message(owner, to, rec.config, event(), extra));
    }
    if (lost.length > 0) await this.cancel(owner, node, lost);
  }

  /** Ends the explicit subscriptions of `contact` (a bare JID) on the nodes it may no longer read. */
  async revalidate(owner: string, contact: string): Promise<void> {
    for (const node of await this.store.nodeNames(owner)) {
      const rec = await this.store.node(owner, node).catch(() => undefined);
      if (!rec) continue;
      const theirs = Object.keys(rec.subscriptions).filter((j) => Jid.tryParse(j)?.bare === contact);
      if (theirs.length > 0 && !(await this.mayRead(owner, contact, rec))) await this.cancel(owner, node, theirs);
    }
  }

  /** Ends subscriptions whose subscriber lost access, and tells each (XEP-0060 §8.8.4). */
  private async cancel(owner: string, node: string, jids: string[]): Promise<void> {
    try {
      await this.update(owner, node, (rec) => {
        const subscriptions = { ...rec.subscriptions };
        for (const j of jids) delete subscriptions[j];
        return { ...rec, subscriptions };
      });
    } catch (err) {
      if (!(err instanceof StanzaError)) this.ctx.log.warn('could not cancel subscriptions', { err, owner, node });
      return;
    }
    for (const jid of jids) {
      await this.ctx.route(xml('message', { from: owner, to: jid, id: `pep-${randomUUID()}` },
        xml('pubsub', { xmlns: NS_PUBSUB }, xml('subscription', { node, jid, subscription: 'none' }))));
    }
  }

  /** Sends the last item of a node to one JID, with the time it was published (XEP-0163 §4.3.4). */
  async sendLast(owner: string, node: string, rec: NodeRecord, to: string): Promise<void> {
    const last = await this.lastItem(owner, node, rec);
    if (!last) return;
    await this.ctx.route(this.message(owner, to, rec.config, this.itemsEvent(node, [last], rec.config),
      [xml('delay', { xmlns: NS_DELAY, from: owner, stamp: stamp(last.ts) })]));
  }

  /** A resource newly asks for these nodes (new presence, new caps): send their last items. */
  async onNewInterest(owner: string, resource: string, nodes: Set<string>): Promise<void> {
    const bare = Jid.tryParse(resource)?.bare;
    if (!bare || await this.blocked(owner, resource)) return;
    for (const node of nodes) {
      const rec = await this.store.node(owner, node).catch(() => undefined);
      if (!rec || rec.config.send_last_published_item !== 'on_sub_and_presence' || !rec.config.deliver_notifications) continue;
      if (!(await this.mayRead(owner, bare, rec))) continue;
      await this.sendLast(owner, node, rec, resource);
    }
  }
}
