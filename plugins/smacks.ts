// XEP-0198 Stream Management for client streams: the policy around the counting and queueing
// that the c2s session does itself (lib/session/c2s.ts, lib/session/smacks.ts).
//
// - `<sm xmlns='urn:xmpp:sm:3'/>` is offered after authentication. `<enable/>` needs a bound
//   resource and is accepted once per session (otherwise `<failed>` with unexpected-request, as
//   Prosody answers). With resume='true' the session gets an SM-ID and a resumption window:
//   `resume_timeout`, or the client's `max` when it asks for another value up to
//   `max_resume_timeout` (ejabberd's rule; Monal asks for at least an hour).
// - `<resume/>` (authenticated, before binding) moves the waiting session, with its resource,
//   presence and plugin state, onto the new stream; the c2s session answers `<resumed h/>` and
//   sends again what the client's `h` does not cover. Unknown, expired or foreign SM-IDs get
//   `<failed><item-not-found/></failed>`, with the last `h` this server knew for a session of
//   the same account that ended, so the client knows which of its stanzas arrived (§5).
// - A resumed stream starts active (XEP-0352 §5): what CSI held is written out at once.
// - Unacknowledged stanzas of a session that ends unresumed (`delivery/failure`): messages go
//   back to the offline spool, stamped with when they were first sent; the spool hands them at
//   once to another eligible resource of the user, if one is online. They are not bounced as
//   errors to their sender, since the user gets them anyway. Carbon copies and archive results
//   are dropped (the originals are delivered or archived); requests (IQ get/set) are answered
//   with recipient-unavailable; presence is dropped (stale).
// - A stanza queued while a session hibernates asks the push service (XEP-0357) to wake the
//   device whose session it is.
import { randomBytes } from 'node:crypto';
import xml from '@xmpp/xml';
import type { Element } from 'ltx';
import { NS_STANZAS, StanzaError } from '../lib/errors.js';
import { Jid } from '../lib/jid.js';
import { MAX_TIMER_MS, s } from '../lib/config/schema.js';
import { definePlugin, type StanzaEvent } from '../lib/plugin/types.js';
import { NS_SM, parseCount } from '../lib/session/smacks.js';
import type { ClientSession, DeliveryFailureEvent } from '../lib/session/types.js';
import { NS_CLIENT, NS_DELAY } from '../lib/xml/ns.js';
import { cloneStanza, errorReply } from '../lib/xml/stanza.js';
import type { CsiService } from './csi.js';

const NS_CARBONS = 'urn:xmpp:carbons:2';
const MAM_NAMESPACES = new Set(['urn:xmpp:mam:0', 'urn:xmpp:mam:1', 'urn:xmpp:mam:2']);

/** The part of the push plugin's service used here (see plugins/push). */
interface PushService {
  notify(user: string, stanza: Element, session?: ClientSession): Promise<number>;
}

/** What the plugin remembers of a session that ended: for `<failed h/>` to a late resume. */
interface Ended {
  account: string;
  h: number;
}

function failed(condition: string, h?: number, text?: string): Element {
  const el = xml('failed', h === undefined ? { xmlns: NS_SM } : { xmlns: NS_SM, h: String(h) },
    xml(condition, { xmlns: NS_STANZAS }));
  if (text) el.append(xml('text', { xmlns: NS_STANZAS, 'xml:lang': 'en' }, text));
  return el;
}

/** A message carrying a carbon copy or an archive result: a copy of something kept elsewhere. */
function isCopy(stanza: Element): boolean {
  return stanza.children.some((c) => typeof c !== 'string'
    && ((c.attrs.xmlns === NS_CARBONS && (c.name === 'sent' || c.name === 'received'))
      || (c.name === 'result' && MAM_NAMESPACES.has(c.attrs.xmlns ?? ''))));
}

/** Marks a message handed on after its session died with when it was first sent (XEP-0203). */
function withDelay(stanza: Element, host: string, sentAt: number): Element {
  const copy = cloneStanza(stanza);
  const ns = copy.attrs.xmlns ?? NS_CLIENT;
  const hasOwnDelay = copy.children.some((c) => typeof c !== 'string' && c.name === 'delay'
    && (c.attrs.xmlns ?? ns) === NS_DELAY && c.attrs.from === host);
  if (!hasOwnDelay) copy.append(xml('delay', { xmlns: NS_DELAY, from: host, stamp: new Date(sentAt).toISOString() }));
  return copy;
}

