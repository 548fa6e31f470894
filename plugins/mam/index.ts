// XEP-0313 Message Archive Management for users: every one-to-one message a user sends or
// receives is kept in the user's archive (owner = the user's bare JID, `with` = the other party's
// bare JID), under an id that is also the XEP-0359 stanza-id the recipient sees.
//
// Where messages are archived:
// - Sender's copy: `pre-message/bare|full` at 150, after file metadata is added (200) and before
//   carbons copy the message (-100). The stanza-id (by = the sender) is added so that the sent
//   carbons carry it, as XEP-0313 ('Communicating the archive ID') asks, and removed again at -1000, before routing: the
//   contact has no access to the sender's archive (the same section: MUST NOT include it).
// - Recipient's copy: `message/bare|full` at 900, after blocking (1000) refused what it refuses
//   and before anything delivers or stores the message: the live copy, carbons (copied from the
//   delivered stanza) and the offline copy (the offline plugin keeps a stanza-id it finds) all
//   carry the archive's id.
// - A message to oneself is archived once, on the receiving side (XEP-0313 business rules: stored once).
// - A message that no resource took and no plugin stored offline is bounced to its sender by the
//   router; its archived copy is removed then (at the end of `message/offline/handle`), so the
//   archive never shows a message its sender was told did not arrive. The same when the offline
//   spool refuses it for a full queue (`message/offline/refused`).
//
// Queries go through query.ts (shared with any other archive, such as MUC rooms'); results are
// written to the querying session itself (it is the session's own answer) through its outgoing
// filters, so they arrive before the IQ result that ends the query. After each answer the plugin
// emits `mam/queried` (MamQueriedEvent): the offline plugin drops what the client has now read.
import { parse, type Element } from 'ltx';
import { StanzaError } from '../../lib/errors.js';
import type { Jid } from '../../lib/jid.js';
import { s, type Infer } from '../../lib/config/schema.js';
import { definePlugin, type DeliveredEvent, type IqRequest, type StanzaEvent } from '../../lib/plugin/types.js';
import { newId } from '../../lib/storage/ids.js';
import type { ArchiveItem } from '../../lib/storage/types.js';
import { serialize } from '../../lib/xml/serialize.js';
import type { RosterApi } from '../roster/api.js';
import { addStanzaId, archivable, stanzaIdBy, storedCopy, stripStanzaIds } from './policy.js';
import { listed, parsePrefs, prefsElement, type Prefs } from './prefs.js';
import {
  archiveMetadata, finElement, finMessage, MAM_NAMESPACES, parseMamQuery, queryForm, resultMessage, runMamQuery, sendingOrder,
  type MamArchive, type MamPage, type MamQuery,
} from './query.js';
import { NS_MAM, NS_MAM_0, NS_MAM_EXTENDED, NS_SID } from './xml.js';

export const mamOptions = s.object({
  default_policy: s.enum(['always', 'roster', 'never'], {
    default: 'always',
    doc: 'what is archived for users who set no preferences (XEP-0441): always, roster (only contacts in the roster), never',
  }),
  default_page: s.int({ default: 50, min: 1, max: 1000, doc: 'messages one query returns when the client gives no RSM max' }),
  max_page: s.int({ default: 250, min: 1, max: 1000, doc: 'most messages one query returns; a larger RSM max is lowered to it' }),
  retention: s.duration({
    default: 0,
    doc: 'archived messages are deleted this long after they were archived (0: kept until the account is deleted); '
      + 'applies to messages archived after a change',
  }),
  max_pref_jids: s.int({
    default: 1000,
    min: 0,
    doc: 'most JIDs in a user\'s always and never lists together; more are refused with policy-violation',
  }),
  leave_out: s.array(s.string({ minLength: 1 }), {
    default: ['http://jabber.org/protocol/chatstates'],
    doc: 'namespaces of payloads removed from messages before they are archived',
  }),
  legacy_namespaces: s.bool({
    default: true,
    doc: 'also answer queries and preferences in urn:xmpp:mam:0 and urn:xmpp:mam:1 (older clients)',
  }),
}, {
  refine(v, issue) {
    if (v.default_page > v.max_page) issue(['default_page'], `must not be larger than max_page (${v.max_page})`);
  },
});

export type MamOptions = Infer<typeof mamOptions>;

/** What the archive keeps per message: the stanza as XML, and the other party's full JID (for `with` filters naming a resource). */
export interface ArchivedMessage {
  xml: string;
  peer: string;
  [key: string]: string;
}

/** Argument of the `mam/queried` event, emitted after a query was answered. */
export interface MamQueriedEvent {
  owner: string;
  from: Jid;
  query: MamQuery;
  page: MamPage<ArchivedMessage>;
}

