// XEP-0357 Push Notifications: a client registers its app server (a pubsub service, any JID) and
// node; when a message for the user waits on the server, the user's account publishes a
// notification to that node, which the app server turns into a wake-up of the device.
//
// When a notification is sent:
// - a message stored in the offline spool (`message/offline/stored`, emitted by the offline
//   plugin, also for messages that reach the spool another way, such as a dying session's
//   unacknowledged ones); without the offline plugin, a message no resource takes
//   (`message/offline/handle` at 50: below carbons at 100, never claiming the message);
// - a stanza queued for a hibernated stream-management session (`session/hibernated-stanza`, or
//   a call of the `push` service, PushApi.notify, with the session): only the registration that
//   session made is notified (the other devices' apps get theirs from their own sessions or from
//   the spool).
// One notification per message and registration, whichever way the message went: also when a
// session that ends unresumed hands a notified message back and a copy of it reaches the spool.
//
// What it says: nothing of the message unless configured. The summary form carries the number of
// messages notified since the user was last online; the sender and body only when the options
// allow (the notification crosses the app server and the platform's push service).
//
// Failures: an error answer (or no answer within `timeout`) counts against the registration;
// `max_errors` of them in a row disable it. XEP-0357 ('Publish Errors') lets transient errors
// not count: 'wait' errors do not, except the timeout (an app server that never answers is
// gone). A success resets the count.
import xml from '@xmpp/xml';
import { parse, type Element } from 'ltx';
import { s, type Infer } from '../../lib/config/schema.js';
import { StanzaError } from '../../lib/errors.js';
import { Jid } from '../../lib/jid.js';
import { definePlugin, type IqRequest, type StanzaEvent } from '../../lib/plugin/types.js';
import type { ClientSession } from '../../lib/session/types.js';
import { newId } from '../../lib/storage/ids.js';
import { KeyedLock } from '../../lib/util/keyed-lock.js';
import { NS_CLIENT } from '../../lib/xml/ns.js';
import { serialize } from '../../lib/xml/serialize.js';
import { cloneStanza } from '../../lib/xml/stanza.js';

export const NS_PUSH = 'urn:xmpp:push:0';
export const NS_PUSH_SUMMARY = 'urn:xmpp:push:summary';
const NS_PUBSUB = 'http://jabber.org/protocol/pubsub';
const NS_PUBLISH_OPTIONS = 'http://jabber.org/protocol/pubsub#publish-options';
const NS_DATA = 'jabber:x:data';
const NS_STANZAS = 'urn:ietf:params:xml:ns:xmpp-stanzas';
const NS_HINTS = 'urn:xmpp:hints';
const NS_SID = 'urn:xmpp:sid:0';
const NS_CARBONS = 'urn:xmpp:carbons:2';
const NS_FORWARD = 'urn:xmpp:forward:0';

/** session.data key: the registration (store key) the session enabled. */
const SESSION_KEY = 'push';

/** Payloads that stand for a message the user should see though no plaintext body can be read. */
const ENCRYPTED = new Set(['eu.siacs.conversations.axolotl', 'urn:xmpp:omemo:2', 'urn:xmpp:openpgp:0', 'jabber:x:encrypted']);
const NS_JINGLE_MESSAGE = ['urn:xmpp:jingle-message:0', 'urn:xmpp:jingle-message:1'];

