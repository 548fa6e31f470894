// Roster management (RFC 6121 §2) with roster versioning (RFC 6121 §2.6, XEP-0237).
// The roster keeps, per contact, the item the user sees and any unanswered inbound subscription
// request; the subscription state machine that changes them lives in the presence plugin, which
// uses this plugin's `update`. Pushes go to "interested" resources only: those that asked for
// the roster (RFC 6121 §2.1.6), recorded in session.data.
import { randomBytes } from 'node:crypto';
import xml from '@xmpp/xml';
import type { Element } from 'ltx';
import { s } from '../../lib/config/schema.js';
import { StanzaError } from '../../lib/errors.js';
import { definePlugin, type IqRequest } from '../../lib/plugin/types.js';
import type { ClientSession } from '../../lib/session/types.js';
import type { Json } from '../../lib/storage/types.js';
import {
  NS_ROSTER, NS_ROSTERVER, SUBSCRIPTION_EVENT, hasFrom, hasTo,
  type ContactState, type RosterApi, type RosterItem, type SubscriptionChange, type UpdateOptions, type UpdateResult,
} from './api.js';
import { checkItemFields, contactJid, itemElement, parseRosterSet, queryElement, removedElement, type ItemLimits } from './items.js';
import { RosterStore, copyState, sameItem, sameState } from './store.js';

const SUBSCRIPTIONS: readonly string[] = ['none', 'to', 'from', 'both'];

/** What this plugin keeps in session.data under its name. */
interface SessionState {
  interested: boolean;
}

export function isInterested(session: ClientSession): boolean {
  return (session.data.get('roster') as SessionState | undefined)?.interested === true;
}

