// XEP-0199 XMPP Ping: answer pings to the server and, on behalf of users, to their bare JIDs.
import { definePlugin } from '../lib/plugin/types.js';

export const NS_PING = 'urn:xmpp:ping';

export default definePlugin({
  name: 'ping',
  xeps: [{ xep: 199, version: '2.0.1', status: 'complete' }],
  setup(ctx) {
    ctx.feature(NS_PING);
    ctx.iq.get(NS_PING, 'ping', () => undefined, { to: ['host', 'bare'] });
  },
});
