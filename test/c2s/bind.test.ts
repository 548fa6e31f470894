// Resource binding (RFC 6120 §7): chosen and generated resources, conflicts, legacy sessions.
import t from 'tap';
import { RawClient } from '../helpers/raw-client.js';
import { startTestServer } from '../helpers/server.js';

const srv = await startTestServer();
t.teardown(() => srv.close());
await srv.register('bob', 'pw');

t.test('server-generated resource', async (t) => {
  const c = await RawClient.login(srv.c2sPort, 'bob', 'pw', { presence: false });
  t.match(c.jid, /^bob@localhost\/[0-9a-f]{12}$/);
  c.end();
});

t.test('a second bind of the same full JID replaces the first with a conflict', async (t) => {
  const first = await RawClient.login(srv.c2sPort, 'bob', 'pw', { resource: 'phone' });
  const second = await RawClient.login(srv.c2sPort, 'bob', 'pw', { resource: 'phone' });
  t.equal(second.jid, 'bob@localhost/phone');
  t.equal(await first.streamError(), 'conflict');
  await first.closed();
  // The new session is the one that now receives.
  second.send("<iq type='get' id='p1' to='bob@localhost/phone'><ping xmlns='urn:xmpp:ping'/></iq>");
  const echoed = await second.nextNamed('iq', 'p1');
  t.equal(echoed.attrs.type, 'get', 'iq to own full JID reaches this session');
  second.end();
});

t.test('legacy session establishment is accepted', async (t) => {
  const c = await RawClient.login(srv.c2sPort, 'bob', 'pw', { presence: false });
  c.send("<iq type='set' id='s1'><session xmlns='urn:ietf:params:xml:ns:xmpp-session'/></iq>");
  const r = await c.nextNamed('iq', 's1');
  t.equal(r.attrs.type, 'result');
  c.end();
});

t.test('stanzas before bind get not-authorized', async (t) => {
  const c = await RawClient.connect(srv.c2sPort);
  await c.open();
  await c.starttls();
  await c.authPlain('bob', 'pw');
  c.send("<iq type='get' id='x1' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>");
  const r = await c.nextNamed('iq', 'x1');
  t.equal(r.attrs.type, 'error');
  t.ok(r.getChild('error')?.getChild('not-authorized'));
  c.send("<message to='bob@localhost'><body>x</body></message>");
  t.equal(await c.streamError(), 'not-authorized');
});

t.test('post-auth features offer bind and optional session', async (t) => {
  const c = await RawClient.connect(srv.c2sPort);
  await c.open();
  await c.starttls();
  const f = await c.authPlain('bob', 'pw');
  t.ok(f.getChild('bind', 'urn:ietf:params:xml:ns:xmpp-bind'));
  t.ok(f.getChild('session', 'urn:ietf:params:xml:ns:xmpp-session')?.getChild('optional'));
  t.notOk(f.getChild('mechanisms'));
  c.destroy();
});