export default definePlugin({
  name: 'roster',
  xeps: [{ xep: 237, version: '1.3', status: 'complete', note: 'as folded into RFC 6121 §2.6; stale versions get the full roster' }],
  options: s.object({
    max_items: s.int({
      default: 5000, min: 1,
      doc: 'most contacts a user may have, counting unanswered inbound subscription requests; a roster set or subscription beyond it is refused with not-allowed',
    }),
    max_name_length: s.int({ default: 1024, min: 1, doc: 'longest item name, in characters (longer: not-acceptable, RFC 6121 §2.3.3)' }),
    max_group_length: s.int({ default: 1024, min: 1, doc: 'longest group name, in characters (longer: not-acceptable)' }),
    max_groups: s.int({ default: 64, min: 0, doc: 'most groups one item may be in (more: not-acceptable)' }),
    versioning: s.bool({ default: true, doc: 'offer roster versioning (RFC 6121 §2.6): the ver stream feature and ver attributes' }),
  }),
  setup(ctx) {
    const o = ctx.options;
    const host = ctx.server.host(ctx.host)!;
    const store = new RosterStore(ctx.store.map<Json>('roster'), ctx.store.keyval<Json>('roster_version'));
    const limits: ItemLimits = { maxNameLength: o.max_name_length, maxGroupLength: o.max_group_length, maxGroups: o.max_groups };

    const interested = (owner: string): ClientSession[] => ctx.server.sessions.resources(owner).filter(isInterested);

    async function push(owner: string, item: Element, ver: string | undefined): Promise<void> {
      for (const session of interested(owner)) {
        // Routed, not written, so that other plugins see pushes like any other stanza.
        await ctx.route(xml('iq', { type: 'set', id: `push-${randomBytes(6).toString('hex')}`, from: owner, to: session.jid!.full },
          queryElement([item], ver)));
      }
    }

    function normalise(contact: string, state: ContactState): ContactState {
      const out: ContactState = {};
      if (state.item) {
        const i = state.item;
        const item: RosterItem = { jid: contact, groups: [...i.groups], subscription: i.subscription };
        if (i.name !== undefined) item.name = i.name;
        if (i.ask === 'subscribe') item.ask = 'subscribe';
        if (i.approved) item.approved = true;
        out.item = item;
      }
      if (state.pendingIn !== undefined) out.pendingIn = state.pendingIn;
      return out;
    }

    async function update(owner: string, contact: string, fn: (state: ContactState) => ContactState | undefined,
      options: UpdateOptions): Promise<UpdateResult> {
      const result = await store.lock.run(owner, async (): Promise<UpdateResult> => {
        const before = await store.get(owner, contact);
        const proposed = fn(copyState(before));
        if (proposed === undefined || sameState(before, proposed)) return { before, after: before };
        const after = normalise(contact, proposed);
        if (sameState(before, after)) return { before, after: before };
        const isNew = !before.item && before.pendingIn === undefined;
        if (isNew && (await store.count(owner)) >= o.max_items) {
          throw new StanzaError('not-allowed', `the roster is full (at most ${o.max_items} contacts)`);
        }
        const visible = !sameItem(before.item, after.item);
        // The version changes before the item is written: should the write fail, clients with
        // the new version only fetch the whole roster again, and nothing is missed.
        const ver = visible && o.versioning ? await store.bump(owner) : undefined;
        await store.put(owner, contact, after);
        if (visible) await push(owner, after.item ? itemElement(after.item) : removedElement(contact), ver);
        return { before, after };
      });
      // Outside the lock: what follows routes stanzas, whose handlers may need this owner's lock
      // (a local contact's automatic reply), and must not wait for it.
      await options.then?.(result);
      const b = result.before.item;
      const a = result.after.item;
      if ((b?.subscription ?? 'none') !== (a?.subscription ?? 'none')) {
        const change: SubscriptionChange = { owner, contact, before: b, after: a, reason: options.reason };
        await host.hooks.emit(SUBSCRIPTION_EVENT, change);
      }
      return result;
    }

    function subscriptionStanza(type: string, from: string, to: string): Element {
      return xml('presence', { type, from, to });
    }

    async function remove(owner: string, contact: string, reason: UpdateOptions['reason'], mustExist: boolean): Promise<void> {
      await update(owner, contact, (st) => {
        if (!st.item) {
          // RFC 6121 §2.5.3: removing an item that is not in the roster.
          if (mustExist) throw new StanzaError('item-not-found', 'that contact is not in the roster');
          return undefined;
        }
        // Removing the item also denies an unanswered request from the contact.
        return {};
      }, {
        reason,
        then: async ({ before, after }) => {
          const b = before.item;
          if (!b || after.item) return;
          // RFC 6121 §2.5.2: cancel both directions with the contact.
          if (hasTo(b.subscription) || b.ask) await ctx.route(subscriptionStanza('unsubscribe', owner, contact));
          if (hasFrom(b.subscription) || before.pendingIn !== undefined) {
            await ctx.route(subscriptionStanza('unsubscribed', owner, contact));
          }
        },
      });
    }

    const api: RosterApi = {
      async items(owner) {
        return (await store.all(owner)).flatMap(([, st]) => (st.item ? [st.item] : []));
      },
      async item(owner, contact) {
        return (await store.get(owner, contact)).item;
      },
      async upsert(owner, item) {
        const contact = contactJid(item.jid, owner);
        if (!SUBSCRIPTIONS.includes(item.subscription)) throw new StanzaError('bad-request', 'unknown subscription state');
        const name = item.name === '' ? undefined : item.name;
        checkItemFields(name, item.groups, limits);
        await update(owner, contact, (st) => {
          const next: RosterItem = { jid: contact, groups: [...item.groups], subscription: item.subscription };
          if (name !== undefined) next.name = name;
          // Pending out only while the owner has no subscription to the contact yet.
          if (item.ask === 'subscribe' && !hasTo(item.subscription)) next.ask = 'subscribe';
          if (item.approved && !hasFrom(item.subscription)) next.approved = true;
          // A subscription the server grants answers an inbound request from the contact.
          const pendingIn = hasFrom(item.subscription) ? undefined : st.pendingIn;
          return pendingIn === undefined ? { item: next } : { item: next, pendingIn };
        }, { reason: 'server' });
      },
      async remove(owner, contact) {
        await remove(owner, contactJid(contact, owner), 'server', false);
      },
      update,
      async pendingRequests(owner) {
        return (await store.all(owner)).flatMap(([contact, st]) =>
          (st.pendingIn !== undefined ? [{ contact, stanza: st.pendingIn }] : []));
      },
      version: (owner) => store.version(owner),
      interested,
    };
    ctx.provide('roster', api);

    function ownSession(req: IqRequest): ClientSession {
      // Only the user's own connected resources manage the roster (ejabberd answers forbidden too).
      if (!req.session || req.from.bare !== req.to.bare) {
        throw new StanzaError('forbidden', 'only the account itself may use its roster');
      }
      return req.session;
    }

    ctx.iq.get(NS_ROSTER, 'query', async (req) => {
      const session = ownSession(req);
      const owner = req.to.bare;
      // Interested from now on: pushes of changes made while this result is built still reach it.
      session.data.set('roster', { interested: true } satisfies SessionState);
      const clientVer = req.payload.attrs.ver as string | undefined;
      const useVer = o.versioning && clientVer !== undefined;
      return store.lock.run(owner, async () => {
        const ver = useVer ? await store.version(owner) : undefined;
        // RFC 6121 §2.6.3: the client's version is current, so an empty result says "no change".
        if (ver !== undefined && clientVer === ver) return undefined;
        const items = (await store.all(owner)).flatMap(([, st]) => (st.item ? [itemElement(st.item)] : []));
        return queryElement(items, ver);
      });
    }, { to: ['bare'] });

    ctx.iq.set(NS_ROSTER, 'query', async (req) => {
      ownSession(req);
      const owner = req.to.bare;
      const set = parseRosterSet(req.payload, owner, limits);
      if (set.kind === 'remove') {
        await remove(owner, set.contact, 'roster', true);
        return undefined;
      }
      await update(owner, set.contact, (st) => {
        // A roster set changes only name and groups; the subscription state is the server's.
        const base: RosterItem = st.item ?? { jid: set.contact, groups: [], subscription: 'none' };
        const item: RosterItem = { ...base, groups: set.groups };
        if (set.name === undefined) delete item.name;
        else item.name = set.name;
        return { ...st, item };
      }, { reason: 'roster' });
      return undefined;
    }, { to: ['bare'] });

    ctx.c2s.feature((_session, stage) => (stage === 'post-auth' && o.versioning ? xml('ver', { xmlns: NS_ROSTERVER }) : undefined));
  },
});
