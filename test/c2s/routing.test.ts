// Routing rules of RFC 6120 §10 and RFC 6121 §8 between real sessions.
import t from 'tap';
import { RawClient } from '../helpers/raw-client.js';
import { startTestServer } from '../helpers/server.js';

const srv = await startTestServer({ hosts: ['localhost', 'example.test'] });
t.teardown(() => srv.close());
await srv.register('alice', 'pw');
await srv.register('bob', 'pw');
await srv.register('carol', 'pw', 'example.test');

/** Expects no element matching pred within a short time. */
async function nothing(c: RawClient, pred: (el: import('ltx').Element) => boolean = () => true, ms = 300): Promise<boolean> {
  try {
    await c.next(pred, ms);
    return false;
  } catch {
    return true;
  }
}

const body = (el: import('ltx').Element) => el.name === 'message' && el.getChildText('body') !== null;

t.test('message to a bare JID goes to the highest-priority available resources', async (t) => {
  const high = await RawClient.login(srv.c2sPort, 'bob', 'pw', { resource: 'high', presence: '<presence><priority>5</priority></presence>' });
  const low = await RawClient.login(srv.c2sPort, 'bob', 'pw', { resource: 'low', presence: '<presence><priority>1</priority></presence>' });
  const alice = await RawClient.login(srv.c2sPort, 'alice', 'pw', { resource: 'a' });
  await new Promise((r) => setTimeout(r, 100));
  alice.send("<message to='bob@localhost' type='chat' id='m1'><body>to bare</body></message>");
  const got = await high.next(body);
  t.equal(got.attrs.from, 'alice@localhost/a', 'from is stamped with the full JID');
  t.equal(got.getChildText('body'), 'to bare');
  t.ok(await nothing(low, body), 'the lower priority resource gets nothing');
  alice.send("<message to='bob@localhost/low' type='chat'><body>to full</body></message>");
  t.equal((await low.next(body)).getChildText('body'), 'to full');
  for (const c of [high, low, alice]) c.end();
});

t.test('negative priority and unavailable resources get no bare-JID messages; no resource -> error', async (t) => {
  const neg = await RawClient.login(srv.c2sPort, 'bob', 'pw', { resource: 'neg', presence: '<presence><priority>-1</priority></presence>' });
  const silent = await RawClient.login(srv.c2sPort, 'bob', 'pw', { resource: 'silent', presence: false });
  const alice = await RawClient.login(srv.c2sPort, 'alice', 'pw', { resource: 'a' });
  await new Promise((r) => setTimeout(r, 100));
  alice.send("<message to='bob@localhost' type='chat' id='m2'><body>anyone?</body></message>");
  const err = await alice.nextNamed('message', 'm2');
  t.equal(err.attrs.type, 'error');
  t.ok(err.getChild('error')?.getChild('service-unavailable'));
  t.ok(await nothing(neg, body), 'negative priority resource is skipped');
  t.ok(await nothing(silent, body), 'resource without presence is skipped');
  alice.send("<message to='bob@localhost/neg' type='chat'><body>direct</body></message>");
  t.equal((await neg.next(body)).getChildText('body'), 'direct', 'full JID still reaches it');
  for (const c of [neg, silent, alice]) c.end();
});

t.test('message to an unknown full JID falls back to the bare JID', async (t) => {
  const bob = await RawClient.login(srv.c2sPort, 'bob', 'pw', { resource: 'one' });
  const alice = await RawClient.login(srv.c2sPort, 'alice', 'pw', { resource: 'a' });
  await new Promise((r) => setTimeout(r, 100));
  alice.send("<message to='bob@localhost/gone' type='chat'><body>fallback</body></message>");
  t.equal((await bob.next(body)).getChildText('body'), 'fallback');
  alice.send("<iq to='bob@localhost/gone' type='get' id='q1'><ping xmlns='urn:xmpp:ping'/></iq>");
  const e = await alice.nextNamed('iq', 'q1');
  t.ok(e.getChild('error')?.getChild('service-unavailable'), 'iq to a missing resource');
  bob.end();
  alice.end();
});

t.test('unknown users', async (t) => {
  const alice = await RawClient.login(srv.c2sPort, 'alice', 'pw', { resource: 'a' });
  alice.send("<message to='nobody@localhost' id='u1'><body>hello?</body></message>");
  const e = await alice.nextNamed('message', 'u1');
  t.equal(e.attrs.type, 'error');
  t.equal(e.attrs.from, 'nobody@localhost');
  t.ok(e.getChild('error')?.getChild('service-unavailable'));
  t.equal(e.getChildText('body'), 'hello?', 'the original payload comes back');
  alice.send("<iq to='nobody@localhost' type='get' id='u2'><ping xmlns='urn:xmpp:ping'/></iq>");
  t.ok((await alice.nextNamed('iq', 'u2')).getChild('error')?.getChild('service-unavailable'));
  alice.send("<message to='nobody@localhost' type='error' id='u3'><body>x</body></message>");
  t.ok(await nothing(alice, (el) => el.attrs.id === 'u3'), 'errors are never answered with errors');
  alice.end();
});

