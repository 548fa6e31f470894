// Service discovery of PEP nodes on an account's bare JID (XEP-0060 §5.2-§5.4, XEP-0163 §8.2):
// disco#items lists the nodes the requester may read (and, with a node, the ids of its items);
// disco#info with a node answers a leaf identity and the node's meta-data form. Nodes the
// requester may not read are answered as if they did not exist.
//
// The disco plugin answers these queries for every account with an empty list and
// item-not-found for nodes; these handlers run before it (a higher priority) and leave it
// disco#info without a node, which lists the features everyone registered.
import xml from '@xmpp/xml';
import type { Element } from 'ltx';
import { StanzaError } from '../../lib/errors.js';
import { iqEvent, type IqAnswer } from '../../lib/plugin/context.js';
import type { IqRequest, PluginContext } from '../../lib/plugin/types.js';
import { NS_DATA, NS_META_DATA, NS_PUBSUB } from './ns.js';
import type { PepOptions, PepService } from './service.js';
import type { NodeRecord } from './store.js';

const NS_DISCO_INFO = 'http://jabber.org/protocol/disco#info';
const NS_DISCO_ITEMS = 'http://jabber.org/protocol/disco#items';

const answer = (payload: Element): IqAnswer => ({ iqAnswer: true, payload });

function metaData(owner: string, rec: NodeRecord): Element {
  const field = (name: string, value: string): Element => xml('field', { var: name }, xml('value', {}, value));
  const x = xml('x', { xmlns: NS_DATA, type: 'result' }, xml('field', { var: 'FORM_TYPE', type: 'hidden' }, xml('value', {}, NS_META_DATA)));
  x.append(field('pubsub#owner', owner));
  x.append(field('pubsub#access_model', rec.config.access_model));
  if (rec.config.title) x.append(field('pubsub#title', rec.config.title));
  if (rec.config.description) x.append(field('pubsub#description', rec.config.description));
  if (rec.config.type) x.append(field('pubsub#type', rec.config.type));
  x.append(field('pubsub#num_subscribers', String(Object.keys(rec.subscriptions).length)));
  return x;
}

export function setupDisco(ctx: PluginContext<PepOptions>, svc: PepService): void {
  /** The node, if it exists and the requester may read it. */
  async function readable(req: IqRequest, node: string): Promise<NodeRecord> {
    const rec = await svc.store.node(req.to.bare, node);
    if (!rec || !(await svc.mayRead(req.to.bare, req.from.bare, rec))) throw new StanzaError('item-not-found');
    return rec;
  }

  ctx.hook(iqEvent('get', 'bare', NS_DISCO_ITEMS, 'query'), async (req: IqRequest): Promise<IqAnswer> => {
    const owner = req.to.bare;
    const node = req.payload.attrs.node;
    if (node) {
      const rec = await readable(req, node);
      const items = await svc.items(owner, node, rec);
      return answer(xml('query', { xmlns: NS_DISCO_ITEMS, node }, ...items.map((i) => xml('item', { jid: owner, name: i.id }))));
    }
    const q = xml('query', { xmlns: NS_DISCO_ITEMS });
    for (const name of await svc.store.nodeNames(owner)) {
      const rec = await svc.store.node(owner, name).catch(() => undefined);
      if (rec && await svc.mayRead(owner, req.from.bare, rec)) {
        q.append(xml('item', rec.config.title ? { jid: owner, node: name, name: rec.config.title } : { jid: owner, node: name }));
      }
    }
    return answer(q);
  }, 10);

  ctx.hook(iqEvent('get', 'bare', NS_DISCO_INFO, 'query'), async (req: IqRequest): Promise<IqAnswer | undefined> => {
    const node = req.payload.attrs.node;
    if (!node) return undefined;
    const rec = await readable(req, node);
    return answer(xml('query', { xmlns: NS_DISCO_INFO, node },
      xml('identity', { category: 'pubsub', type: 'leaf' }),
      xml('feature', { var: NS_DISCO_INFO }),
      xml('feature', { var: NS_PUBSUB }),
      metaData(req.to.bare, rec)));
  }, 10);
}
