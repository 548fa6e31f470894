// The roster service (RFC 6121 §2) other plugins use: ctx.use<RosterApi>('roster').
// Owners and contacts are bare JIDs in canonical form (Jid.parse(...).bare).
import type { ClientSession } from '../../lib/session/types.js';

export const NS_ROSTER = 'jabber:iq:roster';
export const NS_ROSTERVER = 'urn:xmpp:features:rosterver';

export type Subscription = 'none' | 'to' | 'from' | 'both';

export interface RosterItem {
  jid: string;
  name?: string;
  groups: string[];
  subscription: Subscription;
  /** A subscription request of the owner to the contact awaits an answer (pending out). */
  ask?: 'subscribe';
  /** The owner pre-approved a subscription request from the contact (RFC 6121 §3.4). */
  approved?: boolean;
}

/**
 * Everything the server keeps about one contact of an owner: the roster item the owner sees, and
 * an inbound subscription request that is not answered yet (pending in, RFC 6121 §3.1.3). Such a
 * request does not make a roster item: the owner sees it only as the presence stanza, which is
 * kept (as XML) to be delivered again at each new available resource until answered.
 */
export interface ContactState {
  item?: RosterItem;
  pendingIn?: string;
}

/** Why a contact's state changed; `roster/subscription` listeners may react differently. */
export type ChangeReason =
  /** A roster set or remove by one of the owner's clients. */
  | 'roster'
  /** A subscription stanza sent by the owner. */
  | 'outbound'
  /** A subscription stanza received for the owner. */
  | 'inbound'
  /** A server-side change through this API (e.g. contact sync). */
  | 'server';

/**
 * Argument of the `roster/subscription` event (emitted on the owner's host after a change of the
 * subscription state between owner and contact was stored and pushed). `before`/`after` are the
 * roster items, undefined when the contact was not (is no longer) in the roster.
 */
export interface SubscriptionChange {
  owner: string;
  contact: string;
  before: RosterItem | undefined;
  after: RosterItem | undefined;
  reason: ChangeReason;
}

export const SUBSCRIPTION_EVENT = 'roster/subscription';

export interface UpdateResult {
  before: ContactState;
  after: ContactState;
}

export interface UpdateOptions {
  reason: ChangeReason;
  /**
   * Runs after the change is stored and pushed, and before `roster/subscription` is emitted, also
   * when nothing changed: the place to route the stanza that caused the change, so the stanzas
   * that follow from it (presence, unavailable) come after it as RFC 6121 §3 orders them.
   */
  then?: (result: UpdateResult) => unknown;
}

export interface RosterApi {
  /** The owner's roster items (not the unanswered inbound requests). */
  items(owner: string): Promise<RosterItem[]>;
  item(owner: string, contact: string): Promise<RosterItem | undefined>;
  /** Creates or updates an item as the server (e.g. contact sync), with roster pushes to interested resources. */
  upsert(owner: string, item: RosterItem): Promise<void>;
  /** As a roster remove: pushes, and the unsubscribe/unsubscribed the RFC requires. Unknown contact: no-op. */
  remove(owner: string, contact: string): Promise<void>;
  /**
   * Changes one contact's state atomically (per owner): `fn` gets a copy of the current state and
   * returns the next one, or undefined to leave it as it is. It must be synchronous and may throw
   * a StanzaError to refuse (nothing is stored then). The roster size limit applies to new
   * contacts. Pushes follow a change of the visible item.
   */
  update(owner: string, contact: string, fn: (state: ContactState) => ContactState | undefined, options: UpdateOptions): Promise<UpdateResult>;
  /** Unanswered inbound subscription requests (XML of the presence stanzas), by contact JID. */
  pendingRequests(owner: string): Promise<Array<{ contact: string; stanza: string }>>;
  /** Current roster version (XEP-0237), an opaque string that changes with every change of an item. */
  version(owner: string): Promise<string>;
  /** The owner's sessions that asked for the roster (RFC 6121 §2.1.6 "interested resources"). */
  interested(owner: string): ClientSession[];
}

export function hasTo(s: Subscription | undefined): boolean {
  return s === 'to' || s === 'both';
}

export function hasFrom(s: Subscription | undefined): boolean {
  return s === 'from' || s === 'both';
}

/** The subscription with the owner's interest in the contact's presence ('to') set or cleared. */
export function withTo(s: Subscription, on: boolean): Subscription {
  const from = hasFrom(s);
  return on ? (from ? 'both' : 'to') : (from ? 'from' : 'none');
}

/** The subscription with the contact's interest in the owner's presence ('from') set or cleared. */
export function withFrom(s: Subscription, on: boolean): Subscription {
  const to = hasTo(s);
  return on ? (to ? 'both' : 'from') : (to ? 'to' : 'none');
}
