// XEP-0012 Last Activity sent to the server itself: how long the server has been running.
import xml from '@xmpp/xml';
import { definePlugin } from '../lib/plugin/types.js';

export const NS_LAST = 'jabber:iq:last';

export default definePlugin({
  name: 'uptime',
  xeps: [{ xep: 12, version: '2.0', status: 'partial', note: 'server uptime; user last activity is the last module' }],
  setup(ctx) {
    ctx.feature(NS_LAST);
    ctx.iq.get(NS_LAST, 'query', () =>
      xml('query', { xmlns: NS_LAST, seconds: String(Math.floor((Date.now() - ctx.server.startedAt) / 1000)) }),
    { to: ['host'] });
  },
});
