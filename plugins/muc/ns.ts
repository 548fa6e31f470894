// Namespaces and small element helpers shared by the MUC plugin's files.
import xml from '@xmpp/xml';
import type { Element } from 'ltx';

export const NS_MUC = 'http://jabber.org/protocol/muc';
export const NS_MUC_USER = 'http://jabber.org/protocol/muc#user';
export const NS_MUC_ADMIN = 'http://jabber.org/protocol/muc#admin';
export const NS_MUC_OWNER = 'http://jabber.org/protocol/muc#owner';
export const NS_MUC_ROOMCONFIG = 'http://jabber.org/protocol/muc#roomconfig';
export const NS_MUC_ROOMINFO = 'http://jabber.org/protocol/muc#roominfo';
export const NS_MUC_STABLE_ID = 'http://jabber.org/protocol/muc#stable_id';
export const NS_MUC_SELF_PING = 'http://jabber.org/protocol/muc#self-ping-optimization';
export const NS_SID = 'urn:xmpp:sid:0';
export const NS_OCCUPANT_ID = 'urn:xmpp:occupant-id:0';
export const NS_MAM = 'urn:xmpp:mam:2';
export const NS_MAM_EXTENDED = 'urn:xmpp:mam:2#extended';
export const NS_RSM = 'http://jabber.org/protocol/rsm';
export const NS_FORWARD = 'urn:xmpp:forward:0';
export const NS_DELAY = 'urn:xmpp:delay';
export const NS_VCARD = 'vcard-temp';
export const NS_VCARD_UPDATE = 'vcard-temp:x:update';
export const NS_PING = 'urn:xmpp:ping';
export const NS_MODERATE = 'urn:xmpp:message-moderate:1';
export const NS_RETRACT = 'urn:xmpp:message-retract:1';
export const NS_CONFERENCE = 'jabber:x:conference';
export const NS_DATA = 'jabber:x:data';
export const NS_STANZAS = 'urn:ietf:params:xml:ns:xmpp-stanzas';

export function isElement(c: Element | string): c is Element {
  return typeof c !== 'string';
}

/**
 * The namespace of a child element. The stream parser writes xmlns only where it changes, so a
 * child without one shares its parent's.
 */
export function nsOf(el: Element, parentNs: string): string {
  return el.attrs.xmlns ?? parentNs;
}

/** Child elements with a given name and namespace (namespace inherited when not written). */
export function childrenNs(el: Element, name: string, ns: string): Element[] {
  const own = el.attrs.xmlns ?? 'jabber:client';
  return el.children.filter(isElement).filter((c) => c.name === name && nsOf(c, own) === ns);
}

export function childNs(el: Element, name: string, ns: string): Element | undefined {
  return childrenNs(el, name, ns)[0];
}

/** Removes the children with this name and namespace (e.g. spoofed occupant-ids). */
export function removeChildren(el: Element, name: string, ns: string, keep?: (c: Element) => boolean): void {
  const own = el.attrs.xmlns ?? 'jabber:client';
  el.children = el.children.filter((c) => !isElement(c) || c.name !== name || nsOf(c, own) !== ns || (keep?.(c) ?? false));
}

/** `<status code='…'/>` elements. */
export function statuses(codes: readonly number[]): Element[] {
  return codes.map((code) => xml('status', { code: String(code) }));
}

/** XEP-0082 date-time in UTC with milliseconds dropped, as clients compare them. */
export function stamp(ms: number): string {
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/** A text child, or undefined when absent. */
export function textOf(el: Element | undefined, name: string): string | undefined {
  const c = el?.getChild(name);
  return c ? c.getText() : undefined;
}
