// XEP-0124/0206 BOSH, black-box: a small raw BOSH client against a real server, chatting with a
// TCP user (RawClient).
import t from 'tap';
import { parse, type Element } from 'ltx';
import { RawClient } from '../helpers/raw-client.js';
import { startTestServer } from '../helpers/server.js';

const srv = await startTestServer({
  modules: '  disco: {}\n  roster: {}\n  presence: {}\n  bosh: { max_wait: 2s, inactivity: 600ms, polling: 1s }',
});
t.teardown(() => srv.close());
await srv.register('alice', 'pw');
await srv.register('bob', 'pw');
const endpoint = `http://127.0.0.1:${srv.httpPort}/http-bind`;
const NS = 'http://jabber.org/protocol/httpbind';

async function post(xml: string): Promise<Element> {
  const res = await fetch(endpoint, { method: 'POST', body: xml, headers: { 'Content-Type': 'text/xml; charset=utf-8' } });
  if (res.status !== 200) throw new Error(`HTTP ${res.status}`);
  t.equal(res.headers.get('access-control-allow-origin'), '*', 'CORS on every response');
  return parse(await res.text()) as Element;
}

/** A child by its qualified name (ltx's getChild compares local names only). */
function child(body: Element, name: string): Element | undefined {
  return body.children.find((c): c is Element => typeof c !== 'string' && c.name === name);
}

/** A raw BOSH client: counts rids, keeps the sid. */
class Bosh {
  rid = 1_000_000 + Math.floor(Math.random() * 1000);
  sid = '';

  async create(extra = "wait='2' hold='1'"): Promise<Element> {
    const body = await post(`<body xmlns='${NS}' xmlns:xmpp='urn:xmpp:xbosh' xmpp:version='1.0' rid='${this.rid++}' to='localhost' ${extra} ver='1.11' xml:lang='en'/>`);
    this.sid = body.attrs.sid ?? '';
    return body;
  }

  send(payload = '', attrs = '', rid = this.rid++): Promise<Element> {
    return post(`<body xmlns='${NS}' sid='${this.sid}' rid='${rid}' ${attrs}>${payload}</body>`);
  }

  /** Requests until one carries a child matching pred (long polling). */
  async until(pred: (el: Element) => boolean, first?: Promise<Element>): Promise<Element> {
    let pending = first ?? this.send();
    for (let i = 0; i < 10; i++) {
      const body = await pending;
      const hit = body.children.find((c): c is Element => typeof c !== 'string' && pred(c));
      if (hit) return hit;
      if (body.attrs.type === 'terminate') throw new Error(`terminated: ${body.attrs.condition ?? ''}`);
      pending = this.send();
    }
    throw new Error('not received');
  }

  async login(user: string, resource: string): Promise<void> {
    const created = await this.create();
    const features = child(created, 'stream:features') ?? (await this.until((e) => e.name === 'stream:features'));
    if (!features.getChild('mechanisms')) throw new Error('no mechanisms');
    const auth = Buffer.from(`\0${user}\0pw`).toString('base64');
    await this.until((e) => e.name === 'success', this.send(`<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>${auth}</auth>`));
    await this.until((e) => e.name === 'stream:features', this.send('', "xmpp:restart='true' xmlns:xmpp='urn:xmpp:xbosh'"));
    await this.until((e) => e.name === 'iq', this.send(`<iq xmlns='jabber:client' type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>${resource}</resource></bind></iq>`));
  }
}

t.test('session creation answers with the session attributes and the stream features', async (t) => {
  const c = new Bosh();
  const body = await c.create("wait='600' hold='3'");
  t.ok(body.attrs.sid, 'a sid');
  t.equal(body.attrs.wait, '2', "wait is capped by max_wait");
  t.equal(body.attrs.hold, '1', 'hold is capped by max_hold');
  t.equal(body.attrs.requests, '2', 'requests = hold + 1');
  t.equal(body.attrs.inactivity, '1');
  t.equal(body.attrs.polling, '1');
  t.equal(body.attrs['xmpp:version'], '1.0');
  t.equal(body.attrs.from, 'localhost');
  const features = child(body, 'stream:features') ?? (await c.until((e) => e.name === 'stream:features'));
  const mechs = features.getChild('mechanisms')?.getChildren('mechanism').map((m) => m.getText()) ?? [];
  t.ok(mechs.includes('PLAIN'), 'PLAIN offered: the loopback connection counts as secure');
  t.notOk(features.getChild('starttls'), 'no STARTTLS over BOSH');
  await c.send('', "type='terminate'");
});