export default definePlugin({
  name: 'mam',
  optional: ['roster'],
  xeps: [
    { xep: 313, version: '1.1.3', status: 'complete', note: 'user archives with the extended features; mam:0 and mam:1 queries too' },
    { xep: 359, version: '0.7.0', status: 'complete', note: 'stanza-id on archived messages, forged ones removed' },
    { xep: 441, version: '0.2.0', status: 'complete' },
    { xep: 59, version: '1.0.0', status: 'partial', note: 'in MAM queries; no paging by index' },
    { xep: 334, version: '0.3.0', status: 'partial', note: 'store, no-store and no-permanent-store decide archiving' },
  ],
  options: mamOptions,
  setup(ctx) {
    const o = ctx.options;
    const archive = ctx.store.archive<ArchivedMessage>('mam');
    const prefsStore = ctx.store.keyval<Prefs>('mam_prefs');
    const leaveOut = new Set(o.leave_out);
    const namespaces = o.legacy_namespaces ? MAM_NAMESPACES : [NS_MAM];
    const limits = { defaultMax: o.default_page, maxMax: o.max_page };
    const writeOptions = o.retention > 0 ? { ttlMs: o.retention } : undefined;
    /** Recipient copies archived in the routing pass now running, until delivered (see the bounce rule above). */
    const undelivered = new WeakMap<Element, { owner: string; id: string }>();

    ctx.feature(NS_MAM, 'account');
    ctx.feature(NS_MAM_EXTENDED, 'account');
    ctx.feature(NS_SID, 'account');
    if (o.legacy_namespaces) for (const ns of MAM_NAMESPACES) ctx.feature(ns, 'account');

    const defaultPrefs = (): Prefs => ({ default: o.default_policy, always: [], never: [] });

    /** XEP-0441: the user's lists first, then the default. `peer` is the message's to (sent) or from (received). */
    async function shallArchive(owner: string, peer: Jid): Promise<boolean> {
      const prefs = (await prefsStore.get(owner)) ?? defaultPrefs();
      const rule = listed(prefs, peer);
      if (rule !== undefined) return rule === 'always';
      if (prefs.default !== 'roster') return prefs.default === 'always';
      // Notes to oneself belong to the user's own conversation, though the user is no contact.
      if (peer.bare === owner) return true;
      const roster = ctx.use<RosterApi>('roster');
      return roster !== undefined && (await roster.item(owner, peer.bare)) !== undefined;
    }

    /**
     * Stores a copy; returns its id, or undefined when the preferences keep it out. The commit goes
     * to the event's `durable` when it has one: the sender's session waits for it before acking.
     */
    async function store(owner: string, peer: Jid, ev: StanzaEvent): Promise<string | undefined> {
      if (!(await shallArchive(owner, peer))) return undefined;
      const ts = Date.now();
      const id = newId(ts);
      const value: ArchivedMessage = { xml: serialize(storedCopy(ev.stanza, leaveOut)), peer: peer.full };
      await archive.append(owner, { id, ts, with: peer.bare, value }, { ...writeOptions, durable: ev.durable });
      return id;
    }

    // ---------- the sender's copy ----------

    const outgoing = async (ev: StanzaEvent): Promise<undefined> => {
      const { stanza, from, to } = ev;
      if (!ev.session || from.local === '') return undefined;
      const owner = from.bare;
      // A client cannot name an id in its own archive; a stanza-id it sends is forged.
      stripStanzaIds(stanza, owner);
      if (to.bare === owner || !archivable(stanza)) return undefined;
      const id = await store(owner, to, ev);
      if (id !== undefined) addStanzaId(stanza, owner, id);
      return undefined;
    };
    ctx.hook('pre-message/bare', outgoing, 150);
    ctx.hook('pre-message/full', outgoing, 150);

    // After carbons (-100) copied the message with the sender's stanza-id: not for the contact.
    const beforeRouting = (ev: StanzaEvent): undefined => {
      if (ev.from.local !== '') stripStanzaIds(ev.stanza, ev.from.bare);
      return undefined;
    };
    for (const target of ['host', 'bare', 'full']) ctx.hook(`pre-message/${target}`, beforeRouting, -1000);

    // ---------- the recipient's copy ----------

    const userExists = async (to: Jid): Promise<boolean> =>
      ctx.server.sessions.resources(to.bare).length > 0 || ctx.server.accounts.exists(to.local, to.domain);

    /**
     * A message this archive already holds, routed again by the server (a dying session's
     * unacknowledged message sent on to another resource): its stanza-id names an item of the
     * owner's archive from the same sender. Ids are unpredictable and a client never sees
     * another account's, so a forged one cannot name an existing item.
     */
    const alreadyArchived = async (stanza: Element, owner: string, from: Jid): Promise<boolean> => {
      const id = stanzaIdBy(stanza, owner);
      if (id === undefined) return false;
      const item = await archive.get(owner, id);
      return item !== undefined && item.value.peer === from.full;
    };

    const incoming = async (ev: StanzaEvent): Promise<undefined> => {
      const { stanza, from, to } = ev;
      const owner = to.bare;
      // Stored once, however often it is routed (XEP-0313 business rules).
      if (await alreadyArchived(stanza, owner, from)) return undefined;
      stripStanzaIds(stanza, owner);
      if (!archivable(stanza) || !(await userExists(to))) return undefined;
      const id = await store(owner, from, ev);
      if (id !== undefined) {
        addStanzaId(stanza, owner, id);
        undelivered.set(stanza, { owner, id });
      }
      return undefined;
    };
    ctx.hook('message/bare', incoming, 900);
    ctx.hook('message/full', incoming, 900);

    ctx.hook('message/delivered', (ev: DeliveredEvent) => {
      undelivered.delete(ev.stanza);
    });

    /** The recipient's copy of a message its sender is told did not arrive is removed. */
    const forgetBounced = async (ev: StanzaEvent): Promise<void> => {
      const archived = undelivered.get(ev.stanza);
      if (!archived) return;
      undelivered.delete(ev.stanza);
      await archive.delete(archived.owner, { ids: [archived.id] });
      stripStanzaIds(ev.stanza, archived.owner);
    };

    // The last word on a message no resource took: when the router gets here, nothing stored it
    // and it is about to be bounced to its sender.
    ctx.hook('message/offline/handle', async (ev: StanzaEvent): Promise<undefined> => {
      if (!undelivered.has(ev.stanza)) return undefined;
      // Only the router's own case (no available resource of non-negative priority); a plugin
      // that offers a message again later (after a failed delivery) is not bouncing it.
      if (ctx.server.sessions.available(ev.to.bare).some((s) => s.priority >= 0)) {
        undelivered.delete(ev.stanza);
        return undefined;
      }
      await forgetBounced(ev);
      return undefined;
    }, -1000);
    // The offline spool refused it (the recipient's storage is full): the sender gets an error.
    ctx.hook('message/offline/refused', forgetBounced);

    // ---------- queries ----------

    /** XEP-0313 data privacy: only the owner reads or configures an archive. */
    const ownArchive = (req: IqRequest): string => {
      if (req.from.bare !== req.to.bare) throw new StanzaError('forbidden', 'an archive is only for its owner');
      return req.to.bare;
    };

    const withFilter = (jid: Jid) => jid.resource === ''
      ? { with: jid.bare }
      : { with: jid.bare, match: (item: ArchiveItem<ArchivedMessage>) => item.value.peer === jid.full };

    for (const ns of namespaces) {
      ctx.iq.get(ns, 'query', (req) => {
        ownArchive(req);
        return queryForm(ns);
      }, { to: ['bare'] });

      ctx.iq.set(ns, 'query', async (req) => {
        const owner = ownArchive(req);
        // XEP-0313 reserves `node` for pubsub archives (XEP-0442); a user archive has none.
        if (req.payload.attrs.node !== undefined) throw new StanzaError('item-not-found', 'a user archive has no nodes');
        const q = parseMamQuery(req.payload, limits);
        const view: MamArchive<ArchivedMessage> = { store: archive, owner, withFilter };
        const page = await runMamQuery(view, q);
        const addr = { from: owner, to: req.from.full };
        const session = req.session?.jid?.full === req.from.full ? req.session : undefined;
        const send = async (m: Element): Promise<void> => {
          if (session) session.deliver(m);
          else await ctx.route(m);
        };
        for (const item of sendingOrder(q, page.items)) {
          let message: Element;
          try {
            message = parse(item.value.xml);
          } catch {
            ctx.log.warn('unreadable archived message', { owner, id: item.id });
            continue;
          }
          await send(resultMessage(q, item, message, addr));
        }
        await ctx.emit('mam/queried', { owner, from: req.from, query: q, page } satisfies MamQueriedEvent);
        if (q.ns === NS_MAM_0) {
          await send(finMessage(q, page, addr));
          return undefined;
        }
        return finElement(q, page);
      }, { to: ['bare'] });

      ctx.iq.get(ns, 'prefs', async (req) => {
        const owner = ownArchive(req);
        return prefsElement(ns, (await prefsStore.get(owner)) ?? defaultPrefs());
      }, { to: ['bare'] });

      ctx.iq.set(ns, 'prefs', async (req) => {
        const owner = ownArchive(req);
        const prefs = parsePrefs(req.payload, o.max_pref_jids);
        await prefsStore.set(owner, prefs);
        return prefsElement(ns, prefs);
      }, { to: ['bare'] });
    }

    ctx.iq.get(NS_MAM, 'metadata', (req) => archiveMetadata(archive, ownArchive(req)), { to: ['bare'] });
  },
});
