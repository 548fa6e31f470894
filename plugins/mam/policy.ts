// Which messages a user archive keeps, what of them it keeps, and the XEP-0359 stanza-id that
// tells the recipient where a message was archived.
import xml from '@xmpp/xml';
import type { Element } from 'ltx';
import { Jid } from '../../lib/jid.js';
import { NS_CLIENT } from '../../lib/xml/ns.js';
import { cloneStanza } from '../../lib/xml/stanza.js';
import { childrenWithNs, NS_HINTS, NS_SID } from './xml.js';

/**
 * Payloads that make a message without a body part of the conversation, so a client syncing from
 * the archive needs them: delivery receipts and read markers (which message was seen where),
 * encrypted payloads (OMEMO and OpenPGP messages may carry no plaintext body), reactions and
 * retractions (they change a message shown), call setup (the call log) and invitations.
 * Chat states are not here: they describe a moment, not the conversation (XEP-0313, 'Message archives').
 */
const CONVERSATION_PAYLOADS: ReadonlyMap<string, ReadonlySet<string> | undefined> = new Map([
  ['urn:xmpp:receipts', new Set(['received'])], // XEP-0184
  ['urn:xmpp:chat-markers:0', new Set(['received', 'displayed', 'acknowledged'])], // XEP-0333
  ['eu.siacs.conversations.axolotl', new Set(['encrypted'])], // OMEMO 0.3
  ['urn:xmpp:omemo:2', new Set(['encrypted'])], // XEP-0384
  ['urn:xmpp:openpgp:0', new Set(['openpgp'])], // XEP-0373
  ['jabber:x:encrypted', new Set(['x'])], // XEP-0027
  ['urn:xmpp:reactions:0', new Set(['reactions'])], // XEP-0444
  ['urn:xmpp:message-retract:1', new Set(['retract'])], // XEP-0424
  ['urn:xmpp:jingle-message:0', undefined], // XEP-0353: propose, retract, accept, reject, proceed
  ['urn:xmpp:jingle-message:1', undefined],
  ['jabber:x:conference', new Set(['x'])], // XEP-0249 direct invitation
]);

/** OMEMO elements that only move keys (no <payload/>) are not part of the conversation. */
function isKeyTransport(el: Element): boolean {
  return el.name === 'encrypted' && !el.children.some((c) => typeof c !== 'string' && c.name === 'payload');
}

/**
 * XEP-0313's rules for user archives with the XEP-0334 hints, as Prosody and ejabberd apply them: messages of type
 * chat or normal that carry a body or another conversation payload; never errors, headlines or
 * groupchat (a room keeps its own archive). `store` asks for archiving whatever the content;
 * `no-store` and `no-permanent-store` refuse it.
 */
export function archivable(stanza: Element): boolean {
  const type = stanza.attrs.type ?? 'normal';
  if (type !== 'chat' && type !== 'normal') return false;
  const kids = childrenWithNs(stanza);
  const hint = (name: string) => kids.some((c) => c.ns === NS_HINTS && c.el.name === name);
  if (hint('store')) return true;
  if (hint('no-store') || hint('no-permanent-store')) return false;
  return kids.some(({ el, ns }) => {
    if (ns === NS_CLIENT) return el.name === 'body';
    if (!CONVERSATION_PAYLOADS.has(ns)) return false;
    const names = CONVERSATION_PAYLOADS.get(ns);
    return (names === undefined || names.has(el.name)) && !isKeyTransport(el);
  });
}

/** The copy that is stored: without payloads of the namespaces the archive leaves out (chat states by default). */
export function storedCopy(stanza: Element, leaveOut: ReadonlySet<string>): Element {
  const copy = cloneStanza(stanza);
  if (leaveOut.size > 0) {
    const ownNs = copy.attrs.xmlns ?? NS_CLIENT;
    copy.children = copy.children.filter((c) => typeof c === 'string' || !leaveOut.has(c.attrs.xmlns ?? ownNs));
  }
  return copy;
}

/**
 * Removes the stanza-ids that claim to come from `by` (XEP-0359 business rules: an entity that assigns ids
 * overrides one with its own address, and a client must be able to trust the one it finds).
 */
export function stripStanzaIds(stanza: Element, by: string): void {
  const ownNs = stanza.attrs.xmlns ?? NS_CLIENT;
  const before = stanza.children.length;
  const kept = stanza.children.filter((c) => {
    if (typeof c === 'string' || c.name !== 'stanza-id' || (c.attrs.xmlns ?? ownNs) !== NS_SID) return true;
    return Jid.tryParse(c.attrs.by)?.full !== by;
  });
  if (kept.length !== before) stanza.children = kept;
}

export function addStanzaId(stanza: Element, by: string, id: string): void {
  stanza.append(xml('stanza-id', { xmlns: NS_SID, by, id }));
}

/** The stanza-id a stanza carries from `by`, if any. */
export function stanzaIdBy(stanza: Element, by: string): string | undefined {
  for (const { el, ns } of childrenWithNs(stanza)) {
    if (el.name === 'stanza-id' && ns === NS_SID && el.attrs.id && Jid.tryParse(el.attrs.by)?.full === by) return el.attrs.id;
  }
  return undefined;
}
