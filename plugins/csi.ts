// XEP-0352 Client State Indication: while a client says it is inactive (a phone with its screen
// off), stanzas it does not need at once are held back and sent together later, so the radio
// wakes up less often.
//
// Held: presence updates (only the latest per sender's full JID is kept) and messages that carry
// nothing but a chat state (only the latest per conversation), optionally groupchat messages.
// Everything else is important and written at once: messages with a body or an encrypted payload,
// subscription requests, errors, IQs, and anything not known to be unimportant. Before an
// important stanza is written, everything held is written first, in the order it arrived, so the
// client never sees a state older than one it already has. <active/> flushes everything; so do
// the configured limits on the number held and on the time the oldest one has waited.
//
// The state is stream state (session.data), not presence: CSI and presence are independent
// (§5), and a resumed stream starts active again (XEP-0352 1.0.0).
import xml from '@xmpp/xml';
import type { Element } from 'ltx';
import { MAX_TIMER_MS, s } from '../lib/config/schema.js';
import { definePlugin } from '../lib/plugin/types.js';
import type { ClientSession } from '../lib/session/types.js';
import { NS_CLIENT, NS_DELAY } from '../lib/xml/ns.js';
import { cloneStanza } from '../lib/xml/stanza.js';

export const NS_CSI = 'urn:xmpp:csi:0';
const NS_CHATSTATES = 'http://jabber.org/protocol/chatstates';
const NS_CARBONS = 'urn:xmpp:carbons:2';
const NS_FORWARD = 'urn:xmpp:forward:0';
const NS_MUC_USER = 'http://jabber.org/protocol/muc#user';
const NS_SID = 'urn:xmpp:sid:0';
const NS_HINTS = 'urn:xmpp:hints';

/** What other plugins may ask of CSI (service 'csi'), e.g. push or stream management. */
export interface CsiService {
  /** True while the session's client has said it is inactive. */
  isInactive(session: ClientSession): boolean;
  /** Writes everything held for the session now (the session stays inactive). */
  flush(session: ClientSession): void;
}

/** Per-stream state, in session.data under the plugin's name. */
interface CsiState {
  inactive: boolean;
  /** Held stanzas by dedup key; a Map keeps insertion order, which is the delivery order. */
  held: Map<string, Element>;
  /** Fires when the oldest held stanza has waited max_hold_time. */
  timer: NodeJS.Timeout | undefined;
  /** Makes keys for stanzas that are held but never replaced (groupchat). */
  seq: number;
}

const KEY = 'csi';

function isElement(c: Element | string): c is Element {
  return typeof c !== 'string';
}

/**
 * True for a message whose only payload is a chat state (XEP-0085), allowing the elements that
 * ride along without meaning anything to the user: thread, delay, stanza/origin ids, processing
 * hints and the empty MUC marker of private messages. Anything else makes it worth a wake-up.
 */
function chatStateOnly(msg: Element, msgNs: string): boolean {
  let state = false;
  for (const c of msg.children) {
    if (!isElement(c)) continue;
    const ns = c.attrs.xmlns ?? msgNs;
    if (ns === NS_CHATSTATES) state = true;
    else if (ns === NS_DELAY || ns === NS_SID || ns === NS_HINTS) continue;
    else if (ns === NS_CLIENT && c.name === 'thread') continue;
    else if (ns === NS_MUC_USER && c.name === 'x' && !c.children.some(isElement)) continue;
    else return false;
  }
  return state;
}

/** The message inside a carbon copy, with the carbon's direction. */
function carbonOf(stanza: Element): { direction: 'sent' | 'received'; message: Element } | undefined {
  const wrapper = stanza.children.find((c): c is Element => isElement(c) && c.attrs.xmlns === NS_CARBONS
    && (c.name === 'sent' || c.name === 'received'));
  if (!wrapper) return undefined;
  const forwarded = wrapper.getChild('forwarded', NS_FORWARD);
  const message = forwarded?.getChild('message');
  if (!message) return undefined;
  return { direction: wrapper.name as 'sent' | 'received', message };
}

/** A MUC self-presence (status 110): the client is waiting for it to finish joining a room. */
function isMucSelfPresence(presence: Element): boolean {
  const x = presence.getChild('x', NS_MUC_USER);
  return !!x && x.getChildren('status').some((st) => st.attrs.code === '110');
}

