// The XEP-0060 protocol on accounts' bare JIDs: parses <pubsub/> and <pubsub xmlns='#owner'/>
// requests, checks who is asking, and calls the service. Everything is validated before anything
// is written, so a refused request changes nothing.
//
// PEP specifics (XEP-0163): the owner (the account itself, any of its resources) is the only
// publisher and the only one who may create, configure, delete or purge nodes; everyone else
// gets forbidden. There are no instant nodes (a create needs a node name).
import xml from '@xmpp/xml';
import type { Element } from 'ltx';
import { StanzaError } from '../../lib/errors.js';
import { Jid } from '../../lib/jid.js';
import type { IqRequest } from '../../lib/plugin/types.js';
import type { RosterApi } from '../roster/api.js';
import { configForm, formOf, parseForm, parsePublishOptions } from './config.js';
import { NS_NODE_CONFIG, NS_PUBSUB, NS_PUBSUB_OWNER, pubsubError, unsupported } from './ns.js';
import type { PepService } from './service.js';
import type { Affiliation } from './store.js';

function elements(el: Element): Element[] {
  return el.children.filter((c): c is Element => typeof c !== 'string');
}

function nodeOf(el: Element): string {
  const node = el.attrs.node;
  if (node === undefined || node === '') throw pubsubError('bad-request', 'nodeid-required');
  return node;
}

function ownerOnly(req: IqRequest): string {
  if (req.from.bare !== req.to.bare) throw new StanzaError('forbidden', 'only the account itself may do this on its personal eventing service');
  return req.to.bare;
}

/** XML Schema boolean, or undefined when absent. */
function boolAttr(v: string | undefined): boolean | undefined {
  if (v === undefined) return undefined;
  if (v === 'true' || v === '1') return true;
  if (v === 'false' || v === '0') return false;
  throw new StanzaError('bad-request', `'${v}' is not a boolean`);
}

export class PepProtocol {
  constructor(
    private readonly svc: PepService,
    private readonly maxItemsLimit: () => number,
    private readonly roster: () => RosterApi | undefined,
  ) {}

  /** The one action element of a <pubsub/> (publish-options, configure and options go with one). */
  private action(payload: Element, companions: readonly string[]): Element {
    const kids = elements(payload);
    const actions = kids.filter((k) => !companions.includes(k.name));
    if (actions.length !== 1) throw new StanzaError('bad-request', 'a pubsub request holds exactly one action');
    return actions[0]!;
  }

  async get(req: IqRequest): Promise<Element> {
    const action = this.action(req.payload, []);
    switch (action.name) {
      case 'items': return this.items(req, action);
      case 'subscriptions': return this.mySubscriptions(req, action);
      case 'affiliations': return this.myAffiliations(req, action);
      case 'options': throw unsupported('subscription-options', 'subscriptions have no options here');
      default: throw new StanzaError('feature-not-implemented', `unknown pubsub request ${action.name}`);
    }
  }

  async set(req: IqRequest): Promise<Element | undefined> {
    const action = this.action(req.payload, ['publish-options', 'configure', 'options']);
    switch (action.name) {
      case 'publish': return this.publish(req, action);
      case 'retract': return this.retract(req, action);
      case 'create': return this.create(req, action);
      case 'subscribe': return this.subscribe(req, action);
      case 'unsubscribe': return this.unsubscribe(req, action);
      case 'options': throw unsupported('subscription-options', 'subscriptions have no options here');
      default: throw new StanzaError('feature-not-implemented', `unknown pubsub request ${action.name}`);
    }
  }

