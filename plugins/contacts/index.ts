// Contact sync, roster-as-contacts (DESIGN §5): the Quicksy protocol im.quicksy.synchronization:0,
// served by its own domain (api.<host>, listed in the host's disco#items). A user sends the
// numbers of the phone's address book; the answer lists those that have an account here, and
// nothing when that list is what the client already has (the `ver` hash).
//
// Privacy (issue 5): an answer only ever holds numbers the asker sent. Numbers are stored only as
// HMACs under a server secret: per user for the daily limit (expiring with it), and, with
// auto_roster, the user's address book, so that a later sync of the other side can tell whether
// both know each other.
//
// auto_roster (beyond Quicksy, as WhatsApp does): when two users each have the other's number,
// they become contacts with a mutual subscription, pushed to both users' resources without a
// request on either side. When only the asker has the other's number, the asker gets a roster
// item for it, pre-approving that contact's subscription (RFC 6121 §3.4), and the other side
// learns nothing: a user's number reaches no one who did not send it.
import { createHmac, randomBytes } from 'node:crypto';
import xml from '@xmpp/xml';
import type { Element } from 'ltx';
import { formatDuration, s } from '../../lib/config/schema.js';
import { StanzaError } from '../../lib/errors.js';
import { prepDomain, type Jid } from '../../lib/jid.js';
import { definePlugin } from '../../lib/plugin/types.js';
import { KeyedLock } from '../../lib/util/keyed-lock.js';
import type { Json } from '../../lib/storage/types.js';
import { NS_DISCO_INFO, NS_DISCO_ITEMS } from '../../lib/xml/ns.js';
import { firstChild, iqResult } from '../../lib/xml/stanza.js';
import type { RosterApi, RosterItem } from '../roster/api.js';
import { NS_SYNC, bookNumbers, phoneBook, statusQuo, type Match } from './sync.js';

const E164 = /^\+[1-9]\d{1,14}$/;

