// Offline messages (RFC 6121 §8.5.2.2, XEP-0160) with ack-then-delete delivery (DESIGN §6) and
// flexible retrieval (XEP-0013). The spool and its rules are in spool.ts and policy.ts.
//
// - Storing: `message/offline/handle` at 0, below carbons (100) and push (50), which look at the
//   message without claiming it. The stored copy keeps the stanza-id the archive gave it for the
//   recipient (or gets a new one in the same format when no archive is loaded) and a delay from
//   the host. A full spool answers resource-constraint to the sender.
// - Delivering: on the first available presence with a non-negative priority, oldest first;
//   deleted when the session's XEP-0198 ack covers the message. Clients without stream
//   management: deleted once written to their connection (the bytes can still be lost with the
//   connection: that is the documented trade-off), or kept (`without_sm: keep`) until removed with
//   XEP-0013, read from the archive, or expired.
// - A message the user read from the archive (`mam/queried`) is removed from the spool: the
//   client has it, and clients that catch up through MAM would otherwise get it twice.
// - Events: `message/offline/stored` (emit; the StanzaEvent and the spool `id`) after a message
//   was stored, for push notifications of messages that did not come through the router's
//   offline handling; `message/offline/refused` (emit; the StanzaEvent) before a full spool's
//   resource-constraint error goes to the sender, so the archive drops its copy of the message.
//   Service `offline`: stats() for `parleyctl stats`.
import { s } from '../../lib/config/schema.js';
import { definePlugin, type StanzaEvent } from '../../lib/plugin/types.js';
import type { ClientSession } from '../../lib/session/types.js';
import type { Json } from '../../lib/storage/types.js';
import { registerFlexible } from './flexible.js';
import { DEFAULT_BODYLESS_PAYLOADS } from './policy.js';
import { Spool, type OfflineService } from './spool.js';

export type { OfflineService, OfflineStats } from './spool.js';

/** What the archive plugin reports after writing query results (structurally; no import). */
interface ArchiveRead {
  owner: string;
  page: { items: Array<{ id: string }> };
}

export default definePlugin({
  name: 'offline',
  optional: ['mam'],
  xeps: [
    { xep: 160, version: '1.0.1', status: 'complete' },
    { xep: 13, version: '1.2', status: 'complete' },
    { xep: 203, version: '2.0', status: 'complete', note: 'delay on stored messages' },
    { xep: 334, version: '0.3.0', status: 'partial', note: 'store, no-store and no-permanent-store honoured' },
    { xep: 359, version: '0.7.0', status: 'partial', note: 'stanza-id on stored messages, the same as the archive copy' },
  ],
  options: s.object({
    expiry: s.duration({
      default: '30d', min: '0',
      doc: 'stored messages are deleted this long after they arrived, delivered or not (0 = kept until delivered or removed)',
    }),
    max_messages: s.int({
      default: 1000, min: 1,
      doc: "messages one user's spool holds; more are refused with resource-constraint to the sender",
    }),
    store_groupchat: s.bool({ default: false, doc: 'also store groupchat messages (only reached when one is handed back by a dying session)' }),
    store_bodyless: s.array(s.string({ minLength: 1 }), {
      default: [...DEFAULT_BODYLESS_PAYLOADS],
      doc: 'namespaces of payloads that make a message without a body worth storing (receipts, markers, encrypted payloads, ...)',
    }),
    without_sm: s.enum(['delete', 'keep'], {
      default: 'delete',
      doc: 'clients without stream management: delete a message once written to the connection, or keep it (until removed with XEP-0013, read from the archive, or expired)',
    }),
    window: s.int({
      default: 100, min: 1, max: 1000,
      doc: 'stored messages in flight to one session before the server waits for their acknowledgement',
    }),
    stats_top_users: s.int({ default: 20, min: 0, doc: 'users listed with their queue length in the stats, longest queues first' }),
  }),
  setup(ctx) {
    const o = ctx.options;
    const host = ctx.server.host(ctx.host)!;
    const spool = new Spool({
      host: ctx.host,
      log: ctx.log,
      options: {
        expiryMs: o.expiry,
        maxMessages: o.max_messages,
        window: o.window,
        withoutSm: o.without_sm,
        topUsers: o.stats_top_users,
        storeGroupchat: o.store_groupchat,
        bodylessPayloads: new Set(o.store_bodyless),
      },
      messages: ctx.store.archive<string>('offline'),
      index: ctx.store.map<Json>('offline_index'),
      sessions: ctx.server.sessions,
      // The archive adds the recipient's stanza-id before the spool sees a message; without it,
      // a stanza-id claiming to be the user's came from outside and is not kept.
      stanzaIdsAssigned: () => host.plugins.has('mam'),
      route: (stanza) => ctx.route(stanza),
      emit: (event, arg) => ctx.emit(event, arg),
    });

    ctx.feature('msgoffline');

    ctx.hook('message/offline/handle', (ev: StanzaEvent) => spool.handle(ev), 0);

    ctx.hook('presence/broadcast', ({ session }: StanzaEvent) => {
      if (session) spool.presence(session);
    });

    ctx.hook('session/closed', ({ session }: { session: ClientSession }) => spool.sessionClosed(session));

    ctx.hook('mam/queried', async ({ owner, page }: ArchiveRead) => {
      await spool.removeRead(owner, page.items.map((i) => i.id));
    });

    registerFlexible(ctx, spool);

    ctx.provide('offline', { stats: () => spool.stats() } satisfies OfflineService);
  },
});
