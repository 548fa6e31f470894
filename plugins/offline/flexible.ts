// XEP-0013 Flexible Offline Message Retrieval: a client that manages the spool itself (counts,
// headers, view, remove, fetch, purge). Asking for the count or the headers, or fetching, puts
// the user in flexible mode for as long as that session lasts: no resource of the user is then
// flooded with the spool on initial presence (§2.2), and nothing is deleted unless the client
// removes it (§2.5) — except by expiry, as §2.5 allows.
import xml from '@xmpp/xml';
import type { Element } from 'ltx';
import { StanzaError } from '../../lib/errors.js';
import { iqEvent, type IqAnswer } from '../../lib/plugin/context.js';
import type { IqRequest, PluginContext } from '../../lib/plugin/types.js';
import type { ClientSession } from '../../lib/session/types.js';
import { NS_DATA_FORMS, NS_DISCO_INFO, NS_DISCO_ITEMS } from '../../lib/xml/ns.js';
import type { Spool } from './spool.js';

export const NS_OFFLINE = 'http://jabber.org/protocol/offline';

/** §2.2-2.7: only the user's own resources manage the user's spool; they get the session. */
function ownSession(req: IqRequest): { user: string; session: ClientSession } {
  const session = req.session;
  if (req.from.bare !== req.to.bare || !session?.jid || session.jid.full !== req.from.full) {
    throw new StanzaError('forbidden', 'offline messages are only for their owner');
  }
  return { user: req.to.bare, session };
}

/** The message as §2.4 sends it: marked with its node so the client can tell which one it is. */
function marked(stanza: Element, node: string): Element {
  stanza.append(xml('offline', { xmlns: NS_OFFLINE }, xml('item', { node })));
  return stanza;
}

/**
 * Answers disco on the user's bare JID for the offline node. The disco plugin answers the bare
 * JID without nodes, so this handler runs before it and only claims its own node.
 */
function discoNode(ctx: PluginContext<unknown>, type: 'info' | 'items', answer: (req: IqRequest) => Promise<Element>): void {
  const ns = type === 'info' ? NS_DISCO_INFO : NS_DISCO_ITEMS;
  ctx.hook(iqEvent('get', 'bare', ns, 'query'), async (req: IqRequest): Promise<IqAnswer | undefined> => {
    if (req.payload.attrs.node !== NS_OFFLINE) return undefined;
    return { iqAnswer: true, payload: await answer(req) };
  }, 10);
}

export function registerFlexible(ctx: PluginContext<unknown>, spool: Spool): void {
  ctx.feature(NS_OFFLINE);

  discoNode(ctx, 'info', async (req) => {
    const { user, session } = ownSession(req);
    spool.markFlexible(session);
    const count = await spool.count(user);
    return xml('query', { xmlns: NS_DISCO_INFO, node: NS_OFFLINE },
      xml('identity', { category: 'automation', type: 'message-list' }),
      xml('feature', { var: NS_OFFLINE }),
      xml('x', { xmlns: NS_DATA_FORMS, type: 'result' },
        xml('field', { var: 'FORM_TYPE', type: 'hidden' }, xml('value', {}, NS_OFFLINE)),
        xml('field', { var: 'number_of_messages' }, xml('value', {}, String(count)))));
  });

  discoNode(ctx, 'items', async (req) => {
    const { user, session } = ownSession(req);
    spool.markFlexible(session);
    const q = xml('query', { xmlns: NS_DISCO_ITEMS, node: NS_OFFLINE });
    // §2.3: jid is the user, node the message's id, name the full JID it came from.
    for (const { id, stanza } of await spool.all(user)) {
      q.append(xml('item', { jid: user, node: id, name: stanza.attrs.from ?? '' }));
    }
    return q;
  });

  /** The <item/> nodes of an <offline/> request, all with the given action. */
  const nodes = (payload: Element, action: 'view' | 'remove'): string[] => {
    const items = payload.getChildren('item');
    if (items.length === 0) throw new StanzaError('bad-request', 'name the messages with <item node=…/>');
    return items.map((item) => {
      if (item.attrs.action !== action || !item.attrs.node) {
        throw new StanzaError('bad-request', `each <item/> needs action='${action}' and a node`);
      }
      return item.attrs.node;
    });
  };

  /** The command element (<fetch/> or <purge/>) when the request is one; it must stand alone. */
  const command = (payload: Element, name: 'fetch' | 'purge'): boolean => {
    const kids = payload.children.filter((c): c is Element => typeof c !== 'string');
    if (!kids.some((k) => k.name === name)) return false;
    if (kids.length !== 1) throw new StanzaError('bad-request', `<${name}/> stands alone in <offline/>`);
    return true;
  };

  const send = (session: ClientSession, messages: Array<{ id: string; stanza: Element }>): void => {
    spool.counters.delivered += messages.length;
    for (const { id, stanza } of messages) session.deliver(marked(stanza, id));
  };

  ctx.iq.get(NS_OFFLINE, 'offline', async (req) => {
    const { user, session } = ownSession(req);
    if (command(req.payload, 'fetch')) {
      // §2.6: fetching all is flexible mode too; messages stay until removed.
      spool.markFlexible(session);
      send(session, await spool.all(user));
      return undefined;
    }
    send(session, await spool.some(user, nodes(req.payload, 'view')));
    return undefined;
  }, { to: ['bare'] });

  ctx.iq.set(NS_OFFLINE, 'offline', async (req) => {
    const { user } = ownSession(req);
    if (command(req.payload, 'purge')) {
      await spool.purge(user);
      return undefined;
    }
    await spool.remove(user, nodes(req.payload, 'remove'));
    return undefined;
  }, { to: ['bare'] });
}