  async ownerGet(req: IqRequest): Promise<Element> {
    const owner = ownerOnly(req);
    const action = this.action(req.payload, []);
    switch (action.name) {
      case 'configure': {
        const node = nodeOf(action);
        const rec = await this.svc.node(owner, node);
        return xml('pubsub', { xmlns: NS_PUBSUB_OWNER }, xml('configure', { node }, configForm(rec.config, 'form', await this.groups(owner))));
      }
      case 'default':
        return xml('pubsub', { xmlns: NS_PUBSUB_OWNER },
          xml('default', {}, configForm(this.svc.defaultsFor(action.attrs.node ?? ''), 'form', await this.groups(owner))));
      case 'subscriptions': {
        const node = nodeOf(action);
        const rec = await this.svc.node(owner, node);
        return xml('pubsub', { xmlns: NS_PUBSUB_OWNER }, xml('subscriptions', { node },
          ...Object.keys(rec.subscriptions).map((jid) => xml('subscription', { jid, subscription: 'subscribed' }))));
      }
      case 'affiliations': {
        const node = nodeOf(action);
        const rec = await this.svc.node(owner, node);
        return xml('pubsub', { xmlns: NS_PUBSUB_OWNER }, xml('affiliations', { node },
          xml('affiliation', { jid: owner, affiliation: 'owner' }),
          ...Object.entries(rec.affiliations).map(([jid, affiliation]) => xml('affiliation', { jid, affiliation }))));
      }
      default: throw new StanzaError('feature-not-implemented', `unknown pubsub owner request ${action.name}`);
    }
  }

  async ownerSet(req: IqRequest): Promise<Element | undefined> {
    const owner = ownerOnly(req);
    const action = this.action(req.payload, []);
    const node = nodeOf(action);
    switch (action.name) {
      case 'configure': {
        const x = formOf(action);
        if (!x) throw new StanzaError('bad-request', 'configure needs a data form');
        if (x.attrs.type === 'cancel') {
          await this.svc.node(owner, node);
          return undefined;
        }
        if (x.attrs.type !== 'submit') throw new StanzaError('bad-request', 'the configuration form must be submitted');
        const changes = parseForm(x, NS_NODE_CONFIG, this.maxItemsLimit());
        await this.svc.configure(owner, node, changes);
        return undefined;
      }
      case 'delete':
        await this.svc.deleteNode(owner, node, action.getChild('redirect')?.attrs.uri, 'client');
        return undefined;
      case 'purge':
        await this.svc.purge(owner, node, 'client');
        return undefined;
      case 'subscriptions': return this.setSubscriptions(owner, node, action);
      case 'affiliations': return this.setAffiliations(owner, node, action);
      default: throw new StanzaError('feature-not-implemented', `unknown pubsub owner request ${action.name}`);
    }
  }

  private async groups(owner: string): Promise<string[]> {
    const items = (await this.roster()?.items(owner)) ?? [];
    return [...new Set(items.flatMap((i) => i.groups))];
  }

  // ---------- subscriber and publisher use cases ----------

  private async items(req: IqRequest, action: Element): Promise<Element> {
    const owner = req.to.bare;
    const node = nodeOf(action);
    let max: number | undefined;
    if (action.attrs.max_items !== undefined) {
      if (!/^\d+$/.test(action.attrs.max_items) || Number(action.attrs.max_items) < 1) {
        throw new StanzaError('bad-request', 'max_items must be a positive number');
      }
      max = Number(action.attrs.max_items);
    }
    const wanted = action.getChildren('item').map((i) => i.attrs.id);
    if (wanted.some((id) => id === undefined || id === '')) throw pubsubError('bad-request', 'item-required', 'a requested item needs an id');
    const rec = await this.svc.node(owner, node);
    const verdict = await this.svc.verdict(owner, req.from.bare, rec);
    if (verdict.error) throw verdict.error;
    const items = await this.svc.items(owner, node, rec, { ids: wanted.length > 0 ? wanted as string[] : undefined, max });
    return xml('pubsub', { xmlns: NS_PUBSUB }, xml('items', { node },
      ...items.map((i) => this.svc.itemElement(i, true, false))));
  }

