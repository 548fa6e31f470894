// Which messages go to the offline spool (RFC 6121 §8.5.2.2, XEP-0160 §3), and how the stored
// copy is marked: ejabberd's storage policy with the XEP-0334 hints.
import xml from '@xmpp/xml';
import type { Element } from 'ltx';
import { NS_CLIENT, NS_DELAY } from '../../lib/xml/ns.js';
import { cloneStanza } from '../../lib/xml/stanza.js';

export const NS_HINTS = 'urn:xmpp:hints';
export const NS_SID = 'urn:xmpp:sid:0';
const NS_CHATSTATES = 'http://jabber.org/protocol/chatstates';
const NS_CARBONS = 'urn:xmpp:carbons:2';
const MAM_NAMESPACES = new Set(['urn:xmpp:mam:0', 'urn:xmpp:mam:1', 'urn:xmpp:mam:2']);

/**
 * Payloads that make a bodyless message worth keeping for an offline user, by default: delivery
 * receipts and read markers (the sender's client shows them), encrypted payloads (OMEMO and
 * OpenPGP messages may carry no plaintext body, and OMEMO key exchanges none at all), and
 * reactions and retractions, which change a message the user already has.
 */
export const DEFAULT_BODYLESS_PAYLOADS: readonly string[] = [
  'urn:xmpp:receipts', // XEP-0184
  'urn:xmpp:chat-markers:0', // XEP-0333
  'eu.siacs.conversations.axolotl', // OMEMO 0.3 (Conversations, Monal, Dino)
  'urn:xmpp:omemo:2', // XEP-0384
  'urn:xmpp:openpgp:0', // XEP-0373
  'jabber:x:encrypted', // XEP-0027
  'urn:xmpp:reactions:0', // XEP-0444
  'urn:xmpp:message-retract:1', // XEP-0424
];

export interface PolicyOptions {
  storeGroupchat: boolean;
  /** Namespaces of payloads that make a message without a body worth storing. */
  bodylessPayloads: ReadonlySet<string>;
}

/**
 * - 'store': keep it for the user.
 * - 'skip': not stored; the router answers as for any offline user (service-unavailable, except
 *   for headlines, RFC 6121 §8.5.2.2.1).
 * - 'discard': not stored and not worth an error either: a bare chat state, a copy of something
 *   kept elsewhere (carbon, archive result). RFC 6121 lets the server drop it silently.
 */
export type Decision = 'store' | 'skip' | 'discard';

function children(el: Element): Array<{ el: Element; ns: string }> {
  const own = el.attrs.xmlns ?? NS_CLIENT;
  const out: Array<{ el: Element; ns: string }> = [];
  for (const c of el.children) if (typeof c !== 'string') out.push({ el: c, ns: c.attrs.xmlns ?? own });
  return out;
}

export function decide(stanza: Element, o: PolicyOptions): Decision {
  const type = stanza.attrs.type ?? 'normal';
  if (type === 'error') return 'discard';
  const kids = children(stanza);
  const hint = (name: string): boolean => kids.some((c) => c.ns === NS_HINTS && c.el.name === name);
  // Copies: the original went to the user's resources or is in the archive.
  if (kids.some((c) => (c.ns === NS_CARBONS && (c.el.name === 'sent' || c.el.name === 'received'))
    || (c.el.name === 'result' && MAM_NAMESPACES.has(c.ns)))) return 'discard';
  // XEP-0334: no-store forbids even temporary storage; no-permanent-store only archives, so
  // offline storage (temporary by nature) is still fine.
  if (hint('no-store')) return 'skip';
  if (hint('store')) return 'store';
  if (type === 'headline') return 'skip';
  if (type === 'groupchat' && !o.storeGroupchat) return 'skip';
  if (kids.some((c) => c.ns === NS_CLIENT && c.el.name === 'body')) return 'store';
  if (kids.some((c) => o.bodylessPayloads.has(c.ns))) return 'store';
  // XEP-0160 §3: messages with only chat-state content are not stored (nor worth an error).
  if (kids.some((c) => c.ns === NS_CHATSTATES)) return 'discard';
  return 'skip';
}

/** The stanza-id of a message assigned for `user` (XEP-0359), if one is present. */
export function stanzaIdFor(stanza: Element, user: string): string | undefined {
  for (const c of children(stanza)) {
    if (c.ns === NS_SID && c.el.name === 'stanza-id' && c.el.attrs.by === user && c.el.attrs.id) return c.el.attrs.id;
  }
  return undefined;
}

/**
 * The copy kept in the spool: the stanza-id it already carries for the user (added by the
 * archive, so both copies have the same id) or the given new one, and a XEP-0203 delay from the
 * host saying when it was stored (XEP-0160 §2), unless the host already stamped one.
 * `trustExisting` is false when nothing on this server assigns stanza-ids before the spool:
 * one claiming to be for the user then came from outside and is replaced (XEP-0359 §4).
 */
export function spoolCopy(stanza: Element, user: string, host: string, newId: string, trustExisting: boolean, now: number): { copy: Element; id: string } {
  const copy = cloneStanza(stanza);
  let id = trustExisting ? stanzaIdFor(copy, user) : undefined;
  if (id === undefined) {
    const own = copy.attrs.xmlns ?? NS_CLIENT;
    copy.children = copy.children.filter((c) => typeof c === 'string' || c.name !== 'stanza-id'
      || (c.attrs.xmlns ?? own) !== NS_SID || c.attrs.by !== user);
    id = newId;
    copy.append(xml('stanza-id', { xmlns: NS_SID, by: user, id }));
  }
  const stamped = children(copy).some((c) => c.ns === NS_DELAY && c.el.name === 'delay' && c.el.attrs.from === host);
  if (!stamped) copy.append(xml('delay', { xmlns: NS_DELAY, from: host, stamp: new Date(now).toISOString() }, 'Offline Storage'));
  return { copy, id };
}