export default definePlugin({
  name: 'smacks',
  optional: ['csi'],
  xeps: [
    { xep: 198, version: '1.6.3', status: 'complete', note: 'acks, resumption, server-requested acks' },
    { xep: 203, version: '2.0', status: 'complete', note: 'delay on stanzas sent again or handed on' },
  ],
  options: s.object({
    resume_timeout: s.duration({
      default: '1h', min: '0', max: MAX_TIMER_MS,
      doc: 'how long a session whose connection dropped waits to be resumed, unless the client asks for another time (0 = no resumption)',
    }),
    max_resume_timeout: s.duration({
      default: '1h', min: '0', max: MAX_TIMER_MS,
      doc: "longest resumption window a client may ask for with 'max'",
    }),
    max_unacked: s.int({
      default: 5000, min: 1,
      doc: 'stanzas sent to a client and not acknowledged; one more ends the session with resource-constraint',
    }),
    request_every: s.int({ default: 5, min: 1, doc: 'the server asks for an ack (<r/>) after this many stanzas' }),
    request_delay: s.duration({
      default: '5s', min: '0', max: MAX_TIMER_MS,
      doc: 'or this long after the first stanza not yet covered by a request (0 = by count only)',
    }),
    ack_timeout: s.duration({
      default: '1m', min: '0', max: MAX_TIMER_MS,
      doc: 'an <r/> unanswered this long means the connection is dead: the session waits for resumption or ends (0 = wait forever)',
    }),
    remember_ended: s.int({
      default: 10000, min: 0,
      doc: "ended sessions whose last 'h' is kept for <failed h/> answers to late resumption attempts",
    }),
  }, {
    refine: (o, issue) => {
      if (o.max_resume_timeout < o.resume_timeout) {
        issue(['max_resume_timeout'], 'must be at least resume_timeout');
      }
    },
  }),
  setup(ctx) {
    const o = ctx.options;
    /** Sessions that ended, by SM-ID, oldest first (a Map keeps insertion order). */
    const ended = new Map<string, Ended>();

    const remember = (id: string, entry: Ended): void => {
      if (o.remember_ended === 0) return;
      ended.delete(id);
      ended.set(id, entry);
      while (ended.size > o.remember_ended) ended.delete(ended.keys().next().value!);
    };

    ctx.c2s.feature((_session, stage) => (stage === 'post-auth' ? xml('sm', { xmlns: NS_SM }) : undefined));

    ctx.c2s.element(NS_SM, 'enable', (session, el) => {
      if (!session.jid) {
        session.sendElement(failed('unexpected-request', undefined, 'bind a resource first'));
        return;
      }
      if (session.streamManagement) {
        session.sendElement(failed('unexpected-request', undefined, 'stream management is already enabled'));
        return;
      }
      if (!session.enableStreamManagement) {
        session.sendElement(failed('feature-not-implemented'));
        return;
      }
      const wantsResume = el.attrs.resume === 'true' || el.attrs.resume === '1';
      // The client's preference (seconds) counts when it is within what this server allows.
      const max = parseCount(el.attrs.max);
      let timeout = o.resume_timeout;
      if (max !== undefined && max > 0 && max * 1000 <= o.max_resume_timeout) timeout = max * 1000;
      const canResume = wantsResume && timeout > 0;
      const id = canResume ? randomBytes(18).toString('base64url') : undefined;
      session.enableStreamManagement({
        ...(id === undefined ? {} : { id }),
        resumeTimeoutMs: canResume ? timeout : 0,
        maxUnacked: o.max_unacked,
        requestEvery: o.request_every,
        requestDelayMs: o.request_delay,
        ackTimeoutMs: o.ack_timeout,
      });
      const attrs: Record<string, string> = { xmlns: NS_SM };
      if (id !== undefined) {
        attrs.id = id;
        attrs.resume = 'true';
        attrs.max = String(Math.ceil(timeout / 1000));
      }
      session.sendElement(xml('enabled', attrs));
    });

    ctx.c2s.element(NS_SM, 'resume', async (session, el) => {
      if (session.jid || session.streamManagement) {
        session.sendElement(failed('unexpected-request', undefined, 'resume before binding a resource'));
        return;
      }
      const previd = el.attrs.previd;
      const h = parseCount(el.attrs.h);
      if (!previd || h === undefined) {
        session.sendElement(failed('bad-request', undefined, "<resume/> needs 'previd' and an 'h' from 0 to 4294967295"));
        return;
      }
      // Looked up among the account's own sessions (the registry, not state of this plugin, so a
      // reload keeps sessions resumable); another account's SM-ID is as good as unknown.
      const account = session.account;
      const target = account === undefined ? undefined
        : ctx.server.sessions.resources(account).find((s) => s.streamManagement?.id === previd);
      if (!target || !account || target.host !== session.host || !target.resume) {
        const gone = ended.get(previd);
        session.sendElement(failed('item-not-found', gone && gone.account === account ? gone.h : undefined,
          'no session to resume with this id'));
        return;
      }
      const ok = await target.resume(session, h);
      if (!ok) {
        const gone = ended.get(previd);
        session.sendElement(failed('item-not-found', gone && gone.account === account ? gone.h : undefined,
          'the session ended'));
        return;
      }
      // XEP-0352 §5: a resumed stream starts active; nothing CSI held is worth waiting longer.
      ctx.use<CsiService>('csi')?.flush(target);
    });

    // Acks only mean something once enabled (the c2s session answers them then); before, they
    // are ignored rather than fatal, as a client may request an ack it has no right to yet.
    ctx.c2s.element(NS_SM, 'r', (session) => session.log.debug('<r/> without stream management'));
    ctx.c2s.element(NS_SM, 'a', (session) => session.log.debug('<a/> without stream management'));

    // A stanza queued for a hibernated session: its device may be asleep; its push registration
    // (if it made one) wakes it (XEP-0357 §5).
    ctx.hook('session/hibernated-stanza', async ({ session, stanza }: { session: ClientSession; stanza: Element }) => {
      const user = session.jid?.bare;
      const push = ctx.use<PushService>('push');
      if (user && push) await push.notify(user, stanza, session);
    });

    ctx.hook('session/closed', ({ session }: { session: ClientSession }) => {
      const sm = session.streamManagement;
      if (sm?.id && session.jid) remember(sm.id, { account: session.jid.bare, h: sm.handled });
    });

    // XEP-0198 §4: unacknowledged stanzas of a session that ended are treated like stanzas to an
    // unavailable resource. Fallback priority: a plugin that knows better may take them first.
    ctx.hook('delivery/failure', async ({ session, stanza, sentAt }: DeliveryFailureEvent): Promise<true> => {
      const user = session.jid?.bare;
      const type = stanza.attrs.type;
      if (!user) return true;
      if (stanza.name === 'iq') {
        if (type === 'get' || type === 'set') {
          await ctx.route(errorReply(stanza, new StanzaError('recipient-unavailable', 'the resource went away before it got this')));
        }
        return true;
      }
      if (stanza.name !== 'message' || type === 'error' || type === 'headline' || isCopy(stanza)) return true;
      const from = Jid.tryParse(stanza.attrs.from);
      const to = Jid.tryParse(stanza.attrs.to);
      if (!from || !to) return true;
      const copy = withDelay(stanza, ctx.host, sentAt);
      // The spool first, also when another resource is online: it delivers to the user's
      // eligible sessions at once, with its own ack-then-delete, and routing the message again
      // would archive and carbon-copy it a second time.
      const ev: StanzaEvent = { stanza: copy, from, to };
      if ((await ctx.run('message/offline/handle', ev)) !== undefined) return true;
      if (type === 'groupchat') return true;
      if (ctx.server.sessions.available(user).some((s) => s !== session && s.priority >= 0)) {
        // Nothing stores it (no spool, or not a message it keeps): routed again as the server;
        // the session's own full JID is gone, so the RFC 6121 rules pick another resource.
        await ctx.route(copy);
        return true;
      }
      // Nothing will keep it: the sender learns it was not delivered, as for any offline user
      // without storage (RFC 6121 §8.5.2.2.1).
      await ctx.route(errorReply(stanza, new StanzaError('service-unavailable')));
      return true;
    }, -100);
  },
});
