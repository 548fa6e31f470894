// Stanzas through an external component: users reach its domain and it answers; it queries the
// server; its addresses are checked; it bounces while disconnected; its stanza rate is limited.
import t from 'tap';
import { RawClient } from '../helpers/raw-client.js';
import { startTestServer } from '../helpers/server.js';
import { connectComponent } from '../helpers/component-client.js';

const srv = await startTestServer({
  listen: ['  - port: 0', '    ip: 127.0.0.1', '    module: component'].join('\n'),
  yaml: [
    'components:',
    '  gw.test: { secret: gw-secret }',
    '  bot.test: { secret: bot-secret }',
    '  slow.test: { secret: slow-secret, stanza_rate: 20 }',
  ].join('\n'),
});
t.teardown(() => srv.close());
await srv.register('alice', 'pw');
const port = srv.ports('component')[0]!;

async function component(domain: string, secret: string) {
  const c = await connectComponent(port, domain, secret);
  if (c.answer !== 'handshake') throw new Error(`handshake for ${domain} failed: ${c.answer}`);
  return c.client;
}

t.test('a user messages a JID at the component and gets its answer', async (t) => {
  const gw = await component('gw.test', 'gw-secret');
  const alice = await RawClient.login(srv.c2sPort, 'alice', 'pw', { resource: 'phone' });
  alice.send("<message to='bob@gw.test' id='m1' type='chat'><body>hi bob &amp; co</body></message>");
  const got = await gw.nextNamed('message', 'm1');
  t.equal(got.attrs.from, 'alice@localhost/phone', 'from is the sender\'s full JID');
  t.equal(got.attrs.to, 'bob@gw.test');
  t.equal(got.getChildText('body'), 'hi bob & co');
  gw.send("<message from='bob@gw.test/irc' to='alice@localhost/phone' id='r1' type='chat'><body>hello alice</body></message>");
  const reply = await alice.nextNamed('message', 'r1');
  t.equal(reply.attrs.from, 'bob@gw.test/irc');
  t.equal(reply.getChildText('body'), 'hello alice');
  const stats = await srv.server.stats();
  t.match(stats, /component gw\.test\tconnected=yes\tin=[1-9]\d*\tout=[1-9]\d*/, 'counted in parleyctl stats');
  alice.end();
  gw.end();
  await gw.closed();
});

t.test('the component queries the server: disco#info on the host', async (t) => {
  const gw = await component('gw.test', 'gw-secret');
  gw.send("<iq type='get' id='d1' from='gw.test' to='localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>");
  const result = await gw.nextNamed('iq', 'd1');
  t.equal(result.attrs.type, 'result');
  t.equal(result.attrs.from, 'localhost');
  t.equal(result.attrs.to, 'gw.test');
  const query = result.getChild('query', 'http://jabber.org/protocol/disco#info');
  t.ok(query?.getChildren('identity').some((i) => i.attrs.category === 'server'), 'the server identity');
  gw.end();
  await gw.closed();
});

t.test('one component reaches another', async (t) => {
  const gw = await component('gw.test', 'gw-secret');
  const bot = await component('bot.test', 'bot-secret');
  gw.send("<message from='x@gw.test' to='helper@bot.test' id='c1'><body>ping</body></message>");
  const got = await bot.nextNamed('message', 'c1');
  t.equal(got.attrs.from, 'x@gw.test');
  gw.end();
  bot.end();
  await Promise.all([gw.closed(), bot.closed()]);
});

t.test('a spoofed from closes the stream with invalid-from', async (t) => {
  const gw = await component('gw.test', 'gw-secret');
  const alice = await RawClient.login(srv.c2sPort, 'alice', 'pw', { resource: 'spoof' });
  gw.send("<message from='admin@localhost' to='alice@localhost/spoof' id='s1'><body>trust me</body></message>");
  t.equal(await gw.streamError(), 'invalid-from');
  await gw.closed();
  await t.rejects(alice.nextNamed('message', 's1', 300), 'the spoofed message was not delivered');
  alice.end();
});

