// XEP-0012 Last Activity of users: an IQ to a user's bare JID asks how long ago the user logged
// out, and with which status (§4). The server answers on the user's behalf:
// - only to the user and to entities allowed to see the user's presence, that is contacts with a
//   'from' or 'both' subscription; others get forbidden (§4, §8). A blocked requester never gets
//   here: the blocking plugin answers it as if the user were offline.
// - 0 seconds and no text while the user has an available resource (§4 SHOULD);
// - otherwise the time since the last unavailable presence and that presence's status text;
// - item-not-found when the user has never been online, rather than a "0" that would read as
//   "online now".
// Queries to the server itself (uptime) belong to the uptime plugin, to full JIDs to the client.
import xml from '@xmpp/xml';
import type { Element } from 'ltx';
import { StanzaError } from '../lib/errors.js';
import { definePlugin } from '../lib/plugin/types.js';
import type { PresenceApi } from './presence/api.js';
import type { RosterApi } from './roster/api.js';

export const NS_LAST = 'jabber:iq:last';

/** The status text of a presence: the one without xml:lang (the default), else the first. */
function statusText(presence: Element): string | undefined {
  const statuses = presence.getChildren('status').filter((s) => s.attrs.xmlns === undefined || s.attrs.xmlns === 'jabber:client');
  const status = statuses.find((s) => s.attrs['xml:lang'] === undefined) ?? statuses[0];
  const text = status?.getText();
  return text ? text : undefined;
}

export default definePlugin({
  name: 'last',
  requires: ['roster', 'presence'],
  xeps: [{ xep: 12, version: '2.0', status: 'partial', note: 'user last activity; server uptime is the uptime module' }],
  setup(ctx) {
    // Looked up on use: a reloaded roster or presence plugin provides a new service object.
    const service = <T>(name: string): T => {
      const api = ctx.use<T>(name);
      if (!api) throw new Error(`the ${name} service is not available`);
      return api;
    };

    ctx.feature(NS_LAST);

    ctx.iq.get(NS_LAST, 'query', async ({ from, to }) => {
      const user = to.bare;
      if (from.bare !== user) {
        const item = await service<RosterApi>('roster').item(user, from.bare);
        if (item?.subscription !== 'from' && item?.subscription !== 'both') {
          throw new StanzaError('forbidden', "only contacts subscribed to this user's presence may ask");
        }
      }
      if (ctx.server.sessions.available(user).length > 0) return xml('query', { xmlns: NS_LAST, seconds: '0' });
      const last = await service<PresenceApi>('presence').lastUnavailable(user);
      if (!last) throw new StanzaError('item-not-found', 'no last activity is known for this user');
      const seconds = Math.max(0, Math.floor((Date.now() - last.at) / 1000));
      const query = xml('query', { xmlns: NS_LAST, seconds: String(seconds) });
      const text = statusText(last.stanza);
      if (text !== undefined) query.t(text);
      return query;
    }, { to: ['bare'] });
  },
});