export const pushOptions = s.object({
  include_summary: s.bool({ default: true, doc: 'add the urn:xmpp:push:summary form (message-count) to notifications' }),
  include_sender: s.bool({ default: false, doc: 'add the sender\'s JID (last-message-sender) to the summary' }),
  include_body: s.bool({
    default: false,
    doc: 'add the message body (last-message-body) to the summary; it then crosses the app server and the platform\'s push service',
  }),
  placeholder_body: s.string({
    default: 'New message',
    doc: 'last-message-body sent instead of the body for messages with content, when include_body is false '
      + '(app servers use its presence to show an alert rather than wake silently; empty: none)',
  }),
  max_errors: s.int({ default: 16, min: 1, doc: 'failed notifications in a row after which a registration is disabled' }),
  timeout: s.duration({
    default: '30s',
    min: '100ms',
    doc: 'how long a notification waits for the app server\'s answer; no answer counts as an error',
  }),
  max_registrations: s.int({
    default: 5,
    min: 1,
    doc: 'registrations (app server and node) per user; a new one beyond it replaces the oldest',
  }),
  count_expiry: s.duration({ default: '30d', min: '1s', doc: 'how long the message-count of a user who does not come online is kept' }),
});

export type PushOptions = Infer<typeof pushOptions>;

/** One enabled app server and node of a user (map 'push', owner = the user's bare JID). */
interface Registration {
  jid: string;
  /** '' when the client gave none. */
  node: string;
  /** The publish-options form as XML, '' when none was given. */
  form: string;
  /** When it was enabled: orders eviction, and tells a re-enabled registration from the one a late answer is about. */
  created: number;
  /** Failed notifications in a row. */
  errors: number;
  [key: string]: string | number;
}

/** The `push` service: other plugins (stream management) ask for notifications through it. */
export interface PushApi {
  /**
   * Notifies the user's app servers of a stanza that waits for the user. With `session` (a
   * hibernated one), only the registration that session enabled is notified. Resolves with the
   * number of notifications sent (their answers are handled later); a stanza already notified,
   * or one not worth a notification (chat states, receipts, errors), gives 0.
   */
  notify(user: string, stanza: Element, session?: ClientSession): Promise<number>;
}

const keyOf = (jid: string, node: string): string => JSON.stringify([jid, node]);

function children(el: Element): Array<{ el: Element; ns: string }> {
  const own = el.attrs.xmlns ?? NS_CLIENT;
  const out: Array<{ el: Element; ns: string }> = [];
  for (const c of el.children) if (typeof c !== 'string') out.push({ el: c, ns: c.attrs.xmlns ?? own });
  return out;
}

function bodyOf(stanza: Element): string | undefined {
  const body = children(stanza).find((c) => c.el.name === 'body' && c.ns === NS_CLIENT)?.el.getText();
  return body === undefined || body.trim() === '' ? undefined : body;
}

/**
 * The message a notification is about: the stanza itself, or for a received carbon (queued for a
 * hibernated session) the message it carries, as Prosody reads it. A sent carbon is the user's
 * own message: about nothing to notify.
 */
function subjectOf(stanza: Element): Element | undefined {
  if (stanza.name !== 'message') return undefined;
  const carbon = children(stanza).find((c) => c.ns === NS_CARBONS && (c.el.name === 'received' || c.el.name === 'sent'));
  if (!carbon) return stanza;
  if (carbon.el.name === 'sent') return undefined;
  return carbon.el.getChild('forwarded', NS_FORWARD)?.getChild('message') ?? undefined;
}

/**
 * A message the user is meant to see: a body or an encrypted payload (Prosody's "important"
 * push, which app servers show as an alert). Room traffic wakes the device without an alert.
 */
function important(message: Element): boolean {
  if (message.attrs.type === 'groupchat') return false;
  return bodyOf(message) !== undefined || children(message).some((c) => ENCRYPTED.has(c.ns));
}

/** Worth waking a device for: a message with content, or a call being proposed. */
function pushable(message: Element): boolean {
  const type = message.attrs.type ?? 'normal';
  if (type === 'error' || type === 'headline') return false;
  if (bodyOf(message) !== undefined || important(message)) return true;
  return children(message).some((c) => NS_JINGLE_MESSAGE.includes(c.ns) && c.el.name === 'propose');
}

/**
 * What identifies a message across the copies the server makes of it (a copy gains a delay
 * stamp, never a new id): sender, id and stanza-ids. Undefined when it carries no id at all.
 */
