// The presence subscription state machine of RFC 6121 §3 and Appendix A, on the user's server
// (outbound: what the user sends) and on the contact's server (inbound: what arrives for a local
// user). States live in the roster (plugins/roster): the item's subscription and ask/approved,
// plus an unanswered inbound request (pending in). Each stanza is one atomic roster update; the
// stanza itself and the automatic replies are routed after the change is stored and pushed.
import xml from '@xmpp/xml';
import type { Element } from 'ltx';
import { StanzaError } from '../../lib/errors.js';
import type { Logger } from '../../lib/log.js';
import type { StanzaEvent } from '../../lib/plugin/types.js';
import type { ClientSession } from '../../lib/session/types.js';
import { cloneStanza, errorReply } from '../../lib/xml/stanza.js';
import {
  hasFrom, hasTo, withFrom, withTo,
  type ContactState, type RosterApi, type RosterItem,
} from '../roster/api.js';

export type SubscriptionType = 'subscribe' | 'subscribed' | 'unsubscribe' | 'unsubscribed';

export function isSubscriptionType(type: string | undefined): type is SubscriptionType {
  return type === 'subscribe' || type === 'subscribed' || type === 'unsubscribe' || type === 'unsubscribed';
}

export interface SubscriptionDeps {
  roster(): RosterApi;
  route(stanza: Element): Promise<void>;
  /** The user's sessions that sent available presence. */
  available(bare: string): ClientSession[];
  /** Whether a local account exists (its sessions count as existing too). */
  userExists(local: string, domain: string): Promise<boolean>;
  /** Pre-approval (RFC 6121 §3.4) is offered. */
  preApproval: boolean;
  log: Logger;
}

const newItem = (jid: string): RosterItem => ({ jid, groups: [], subscription: 'none' });

/**
 * A subscription stanza sent by a local user (RFC 6121 §3.1.2, §3.2.2, §3.3.2, §3.4, A.2).
 * Returns true: the stanza is handled (routed here, or dropped where the RFC says so).
 */
export async function outbound(deps: SubscriptionDeps, ev: StanzaEvent): Promise<true> {
  const stanza = ev.stanza;
  const type = stanza.attrs.type as SubscriptionType;
  const user = ev.from.bare;
  const contact = ev.to.bare;
  // A user's own presence needs no subscription: nothing to record, nothing to send.
  if (contact === user) return true;
  // The user's server stamps the bare JIDs: subscriptions are between accounts, not resources.
  stanza.attrs.from = user;
  stanza.attrs.to = contact;

  let send = true;
  let fn: (st: ContactState) => ContactState | undefined;
  switch (type) {
    case 'subscribe':
      fn = (st) => {
        const item = st.item ?? newItem(contact);
        // Already subscribed or asked: the request is routed again (the contact's server answers
        // it from its own state), the roster stays as it is.
        if (hasTo(item.subscription) || item.ask) return undefined;
        return { ...st, item: { ...item, ask: 'subscribe' } };
      };
      break;
    case 'unsubscribe':
      fn = (st) => {
        if (!st.item || (!hasTo(st.item.subscription) && !st.item.ask)) return undefined;
        const item: RosterItem = { ...st.item, subscription: withTo(st.item.subscription, false) };
        delete item.ask;
        return { ...st, item };
      };
      break;
    case 'subscribed':
      send = false;
      fn = (st) => {
        if (st.pendingIn !== undefined) {
          // Approval of the contact's request: None -> From, To -> Both (the item is created if
          // the request was all there was).
          send = true;
          const item: RosterItem = { ...(st.item ?? newItem(contact)) };
          item.subscription = withFrom(item.subscription, true);
          delete item.approved;
          return { item };
        }
        if (st.item && hasFrom(st.item.subscription)) return undefined;
        // No request to approve: a pre-approval, recorded and not sent (RFC 6121 §3.4.2).
        if (!deps.preApproval) return undefined;
        const item = st.item ?? newItem(contact);
        if (item.approved) return undefined;
        return { ...st, item: { ...item, approved: true } };
      };
      break;
    case 'unsubscribed':
      fn = (st) => {
        // Denies a pending request, cancels the contact's subscription or a pre-approval.
        const next: ContactState = {};
        let changed = st.pendingIn !== undefined;
        if (st.item) {
          const item: RosterItem = { ...st.item };
          if (hasFrom(item.subscription) || item.approved) {
            item.subscription = withFrom(item.subscription, false);
            delete item.approved;
            changed = true;
          }
          next.item = item;
        }
        return changed ? next : undefined;
      };
      break;
  }
  try {
    await deps.roster().update(user, contact, fn, {
      reason: 'outbound',
      then: () => (send ? deps.route(stanza) : undefined),
    });
  } catch (err) {
    if (!(err instanceof StanzaError)) throw err;
    // The user's own server refuses (e.g. the roster is full): tell the sending session.
    if (ev.session) {
      const reply = errorReply(stanza, err);
      reply.attrs.to = ev.session.jid!.full;
      ev.session.deliver(reply);
    }
  }
  return true;
}

