// Server information plugins: entity caps (XEP-0115), uptime (XEP-0012), contact addresses (XEP-0157).
import xml from '@xmpp/xml';
import t from 'tap';
import { capsVer } from '../../plugins/caps.js';
import { RawClient } from '../helpers/raw-client.js';
import { startTestServer } from '../helpers/server.js';

t.test('caps ver matches the XEP-0115 examples', async (t) => {
  const simple = xml('query', {},
    xml('identity', { category: 'client', type: 'pc', name: 'Exodus 0.9.1' }),
    ...['http://jabber.org/protocol/caps', 'http://jabber.org/protocol/disco#info',
      'http://jabber.org/protocol/disco#items', 'http://jabber.org/protocol/muc'].map((v) => xml('feature', { var: v })));
  t.equal(capsVer(simple), 'QgayPKawpkPSDYmwT/WM94uAlu0=');
  const complex = xml('query', {},
    xml('identity', { 'xml:lang': 'en', category: 'client', name: 'Psi 0.11', type: 'pc' }),
    xml('identity', { 'xml:lang': 'el', category: 'client', name: 'Ψ 0.11', type: 'pc' }),
    ...['http://jabber.org/protocol/caps', 'http://jabber.org/protocol/disco#info',
      'http://jabber.org/protocol/disco#items', 'http://jabber.org/protocol/muc'].map((v) => xml('feature', { var: v })),
    xml('x', { xmlns: 'jabber:x:data', type: 'result' },
      xml('field', { var: 'FORM_TYPE', type: 'hidden' }, xml('value', {}, 'urn:xmpp:dataforms:softwareinfo')),
      xml('field', { var: 'ip_version' }, xml('value', {}, 'ipv4'), xml('value', {}, 'ipv6')),
      xml('field', { var: 'os' }, xml('value', {}, 'Mac')),
      xml('field', { var: 'os_version' }, xml('value', {}, '10.5.1')),
      xml('field', { var: 'software' }, xml('value', {}, 'Psi')),
      xml('field', { var: 'software_version' }, xml('value', {}, '0.11'))));
  t.equal(capsVer(complex), 'q07IKJEyjvHSyhy//CH0CxmKi8w=');
});

t.test('caps in stream features, node answered; uptime; contact addresses', async (t) => {
  const srv = await startTestServer({
    modules: [
      '  disco: {}', '  ping: {}', '  caps: {}', '  uptime: {}',
      '  contact_info:', '    abuse: ["mailto:abuse@localhost", "xmpp:abuse@localhost"]', '    security: ["https://localhost/security"]',
    ].join('\n'),
  });
  t.teardown(() => srv.close());
  await srv.register('alice', 'pw');
  const c = await RawClient.connect(srv.c2sPort);
  await c.open();
  await c.starttls();
  const features = await c.authPlain('alice', 'pw');
  const caps = features.getChild('c', 'http://jabber.org/protocol/caps');
  t.ok(caps, 'caps in post-auth features');
  t.equal(caps?.attrs.hash, 'sha-1');
  await c.bind();
  c.send("<iq to='localhost' type='get' id='d1'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>");
  const info = (await c.nextNamed('iq', 'd1')).getChild('query')!;
  t.equal(capsVer(info), caps?.attrs.ver, 'ver is the hash of the host disco#info');
  const form = info.getChild('x', 'jabber:x:data')!;
  const field = (v: string) => form.getChildren('field').find((f) => f.attrs.var === v)?.getChildren('value').map((x) => x.getText());
  t.same(field('FORM_TYPE'), ['http://jabber.org/network/serverinfo']);
  t.same(field('abuse-addresses'), ['mailto:abuse@localhost', 'xmpp:abuse@localhost']);
  t.same(field('security-addresses'), ['https://localhost/security']);
  t.equal(field('support-addresses'), undefined, 'empty lists are left out');
  const node = `${caps!.attrs.node}#${caps!.attrs.ver}`;
  c.send(`<iq to='localhost' type='get' id='d2'><query xmlns='http://jabber.org/protocol/disco#info' node='${node}'/></iq>`);
  const byNode = (await c.nextNamed('iq', 'd2')).getChild('query')!;
  t.equal(byNode.attrs.node, node);
  t.equal(capsVer(byNode), caps?.attrs.ver);
  c.send("<iq to='localhost' type='get' id='d3'><query xmlns='http://jabber.org/protocol/disco#info' node='urn:unknown'/></iq>");
  t.ok((await c.nextNamed('iq', 'd3')).getChild('error')?.getChild('item-not-found'));
  c.send("<iq to='localhost' type='get' id='u1'><query xmlns='jabber:iq:last'/></iq>");
  const up = (await c.nextNamed('iq', 'u1')).getChild('query', 'jabber:iq:last');
  t.match(up?.attrs.seconds, /^\d+$/);
  c.end();
});

t.test('contact addresses must be URIs', async (t) => {
  await t.rejects(startTestServer({ modules: '  disco: {}\n  contact_info:\n    abuse: ["not a uri"]' }),
    { code: 'CONFIG_INVALID', message: /modules\.contact_info\.abuse\.0/ });
});
