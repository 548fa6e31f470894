// XEP-0157 Contact Addresses: who to write to about abuse, security or support, published as a
// serverinfo form in the host's disco#info (Conversations shows it; the Compliance Suites ask for
// abuse addresses).
import xml from '@xmpp/xml';
import { s } from '../lib/config/schema.js';
import { definePlugin } from '../lib/plugin/types.js';
import { NS_DATA_FORMS } from '../lib/xml/ns.js';

export const NS_SERVERINFO = 'http://jabber.org/network/serverinfo';

const uri = s.string({ pattern: /^(mailto|xmpp|https?|tel):\S+$/, doc: 'a URI: mailto:, xmpp:, https:, tel:' });
const list = (doc: string) => s.array(uri, { default: [], doc });

const FIELDS = ['abuse', 'admin', 'feedback', 'sales', 'security', 'status', 'support'] as const;

export default definePlugin({
  name: 'contact_info',
  requires: ['disco'],
  xeps: [{ xep: 157, version: '1.1.1', status: 'complete' }],
  options: s.object({
    abuse: list('where to report abuse (spam, harassment)'),
    admin: list('the server administrators'),
    feedback: list('where to send feedback'),
    sales: list('sales contacts'),
    security: list('where to report security issues'),
    status: list('where the service status is published'),
    support: list('where users get help'),
  }),
  setup(ctx) {
    ctx.discoExtension(() => {
      const form = xml('x', { xmlns: NS_DATA_FORMS, type: 'result' },
        xml('field', { var: 'FORM_TYPE', type: 'hidden' }, xml('value', {}, NS_SERVERINFO)));
      for (const name of FIELDS) {
        const values = ctx.options[name];
        if (values.length === 0) continue;
        form.append(xml('field', { var: `${name}-addresses`, type: 'list-multi' }, ...values.map((v) => xml('value', {}, v))));
      }
      return form;
    });
  },
});
