// Namespaces and element helpers of the archive (user archives here, and any archive that reuses
// query.ts, such as a MUC room's).
import type { Element } from 'ltx';
import { NS_CLIENT } from '../../lib/xml/ns.js';

export const NS_MAM = 'urn:xmpp:mam:2';
export const NS_MAM_EXTENDED = 'urn:xmpp:mam:2#extended';
/** Earlier namespaces with the same query protocol: mam:1 differs only in its name; mam:0 ends a query with a <fin/> message. */
export const NS_MAM_1 = 'urn:xmpp:mam:1';
export const NS_MAM_0 = 'urn:xmpp:mam:0';
export const NS_RSM = 'http://jabber.org/protocol/rsm';
export const NS_FORWARD = 'urn:xmpp:forward:0';
export const NS_DELAY = 'urn:xmpp:delay';
export const NS_DATA = 'jabber:x:data';
export const NS_XDATA_VALIDATE = 'http://jabber.org/protocol/xdata-validate';
export const NS_SID = 'urn:xmpp:sid:0';
export const NS_HINTS = 'urn:xmpp:hints';

export function isElement(c: Element | string): c is Element {
  return typeof c !== 'string';
}

/**
 * Child elements with their namespaces. The stream parser writes xmlns only where it changes, so
 * a child without one is in its parent's namespace.
 */
export function childrenWithNs(el: Element, elNs = el.attrs.xmlns ?? NS_CLIENT): Array<{ el: Element; ns: string }> {
  const out: Array<{ el: Element; ns: string }> = [];
  for (const c of el.children) if (isElement(c)) out.push({ el: c, ns: c.attrs.xmlns ?? elNs });
  return out;
}

export function childNs(el: Element, name: string, ns: string): Element | undefined {
  return childrenWithNs(el).find((c) => c.el.name === name && c.ns === ns)?.el;
}

/** An XEP-0082 DateTime in UTC, with milliseconds so that start/end filters can name one message exactly. */
export function stamp(ms: number): string {
  return new Date(ms).toISOString();
}

/**
 * Parses an XEP-0082 DateTime (seconds required, fraction and zone as the profile allows);
 * undefined when it is not one.
 */
export function parseDateTime(text: string): number | undefined {
  const m = /^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(\.\d+)?(Z|[+-]\d{2}:\d{2})$/.exec(text.trim());
  if (!m) return undefined;
  // Date.parse takes at most millisecond precision reliably: a longer fraction is cut, not rounded,
  // so a bound never moves past the instant it names.
  const fraction = m[2] ? m[2].slice(0, 4).padEnd(4, '0') : '';
  const ms = Date.parse(`${m[1]}${fraction}${m[3]}`);
  return Number.isNaN(ms) ? undefined : ms;
}
