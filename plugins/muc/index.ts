// XEP-0045 Multi-User Chat as a service domain of the host (conference.<host> by default), with
// the extensions modern clients expect of a room: XEP-0313 archive on the room JID, XEP-0359
// stanza-ids, XEP-0421 occupant-ids, XEP-0410 self-ping, XEP-0425 moderation and a room vCard.
//
// The files: service.ts (rooms, stores, fan-out), dispatch.ts (what arrives where), presence.ts
// (join, nick change, leave), messages.ts (groupchat, subject, private messages, invitations),
// admin.ts and owner.ts (the privilege protocols), config-form.ts, history.ts, archive.ts
// (MAM and moderation), disco.ts, vcard.ts, occupant-iq.ts (self-ping and IQ forwarding),
// voice.ts (voice requests) and register.ts (nickname registration).
//
// Rooms live in memory; persistent ones are also stored (map muc_rooms) and loaded at start.
// Occupants are not persisted: after a restart clients rejoin, as with Prosody and ejabberd.
import type { ClientSession } from '../../lib/session/types.js';
import { definePlugin, type StanzaEvent } from '../../lib/plugin/types.js';
import { createDispatcher } from './dispatch.js';
import { IqForwarder } from './occupant-iq.js';
import { mucOptions, type MucOptions } from './options.js';
import { leaveAll } from './presence.js';
import { MucService } from './service.js';

export default definePlugin<MucOptions>({
  name: 'muc',
  xeps: [
    { xep: 45, version: '1.35.1', status: 'complete', note: 'with voice requests and nickname registration' },
    { xep: 249, version: '1.2', status: 'complete', note: 'direct invitations pass through the server unchanged' },
    { xep: 313, version: '1.1.1', status: 'complete', note: 'room archives' },
    { xep: 359, version: '0.7.0', status: 'complete', note: 'stanza-id on room messages' },
    { xep: 410, version: '1.1.0', status: 'complete' },
    { xep: 421, version: '0.1.2', status: 'complete' },
    { xep: 425, version: '0.3.0', status: 'complete' },
  ],
  options: mucOptions,
  async setup(ctx) {
    const svc = new MucService(ctx, ctx.options);
    await svc.load();
    const forwarder = new IqForwarder(svc);
    ctx.component(svc.domain, createDispatcher(svc, forwarder));
    ctx.discoItem({ jid: svc.domain, name: ctx.options.name });

    // Sessions that end leave their rooms. Occupants may come from any host of this server, so
    // every host's bus is watched, not only this plugin's own.
    const onUnbind = async ({ session }: { session: ClientSession }): Promise<void> => {
      if (session.jid) await leaveAll(svc, session.jid.full, []);
    };
    const onBroadcast = async (ev: StanzaEvent): Promise<void> => {
      // Unavailable broadcast presence ends every directed presence, room joins included
      // (RFC 6121 §4.6.3); the presence plugin sends them too, and leaving twice is a no-op.
      if (ev.stanza.attrs.type === 'unavailable') await leaveAll(svc, ev.from.full, []);
    };
    for (const name of ctx.server.hosts) {
      if (name === ctx.host) {
        ctx.hook('resource-unbind', onUnbind);
        ctx.hook('presence/broadcast', onBroadcast);
        continue;
      }
      const host = ctx.server.host(name);
      if (!host) continue;
      ctx.onClose(host.hooks.on('resource-unbind', onUnbind, 0, 'muc'));
      ctx.onClose(host.hooks.on('presence/broadcast', onBroadcast, 0, 'muc'));
    }

    // When the plugin stops (shutdown, or a reload that changes its options) the rooms in
    // memory go away: their occupants learn it with status 332 (removed because of a system shutdown).
    ctx.onClose(async () => {
      svc.closing = true;
      forwarder.close();
      for (const room of svc.rooms.values()) {
        await room.run(async () => {
          for (const o of [...room.occupants.values()]) await svc.expel(room, o, { codes: [332] });
        }).catch((err: unknown) => ctx.log.warn('shutdown notice failed', { err, room: room.jid }));
      }
      svc.rooms.clear();
      svc.sessionRooms.clear();
    });
  },
});
