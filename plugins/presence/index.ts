// Presence (RFC 6121 §4) and presence subscriptions (RFC 6121 §3) for local users.
// - Broadcast: the c2s session emits `presence/broadcast` for presence without a 'to'; this
//   plugin sends it to the contacts with a 'from' or 'both' subscription and to the user's own
//   available resources, and on a session's first available presence (and the first after an
//   unavailable one) probes the contacts it is subscribed to.
// - Probes for local users are answered from the sessions' last presence, or with the stored
//   last unavailable presence (with a XEP-0203 delay) when the user is offline.
// - Directed presence is remembered per session so the targets learn when it goes away.
// - Subscription stanzas run through the state machine in subscriptions.ts.
import xml from '@xmpp/xml';
import { parse, type Element } from 'ltx';
import { s } from '../../lib/config/schema.js';
import type { Jid } from '../../lib/jid.js';
import { definePlugin, type StanzaEvent } from '../../lib/plugin/types.js';
import type { ClientSession } from '../../lib/session/types.js';
import type { Json } from '../../lib/storage/types.js';
import { NS_DELAY } from '../../lib/xml/ns.js';
import { cloneStanza } from '../../lib/xml/stanza.js';
import { SUBSCRIPTION_EVENT, hasFrom, hasTo, type RosterApi, type SubscriptionChange } from '../roster/api.js';
import { BROADCAST_PRIORITY, NS_PREAPPROVAL, type PresenceApi } from './api.js';
import { inbound, isSubscriptionType, outbound, type SubscriptionDeps } from './subscriptions.js';

/** What this plugin keeps in session.data under its name. */
interface SessionPresence {
  /** Available as far as broadcasts go: set by the broadcast of available presence. */
  available: boolean;
  /** Full or bare JIDs that got directed available presence, oldest first. */
  directed: Set<string>;
}

function sessionState(session: ClientSession): SessionPresence {
  let st = session.data.get('presence') as SessionPresence | undefined;
  if (!st) {
    st = { available: false, directed: new Set() };
    session.data.set('presence', st);
  }
  return st;
}