function identity(stanza: Element): string | undefined {
  const sids = children(stanza).filter((c) => c.ns === NS_SID && c.el.name === 'stanza-id').map((c) => `${c.el.attrs.by} ${c.el.attrs.id}`);
  if (stanza.attrs.id === undefined && sids.length === 0) return undefined;
  return JSON.stringify([stanza.attrs.from ?? '', stanza.attrs.id ?? '', sids]);
}

/** The publish-options form to store: type submit, every field as given. */
function publishOptions(form: Element): string {
  const fields = children(form).filter((c) => c.ns === NS_DATA && c.el.name === 'field');
  const formType = fields.find((c) => c.el.attrs.var === 'FORM_TYPE')?.el.getChildText('value');
  if (formType !== NS_PUBLISH_OPTIONS) {
    throw new StanzaError('bad-request', `the publish options form needs FORM_TYPE ${NS_PUBLISH_OPTIONS}`);
  }
  return serialize(xml('x', { xmlns: NS_DATA, type: 'submit' }, ...fields.map((f) => cloneStanza(f.el))));
}

export default definePlugin({
  name: 'push',
  xeps: [{ xep: 357, version: '0.4.1', status: 'complete', note: 'publish-options, summary form, remote disabling' }],
  options: pushOptions,
  setup(ctx) {
    const o = ctx.options;
    const registrations = ctx.store.map<Registration>('push');
    const counts = ctx.store.map<number>('push_counts');
    const lock = new KeyedLock();
    /** Stanzas already notified, whichever hook or caller saw them first. */
    const notified = new WeakSet<Element>();
    /**
     * Notified stanzas that a session ending unresumed handed back (`delivery/failure`): stream
     * management sends a copy of each to the spool, and that copy is the same message, already
     * notified. By user, as stanza identities; emptied by the copy or the user's next login.
     */
    const handedBack = new Map<string, Set<string>>();

    ctx.feature(NS_PUSH, 'account');

    /** Forgets a removed registration in the sessions that enabled it. */
    const forget = (owner: string, keys: readonly string[]): void => {
      for (const session of ctx.server.sessions.resources(owner)) {
        if (keys.includes(session.data.get(SESSION_KEY) as string)) session.data.delete(SESSION_KEY);
      }
    };

    /** The user's own session only: push settings change what leaves the server on the user's behalf. */
    const ownSession = (req: IqRequest): string => {
      if (!req.session?.jid || req.from.bare !== req.to.bare) {
        throw new StanzaError('forbidden', 'push notifications are enabled by the account\'s own clients');
      }
      return req.to.bare;
    };

    const appServer = (payload: Element): Jid => {
      const attr = payload.attrs.jid;
      if (!attr) throw new StanzaError('bad-request', `${payload.name} needs the jid of the app server`);
      const jid = Jid.tryParse(attr);
      if (!jid) throw new StanzaError('jid-malformed', 'the app server jid is not a valid JID');
      return jid;
    };

    ctx.iq.set(NS_PUSH, 'enable', async (req) => {
      const owner = ownSession(req);
      const jid = appServer(req.payload);
      // Notifications to the account itself would come back as stanzas for the account, which
      // can be notified again.
      if (jid.bare === owner) throw new StanzaError('not-acceptable', 'the app server cannot be the account itself');
      const node = req.payload.attrs.node ?? '';
      const formEl = children(req.payload).find((c) => c.el.name === 'x' && c.ns === NS_DATA)?.el;
      const form = formEl ? publishOptions(formEl) : '';
      const key = keyOf(jid.full, node);
      await lock.run(owner, async () => {
        // XEP-0357: enabling a JID and node again replaces its publish options.
        const others = (await registrations.entries(owner)).filter(([k]) => k !== key).sort((a, b) => a[1].created - b[1].created);
        const evicted: string[] = [];
        while (others.length >= o.max_registrations) {
          const [oldest] = others.shift()!;
          await registrations.delete(owner, oldest);
          evicted.push(oldest);
        }
        forget(owner, evicted);
        await registrations.set(owner, key, { jid: jid.full, node, form, created: Date.now(), errors: 0 });
      });
      req.session!.data.set(SESSION_KEY, key);
      return undefined;
    }, { to: ['bare'] });

    ctx.iq.set(NS_PUSH, 'disable', async (req) => {
      const owner = ownSession(req);
      const jid = appServer(req.payload);
      const node = req.payload.attrs.node;
      await lock.run(owner, async () => {
        // XEP-0357: without a node, every node of that app server.
        const removed = (await registrations.entries(owner))
          .filter(([, r]) => r.jid === jid.full && (node === undefined || r.node === node)).map(([k]) => k);
        for (const k of removed) await registrations.delete(owner, k);
        forget(owner, removed);
      });
      return undefined;
    }, { to: ['bare'] });

    // ---------- notifications ----------

    const summaryField = (name: string, value: string, type?: string): Element =>
      xml('field', type ? { var: name, type } : { var: name }, xml('value', {}, value));

    const notification = (message: Element, count: number): Element => {
      const n = xml('notification', { xmlns: NS_PUSH });
      if (!o.include_summary) return n;
      const form = xml('x', { xmlns: NS_DATA, type: 'submit' },
        summaryField('FORM_TYPE', NS_PUSH_SUMMARY, 'hidden'),
        summaryField('message-count', String(count)));
      if (o.include_sender && message.attrs.from) form.append(summaryField('last-message-sender', message.attrs.from));
      const body = bodyOf(message);
      if (o.include_body && body !== undefined) form.append(summaryField('last-message-body', body));
      else if (o.placeholder_body !== '' && important(message)) form.append(summaryField('last-message-body', o.placeholder_body));
      n.append(form);
      return n;
    };

    /** Counts an answer against (or for) the registration it was sent to, if that is still the one stored. */
    const answered = (owner: string, key: string, created: number, reply: Element): Promise<void> => lock.run(owner, async () => {
      const current = await registrations.get(owner, key);
      if (!current || current.created !== created) return;
      if (reply.attrs.type === 'result') {
        if (current.errors > 0) await registrations.set(owner, key, { ...current, errors: 0 });
        return;
      }
      const error = reply.getChild('error');
      const timedOut = children(error ?? reply).some((c) => c.ns === NS_STANZAS && c.el.name === 'remote-server-timeout');
      if (error?.attrs.type === 'wait' && !timedOut) return;
      const errors = current.errors + 1;
      if (errors >= o.max_errors) {
        ctx.log.info('push registration disabled after errors', { owner, app: current.jid, node: current.node, errors });
        await registrations.delete(owner, key);
        forget(owner, [key]);
      } else {
        await registrations.set(owner, key, { ...current, errors });
      }
    });

    const publish = (owner: string, key: string, reg: Registration, message: Element, count: number): void => {
      const item = xml('item', {}, notification(message, count));
      const pubsub = xml('pubsub', { xmlns: NS_PUBSUB }, xml('publish', reg.node ? { node: reg.node } : {}, item));
      // XEP-0357: the options given at enable time (such as the app server's secret) go with each publish.
      if (reg.form) pubsub.append(xml('publish-options', {}, parse(reg.form)));
      const iq = xml('iq', { type: 'set', from: owner, to: reg.jid, id: `push-${newId()}` }, pubsub);
      void ctx.server.sendIq(iq, o.timeout)
        .then((reply) => answered(owner, key, reg.created, reply))
        .catch((err: unknown) => ctx.log.error('push notification failed', { err, owner, app: reg.jid }));
    };

    const api: PushApi = {
      async notify(user, stanza, session) {
        const message = subjectOf(stanza);
        if (notified.has(stanza) || !message || !pushable(message)) return 0;
        if (!session) {
          const key = identity(stanza);
          const back = handedBack.get(user);
          if (key !== undefined && back?.delete(key)) {
            if (back.size === 0) handedBack.delete(user);
            notified.add(stanza);
            return 0;
          }
        }
        let entries = await registrations.entries(user);
        if (session) {
          const own = session.data.get(SESSION_KEY);
          entries = entries.filter(([k]) => k === own);
        }
        // Marked only when notified: a hibernated session that enabled nothing leaves the message
        // to the other devices' registrations once it reaches the spool.
        if (entries.length === 0) return 0;
        notified.add(stanza);
        const count = o.include_summary ? await counts.increment(user, 'messages', 1, { ttlMs: o.count_expiry }) : 0;
        for (const [key, reg] of entries) publish(user, key, reg, message, count);
        return entries.length;
      },
    };
    ctx.provide('push', api);

    const host = ctx.server.host(ctx.host)!;
    // With the offline plugin, a notification follows its `message/offline/stored`: only what was
    // stored (not what its policy discards or a full spool refuses) waits for the user. Without
    // it, the router's offline handling is all there is.
    ctx.hook('message/offline/handle', async (ev: StanzaEvent): Promise<undefined> => {
      // A message with the no-store hint is not kept for the user: waking a device for it would
      // show nothing (XEP-0334).
      if (host.plugins.has('offline') || children(ev.stanza).some((c) => c.ns === NS_HINTS && c.el.name === 'no-store')) {
        return undefined;
      }
      await api.notify(ev.to.bare, ev.stanza);
      return undefined;
    }, 50);
    ctx.hook('message/offline/stored', async (ev: StanzaEvent) => {
      await api.notify(ev.to.bare, ev.stanza);
    });

    // Stream management: a stanza queued for a hibernated session (the smacks plugin may also call
    // the service for it; either way it is notified once).
    ctx.hook('session/hibernated-stanza', async ({ session, stanza }: { session: ClientSession; stanza: Element }) => {
      if (session.jid) await api.notify(session.jid.bare, stanza, session);
    });
    // Before the smacks plugin (-100) sends the unacknowledged stanzas of a dead session on.
    ctx.hook('delivery/failure', ({ session, stanza }: { session: ClientSession; stanza: Element }): undefined => {
      const key = notified.has(stanza) ? identity(stanza) : undefined;
      if (!session.jid || key === undefined) return undefined;
      const user = session.jid.bare;
      const back = handedBack.get(user) ?? new Set<string>();
      back.add(key);
      handedBack.set(user, back);
      return undefined;
    }, 100);

    // The count is of messages since the user was last online (a login, or a resumed stream).
    const online = async ({ session }: { session?: ClientSession }): Promise<void> => {
      if (!session?.jid) return;
      await counts.delete(session.jid.bare, 'messages');
      handedBack.delete(session.jid.bare);
    };
    ctx.hook('presence/initial', online);
    ctx.hook('session/resumed', online);

    // XEP-0357 'Remote Disabling': an app server that stops accepting notifications may say so with an affiliation change.
    ctx.hook('message/bare', async (ev: StanzaEvent): Promise<true | undefined> => {
      const { stanza, from, to } = ev;
      const ps = children(stanza).find((c) => c.el.name === 'pubsub' && c.ns === NS_PUBSUB)?.el;
      const aff = ps?.getChild('affiliation');
      if (!ps || !aff || aff.attrs.affiliation !== 'none' || Jid.tryParse(aff.attrs.jid)?.bare !== to.bare) return undefined;
      const node = ps.attrs.node ?? '';
      const removed = await lock.run(to.bare, async () => {
        const keys = (await registrations.entries(to.bare)).filter(([, r]) => r.jid === from.full && r.node === node).map(([k]) => k);
        for (const k of keys) await registrations.delete(to.bare, k);
        forget(to.bare, keys);
        return keys.length;
      });
      return removed > 0 ? true : undefined;
    }, 950);
  },
});