t.test('a stanza without from closes the stream with invalid-from', async (t) => {
  const gw = await component('gw.test', 'gw-secret');
  gw.send("<message to='alice@localhost'><body>who am I</body></message>");
  t.equal(await gw.streamError(), 'invalid-from');
  await gw.closed();
});

t.test('a stanza without to closes the stream with improper-addressing', async (t) => {
  const gw = await component('gw.test', 'gw-secret');
  gw.send("<message from='gw.test'><body>to nobody</body></message>");
  t.equal(await gw.streamError(), 'improper-addressing');
  await gw.closed();
});

t.test('a malformed to gets a jid-malformed error and the stream goes on', async (t) => {
  const gw = await component('gw.test', 'gw-secret');
  gw.send("<iq type='get' id='bad1' from='gw.test' to='a@b@c'><ping xmlns='urn:xmpp:ping'/></iq>");
  const err = await gw.nextNamed('iq', 'bad1');
  t.equal(err.attrs.type, 'error');
  t.ok(err.getChild('error')?.getChild('jid-malformed', 'urn:ietf:params:xml:ns:xmpp-stanzas'));
  gw.send("<iq type='get' id='ok1' from='gw.test' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>");
  t.equal((await gw.nextNamed('iq', 'ok1')).attrs.type, 'result', 'still connected');
  gw.end();
  await gw.closed();
});

t.test('a non-stanza element after the handshake gets unsupported-stanza-type', async (t) => {
  const gw = await component('gw.test', 'gw-secret');
  gw.send("<handshake>again</handshake>");
  t.equal(await gw.streamError(), 'unsupported-stanza-type');
  await gw.closed();
});

t.test('while the component is disconnected, messages to it bounce with service-unavailable', async (t) => {
  const gw = await component('gw.test', 'gw-secret');
  gw.end();
  await gw.closed();
  t.match(await srv.server.stats(), /component gw\.test\tconnected=no/);
  const alice = await RawClient.login(srv.c2sPort, 'alice', 'pw', { resource: 'b' });
  alice.send("<message to='bob@gw.test' id='gone1' type='chat'><body>anyone?</body></message>");
  const bounce = await alice.nextNamed('message', 'gone1');
  t.equal(bounce.attrs.type, 'error');
  t.equal(bounce.attrs.from, 'bob@gw.test');
  t.ok(bounce.getChild('error')?.getChild('service-unavailable', 'urn:ietf:params:xml:ns:xmpp-stanzas'));
  alice.send("<iq type='get' id='gone2' to='gw.test'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>");
  const iqBounce = await alice.nextNamed('iq', 'gone2');
  t.ok(iqBounce.getChild('error')?.getChild('service-unavailable', 'urn:ietf:params:xml:ns:xmpp-stanzas'));
  alice.end();
});

t.test('a component that sends faster than stanza_rate is read more slowly, and nothing is lost', async (t) => {
  const slow = await component('slow.test', 'slow-secret');
  const alice = await RawClient.login(srv.c2sPort, 'alice', 'pw', { resource: 'rate' });
  // Make sure alice is available before the burst, so every message goes to this resource.
  alice.send("<iq type='get' id='sync'><ping xmlns='urn:xmpp:ping'/></iq>");
  await alice.nextNamed('iq', 'sync');
  const total = 30;
  const started = Date.now();
  slow.send(Array.from({ length: total }, (_, i) =>
    `<message from='slow.test' to='alice@localhost/rate' id='n${i}' type='chat'><body>${i}</body></message>`).join(''));
  for (let i = 0; i < total; i++) await alice.nextNamed('message', `n${i}`);
  // 20 tokens to start with, then 20 a second: the last 10 need at least half a second. (A lower
  // bound only: a slow machine makes it longer, never shorter.)
  t.ok(Date.now() - started >= 400, `took ${Date.now() - started} ms`);
  alice.end();
  slow.end();
  await slow.closed();
});
