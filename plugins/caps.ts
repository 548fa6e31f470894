// XEP-0115 Entity Capabilities for the server: a `<c/>` in the stream features whose `ver` is the
// hash of the host's disco#info, so clients can cache what the server supports, and disco#info
// answers for the `node#ver` they will ask about.
import { createHash } from 'node:crypto';
import xml from '@xmpp/xml';
import type { Element } from 'ltx';
import { s } from '../lib/config/schema.js';
import { definePlugin } from '../lib/plugin/types.js';
import type { DiscoApi } from './disco.js';

export const NS_CAPS = 'http://jabber.org/protocol/caps';


/** The XEP-0115 §5.1 verification string of a disco#info query, hashed with SHA-1 in base64. */
export function capsVer(info: Element): string {
  const identities = info.getChildren('identity')
    .map((i) => `${i.attrs.category ?? ''}/${i.attrs.type ?? ''}/${i.attrs['xml:lang'] ?? ''}/${i.attrs.name ?? ''}`)
    .sort();
  const features = info.getChildren('feature').map((f) => String(f.attrs.var)).sort();
  const forms = info.getChildren('x', 'jabber:x:data').map((form) => {
    const fields = form.getChildren('field');
    const formType = fields.find((f) => f.attrs.var === 'FORM_TYPE')?.getChildText('value') ?? '';
    const rest = fields
      .filter((f) => f.attrs.var !== 'FORM_TYPE')
      .sort((a, b) => String(a.attrs.var).localeCompare(String(b.attrs.var)))
      .map((f) => [f.attrs.var, ...f.getChildren('value').map((v) => v.getText()).sort()].map((x) => `${String(x)}<`).join(''));
    return { formType, text: `${formType}<${rest.join('')}` };
  }).sort((a, b) => (a.formType < b.formType ? -1 : a.formType > b.formType ? 1 : 0));
  const input = [...identities, ...features].map((x) => `${x}<`).join('') + forms.map((f) => f.text).join('');
  return createHash('sha1').update(input, 'utf8').digest('base64');
}

export default definePlugin({
  name: 'caps',
  requires: ['disco'],
  xeps: [{ xep: 115, version: '1.6.0', status: 'complete', note: 'server capabilities in stream features' }],
  options: s.object({
    node: s.string({ default: 'https://parley.im', doc: 'the caps node URI naming this software (XEP-0115 node)' }),
  }),
  setup(ctx) {
    const disco = ctx.use<DiscoApi>('disco')!;
    // The features a host advertises change only on (re)load, but hashing per stream is cheap
    // next to TLS; a cache keyed on the serialised info keeps it at one hash per change.
    let cache: { key: string; ver: string } | undefined;
    const current = (): { info: Element; ver: string } => {
      const info = disco.hostInfo();
      const key = info.toString();
      if (!cache || cache.key !== key) cache = { key, ver: capsVer(info) };
      return { info, ver: cache.ver };
    };
    ctx.c2s.feature(() => xml('c', { xmlns: NS_CAPS, hash: 'sha-1', node: ctx.options.node, ver: current().ver }));
    ctx.onClose(disco.addInfoNode((node) => {
      const { info, ver } = current();
      if (node !== `${ctx.options.node}#${ver}`) return undefined;
      info.attrs.node = node;
      return info;
    }));
  },
});
