// Parley-to-Parley federation between two in-process servers: messages, presence subscriptions
// and probes, iq, and a MUC join across servers. Both use their generated self-signed
// certificates, which neither trusts, so the streams authenticate with dialback.
import t from 'tap';
import { RawClient } from '../helpers/raw-client.js';
import { startPair } from '../helpers/s2s-pair.js';

const pair = await startPair();
t.teardown(() => pair.close());
const { a, b } = pair;
await a.register('alice', 'pw');
await b.register('bob', 'pw');

const login = (port: number, user: string, host: string, resource = 'r1') =>
  RawClient.login(port, user, 'pw', { host, resource, presence: false });

const alice = await login(a.c2sPort, 'alice', 'a.test');
const bob = await login(b.c2sPort, 'bob', 'b.test');
t.teardown(() => {
  alice.destroy();
  bob.destroy();
});

t.test('messages both ways', async (t) => {
  alice.send("<message to='bob@b.test/r1' type='chat' id='m1'><body>hello bob</body></message>");
  const got = await bob.next((el) => el.name === 'message' && el.attrs.id === 'm1');
  t.equal(got.attrs.from, 'alice@a.test/r1');
  t.equal(got.getChildText('body'), 'hello bob');
  bob.send("<message to='alice@a.test/r1' type='chat' id='m2'><body>hi alice</body></message>");
  const back = await alice.next((el) => el.name === 'message' && el.attrs.id === 'm2');
  t.equal(back.attrs.from, 'bob@b.test/r1');
  t.equal(back.getChildText('body'), 'hi alice');
  const stats = await a.server.stats();
  t.match(stats, /s2s out\ta\.test -> b\.test\tstate=ready\tauth=dialback/);
  t.match(stats, /s2s in\tb\.test\(dialback\) -> a\.test/);
});

t.test('an iq to a remote user and its answer', async (t) => {
  alice.send("<iq to='bob@b.test/r1' type='get' id='q1'><query xmlns='urn:example:q'/></iq>");
  const iq = await bob.next((el) => el.name === 'iq' && el.attrs.id === 'q1');
  t.equal(iq.attrs.from, 'alice@a.test/r1');
  bob.send("<iq to='alice@a.test/r1' type='result' id='q1'><query xmlns='urn:example:q'><x>42</x></query></iq>");
  const result = await alice.next((el) => el.name === 'iq' && el.attrs.id === 'q1');
  t.equal(result.attrs.type, 'result');
  t.equal(result.attrs.from, 'bob@b.test/r1');
  // A server-answered iq: the remote server's version of ping.
  alice.send("<iq to='b.test' type='get' id='p1'><ping xmlns='urn:xmpp:ping'/></iq>");
  const pong = await alice.next((el) => el.name === 'iq' && el.attrs.id === 'p1');
  t.equal(pong.attrs.type, 'result');
  t.equal(pong.attrs.from, 'b.test');
  // An error from the remote side comes back as it is.
  alice.send("<iq to='nobody@b.test' type='get' id='p2'><ping xmlns='urn:xmpp:ping'/></iq>");
  const error = await alice.next((el) => el.name === 'iq' && el.attrs.id === 'p2');
  t.equal(error.attrs.type, 'error');
  t.ok(error.getChild('error')?.getChild('service-unavailable'));
});

t.test('presence subscription both ways, presence, and probes after a new login', async (t) => {
  alice.send("<iq type='get' id='r0'><query xmlns='jabber:iq:roster'/></iq>");
  await alice.next((el) => el.attrs.id === 'r0');
  bob.send("<iq type='get' id='r0'><query xmlns='jabber:iq:roster'/></iq>");
  await bob.next((el) => el.attrs.id === 'r0');
  alice.send('<presence/>');
  bob.send('<presence/>');
  alice.send("<presence to='bob@b.test' type='subscribe'/>");
  const request = await bob.next((el) => el.name === 'presence' && el.attrs.type === 'subscribe');
  t.equal(request.attrs.from, 'alice@a.test');
  bob.send("<presence to='alice@a.test' type='subscribed'/>");
  const bobOnline = await alice.next((el) => el.name === 'presence' && el.attrs.from === 'bob@b.test/r1' && el.attrs.type === undefined);
  t.ok(bobOnline, 'alice sees bob available once he approved');
  bob.send("<presence to='alice@a.test' type='subscribe'/>");
  await alice.next((el) => el.name === 'presence' && el.attrs.type === 'subscribe' && el.attrs.from === 'bob@b.test');
  alice.send("<presence to='bob@b.test' type='subscribed'/>");
  await bob.next((el) => el.name === 'presence' && el.attrs.from === 'alice@a.test/r1' && el.attrs.type === undefined);

  // Alice logs in again: her server probes bob's, which answers with bob's presence.
  const alice2 = await login(a.c2sPort, 'alice', 'a.test', 'r2');
  t.teardown(() => alice2.destroy());
  alice2.send('<presence/>');
  const probed = await alice2.next((el) => el.name === 'presence' && el.attrs.from === 'bob@b.test/r1');
  t.equal(probed.attrs.type, undefined, 'bob is available to the new resource');
  const seen = await bob.next((el) => el.name === 'presence' && el.attrs.from === 'alice@a.test/r2');
  t.equal(seen.attrs.type, undefined, 'bob sees the new resource come online');
  alice2.send("<presence type='unavailable'/>");
  const gone = await bob.next((el) => el.name === 'presence' && el.attrs.from === 'alice@a.test/r2');
  t.equal(gone.attrs.type, 'unavailable');
});

t.test('a user of A joins a room on conference.b.test', async (t) => {
  // Bob creates the room (remote users may not create rooms by default) as an instant room.
  bob.send("<presence to='room@conference.b.test/bob'><x xmlns='http://jabber.org/protocol/muc'/></presence>");
  await bob.next((el) => el.name === 'presence' && el.attrs.from === 'room@conference.b.test/bob');
  bob.send("<iq type='set' to='room@conference.b.test' id='c1'><query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'/></query></iq>");
  const configured = await bob.next((el) => el.name === 'iq' && el.attrs.id === 'c1');
  t.equal(configured.attrs.type, 'result');
  alice.send("<presence to='room@conference.b.test/alice'><x xmlns='http://jabber.org/protocol/muc'/></presence>");
  const self = await alice.next((el) => el.name === 'presence' && el.attrs.from === 'room@conference.b.test/alice');
  t.not(self.attrs.type, 'error', String(self));
  const statuses = self.getChild('x', 'http://jabber.org/protocol/muc#user')?.getChildren('status').map((s) => s.attrs.code) ?? [];
  t.ok(statuses.includes('110'), 'self-presence');
  alice.send("<message to='room@conference.b.test' type='groupchat' id='g1'><body>hi room</body></message>");
  const echo = await alice.next((el) => el.name === 'message' && el.attrs.type === 'groupchat' && el.getChildText('body') === 'hi room');
  t.equal(echo.attrs.from, 'room@conference.b.test/alice');
  const atBob = await bob.next((el) => el.name === 'message' && el.attrs.type === 'groupchat' && el.getChildText('body') === 'hi room');
  t.equal(atBob.attrs.from, 'room@conference.b.test/alice', 'the local occupant gets the remote one\'s message');
});
