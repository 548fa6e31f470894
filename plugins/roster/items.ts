// Roster items on the wire (RFC 6121 §2.1) and the validation of what clients and other plugins
// ask to store (§2.3.3 error cases).
import xml from '@xmpp/xml';
import type { Element } from 'ltx';
import { StanzaError } from '../../lib/errors.js';
import { Jid } from '../../lib/jid.js';
import { NS_ROSTER, type RosterItem } from './api.js';

export interface ItemLimits {
  maxNameLength: number;
  maxGroupLength: number;
  maxGroups: number;
}

export function itemElement(item: RosterItem): Element {
  const attrs: Record<string, string> = { jid: item.jid, subscription: item.subscription };
  if (item.name !== undefined) attrs.name = item.name;
  if (item.ask) attrs.ask = item.ask;
  if (item.approved) attrs.approved = 'true';
  const el = xml('item', attrs);
  for (const g of item.groups) el.append(xml('group', {}, g));
  return el;
}

export function removedElement(jid: string): Element {
  return xml('item', { jid, subscription: 'remove' });
}

export function queryElement(items: readonly Element[], ver?: string): Element {
  const q = xml('query', ver === undefined ? { xmlns: NS_ROSTER } : { xmlns: NS_ROSTER, ver });
  for (const i of items) q.append(i);
  return q;
}

const length = (s: string): number => [...s].length;

/** The contact of an item as a canonical bare JID; refuses what cannot be one. */
export function contactJid(raw: string | undefined, owner: string): string {
  if (raw === undefined || raw === '') throw new StanzaError('bad-request', 'the item needs a jid');
  const jid = Jid.tryParse(raw);
  if (!jid) throw new StanzaError('jid-malformed', 'the item jid is not a valid JID');
  // Subscriptions are between bare JIDs (RFC 6121 §3.1.1), so an item for a full JID could never
  // get one; Prosody refuses these the same way.
  if (jid.resource) throw new StanzaError('not-acceptable', 'roster items are bare JIDs');
  if (jid.bare === owner) throw new StanzaError('not-allowed', 'you cannot add yourself to your roster');
  return jid.bare;
}

/** Checks a name and groups against RFC 6121 §2.3.3 and the configured limits. */
export function checkItemFields(name: string | undefined, groups: readonly string[], limits: ItemLimits): void {
  if (name !== undefined && length(name) > limits.maxNameLength) {
    throw new StanzaError('not-acceptable', `the name is longer than ${limits.maxNameLength} characters`);
  }
  if (groups.length > limits.maxGroups) {
    throw new StanzaError('not-acceptable', `an item may be in at most ${limits.maxGroups} groups`);
  }
  const seen = new Set<string>();
  for (const g of groups) {
    if (g === '') throw new StanzaError('not-acceptable', 'a group name may not be empty');
    if (length(g) > limits.maxGroupLength) {
      throw new StanzaError('not-acceptable', `a group name is longer than ${limits.maxGroupLength} characters`);
    }
    if (seen.has(g)) throw new StanzaError('bad-request', `the group '${g}' is given twice`);
    seen.add(g);
  }
}

export type RosterSet =
  | { kind: 'remove'; contact: string }
  | { kind: 'set'; contact: string; name: string | undefined; groups: string[] };

/** Reads a roster set's query (RFC 6121 §2.3-§2.5); throws the RFC's stanza errors. */
export function parseRosterSet(query: Element, owner: string, limits: ItemLimits): RosterSet {
  const items = query.getChildElements().filter((c) => c.name === 'item');
  if (items.length !== 1) throw new StanzaError('bad-request', 'a roster set carries exactly one item');
  const item = items[0]!;
  const contact = contactJid(item.attrs.jid as string | undefined, owner);
  // In a roster set only subscription='remove' means something; the server ignores every other
  // value, and 'ask'/'approved', which only the server sets (RFC 6121 §2.1.2).
  if (item.attrs.subscription === 'remove') return { kind: 'remove', contact };
  const rawName = item.attrs.name as string | undefined;
  // An empty name means no name, as in Prosody: clients send name='' to clear it.
  const name = rawName === undefined || rawName === '' ? undefined : rawName;
  const groups = item.getChildElements().filter((c) => c.name === 'group').map((g) => g.getText());
  checkItemFields(name, groups, limits);
  return { kind: 'set', contact, name, groups };
}
