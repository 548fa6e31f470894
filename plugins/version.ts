// XEP-0092 Software Version of the server. The OS is hidden unless configured: it helps attackers
// more than users.
import { readFileSync } from 'node:fs';
import xml from '@xmpp/xml';
import { s } from '../lib/config/schema.js';
import { definePlugin } from '../lib/plugin/types.js';

export const NS_VERSION = 'jabber:iq:version';

const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };

export default definePlugin({
  name: 'version',
  xeps: [{ xep: 92, version: '1.1', status: 'complete' }],
  options: s.object({
    name: s.string({ default: 'Parley', doc: 'software name answered to version queries' }),
    show_os: s.bool({ default: false, doc: 'include the operating system in the answer' }),
  }),
  setup(ctx) {
    ctx.feature(NS_VERSION);
    ctx.iq.get(NS_VERSION, 'query', () => {
      const q = xml('query', { xmlns: NS_VERSION }, xml('name', {}, ctx.options.name), xml('version', {}, pkg.version));
      if (ctx.options.show_os) q.append(xml('os', {}, `${process.platform} ${process.arch}, Node ${process.version}`));
      return q;
    });
  },
});