export default definePlugin({
  name: 'contacts',
  optional: ['roster'],
  options: s.object({
    domain: s.string({ default: 'api.{host}', minLength: 1, doc: 'address of the contact sync service ({host} = the host name), listed in the host\'s disco#items' }),
    name: s.string({ default: 'Contact sync', doc: 'service name shown by clients (disco identity)' }),
    max_new_numbers: s.int({ default: 2048, min: 1, doc: 'numbers a user may look up for the first time per window; beyond: policy-violation' }),
    new_numbers_window: s.duration({ default: '24h', min: '1ms', doc: 'the window of max_new_numbers; a number counts again once it is this old' }),
    auto_roster: s.bool({
      default: false,
      doc: 'make matches roster items: mutual subscription when both users have each other\'s number, else a pre-approved item for the asker only',
    }),
  }),
  async setup(ctx) {
    const o = ctx.options;
    const host = ctx.host;
    const domain = prepDomain(o.domain.replace(/\{host\}/g, host));
    if (o.auto_roster && !ctx.use<RosterApi>('roster')) throw new Error('auto_roster needs the roster module on this host');

    // The accounts store itself: one indexed batch lookup per request instead of one per number
    // (the Accounts API has no batch lookup; its keys are the prepared localparts, which an
    // E.164 number is already).
    const accounts = ctx.store.map<Json>('accounts');
    const seen = ctx.store.map<number>('contacts_seen');
    const books = ctx.store.map<number>('contacts_book');
    const secrets = ctx.store.map<string>('contacts_secrets');
    await secrets.add(host, 'number-hmac', randomBytes(32).toString('base64'));
    const secret = Buffer.from((await secrets.get(host, 'number-hmac'))!, 'base64');
    const hmac = (number: string): string => createHmac('sha256', secret).update(number).digest('base64url');
    // A user's syncs run one at a time: the daily count is read, checked and then written.
    const lock = new KeyedLock();

    function roster(): RosterApi | undefined {
      // Looked up on use: a reloaded roster module provides a new service object.
      return ctx.use<RosterApi>('roster');
    }

    /**
     * Both know each other's number: a mutual subscription, name and groups kept. `then` runs
     * once this side is stored and pushed but before the presence plugin reacts to it: the other
     * side must be written by then, or the probe that reaction sends would find no subscription
     * there and be answered with `unsubscribed`.
     */
    async function makeMutual(r: RosterApi, owner: string, contact: string, then?: () => Promise<void>): Promise<void> {
      await r.update(owner, contact, (st) => {
        const item = st.item;
        if (item?.subscription === 'both' && !item.ask && !item.approved && st.pendingIn === undefined) return undefined;
        const next: RosterItem = { jid: contact, groups: item?.groups ?? [], subscription: 'both' };
        if (item?.name !== undefined) next.name = item.name;
        // The grant also answers an unanswered request of the contact.
        return { item: next };
      }, then ? { reason: 'server', then } : { reason: 'server' });
    }

    /** Only the owner knows the contact's number: an item for the owner, pre-approving the contact. */
    async function addPreApproved(r: RosterApi, owner: string, contact: string): Promise<void> {
      await r.update(owner, contact, (st) => {
        if (st.item) return undefined;
        const item: RosterItem = { jid: contact, groups: [], subscription: 'none', approved: true };
        return st.pendingIn === undefined ? { item } : { item, pendingIn: st.pendingIn };
      }, { reason: 'server' });
    }

    function skipped(owner: string, contact: string, err: unknown): void {
      ctx.log.info('auto roster skipped a contact', { owner, contact, err: err instanceof Error ? err.message : String(err) });
    }

    async function autoRoster(owner: string, ownLocal: string, keys: readonly string[], matches: readonly Match[]): Promise<void> {
      const r = roster();
      if (!r) return;
      // The address book replaces the one of the previous sync (the client always sends all of it).
      const before = new Set(await books.keys(owner));
      const now = new Set(keys);
      for (const k of before) if (!now.has(k)) await books.delete(owner, k);
      for (const k of now) if (!before.has(k)) await books.set(owner, k, 1);
      const ownKey = E164.test(ownLocal) ? hmac(ownLocal) : undefined;
      for (const m of matches) {
        const contact = m.jids[0]!;
        if (contact === owner) continue;
        try {
          const mutual = ownKey !== undefined && (await books.get(contact, ownKey)) !== undefined;
          if (mutual) {
            await makeMutual(r, owner, contact, async () => {
              // A refusal on the contact's side (a full roster) must not stop the owner's side
              // from completing; its probe then settles the owner's item to what is true.
              await makeMutual(r, contact, owner).catch((err: unknown) => skipped(contact, owner, err));
            });
          } else {
            await addPreApproved(r, owner, contact);
          }
        } catch (err) {
          // A full roster (not-allowed) must not fail the whole sync.
          skipped(owner, contact, err);
        }
      }
    }

    async function sync(from: Jid, book: Element): Promise<Element | undefined> {
      if (from.domain !== host || from.local === '') throw new StanzaError('not-authorized', `contact sync is for users of ${host}`);
      const numbers = bookNumbers(book);
      const owner = from.bare;
      return lock.run(owner, async () => {
        const keys = numbers.map(hmac);
        const known = await seen.getMany(owner, keys);
        const fresh = keys.filter((k) => !known.has(k));
        if (fresh.length > 0) {
          // QuicksyServer's limit: looking up the whole numbering plan a little at a time is slow.
          const counted = (await seen.keys(owner)).length;
          if (counted + fresh.length > o.max_new_numbers) {
            throw new StanzaError('policy-violation',
              `at most ${o.max_new_numbers} new numbers per ${formatDuration(o.new_numbers_window)}; this request has ${fresh.length}, ${counted} were used`);
          }
          const at = Date.now();
          for (const k of fresh) await seen.set(owner, k, at, { ttlMs: o.new_numbers_window });
        }
        const found = await accounts.getMany(host, numbers);
        const matches: Match[] = numbers.filter((n) => found.has(n)).map((n) => ({ number: n, jids: [`${n}@${host}`] }));
        if (o.auto_roster) await autoRoster(owner, from.local, keys, matches);
        ctx.log.debug('contact sync', { user: owner, numbers: numbers.length, matches: matches.length });
        return book.attrs.ver === statusQuo(matches) ? undefined : phoneBook(matches);
      });
    }

    const info = (): Element => xml('query', { xmlns: NS_DISCO_INFO },
      xml('identity', { category: 'store', type: 'generic', name: o.name }),
      xml('feature', { var: NS_DISCO_INFO }),
      xml('feature', { var: NS_DISCO_ITEMS }),
      xml('feature', { var: NS_SYNC }));

    ctx.component(domain, async ({ stanza, from, to }) => {
      const type = stanza.attrs.type;
      if (stanza.name === 'message') {
        if (type !== 'error' && type !== 'headline') throw new StanzaError('service-unavailable');
        return;
      }
      // Presence, and IQ results and errors, need no answer from a service without sessions.
      if (stanza.name !== 'iq' || (type !== 'get' && type !== 'set')) return;
      const children = stanza.children.filter((c): c is Element => typeof c !== 'string');
      const payload = firstChild(stanza);
      if (!payload || children.length !== 1) throw new StanzaError('bad-request', 'an iq get or set has exactly one child element');
      if (to.local !== '' || to.resource !== '') throw new StanzaError('service-unavailable');
      const ns = payload.attrs.xmlns;
      let answer: Element | undefined;
      if (payload.name === 'query' && ns === NS_DISCO_INFO && type === 'get') {
        if (payload.attrs.node) throw new StanzaError('item-not-found');
        answer = info();
      } else if (payload.name === 'query' && ns === NS_DISCO_ITEMS && type === 'get') {
        if (payload.attrs.node) throw new StanzaError('item-not-found');
        answer = xml('query', { xmlns: NS_DISCO_ITEMS });
      } else if (payload.name === 'phone-book' && ns === NS_SYNC) {
        if (type !== 'get') throw new StanzaError('bad-request', 'a phone book is sent in an iq get');
        answer = await sync(from, payload);
      } else {
        throw new StanzaError('service-unavailable');
      }
      await ctx.route(iqResult(stanza, answer));
    });
    ctx.discoItem({ jid: domain, name: o.name });
  },
});
