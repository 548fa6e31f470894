// XEP-0030 Service Discovery for the host and, on their behalf, for accounts' bare JIDs.
// Other plugins register what to advertise (ctx.feature/identity/discoItem); this plugin only
// answers with what is registered at the moment of the query.
import xml from '@xmpp/xml';
import type { Element } from 'ltx';
import { StanzaError } from '../lib/errors.js';
import type { HostContext } from '../lib/plugin/host.js';
import { definePlugin, type DiscoIdentity } from '../lib/plugin/types.js';
import { NS_DISCO_INFO, NS_DISCO_ITEMS } from '../lib/xml/ns.js';

function identityElement(i: DiscoIdentity): Element {
  const attrs: Record<string, string> = { category: i.category, type: i.type };
  if (i.name) attrs.name = i.name;
  return xml('identity', attrs);
}

function infoQuery(node: string | undefined, identities: readonly DiscoIdentity[], features: string[], forms: Element[]): Element {
  const q = xml('query', node ? { xmlns: NS_DISCO_INFO, node } : { xmlns: NS_DISCO_INFO });
  // Sorted, so the answer (and an entity-caps hash over it) is the same on every query.
  for (const i of identities) q.append(identityElement(i));
  for (const f of [...new Set(features)].sort()) q.append(xml('feature', { var: f }));
  for (const form of forms) q.append(form);
  return q;
}

export function hostInfo(host: HostContext, node?: string): Element {
  return infoQuery(
    node,
    [{ category: 'server', type: 'im', name: 'Parley' }, ...host.identities.values()],
    [NS_DISCO_INFO, NS_DISCO_ITEMS, ...host.features.values()],
    host.extensions.values().map((f) => f()),
  );
}

/** Answers disco#info for a node of the host (e.g. the entity-caps node), or undefined. */
export type InfoNodeHandler = (node: string) => Element | undefined;

/** The `disco` service other plugins use: `ctx.use<DiscoApi>('disco')`. */
export interface DiscoApi {
  /** The host's disco#info query as it is now (no node). */
  hostInfo(): Element;
  /** Adds a handler for disco#info nodes on the host; returns a remover. */
  addInfoNode(handler: InfoNodeHandler): () => void;
}

export default definePlugin({
  name: 'disco',
  xeps: [{ xep: 30, version: '2.5rc3', status: 'complete' }, { xep: 128, version: '1.0.1', status: 'complete' }],
  setup(ctx) {
    const host = ctx.server.host(ctx.host)!;
    const nodeHandlers = new Set<InfoNodeHandler>();
    const api: DiscoApi = {
      hostInfo: () => hostInfo(host),
      addInfoNode(handler) {
        nodeHandlers.add(handler);
        return () => nodeHandlers.delete(handler);
      },
    };
    ctx.provide('disco', api);

    ctx.iq.get(NS_DISCO_INFO, 'query', ({ payload }) => {
      const node = payload.attrs.node;
      if (!node) return hostInfo(host);
      for (const handler of nodeHandlers) {
        const answer = handler(node);
        if (answer) return answer;
      }
      throw new StanzaError('item-not-found');
    }, { to: ['host'] });

    ctx.iq.get(NS_DISCO_ITEMS, 'query', ({ payload }) => {
      if (payload.attrs.node) throw new StanzaError('item-not-found');
      const q = xml('query', { xmlns: NS_DISCO_ITEMS });
      for (const item of host.items.values()) {
        const attrs: Record<string, string> = { jid: item.jid };
        if (item.name) attrs.name = item.name;
        if (item.node) attrs.node = item.node;
        q.append(xml('item', attrs));
      }
      return q;
    }, { to: ['host'] });

    ctx.iq.get(NS_DISCO_INFO, 'query', ({ payload }) => {
      if (payload.attrs.node) throw new StanzaError('item-not-found');
      return infoQuery(undefined,
        [{ category: 'account', type: 'registered' }, ...host.accountIdentities.values()],
        [NS_DISCO_INFO, NS_DISCO_ITEMS, ...host.accountFeatures.values()], []);
    }, { to: ['bare'] });

    ctx.iq.get(NS_DISCO_ITEMS, 'query', ({ payload }) => {
      if (payload.attrs.node) throw new StanzaError('item-not-found');
      return xml('query', { xmlns: NS_DISCO_ITEMS });
    }, { to: ['bare'] });
  },
});
