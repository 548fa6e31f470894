// Occupants and the presence the room sends about them (XEP-0045 §7.2.3, §7.7, §17.2).
import xml from '@xmpp/xml';
import { createHmac } from 'node:crypto';
import type { Element } from 'ltx';
import { cloneStanza } from '../../lib/xml/stanza.js';
import { NS_MUC, NS_MUC_USER, NS_OCCUPANT_ID, removeChildren, statuses } from './ns.js';
import type { Affiliation, Role } from './types.js';

export interface Occupant {
  nick: string;
  /** nickKey(nick): what nick conflicts are decided on. */
  key: string;
  /** The occupant JID, room@service/nick. */
  jid: string;
  /** The real bare JID. */
  bare: string;
  /**
   * Real full JIDs of the sessions joined under this nick (XEP-0045 lets several resources of one
   * account share a nick), each with the last presence it sent; the last
   * entry is the session whose presence the room shows.
   */
  sessions: Map<string, Element>;
  role: Role;
  /** XEP-0421 id: the same for one real bare JID in one room, whatever the nick. */
  occupantId: string;
  /** Fixed-window message counter (the message_rate option). */
  rate: { start: number; count: number };
  /** When this occupant last asked for voice (voice.ts), if ever. */
  voiceRequestedAt?: number;
}

/** XEP-0421 §4: derived from the real bare JID with a per-room secret, so it cannot be reversed. */
export function occupantIdFor(secret: string, bare: string): string {
  return createHmac('sha256', secret).update(bare).digest('base64url').slice(0, 24);
}

/** The session whose presence represents the occupant (the one that spoke last). */
export function primarySession(o: Occupant): string {
  let last = '';
  for (const full of o.sessions.keys()) last = full;
  return last;
}

export interface PresenceView {
  affiliation: Affiliation;
  /** Include the real JID in the item (non-anonymous room, moderator recipient, or self). */
  withJid: boolean;
  codes: number[];
  /** `nick` on the item: the new nick in a 303 unavailable. */
  newNick?: string;
  actor?: string;
  reason?: string;
  /** Extra children of the muc#user element (e.g. <destroy/>). */
  extra?: Element[];
}

/**
 * The presence the room sends about an occupant. An available one carries what the occupant's
 * client put in its presence (show, status, caps, avatar hash), without the MUC join element and
 * without anything claiming to be an occupant-id, then the room's muc#user item and XEP-0421 id.
 */
export function occupantPresence(o: Occupant, to: string, view: PresenceView, unavailable: Element | undefined): Element {
  let p: Element;
  if (unavailable) {
    p = cloneStanza(unavailable);
  } else {
    p = cloneStanza(o.sessions.get(primarySession(o)) ?? xml('presence'));
    delete p.attrs.type;
  }
  delete p.attrs.id;
  p.attrs.from = o.jid;
  p.attrs.to = to;
  removeChildren(p, 'x', NS_MUC);
  removeChildren(p, 'x', NS_MUC_USER);
  removeChildren(p, 'occupant-id', NS_OCCUPANT_ID);
  const itemAttrs: Record<string, string> = { affiliation: view.affiliation, role: unavailable ? 'none' : o.role };
  if (view.withJid) itemAttrs.jid = primarySession(o);
  if (view.newNick !== undefined) itemAttrs.nick = view.newNick;
  const item = xml('item', itemAttrs);
  if (view.actor !== undefined) item.append(xml('actor', { nick: view.actor }));
  if (view.reason !== undefined) item.append(xml('reason', {}, view.reason));
  const x = xml('x', { xmlns: NS_MUC_USER }, item, ...statuses(view.codes), ...(view.extra ?? []));
  p.append(x);
  p.append(xml('occupant-id', { xmlns: NS_OCCUPANT_ID, id: o.occupantId }));
  return p;
}

/** A presence stripped to what an unavailable notice repeats from the leaving client (status text). */
export function unavailableFrom(stanza: Element | undefined): Element {
  const p = xml('presence', { type: 'unavailable' });
  const status = stanza?.getChild('status');
  if (status && status.getText().length > 0) p.append(xml('status', {}, status.getText()));
  return p;
}