/**
 * A subscription stanza for a local user (RFC 6121 §3.1.3, §3.1.6, §3.2.3, §3.3.3, A.3), from a
 * local or remote contact. Returns true: handled (delivered, answered, or ignored per the RFC).
 */
export async function inbound(deps: SubscriptionDeps, ev: StanzaEvent): Promise<true> {
  const stanza = ev.stanza;
  const type = stanza.attrs.type as SubscriptionType;
  const user = ev.to.bare;
  const contact = ev.from.bare;
  if (contact === user) return true;
  stanza.attrs.from = contact;
  stanza.attrs.to = user;
  const rosterOwnerExists = deps.available(user).length > 0 || (await deps.userExists(ev.to.local, ev.to.domain));
  if (!rosterOwnerExists) {
    // RFC 6121 §3.1.3: a request to an account that does not exist is answered "unsubscribed";
    // the other types need no answer.
    if (type === 'subscribe') await deps.route(xml('presence', { type: 'unsubscribed', from: user, to: contact }));
    return true;
  }

  let reply: 'subscribed' | undefined;
  let deliver: 'available' | 'interested' | undefined;
  let fn: (st: ContactState) => ContactState | undefined;
  switch (type) {
    case 'subscribe':
      fn = (st) => {
        const item = st.item;
        // Already subscribed: the server answers for the user, who is not asked again.
        if (item && hasFrom(item.subscription)) {
          reply = 'subscribed';
          return undefined;
        }
        if (item?.approved) {
          // Pre-approved (RFC 6121 §3.4.2): approved at once without asking the user.
          reply = 'subscribed';
          const next: RosterItem = { ...item, subscription: withFrom(item.subscription, true) };
          delete next.approved;
          return { item: next };
        }
        // One request at a time: a repeated one is not delivered again (RFC 6121 §3.1.3).
        if (st.pendingIn !== undefined) return undefined;
        deliver = 'available';
        return { ...st, pendingIn: stanza.toString() };
      };
      break;
    case 'subscribed':
      fn = (st) => {
        // Only an approval of a request the user made counts (RFC 6121 §3.1.6).
        if (!st.item?.ask) return undefined;
        deliver = 'interested';
        const item: RosterItem = { ...st.item, subscription: withTo(st.item.subscription, true) };
        delete item.ask;
        return { ...st, item };
      };
      break;
    case 'unsubscribe':
      fn = (st) => {
        const from = st.item !== undefined && hasFrom(st.item.subscription);
        if (!from && st.pendingIn === undefined) return undefined;
        deliver = 'interested';
        const next: ContactState = {};
        if (st.item) next.item = { ...st.item, subscription: withFrom(st.item.subscription, false) };
        return next;
      };
      break;
    case 'unsubscribed':
      fn = (st) => {
        if (!st.item || (!hasTo(st.item.subscription) && !st.item.ask)) return undefined;
        deliver = 'interested';
        const item: RosterItem = { ...st.item, subscription: withTo(st.item.subscription, false) };
        delete item.ask;
        return { ...st, item };
      };
      break;
  }
  try {
    await deps.roster().update(user, contact, fn, {
      reason: 'inbound',
      then: async () => {
        if (reply) await deps.route(xml('presence', { type: reply, from: user, to: contact }));
        if (deliver) deliverToUser(deps, user, stanza, deliver);
      },
    });
  } catch (err) {
    if (!(err instanceof StanzaError)) throw err;
    // Subscription stanzas get no error replies (RFC 6121 §3): a request the user's roster has
    // no room for is dropped.
    deps.log.info('subscription stanza dropped', { user, contact, type, reason: err.condition });
  }
  return true;
}

/**
 * Hands an inbound subscription stanza to the user's clients: requests to the available
 * resources (the rest get it at their next available presence), the others also to resources
 * that only asked for the roster, which track subscription states through it.
 */
function deliverToUser(deps: SubscriptionDeps, user: string, stanza: Element, to: 'available' | 'interested'): void {
  const sessions = new Set(deps.available(user));
  if (to === 'interested') for (const s of deps.roster().interested(user)) sessions.add(s);
  for (const s of sessions) s.deliver(cloneStanza(stanza));
}
