// XEP-0280 Message Carbons: every carbons-enabled resource of a user sees both sides of the
// user's one-to-one conversations, whichever of the user's devices took part in them.
//
// - Enabling is per resource (stream state, kept in session.data); the IQ goes to the user's own
//   bare JID, or carries no `to`, which the c2s session turns into the same thing.
// - Sent copies: a message a client sends is copied, wrapped in <sent/>, to the user's other
//   carbons-enabled resources (whether or not the sender enabled carbons).
// - Received copies: once the router has delivered a message by the RFC 6121 rules
//   (`message/delivered` lists who got it), every other carbons-enabled resource gets it wrapped
//   in <received/>. When no resource got it (only negative priorities, or nobody available), all
//   carbons-enabled resources get a copy, as §7 asks ("each resource that did not receive it").
// Copies are written with session.deliver so outgoing filters (CSI) still see them; they are not
// routed, so a copy can never fall back to another resource or be copied again.
import xml from '@xmpp/xml';
import type { Element } from 'ltx';
import { StanzaError } from '../lib/errors.js';
import type { Jid } from '../lib/jid.js';
import { definePlugin, type DeliveredEvent, type IqRequest, type StanzaEvent } from '../lib/plugin/types.js';
import type { ClientSession } from '../lib/session/types.js';
import { NS_CLIENT } from '../lib/xml/ns.js';
import { cloneStanza } from '../lib/xml/stanza.js';

export const NS_CARBONS = 'urn:xmpp:carbons:2';
/** Announces that the eligibility rules of XEP-0280 1.0 (including the MUC ones) are applied. */
export const NS_CARBONS_RULES = 'urn:xmpp:carbons:rules:0';
const NS_FORWARD = 'urn:xmpp:forward:0';
const NS_HINTS = 'urn:xmpp:hints';
const NS_MUC_USER = 'http://jabber.org/protocol/muc#user';

/** session.data key: true while the resource has carbons enabled. */
const ENABLED = 'carbons';

/**
 * Payloads that make a message without a body part of an instant-messaging conversation
 * (XEP-0280 §6 names receipts, chat states and markers). Encrypted payloads are here because
 * OMEMO key-transport messages carry no body; call setup so that every device stops ringing;
 * invitations, reactions and retractions so that every device shows the same conversation.
 */
const IM_PAYLOADS = new Set([
  'urn:xmpp:receipts', // XEP-0184
  'http://jabber.org/protocol/chatstates', // XEP-0085
  'urn:xmpp:chat-markers:0', // XEP-0333
  'eu.siacs.conversations.axolotl', // OMEMO 0.3 (Conversations)
  'urn:xmpp:omemo:2', // XEP-0384
  'urn:xmpp:jingle-message:0', // XEP-0353
  'urn:xmpp:jingle-message:1',
  'jabber:x:conference', // XEP-0249 direct MUC invitation
  'urn:xmpp:reactions:0', // XEP-0444
  'urn:xmpp:message-retract:1', // XEP-0424
]);

type Direction = 'sent' | 'received';

function isElement(c: Element | string): c is Element {
  return typeof c !== 'string';
}

/** Child elements with their namespaces; the parser writes xmlns only where it changes. */
function children(el: Element, elNs: string): Array<{ el: Element; ns: string }> {
  const out: Array<{ el: Element; ns: string }> = [];
  for (const c of el.children) if (isElement(c)) out.push({ el: c, ns: c.attrs.xmlns ?? elNs });
  return out;
}

function hasChild(stanza: Element, name: string, ns: string): boolean {
  return children(stanza, stanza.attrs.xmlns ?? NS_CLIENT).some((c) => c.el.name === name && c.ns === ns);
}

/**
 * XEP-0280 §6 (version 1.0): which messages are copied. `to` is the original's recipient; for
 * received copies it tells a MUC private message (to a full JID) from a mediated invitation.
 */
export function eligibleForCarbons(stanza: Element, direction: Direction, to: Jid): boolean {
  const kids = children(stanza, stanza.attrs.xmlns ?? NS_CLIENT);
  // The sender asked for no copies (XEP-0280 §8 and the XEP-0334 hint that replaces it).
  if (kids.some((c) => (c.el.name === 'private' && c.ns === NS_CARBONS) || (c.el.name === 'no-copy' && c.ns === NS_HINTS))) {
    return false;
  }
  // A carbon is never copied again; one that arrives from outside is forged, and copying it
  // would pass it to the user's other clients as if it came from the user's own account.
  if (kids.some((c) => c.ns === NS_CARBONS && (c.el.name === 'sent' || c.el.name === 'received'))) return false;
  const type = stanza.attrs.type ?? 'normal';
  // Errors: §6 allows copying errors to eligible messages only, which needs correlating each
  // bounce with what was sent; without it a copied error would be meaningless on the other
  // devices (and §11.3 forbids reflecting the errors carbons themselves cause). Headlines and
  // groupchat are not one-to-one IM; the MUC service delivers room traffic to every joined client.
  if (type !== 'chat' && type !== 'normal') return false;
  const mucUser = kids.find((c) => c.el.name === 'x' && c.ns === NS_MUC_USER);
  const isInvite = mucUser !== undefined && mucUser.el.getChild('invite') !== undefined;
  // A private message from a MUC occupant reaches every client joined under the nick (the
  // service forks it), and clients not joined cannot answer it: not copied. The user's own
  // private messages to an occupant are copied, so the other clients see what was said.
  if (direction === 'received' && mucUser && !isInvite && to.resource !== '') return false;
  if (type === 'chat') return true;
  if (kids.some((c) => c.el.name === 'body' && c.ns === NS_CLIENT)) return true;
  if (isInvite) return true; // XEP-0045 mediated invitation
  return kids.some((c) => IM_PAYLOADS.has(c.ns));
}