t.test('log in over BOSH and chat with a TCP user; repeated rid; terminate', async (t) => {
  const bob = await RawClient.login(srv.c2sPort, 'bob', 'pw', { resource: 'tcp' });
  const alice = new Bosh();
  await alice.login('alice', 'web');
  await alice.send("<presence xmlns='jabber:client'/><message xmlns='jabber:client' to='bob@localhost/tcp' type='chat' id='b1'><body>hello over bosh</body></message>");
  const got = await bob.next((el) => el.name === 'message');
  t.equal(got.attrs.from, 'alice@localhost/web');
  t.equal(got.getChildText('body'), 'hello over bosh');

  // A long poll held open receives the reply as soon as it is routed.
  const pollRid = alice.rid;
  const poll = alice.until((e) => e.name === 'message' && e.getChildText('body') === 'hi from tcp');
  await new Promise((r) => setTimeout(r, 100));
  bob.send("<message to='alice@localhost/web' type='chat' id='t1'><body>hi from tcp</body></message>");
  const reply = await poll;
  t.equal(reply.attrs.from, 'bob@localhost/tcp');
  t.equal(reply.attrs.xmlns, 'jabber:client', 'stanzas in BOSH bodies carry their namespace');

  // The client lost a response: repeating the rid gives the same one again.
  const again = await alice.send('', '', alice.rid - 1);
  t.ok(alice.rid - 1 >= pollRid);
  t.equal(again.getChild('message')?.getChildText('body'), 'hi from tcp', 'the repeated rid gets the lost response');
  const again2 = await alice.send('', '', alice.rid - 1);
  t.equal(again2.toString(), again.toString(), 'the same response is resent');

  // Out of order: rid n+1 arrives first and waits for n.
  const n = alice.rid;
  alice.rid += 2;
  const later = alice.send("<message xmlns='jabber:client' to='bob@localhost/tcp' type='chat'><body>second</body></message>", '', n + 1);
  await new Promise((r) => setTimeout(r, 50));
  const earlier = alice.send("<message xmlns='jabber:client' to='bob@localhost/tcp' type='chat'><body>first</body></message>", '', n);
  const m1 = await bob.next((el) => el.name === 'message');
  const m2 = await bob.next((el) => el.name === 'message');
  t.same([m1.getChildText('body'), m2.getChildText('body')], ['first', 'second'], 'processed in rid order');
  await Promise.all([later, earlier]);

  const end = await alice.send("<presence xmlns='jabber:client' type='unavailable'/>", "type='terminate'");
  t.equal(end.attrs.type, 'terminate', 'terminate is answered with terminate');
  const gone = await alice.send();
  t.equal(gone.attrs.type, 'terminate');
  t.equal(gone.attrs.condition, 'item-not-found', 'the session is gone');
  for (let i = 0; i < 50 && srv.server.sessions.get('alice@localhost', 'web'); i++) await new Promise((r) => setTimeout(r, 20));
  t.notOk(srv.server.sessions.get('alice@localhost', 'web'), 'the client session ended with the BOSH session');
  bob.end();
});

t.test('bad requests: unknown sid, rid outside the window, not a body, unknown host', async (t) => {
  const unknown = await post(`<body xmlns='${NS}' sid='nope' rid='5'/>`);
  t.equal(unknown.attrs.condition, 'item-not-found');
  const notBody = await post("<iq xmlns='jabber:client'/>");
  t.equal(notBody.attrs.condition, 'bad-request');
  const host = await post(`<body xmlns='${NS}' xmlns:xmpp='urn:xmpp:xbosh' xmpp:version='1.0' rid='1' to='elsewhere.test' wait='2' hold='1'/>`);
  t.equal(host.attrs.condition, 'host-unknown');
  const c = new Bosh();
  await c.create();
  const far = await c.send('', '', c.rid + 10);
  t.equal(far.attrs.condition, 'item-not-found', 'a rid beyond the window ends the session');
  t.equal((await c.send()).attrs.condition, 'item-not-found');
});

t.test('a session without requests ends after the inactivity timeout', async (t) => {
  const c = new Bosh();
  const created = await c.create("wait='1' hold='1'");
  if (!child(created, 'stream:features')) await c.until((e) => e.name === 'stream:features');
  // Nothing is held after the creation response: past `inactivity` (600ms) the session is gone,
  // so the next in-window request, which a live session would hold, finds nothing.
  await new Promise((r) => setTimeout(r, 900));
  const condition = (await c.send()).attrs.condition;
  t.equal(condition, 'item-not-found', 'the session was ended');
});

t.test('CORS preflight', async (t) => {
  const res = await fetch(endpoint, {
    method: 'OPTIONS',
    headers: { Origin: 'https://web.example', 'Access-Control-Request-Method': 'POST', 'Access-Control-Request-Headers': 'content-type' },
  });
  t.equal(res.status, 204);
  t.equal(res.headers.get('access-control-allow-origin'), '*');
  t.match(res.headers.get('access-control-allow-methods') ?? '', /POST/);
  t.match(res.headers.get('access-control-allow-headers') ?? '', /Content-Type/i);
});
