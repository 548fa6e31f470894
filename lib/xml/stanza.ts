// Small helpers on stanzas (ltx Elements) used by the router, sessions and plugins.
import xml from '@xmpp/xml';
import { Element } from 'ltx';
import { StanzaError } from '../errors.js';

export type StanzaKind = 'message' | 'presence' | 'iq';

export function stanzaKind(el: Element): StanzaKind | undefined {
  return el.name === 'message' || el.name === 'presence' || el.name === 'iq' ? el.name : undefined;
}

/** The first child element, if any: an IQ's payload. */
export function firstChild(el: Element): Element | undefined {
  for (const c of el.children) if (typeof c !== 'string') return c as Element;
  return undefined;
}

/** Deep copy, so one recipient's copy can be changed without touching another's. */
export function cloneStanza(el: Element): Element {
  // Attributes are copied too: ltx's own clone shares the attrs object between copies.
  const copy = new Element(el.name, { ...el.attrs });
  for (const c of el.children) {
    if (typeof c === 'string') copy.t(c);
    else copy.cnode(cloneStanza(c as Element));
  }
  return copy;
}

/**
 * The error reply to a stanza (RFC 6120 §8.3.1): same name and id, addresses swapped, the
 * original payload kept for messages and presence (iq replies carry only the error).
 */
export function errorReply(stanza: Element, error: StanzaError, by?: string): Element {
  const attrs: Record<string, string> = { type: 'error' };
  if (stanza.attrs.id !== undefined) attrs.id = stanza.attrs.id;
  if (stanza.attrs.to) attrs.from = stanza.attrs.to;
  if (stanza.attrs.from) attrs.to = stanza.attrs.from;
  const reply = xml(stanza.name, attrs);
  if (stanza.name !== 'iq') {
    for (const c of stanza.children) if (typeof c !== 'string') reply.append(cloneStanza(c as Element));
  }
  reply.append(error.toElement(by));
  return reply;
}

export function iqResult(iq: Element, payload?: Element): Element {
  const attrs: Record<string, string> = { type: 'result', id: iq.attrs.id ?? '' };
  if (iq.attrs.to) attrs.from = iq.attrs.to;
  if (iq.attrs.from) attrs.to = iq.attrs.from;
  const reply = xml('iq', attrs);
  if (payload) reply.append(payload);
  return reply;
}

/** True for stanzas that must never be answered with an error (RFC 6120 §8.3.1). */
export function isError(el: Element): boolean {
  return el.attrs.type === 'error';
}
