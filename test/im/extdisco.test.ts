// XEP-0215 External Service Discovery: the STUN/TURN services a user is told about, filtered by
// type, TURN credentials in the shared-secret scheme a TURN server checks on its own, the
// credentials request, and the errors.
import { createHmac } from 'node:crypto';
import type { Element } from 'ltx';
import t from 'tap';
import { RawClient } from '../helpers/raw-client.js';
import { startTestServer } from '../helpers/server.js';

const NS = 'urn:xmpp:extdisco:2';
const SECRET = 'a-shared-secret-of-the-turn-server';
const services = '    services:\n'
  + '      - { type: stun, host: stun.example.net, port: 3478 }\n'
  + '      - { type: turn, host: turn.example.net, port: 3478, transport: udp, name: Relay }\n'
  + '      - { type: turns, host: turn.example.net, port: 5349, transport: tcp }\n';
const srv = await startTestServer({ modules: `  disco: {}\n  extdisco:\n    secret: ${SECRET}\n    credentials_lifetime: 2h\n${services}` });
const plain = await startTestServer({ hosts: ['localhost', 'example.test'], modules: `  disco: {}\n  extdisco:\n${services}` });
t.teardown(async () => {
  await srv.close();
  await plain.close();
});
await srv.register('alice', 'pw');
await plain.register('alice', 'pw');
await plain.register('xena', 'pw', 'example.test');

let ids = 0;
async function iq(c: RawClient, payload: string): Promise<Element> {
  const id = `x${++ids}`;
  c.send(`<iq type='get' to='localhost' id='${id}'>${payload}</iq>`);
  return c.nextNamed('iq', id);
}
const condition = (el: Element) => el.getChild('error')?.getChildElements().find((e) => e.name !== 'text')?.name;
const listed = (el: Element, name = 'services') => el.getChild(name, NS)!.getChildren('service');

t.test('services, with TURN credentials a TURN server can check', async (t) => {
  const c = await RawClient.login(srv.c2sPort, 'alice', 'pw', { resource: 'r' });
  const info = await iq(c, "<query xmlns='http://jabber.org/protocol/disco#info'/>");
  t.ok(info.getChild('query')!.getChildren('feature').some((f) => f.attrs.var === NS), 'the host advertises extdisco:2');

  const before = Math.floor(Date.now() / 1000);
  const all = listed(await iq(c, `<services xmlns='${NS}'/>`));
  t.same(all.map((s) => [s.attrs.type, s.attrs.host, s.attrs.port, s.attrs.transport]), [
    ['stun', 'stun.example.net', '3478', 'udp'], ['turn', 'turn.example.net', '3478', 'udp'], ['turns', 'turn.example.net', '5349', 'tcp'],
  ]);
  t.equal(all[0]!.attrs.username, undefined, 'STUN needs no credentials');
  t.equal(all[1]!.attrs.name, 'Relay');
  for (const turn of all.slice(1)) {
    const { username, password, expires } = turn.attrs;
    const [stamp, user] = username!.split(':');
    t.equal(user, 'alice@localhost', 'the username names the user');
    const expiry = Number(stamp);
    t.ok(expiry >= before + 7200 && expiry <= Math.ceil(Date.now() / 1000) + 7200, 'it expires after credentials_lifetime');
    t.equal(expires, new Date(expiry * 1000).toISOString().replace(/\.\d{3}Z$/, 'Z'), 'expires says the same');
    t.equal(password, createHmac('sha1', SECRET).update(username!).digest('base64'), 'HMAC-SHA1 of the username with the secret');
  }

  const stun = await iq(c, `<services xmlns='${NS}' type='stun'/>`);
  t.equal(stun.getChild('services', NS)!.attrs.type, 'stun');
  t.same(listed(stun).map((s) => s.attrs.host), ['stun.example.net'], 'filtered by type');
  t.equal(condition(await iq(c, `<services xmlns='${NS}' type='ftp'/>`)), 'bad-request', 'unknown type');

  const creds = await iq(c, `<credentials xmlns='${NS}'><service type='turns' host='turn.example.net'/></credentials>`);
  const one = listed(creds, 'credentials');
  t.same(one.map((s) => [s.attrs.type, s.attrs.port]), [['turns', '5349']], 'credentials for the named service');
  t.ok(one[0]!.attrs.password, 'with a password');
  t.equal(condition(await iq(c, `<credentials xmlns='${NS}'><service type='turn' host='other.example.net'/></credentials>`)), 'item-not-found');
  t.equal(condition(await iq(c, `<credentials xmlns='${NS}'/>`)), 'bad-request', 'no service named');
  c.end();
});

t.test('without a secret, TURN services are listed without credentials; other hosts\' users get nothing', async (t) => {
  const c = await RawClient.login(plain.c2sPort, 'alice', 'pw', { resource: 'r' });
  const all = listed(await iq(c, `<services xmlns='${NS}' type='turn'/>`));
  t.equal(all.length, 1);
  t.equal(all[0]!.attrs.username, undefined);
  t.equal(all[0]!.attrs.password, undefined);
  c.end();
  // A user of another host of the same server asks localhost: its relays are for its own users.
  const xena = await RawClient.login(plain.c2sPort, 'xena', 'pw', { resource: 'r', host: 'example.test' });
  t.equal(condition(await iq(xena, `<services xmlns='${NS}'/>`)), 'forbidden');
  t.equal(condition(await iq(xena, `<credentials xmlns='${NS}'><service type='turn' host='turn.example.net'/></credentials>`)), 'forbidden');
  xena.end();
});
