// XEP-0049 Private XML Storage: an account keeps XML fragments on the server, one slot per
// namespace (bookmarks under storage:bookmarks, client preferences, roster notes).
//
// Rules taken from the XEP (§2.3, §3):
// - Only the account itself reads and writes its data; a request to another account's JID gets
//   forbidden (the XEP prefers it to service-unavailable).
// - A set needs at least one child element (else not-acceptable); it may hold several, and
//   elements of one namespace are stored together, replacing what that namespace held.
// - A get names exactly one namespace with one child element (else bad-request, the XEP's "Bad
//   Format"); it returns what is stored, or the requested element back, empty, when nothing is.
// - Reserved namespaces (jabber:*, http://jabber.org/*, vcard-temp) are refused with
//   not-acceptable (the optional behaviour of §2.3, which this server takes); so is a child
//   without a namespace of its own, which would be in jabber:iq:private itself.
import xml from '@xmpp/xml';
import { parse, type Element } from 'ltx';
import { s } from '../lib/config/schema.js';
import { StanzaError } from '../lib/errors.js';
import { definePlugin, type IqRequest } from '../lib/plugin/types.js';
import { serialize } from '../lib/xml/serialize.js';
import { KeyedLock } from '../lib/util/keyed-lock.js';

export const NS_PRIVATE = 'jabber:iq:private';

/** The `private` service: ctx.use<PrivateApi>('private'), for conversions such as XEP-0411 bookmarks. */
export interface PrivateApi {
  /** The elements stored under a namespace (empty when none). */
  get(owner: string, ns: string): Promise<Element[]>;
}

export function isReserved(ns: string): boolean {
  return ns.startsWith('jabber:') || ns.startsWith('http://jabber.org/') || ns === 'vcard-temp';
}

function elements(el: Element): Element[] {
  return el.children.filter((c): c is Element => typeof c !== 'string');
}

/** The namespace a child of <query/> is in, refused when it may not be stored. */
function storableNs(el: Element): string {
  // The stream parser writes xmlns where the namespace changes: none means jabber:iq:private.
  const ns = el.attrs.xmlns ?? NS_PRIVATE;
  if (isReserved(ns)) throw new StanzaError('not-acceptable', `the namespace ${ns} is reserved`);
  return ns;
}

/** An element that says nothing but its name: storing it is the same as clearing the slot. */
function isBare(el: Element): boolean {
  return el.children.every((c) => typeof c === 'string' && c.trim() === '')
    && Object.keys(el.attrs).every((k) => k === 'xmlns');
}

export default definePlugin({
  name: 'private',
  xeps: [{ xep: 49, version: '1.2', status: 'complete' }],
  options: s.object({
    max_size: s.size({
      default: '128KiB', min: 1024,
      doc: 'largest XML one namespace may hold, as serialised; a larger set is refused with policy-violation',
    }),
    max_namespaces: s.int({
      default: 100, min: 1,
      doc: 'most namespaces one account may store; a set that adds more is refused with policy-violation',
    }),
  }),
  setup(ctx) {
    const o = ctx.options;
    const store = ctx.store.map<string[]>('private');
    const lock = new KeyedLock();

    const api: PrivateApi = {
      async get(owner, ns) {
        return ((await store.get(owner, ns)) ?? []).map((x) => parse(x));
      },
    };
    ctx.provide('private', api);
    // Not required by the XEP, which predates service discovery; Prosody and ejabberd list it.
    ctx.feature(NS_PRIVATE);

    function ownOnly({ from, to }: IqRequest): void {
      if (from.bare !== to.bare) throw new StanzaError('forbidden', "only the account itself may use its private storage");
    }

    ctx.iq.get(NS_PRIVATE, 'query', async (req) => {
      ownOnly(req);
      const kids = elements(req.payload);
      if (kids.length !== 1) throw new StanzaError('bad-request', 'a get names exactly one element and namespace');
      const wanted = kids[0]!;
      const ns = storableNs(wanted);
      const stored = await api.get(req.to.bare, ns);
      const query = xml('query', { xmlns: NS_PRIVATE });
      if (stored.length === 0) query.append(xml(wanted.name, { xmlns: ns }));
      for (const el of stored) query.append(el);
      return query;
    }, { to: ['bare'] });

    ctx.iq.set(NS_PRIVATE, 'query', async (req) => {
      ownOnly(req);
      const owner = req.to.bare;
      const kids = elements(req.payload);
      if (kids.length === 0) throw new StanzaError('not-acceptable', 'a set needs at least one child element');
      // Everything is checked before anything is written.
      const slots = new Map<string, Element[]>();
      for (const el of kids) {
        const ns = storableNs(el);
        slots.set(ns, [...(slots.get(ns) ?? []), el]);
      }
      const values = new Map<string, string[] | undefined>();
      for (const [ns, els] of slots) {
        const texts = els.map((el) => serialize(el));
        const size = texts.reduce((n, t) => n + Buffer.byteLength(t), 0);
        if (size > o.max_size) {
          throw new StanzaError('policy-violation', `${ns} would hold ${size} bytes; this server stores at most ${o.max_size}`);
        }
        values.set(ns, els.length === 1 && isBare(els[0]!) ? undefined : texts);
      }
      await lock.run(owner, async () => {
        const existing = new Set(await store.keys(owner));
        const after = new Set(existing);
        for (const [ns, v] of values) {
          if (v === undefined) after.delete(ns);
          else after.add(ns);
        }
        if (after.size > o.max_namespaces && after.size > existing.size) {
          throw new StanzaError('policy-violation', `an account stores at most ${o.max_namespaces} namespaces`);
        }
        // The store writes one key at a time: a failure part-way puts back what was there.
        const undo: Array<() => Promise<unknown>> = [];
        try {
          for (const [ns, v] of values) {
            const old = await store.get(owner, ns);
            if (v === undefined) await store.delete(owner, ns);
            else await store.set(owner, ns, v);
            undo.push(() => (old === undefined ? store.delete(owner, ns) : store.set(owner, ns, old)));
          }
        } catch (err) {
          ctx.log.error('private storage write failed', { err, user: owner });
          for (const u of undo.reverse()) await u().catch(() => undefined);
          throw new StanzaError('internal-server-error');
        }
      });
      return undefined;
    }, { to: ['bare'] });
  },
});
