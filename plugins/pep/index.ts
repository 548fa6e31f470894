// XEP-0163 Personal Eventing Protocol: a XEP-0060 publish-subscribe service on every account's
// bare JID, with publish-options (XEP-0223), notifications filtered by entity capabilities
// (XEP-0115), and the conversions clients look for: avatars to and from vCards (XEP-0398) and
// bookmarks between private storage, the XEP-0048 node and XEP-0402 (XEP-0411).
//
// Files: config.ts (node configuration and its forms), store.ts (persistence), service.ts
// (operations, access models, notifications), protocol.ts (the IQ protocol), caps.ts (who
// receives notifications), disco.ts (node discovery), observe.ts (learning of other plugins'
// writes), avatar.ts and bookmarks.ts (conversions).
//
// Hooks used: routed presence (`presence/bare`, `presence/full`) and `presence/broadcast` to
// learn the audience and its capabilities; `resource-unbind` to forget a resource;
// `message/bare` to drop resources whose notifications bounce; `roster/subscription` to end
// explicit subscriptions that lost access. Emits `pep/changed` (PepChange) after every stored
// change. Provides the `pep` service (PepApi).
import xml from '@xmpp/xml';
import type { Element } from 'ltx';
import { s } from '../../lib/config/schema.js';
import { StanzaError } from '../../lib/errors.js';
import { Jid } from '../../lib/jid.js';
import { definePlugin, type PluginContext, type StanzaEvent } from '../../lib/plugin/types.js';
import type { ClientSession } from '../../lib/session/types.js';
import { SUBSCRIPTION_EVENT, hasTo, type RosterApi, type SubscriptionChange } from '../roster/api.js';
import { setupAvatarConversion } from './avatar.js';
import { setupBookmarksConversion } from './bookmarks.js';
import { CapsTracker } from './caps.js';
import { ACCESS_MODELS } from './config.js';
import { setupDisco } from './disco.js';
import {
  NS_BOOKMARKS2, NS_BOOKMARKS_CONVERSION, NS_NICK, NS_PEP_VCARD_CONVERSION, NS_PUBSUB, NS_PUBSUB_OWNER, NS_VCARD4,
  PUBSUB_FEATURES,
} from './ns.js';
import { SetObserver } from './observe.js';
import { PepProtocol } from './protocol.js';
import { PepService, type PepOptions } from './service.js';
import { PepStore, type LoadedItem } from './store.js';

export { CHANGED_EVENT, type PepChange } from './service.js';

/** The `pep` service: ctx.use<PepApi>('pep'), for plugins that read or publish PEP data as the server. */
export interface PepApi {
  /** Items of an account's node in publication order (all the stored ones), or undefined without the node. */
  items(owner: string, node: string): Promise<LoadedItem[] | undefined>;
  /** Publishes as the server on the account's behalf (auto-creating the node); returns the item id. */
  publish(owner: string, node: string, payload: Element, id?: string): Promise<string>;
}