export default definePlugin({
  name: 'csi',
  xeps: [{ xep: 352, version: '1.0.0', status: 'complete' }],
  options: s.object({
    max_held: s.int({
      default: 100, min: 1,
      doc: 'stanzas held for one inactive client; one more writes them all',
    }),
    max_hold_time: s.duration({
      default: '5m', min: '10ms', max: MAX_TIMER_MS,
      doc: 'longest a stanza is held; then everything held for that client is written',
    }),
    hold_presence: s.bool({ default: true, doc: 'hold presence updates, keeping the latest per sender' }),
    hold_chat_states: s.bool({ default: true, doc: 'hold chat-state-only messages, keeping the latest per conversation' }),
    hold_groupchat: s.bool({
      default: false,
      doc: 'also hold groupchat messages (room traffic), which are otherwise written at once',
    }),
  }),
  setup(ctx) {
    const o = ctx.options;
    // States with a running timer, so that unloading the plugin can write out what they hold.
    const pending = new Map<CsiState, ClientSession>();

    const stateOf = (session: ClientSession): CsiState | undefined => session.data.get(KEY) as CsiState | undefined;

    const flush = (session: ClientSession, st: CsiState): void => {
      if (st.timer) clearTimeout(st.timer);
      st.timer = undefined;
      pending.delete(st);
      if (st.held.size === 0) return;
      const out = [...st.held.values()];
      st.held.clear();
      // These have been through the outgoing filters already: write them directly.
      for (const el of out) session.send(el);
    };

    /** The dedup key of a stanza that may wait, or undefined when it is important. */
    const holdKey = (stanza: Element, st: CsiState): string | undefined => {
      if (stanza.name === 'presence') {
        const type = stanza.attrs.type;
        // Subscription requests and answers, probes and errors need the user or the client.
        if (!o.hold_presence || (type !== undefined && type !== 'unavailable')) return undefined;
        if (isMucSelfPresence(stanza)) return undefined;
        return `p\u0000${stanza.attrs.from ?? ''}`;
      }
      if (stanza.name !== 'message') return undefined;
      const type = stanza.attrs.type ?? 'normal';
      if (type === 'error') return undefined;
      // A carbon is as important as the message it carries.
      const carbon = carbonOf(stanza);
      const msg = carbon?.message ?? stanza;
      const msgNs = msg.attrs.xmlns ?? NS_CLIENT;
      if (o.hold_chat_states && chatStateOnly(msg, msgNs)) {
        // One key per conversation: the peer, and which way the state went.
        return carbon?.direction === 'sent'
          ? `c\u0000>\u0000${msg.attrs.to ?? ''}`
          : `c\u0000<\u0000${msg.attrs.from ?? ''}`;
      }
      if (o.hold_groupchat && type === 'groupchat') return `g\u0000${++st.seq}`;
      return undefined;
    };

    /** A held stanza carries when it was held (XEP-0203), so a stale state can be recognised. */
    const stamped = (stanza: Element, host: string): Element => {
      // A copy: the same element may have been handed to others (archive, carbons).
      const copy = cloneStanza(stanza);
      if (!copy.getChild('delay', NS_DELAY)) {
        copy.append(xml('delay', { xmlns: NS_DELAY, from: host, stamp: new Date().toISOString() }));
      }
      return copy;
    };

    ctx.c2s.outgoing((session, stanza) => {
      const st = stateOf(session);
      if (!st?.inactive) return false;
      const key = holdKey(stanza, st);
      if (key === undefined) {
        // Important: what is held goes first, then this one through the remaining filters.
        flush(session, st);
        return false;
      }
      // Replacing moves the key to the end: the newer state is delivered in the newer place.
      st.held.delete(key);
      st.held.set(key, stamped(stanza, session.host));
      if (st.held.size > o.max_held) {
        flush(session, st);
      } else if (!st.timer) {
        st.timer = setTimeout(() => flush(session, st), o.max_hold_time);
        st.timer.unref();
        pending.set(st, session);
      }
      return true;
    });

    ctx.c2s.feature((_session, stage) => (stage === 'post-auth' ? xml('csi', { xmlns: NS_CSI }) : undefined));

    // Nonzas: no reply (§4.2). The c2s session handles them in stream order, so a flush caused
    // by <active/> is on the wire before the answer to anything the client sends after it (§5.1).
    ctx.c2s.element(NS_CSI, 'inactive', (session) => {
      const st = stateOf(session);
      if (st) st.inactive = true;
      else session.data.set(KEY, { inactive: true, held: new Map(), timer: undefined, seq: 0 } satisfies CsiState);
    });
    ctx.c2s.element(NS_CSI, 'active', (session) => {
      const st = stateOf(session);
      if (!st) return;
      st.inactive = false;
      flush(session, st);
    });

    // XEP-0352 §5: a resumed stream starts active; the client says <inactive/> again if it is.
    ctx.hook('session/resumed', ({ session }: { session: ClientSession }) => {
      const st = stateOf(session);
      if (!st) return;
      st.inactive = false;
      flush(session, st);
    });

    // A closed stream's held stanzas are moot (presence and chat states of a client that is
    // gone); drop them and the timer that would keep the session in memory.
    ctx.hook('resource-unbind', ({ session }: { session: ClientSession }) => {
      const st = stateOf(session);
      if (!st) return;
      if (st.timer) clearTimeout(st.timer);
      st.timer = undefined;
      st.held.clear();
      pending.delete(st);
    });

    // On unload (reload or disable), live sessions get what was held for them; the inactive flag
    // stays in session.data, so a reloaded plugin carries on where this one stopped.
    ctx.onClose(() => {
      for (const [st, session] of [...pending]) flush(session, st);
    });

    ctx.provide('csi', {
      isInactive: (session) => stateOf(session)?.inactive === true,
      flush: (session) => {
        const st = stateOf(session);
        if (st) flush(session, st);
      },
    } satisfies CsiService);
  },
});