/** XEP-0082 date-time in UTC, without milliseconds. */
function stamp(at: number): string {
  return new Date(at).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

export default definePlugin({
  name: 'presence',
  requires: ['roster'],
  xeps: [{ xep: 203, version: '2.0', status: 'complete', note: 'delay on the last unavailable presence answered to probes' }],
  options: s.object({
    pre_approval: s.bool({ default: true, doc: 'offer subscription pre-approval (RFC 6121 §3.4) and its stream feature' }),
    probe_unsubscribed: s.bool({
      default: true,
      doc: 'answer probes from entities not subscribed to the user with "unsubscribed" (RFC 6121 §4.3.2); false ignores them',
    }),
    max_directed: s.int({
      default: 1000, min: 0,
      doc: 'directed-presence targets remembered per session (to send them unavailable later); beyond it the oldest is forgotten',
    }),
  }),
  setup(ctx) {
    const o = ctx.options;
    const host = ctx.server.host(ctx.host)!;
    const sessions = ctx.server.sessions;
    const lastStore = ctx.store.keyval<Json>('presence_last');
    // Looked up on use: a reloaded roster plugin provides a new service object.
    const roster = (): RosterApi => {
      const api = ctx.use<RosterApi>('roster');
      if (!api) throw new Error('the roster service is not available');
      return api;
    };

    const deps: SubscriptionDeps = {
      roster,
      route: (stanza) => ctx.route(stanza),
      available: (bare) => sessions.available(bare),
      userExists: (local, domain) => ctx.server.accounts.exists(local, domain),
      preApproval: o.pre_approval,
      log: ctx.log,
    };

    /** Routes a copy of a presence stanza to one address. */
    async function sendTo(presence: Element, to: string, from?: string): Promise<void> {
      const copy = cloneStanza(presence);
      copy.attrs.to = to;
      if (from !== undefined) copy.attrs.from = from;
      await ctx.route(copy);
    }

    async function lastUnavailable(bare: string): Promise<{ stanza: Element; at: number } | undefined> {
      const v = await lastStore.get(bare);
      if (!v || typeof v !== 'object' || Array.isArray(v) || typeof v.stanza !== 'string' || typeof v.at !== 'number') return undefined;
      try {
        return { stanza: parse(v.stanza), at: v.at };
      } catch {
        ctx.log.warn('unreadable last presence', { user: bare });
        return undefined;
      }
    }

    // ---------- broadcast ----------

    async function broadcast(ev: StanzaEvent): Promise<void> {
      const session = ev.session;
      const jid = session?.jid;
      if (!session || !jid) return;
      const st = sessionState(session);
      const bare = jid.bare;
      const stanza = ev.stanza;
      const type = stanza.attrs.type;
      if (type !== undefined && type !== 'unavailable') return;
      const items = await roster().items(bare);
      const subscribers = items.filter((i) => hasFrom(i.subscription)).map((i) => i.jid);

      if (type === undefined) {
        const initial = !st.available;
        st.available = true;
        for (const contact of subscribers) await sendTo(stanza, contact);
        // Every available resource of the user, the sender included (RFC 6121 §4.2.2, §4.4.2).
        for (const s of sessions.available(bare)) await sendTo(stanza, s.jid!.full);
        if (!initial) return;
        // RFC 6121 §4.2.2: probe the contacts whose presence the user gets; sent from the new
        // resource's full JID so the answers go to it alone (the other resources have them).
        for (const item of items) {
          if (hasTo(item.subscription)) await ctx.route(xml('presence', { type: 'probe', from: jid.full, to: item.jid }));
        }
        for (const s of sessions.available(bare)) {
          if (s !== session && s.presence) await sendTo(s.presence, jid.full);
        }
        // Unanswered subscription requests, again at each new available resource (RFC 6121
        // §3.1.3). Written to this session: it is the one being served here.
        for (const { stanza: pending } of await roster().pendingRequests(bare)) {
          try {
            session.deliver(parse(pending));
          } catch {
            ctx.log.warn('unreadable pending subscription request', { user: bare });
          }
        }
        return;
      }

      // Unavailable.
      const wasAvailable = st.available;
      st.available = false;
      const reached = new Set<string>();
      if (wasAvailable) {
        for (const contact of subscribers) {
          await sendTo(stanza, contact);
          reached.add(contact);
        }
        for (const s of sessions.available(bare)) if (s !== session) await sendTo(stanza, s.jid!.full);
        const copy = cloneStanza(stanza);
        delete copy.attrs.to;
        await lastStore.set(bare, { stanza: copy.toString(), at: Date.now() });
      }
      await endDirected(session, st, stanza, reached);
    }

    /** Sends unavailable to directed-presence targets that the broadcast did not reach (RFC 6121 §4.6.3). */
    async function endDirected(session: ClientSession, st: SessionPresence, unavailable: Element, reached: Set<string>): Promise<void> {
      const targets = [...st.directed];
      st.directed.clear();
      for (const target of targets) {
        const bareTarget = target.split('/')[0]!;
        if (!reached.has(bareTarget)) await sendTo(unavailable, target, session.jid!.full);
      }
    }

    ctx.hook('presence/broadcast', broadcast, BROADCAST_PRIORITY);

    // A session that ends without having been available still owes its directed presence an
    // unavailable (e.g. a MUC joined without initial presence).
    ctx.hook('resource-unbind', async ({ session }: { session: ClientSession }) => {
      const st = session.data.get('presence') as SessionPresence | undefined;
      if (!st || st.directed.size === 0 || !session.jid) return;
      await endDirected(session, st, xml('presence', { type: 'unavailable', from: session.jid.full }), new Set());
    });

    // ---------- outbound: subscriptions and directed presence ----------

    const outgoing = async (ev: StanzaEvent): Promise<true | undefined> => {
      const type = ev.stanza.attrs.type;
      if (isSubscriptionType(type)) return outbound(deps, ev);
      if ((type === undefined || type === 'unavailable') && ev.session && ev.to.bare !== ev.from.bare) {
        const st = sessionState(ev.session);
        const target = ev.to.full;
        st.directed.delete(target);
        if (type === undefined && o.max_directed > 0) {
          st.directed.add(target);
          if (st.directed.size > o.max_directed) st.directed.delete(st.directed.values().next().value!);
        }
      }
      return undefined;
    };
    for (const target of ['host', 'bare', 'full']) ctx.hook(`pre-presence/${target}`, outgoing);

    // ---------- inbound: subscriptions and probes for local users ----------

    async function answerProbe(ev: StanzaEvent): Promise<true> {
      const user = ev.to.bare;
      const prober: Jid = ev.from;
      if (prober.bare !== user) {
        const item = await roster().item(user, prober.bare);
        if (!item || !hasFrom(item.subscription)) {
          // RFC 6121 §4.3.2: no subscription (or no such account): "unsubscribed" tells the
          // prober's server to correct its roster.
          if (o.probe_unsubscribed) await ctx.route(xml('presence', { type: 'unsubscribed', from: user, to: prober.bare }));
          return true;
        }
      }
      const available = sessions.available(user).filter((s) => s.presence);
      if (available.length > 0) {
        for (const s of available) await sendTo(s.presence!, prober.full);
        return true;
      }
      const last = await lastUnavailable(user);
      if (last) {
        const p = last.stanza;
        for (const d of p.getChildren('delay', NS_DELAY)) p.remove(d);
        p.append(xml('delay', { xmlns: NS_DELAY, from: ctx.host, stamp: stamp(last.at) }));
        await sendTo(p, prober.full);
      }
      return true;
    }

    const incoming = async (ev: StanzaEvent): Promise<true | undefined> => {
      const type = ev.stanza.attrs.type;
      if (isSubscriptionType(type)) return inbound(deps, ev);
      if (type === 'probe') return answerProbe(ev);
      return undefined;
    };
    ctx.hook('presence/bare', incoming);
    ctx.hook('presence/full', incoming);

    // ---------- reactions to subscription changes ----------

    ctx.hook(SUBSCRIPTION_EVENT, async (c: SubscriptionChange) => {
      const fromBefore = hasFrom(c.before?.subscription);
      const fromAfter = hasFrom(c.after?.subscription);
      const available = sessions.available(c.owner);
      if (!fromBefore && fromAfter) {
        // RFC 6121 §3.1.5: the new subscriber gets the user's current presence.
        for (const s of available) if (s.presence) await sendTo(s.presence, c.contact);
      } else if (fromBefore && !fromAfter) {
        // RFC 6121 §3.2.2, §3.3.3: a former subscriber learns the user is gone for it.
        for (const s of available) await ctx.route(xml('presence', { type: 'unavailable', from: s.jid!.full, to: c.contact }));
      }
      if (c.reason === 'server' && !hasTo(c.before?.subscription) && hasTo(c.after?.subscription) && available.length > 0) {
        // A subscription the server created (e.g. contact sync) had no approval bringing the
        // contact's presence along: ask for it.
        await ctx.route(xml('presence', { type: 'probe', from: c.owner, to: c.contact }));
      }
    });

    ctx.c2s.feature((_session, stage) => (stage === 'post-auth' && o.pre_approval ? xml('sub', { xmlns: NS_PREAPPROVAL }) : undefined));

    const api: PresenceApi = {
      async rebroadcast(bare) {
        for (const s of sessions.available(bare)) {
          if (!s.presence || !s.jid) continue;
          // A copy, amended by the broadcast handlers, becomes the session's presence: probes are
          // answered with what was broadcast last.
          const p = cloneStanza(s.presence);
          delete p.attrs.to;
          s.presence = p;
          await host.hooks.emit('presence/broadcast', { stanza: p, from: s.jid, to: s.jid.toBare(), session: s } satisfies StanzaEvent);
        }
      },
      lastUnavailable,
    };
    ctx.provide('presence', api);
  },
});