export default definePlugin({
  name: 'pep',
  requires: ['roster'],
  // Loaded after these when they are enabled: their services and features are looked up at setup.
  optional: ['disco', 'presence', 'blocking', 'vcard', 'private'],
  xeps: [
    { xep: 163, version: '1.2.2', status: 'complete' },
    { xep: 60, version: '1.26.0', status: 'partial', note: 'the subset PEP uses: no collections, subscription options or publisher affiliations' },
    { xep: 223, version: '1.1.1', status: 'complete' },
    { xep: 115, version: '1.6.0', status: 'complete', note: 'client capabilities for filtered notifications' },
    { xep: 398, version: '0.2.1', status: 'complete', note: 'both directions' },
    { xep: 402, version: '1.2.0', status: 'complete', note: '#compat and #compat-pep' },
    { xep: 411, version: '1.1.0', status: 'complete' },
  ],
  options: s.object({
    default_access_model: s.enum(ACCESS_MODELS, {
      default: 'presence', doc: 'access model of new nodes (XEP-0163 makes it presence) unless publish-options or open_nodes say otherwise',
    }),
    open_nodes: s.array(s.string({ minLength: 1 }), {
      default: [NS_NICK, NS_VCARD4],
      doc: 'nodes created with the open access model, so that anyone can read them (nicknames and vCard4 profiles of non-contacts)',
    }),
    default_max_items: s.int({ default: 1, min: 1, doc: 'items a new node keeps unless configured otherwise' }),
    max_items: s.int({ default: 1000, min: 1, doc: 'most items a node keeps; pubsub#max_items=max means this many' }),
    max_nodes: s.int({ default: 256, min: 1, doc: 'most nodes an account may have; creating more is refused with policy-violation' }),
    max_payload_size: s.size({
      default: '128KiB', min: 1024, doc: 'largest item payload, as serialised XML; larger ones are refused with not-acceptable and payload-too-big',
    }),
    max_id_length: s.int({ default: 1024, min: 16, doc: 'longest node name or item id, in UTF-8 bytes; longer ones are refused with not-acceptable' }),
    caps_query_timeout: s.duration({ default: '10s', min: '100ms', doc: 'how long to wait for a client to answer the disco#info query about its capabilities' }),
    caps_cache_size: s.int({ default: 1000, min: 1, doc: 'verified capability hashes kept in memory (all are also stored)' }),
    conversion_timeout: s.duration({
      default: '10s', min: '100ms', doc: 'how long a conversion waits for the vcard or private plugin to store what it converted',
    }),
  }, {
    refine: (v, issue) => {
      if (v.default_max_items > v.max_items) issue(['default_max_items'], 'must not be larger than max_items');
    },
  }),
  setup(ctx) {
    const o = ctx.options;
    const pepOptions: PluginContext<PepOptions> = ctx;
    const store = new PepStore(ctx.store.map('pep_nodes'), ctx.store.map('pep_items'));
    let service: PepService | undefined;
    const caps = new CapsTracker({
      log: ctx.log,
      store: ctx.store.map<string[]>('pep_caps'),
      host: ctx.host,
      cacheSize: o.caps_cache_size,
      query: (iq) => ctx.server.sendIq(iq, o.caps_query_timeout),
      changed: (owner, resource, nodes) => service!.onNewInterest(owner, resource, nodes),
    });
    const svc = new PepService(pepOptions, store, caps);
    service = svc;
    const protocol = new PepProtocol(svc, () => o.max_items, () => ctx.use<RosterApi>('roster'));

    ctx.identity({ category: 'pubsub', type: 'pep' }, 'account');
    ctx.feature(NS_PUBSUB, 'account');
    for (const f of PUBSUB_FEATURES) ctx.feature(f, 'account');

    ctx.iq.get(NS_PUBSUB, 'pubsub', (req) => protocol.get(req), { to: ['bare'] });
    ctx.iq.set(NS_PUBSUB, 'pubsub', (req) => protocol.set(req), { to: ['bare'] });
    ctx.iq.get(NS_PUBSUB_OWNER, 'pubsub', (req) => protocol.ownerGet(req), { to: ['bare'] });
    ctx.iq.set(NS_PUBSUB_OWNER, 'pubsub', (req) => protocol.ownerSet(req), { to: ['bare'] });
    setupDisco(pepOptions, svc);

    // ---------- the audience: presence that reaches the account ----------

    const track = (owner: string, from: Jid, stanza: Element): void => {
      const type = stanza.attrs.type;
      const priority = parseInt(stanza.getChildText('priority') ?? '0', 10);
      // XEP-0163 §4.3.2: only available resources of non-negative priority are notified.
      if (type === undefined && !(priority < 0)) {
        caps.available(owner, from, stanza).catch((err: unknown) => ctx.log.warn('capabilities handling failed', { err, resource: from.full }));
      } else if (type === 'unavailable' || type === 'error' || type === undefined) {
        caps.forget(owner, from.full);
      }
    };
    const routed = async (ev: StanzaEvent): Promise<undefined> => {
      // The account's own resources are tracked from their broadcasts, below; presence without
      // a resource has no one to notify.
      if (ev.from.bare === ev.to.bare || ev.from.resource === '') return undefined;
      if (ev.stanza.attrs.type === undefined) {
        // The audience is the contacts whose presence the account receives (XEP-0163 §4.3,
        // as Prosody does): not MUC occupants or other senders of directed presence, who can
        // subscribe explicitly. This also keeps presence to unknown accounts from adding any.
        const item = await ctx.use<RosterApi>('roster')?.item(ev.to.bare, ev.from.bare);
        if (!hasTo(item?.subscription)) return undefined;
      }
      track(ev.to.bare, ev.from, ev.stanza);
      return undefined;
    };
    // Below blocking (1000), which drops presence of blocked contacts; above the presence plugin.
    ctx.hook('presence/bare', routed, 500);
    ctx.hook('presence/full', routed, 500);
    ctx.hook('presence/broadcast', ({ stanza, session }: StanzaEvent): undefined => {
      if (session?.jid) track(session.jid.bare, session.jid, stanza);
      return undefined;
    }, 50);
    ctx.hook('resource-unbind', ({ session }: { session: ClientSession }) => {
      if (!session.jid) return;
      caps.forget(session.jid.bare, session.jid.full);
    });
    // XEP-0163 §4.3.1: bounces of notifications come back to the account; a resource that
    // bounces is gone and is dropped from the audience.
    ctx.hook('message/bare', (ev: StanzaEvent): true | undefined => {
      if (ev.stanza.attrs.type !== 'error' || !ev.stanza.attrs.id?.startsWith('pep-')) return undefined;
      caps.forget(ev.to.bare, ev.from.full);
      return true;
    }, 500);

    // XEP-0163 §9.1: access is recomputed when a subscription changes.
    ctx.hook(SUBSCRIPTION_EVENT, (c: SubscriptionChange) => svc.revalidate(c.owner, c.contact));

    // ---------- conversions ----------

    const observer = new SetObserver(ctx, o.conversion_timeout);
    /** Writes through another plugin's protocol, as the account itself (see observe.ts). */
    const selfSet = async (owner: string, payload: Element): Promise<void> => {
      const answer = await ctx.server.sendIq(xml('iq', { type: 'set', from: owner, to: owner }, payload), o.conversion_timeout);
      if (answer.attrs.type !== 'result') {
        const condition = answer.getChild('error')?.children.find((c): c is Element => typeof c !== 'string')?.name;
        throw new Error(`${payload.attrs.xmlns ?? payload.name} refused the conversion: ${condition ?? 'no answer'}`);
      }
    };
    if (ctx.use('vcard')) {
      ctx.feature(NS_PEP_VCARD_CONVERSION, 'account');
      setupAvatarConversion(pepOptions, svc, observer, selfSet);
    }
    // The two PEP forms are kept in step in any case (#compat-pep); private storage joins them
    // when its plugin is enabled (#compat, XEP-0411).
    ctx.feature(`${NS_BOOKMARKS2}#compat-pep`, 'account');
    if (ctx.use('private')) {
      ctx.feature(NS_BOOKMARKS_CONVERSION, 'account');
      ctx.feature(`${NS_BOOKMARKS2}#compat`, 'account');
    }
    setupBookmarksConversion(pepOptions, svc, observer, selfSet);

    const api: PepApi = {
      async items(owner, node) {
        const rec = await store.node(owner, node);
        return rec ? svc.items(owner, node, rec) : undefined;
      },
      publish(owner, node, payload, id) {
        if (!Jid.tryParse(owner)) throw new StanzaError('jid-malformed');
        return svc.publish(owner, node, { id, payload }, { publisher: owner, origin: 'server' });
      },
    };
    ctx.provide('pep', api);
  },
});