  private async publish(req: IqRequest, action: Element): Promise<Element> {
    const owner = ownerOnly(req);
    const node = nodeOf(action);
    const items = action.getChildren('item');
    if (items.length === 0) throw pubsubError('bad-request', 'item-required');
    if (items.length > 1) throw pubsubError('bad-request', 'invalid-payload', 'one item per publish');
    const item = items[0]!;
    const payloads = elements(item);
    if (payloads.length === 0) throw pubsubError('bad-request', 'payload-required');
    if (payloads.length > 1) throw pubsubError('bad-request', 'invalid-payload', 'an item holds one payload element');
    const id = item.attrs.id === '' ? undefined : item.attrs.id;
    const preconditions = parsePublishOptions(req.payload.getChild('publish-options'), this.maxItemsLimit());
    const published = await this.svc.publish(owner, node, { id, payload: payloads[0]! }, {
      publisher: req.from.full, preconditions, origin: 'client',
    });
    return xml('pubsub', { xmlns: NS_PUBSUB }, xml('publish', { node }, xml('item', { id: published })));
  }

  private async retract(req: IqRequest, action: Element): Promise<undefined> {
    const owner = ownerOnly(req);
    const node = nodeOf(action);
    const ids = action.getChildren('item').map((i) => i.attrs.id);
    if (ids.length === 0 || ids.some((id) => id === undefined || id === '')) throw pubsubError('bad-request', 'item-required');
    await this.svc.retract(owner, node, ids as string[], boolAttr(action.attrs.notify), 'client');
    return undefined;
  }

  private async create(req: IqRequest, action: Element): Promise<undefined> {
    const owner = ownerOnly(req);
    const node = action.attrs.node;
    if (node === undefined || node === '') throw pubsubError('not-acceptable', 'nodeid-required', 'this service has no instant nodes');
    const x = formOf(req.payload.getChild('configure'));
    const config = x && x.attrs.type !== 'cancel' ? parseForm(x, NS_NODE_CONFIG, this.maxItemsLimit()) : {};
    await this.svc.create(owner, node, config);
    return undefined;
  }

  /** The subscribing JID must be the requester's own (XEP-0060 §6.1.3.1). */
  private subscriber(req: IqRequest, action: Element, mismatch: () => StanzaError): Jid {
    const jid = Jid.tryParse(action.attrs.jid);
    if (!action.attrs.jid) throw pubsubError('bad-request', 'invalid-jid', 'a jid is required');
    if (!jid) throw new StanzaError('jid-malformed');
    if (jid.bare !== req.from.bare) throw mismatch();
    return jid;
  }

  private async subscribe(req: IqRequest, action: Element): Promise<Element> {
    const owner = req.to.bare;
    const node = nodeOf(action);
    const jid = this.subscriber(req, action, () => pubsubError('bad-request', 'invalid-jid', 'you may only subscribe your own JID'));
    const options = req.payload.getChild('options');
    if (options && formOf(options)) throw unsupported('subscription-options', 'subscriptions have no options here');
    const rec = await this.svc.node(owner, node);
    const verdict = await this.svc.verdict(owner, req.from.bare, rec);
    if (verdict.error) throw verdict.error;
    const after = await this.svc.update(owner, node, (r) => ({ ...r, subscriptions: { ...r.subscriptions, [jid.full]: 'subscribed' } }));
    if (after.config.send_last_published_item !== 'never' && after.config.deliver_notifications) {
      await this.svc.sendLast(owner, node, after, jid.full);
    }
    return xml('pubsub', { xmlns: NS_PUBSUB }, xml('subscription', { node, jid: jid.full, subscription: 'subscribed' }));
  }

  private async unsubscribe(req: IqRequest, action: Element): Promise<undefined> {
    const owner = req.to.bare;
    const node = nodeOf(action);
    const jid = this.subscriber(req, action, () => new StanzaError('forbidden', 'you may only unsubscribe your own JID'));
    await this.svc.update(owner, node, (r) => {
      if (!r.subscriptions[jid.full]) throw pubsubError('unexpected-request', 'not-subscribed');
      const subscriptions = { ...r.subscriptions };
      delete subscriptions[jid.full];
      return { ...r, subscriptions };
    });
    return undefined;
  }