/** The copy sent to one resource: `<message from=bare to=full><sent|received><forwarded>…`. */
function wrap(direction: Direction, original: Element, user: string, recipient: ClientSession): Element {
  const inner = cloneStanza(original);
  // Inside <forwarded/> the message is no longer in the stream's default namespace.
  inner.attrs.xmlns = NS_CLIENT;
  const attrs: Record<string, string> = { from: user, to: recipient.jid!.full };
  // §7/§8: the wrapper SHOULD keep the original's type.
  if (original.attrs.type !== undefined) attrs.type = original.attrs.type;
  return xml('message', attrs,
    xml(direction, { xmlns: NS_CARBONS }, xml('forwarded', { xmlns: NS_FORWARD }, inner)));
}

export default definePlugin({
  name: 'carbons',
  xeps: [
    { xep: 280, version: '1.0.1', status: 'complete' },
    { xep: 297, version: '1.0', status: 'complete', note: 'forwarding, as the carbons wrapper' },
    { xep: 334, version: '0.3.0', status: 'partial', note: 'no-copy hint honoured' },
  ],
  setup(ctx) {
    // Messages whose <private/> was removed on the way in (below): the delivered event, which
    // comes after delivery, no longer sees the element, but must still not copy them.
    const privateMessages = new WeakSet<Element>();

    ctx.feature(NS_CARBONS);
    ctx.feature(NS_CARBONS_RULES);

    const toggle = (enable: boolean) => ({ session, from, to }: IqRequest): undefined => {
      // Only the user's own client may switch its own carbons (§4.1, §5.1: not-allowed for
      // requests from elsewhere, including another user addressing this user's bare JID).
      if (!session?.jid || session.jid.full !== from.full || session.jid.bare !== to.bare) {
        throw new StanzaError('not-allowed', 'carbons can only be changed by the session itself');
      }
      // Repeated enables or disables are not errors (§10.1): the flag just stays as it is.
      if (enable) session.data.set(ENABLED, true);
      else session.data.delete(ENABLED);
      return undefined;
    };
    ctx.iq.set(NS_CARBONS, 'enable', toggle(true), { to: ['bare'] });
    ctx.iq.set(NS_CARBONS, 'disable', toggle(false), { to: ['bare'] });

    /** Delivers copies to the user's carbons-enabled, available resources not in `skip`. */
    const copyTo = (direction: Direction, user: string, original: Element, skip: readonly ClientSession[]): void => {
      for (const session of ctx.server.sessions.resources(user)) {
        // Available only (as ejabberd): a resource that sent no presence, or unavailable, has
        // said it takes no IM traffic, and copies are IM traffic.
        if (!session.available || session.data.get(ENABLED) !== true || skip.includes(session)) continue;
        session.deliver(wrap(direction, original, user, session));
      }
    };

    // Sent copies. Late priority: plugins that refuse an outgoing message (blocking) or enrich
    // it (file metadata, DESIGN §7) run first, so only what is routed is copied, as routed.
    const onSent = (ev: StanzaEvent): undefined => {
      if (ev.session?.jid && eligibleForCarbons(ev.stanza, 'sent', ev.to)) {
        copyTo('sent', ev.from.bare, ev.stanza, [ev.session]);
      }
      return undefined;
    };
    for (const target of ['host', 'bare', 'full']) ctx.hook(`pre-message/${target}`, onSent, -100);

    // §8: the receiving server removes <private/> before delivering to the recipient. This runs
    // before anything may deliver the message, and before the delivered event reads it.
    const stripPrivate = ({ stanza }: StanzaEvent): undefined => {
      const before = stanza.children.length;
      stanza.children = stanza.children.filter((c) => !(isElement(c) && c.name === 'private'
        && (c.attrs.xmlns ?? NS_CLIENT) === NS_CARBONS));
      if (stanza.children.length !== before) privateMessages.add(stanza);
      return undefined;
    };
    ctx.hook('message/bare', stripPrivate, 500);
    ctx.hook('message/full', stripPrivate, 500);

    const receivedEligible = (ev: StanzaEvent): boolean =>
      !privateMessages.has(ev.stanza) && eligibleForCarbons(ev.stanza, 'received', ev.to);

    // Received copies, after the RFC 6121 delivery: to everyone but the resources that got it.
    ctx.hook('message/delivered', (ev: DeliveredEvent) => {
      if (receivedEligible(ev)) copyTo('received', ev.to.bare, ev.stanza, ev.sessions);
    });

    // No resource takes the message (all negative priority or unavailable): the router is about
    // to store or bounce it. Carbons-enabled resources still get their copy, since none of them
    // received it. Runs before the offline store and never claims the message.
    ctx.hook('message/offline/handle', (ev: StanzaEvent): undefined => {
      const user = ev.to.bare;
      // Only for the router's own case (no available non-negative resource), so a plugin that
      // re-offers a message later (e.g. after a failed delivery) does not produce second copies.
      if (ctx.server.sessions.available(user).some((s) => s.priority >= 0)) return undefined;
      if (receivedEligible(ev)) copyTo('received', user, ev.stanza, []);
      return undefined;
    }, 100);
  },
});