t.test('iq handling: ping, version, time, disco, unhandled, malformed', async (t) => {
  const alice = await RawClient.login(srv.c2sPort, 'alice', 'pw', { resource: 'a' });
  alice.send("<iq to='localhost' type='get' id='i1'><ping xmlns='urn:xmpp:ping'/></iq>");
  const pong = await alice.nextNamed('iq', 'i1');
  t.equal(pong.attrs.type, 'result');
  t.equal(pong.attrs.from, 'localhost');
  alice.send("<iq to='localhost' type='get' id='i2'><query xmlns='jabber:iq:version'/></iq>");
  t.equal((await alice.nextNamed('iq', 'i2')).getChild('query')?.getChildText('name'), 'Parley');
  alice.send("<iq to='localhost' type='get' id='i3'><time xmlns='urn:xmpp:time'/></iq>");
  t.match((await alice.nextNamed('iq', 'i3')).getChild('time')?.getChildText('utc'), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
  alice.send("<iq to='localhost' type='get' id='i4'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>");
  const info = (await alice.nextNamed('iq', 'i4')).getChild('query')!;
  const features = info.getChildren('feature').map((f) => f.attrs.var);
  for (const f of ['urn:xmpp:ping', 'jabber:iq:version', 'urn:xmpp:time', 'http://jabber.org/protocol/disco#info']) t.ok(features.includes(f), f);
  t.equal(info.getChild('identity')?.attrs.category, 'server');
  alice.send("<iq to='localhost' type='get' id='i5'><query xmlns='urn:example:nothing'/></iq>");
  t.ok((await alice.nextNamed('iq', 'i5')).getChild('error')?.getChild('service-unavailable'), 'unhandled get');
  alice.send("<iq to='localhost' type='set' id='i6'><query xmlns='urn:example:nothing'/></iq>");
  t.ok((await alice.nextNamed('iq', 'i6')).getChild('error')?.getChild('service-unavailable'), 'unhandled set');
  alice.send("<iq to='localhost' type='get' id='i7'/>");
  t.ok((await alice.nextNamed('iq', 'i7')).getChild('error')?.getChild('bad-request'), 'iq without payload');
  alice.send("<iq type='get' id='i8'><ping xmlns='urn:xmpp:ping'/></iq>");
  t.equal((await alice.nextNamed('iq', 'i8')).attrs.type, 'result', 'no to: handled for the account');
  alice.send("<message to='a@b@c' id='i9'><body>x</body></message>");
  t.ok((await alice.nextNamed('message', 'i9')).getChild('error')?.getChild('jid-malformed'));
  alice.end();
});

t.test('two hosts: users of each reach each other', async (t) => {
  const alice = await RawClient.login(srv.c2sPort, 'alice', 'pw', { resource: 'a' });
  const carol = await RawClient.login(srv.c2sPort, 'carol', 'pw', { resource: 'c', host: 'example.test' });
  t.equal(carol.jid, 'carol@example.test/c');
  await new Promise((r) => setTimeout(r, 100));
  alice.send("<message to='carol@example.test' type='chat'><body>cross-host</body></message>");
  const got = await carol.next(body);
  t.equal(got.attrs.from, 'alice@localhost/a');
  carol.send("<iq to='example.test' type='get' id='h1'><ping xmlns='urn:xmpp:ping'/></iq>");
  t.equal((await carol.nextNamed('iq', 'h1')).attrs.from, 'example.test');
  await t.rejects(RawClient.login(srv.c2sPort, 'carol', 'pw', { host: 'localhost' }), 'accounts are per host');
  alice.end();
  carol.end();
});

t.test('spoofed from is a stream error', async (t) => {
  const alice = await RawClient.login(srv.c2sPort, 'alice', 'pw', { resource: 'a' });
  alice.send("<message from='bob@localhost/x' to='bob@localhost'><body>spoof</body></message>");
  t.equal(await alice.streamError(), 'invalid-from');
});

t.test('message escaping and unicode survive routing', async (t) => {
  const bob = await RawClient.login(srv.c2sPort, 'bob', 'pw', { resource: 'u' });
  const alice = await RawClient.login(srv.c2sPort, 'alice', 'pw', { resource: 'a' });
  await new Promise((r) => setTimeout(r, 100));
  const text = 'Grüße 👋🏽 日本語 <tag> & "quotes" \'apos\' ]]>';
  const esc = text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
  alice.send(`<message to='bob@localhost/u' type='chat'><body>${esc}</body><x xmlns='urn:example:ext' a='&lt;&amp;&quot;'/></message>`);
  const got = await bob.next(body);
  t.equal(got.getChildText('body'), text);
  t.equal(got.getChild('x', 'urn:example:ext')?.attrs.a, '<&"');
  bob.end();
  alice.end();
});

t.test('directed presence reaches available resources', async (t) => {
  const bob = await RawClient.login(srv.c2sPort, 'bob', 'pw', { resource: 'p' });
  const alice = await RawClient.login(srv.c2sPort, 'alice', 'pw', { resource: 'a' });
  await new Promise((r) => setTimeout(r, 100));
  alice.send("<presence to='bob@localhost'><status>hi</status></presence>");
  const p = await bob.next((el) => el.name === 'presence' && el.attrs.from === 'alice@localhost/a');
  t.equal(p.getChildText('status'), 'hi');
  bob.end();
  alice.end();
});