  private async mySubscriptions(req: IqRequest, action: Element): Promise<Element> {
    const owner = req.to.bare;
    const only = action.attrs.node;
    const out = xml('subscriptions', only ? { node: only } : {});
    const names = only ? [only] : await this.svc.store.nodeNames(owner);
    for (const node of names) {
      const rec = await this.svc.store.node(owner, node);
      if (!rec) continue;
      for (const jid of Object.keys(rec.subscriptions)) {
        if (Jid.tryParse(jid)?.bare === req.from.bare) out.append(xml('subscription', { node, jid, subscription: 'subscribed' }));
      }
    }
    return xml('pubsub', { xmlns: NS_PUBSUB }, out);
  }

  private async myAffiliations(req: IqRequest, action: Element): Promise<Element> {
    const owner = req.to.bare;
    const only = action.attrs.node;
    const out = xml('affiliations', only ? { node: only } : {});
    const names = only ? [only] : await this.svc.store.nodeNames(owner);
    for (const node of names) {
      const rec = await this.svc.store.node(owner, node);
      if (!rec) continue;
      const affiliation = req.from.bare === owner ? 'owner' : rec.affiliations[req.from.bare];
      if (affiliation) out.append(xml('affiliation', { node, affiliation }));
    }
    return xml('pubsub', { xmlns: NS_PUBSUB }, out);
  }

  // ---------- owner management of subscriptions and affiliations ----------

  private async setSubscriptions(owner: string, node: string, action: Element): Promise<undefined> {
    const changes: Array<[string, boolean]> = [];
    for (const s of action.getChildren('subscription')) {
      const jid = Jid.tryParse(s.attrs.jid);
      if (!jid) throw new StanzaError('jid-malformed', `'${s.attrs.jid ?? ''}' is not a JID`);
      if (s.attrs.subscription !== 'none' && s.attrs.subscription !== 'subscribed') {
        throw new StanzaError('not-acceptable', `subscription '${s.attrs.subscription ?? ''}' is not one of none, subscribed`);
      }
      changes.push([jid.full, s.attrs.subscription === 'subscribed']);
    }
    await this.svc.update(owner, node, (r) => {
      const subscriptions = { ...r.subscriptions };
      for (const [jid, on] of changes) {
        if (on) subscriptions[jid] = 'subscribed';
        else delete subscriptions[jid];
      }
      return { ...r, subscriptions };
    });
    return undefined;
  }

  private async setAffiliations(owner: string, node: string, action: Element): Promise<undefined> {
    const changes: Array<[string, Affiliation | 'none']> = [];
    for (const a of action.getChildren('affiliation')) {
      const jid = Jid.tryParse(a.attrs.jid);
      if (!jid) throw new StanzaError('jid-malformed', `'${a.attrs.jid ?? ''}' is not a JID`);
      const value = a.attrs.affiliation;
      if (jid.bare === owner) {
        // The account owns every node of its PEP service; that cannot change (XEP-0060 §8.9.2.4).
        if (value === 'owner') continue;
        throw new StanzaError('not-acceptable', 'the account always owns its nodes');
      }
      if (value === 'publisher' || value === 'publish-only' || value === 'owner') {
        throw unsupported(`${value}-affiliation`, 'on a personal eventing service only the account publishes');
      }
      if (value !== 'none' && value !== 'member' && value !== 'outcast') {
        throw new StanzaError('not-acceptable', `affiliation '${value ?? ''}' is not one of none, member, outcast`);
      }
      changes.push([jid.bare, value]);
    }
    await this.svc.update(owner, node, (r) => {
      const affiliations = { ...r.affiliations };
      const subscriptions = { ...r.subscriptions };
      for (const [jid, value] of changes) {
        if (value === 'none') delete affiliations[jid];
        else affiliations[jid] = value;
        // An outcast loses its subscriptions too (XEP-0060 §4.1).
        if (value === 'outcast') for (const s of Object.keys(subscriptions)) if (Jid.tryParse(s)?.bare === jid) delete subscriptions[s];
      }
      return { ...r, affiliations, subscriptions };
    });
    return undefined;
  }
}
