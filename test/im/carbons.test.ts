// XEP-0280 Message Carbons between real sessions: enabling, received and sent copies with their
// exact wrapping, and the messages that must not be copied.
//
// "Nothing arrives" is checked without sleeping: after the stanza under test, a marker stanza
// is sent over the same path; sessions handle stanzas in order, so if the first had produced a
// copy it would arrive before the marker's.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import type { Element } from 'ltx';
import { parse } from 'ltx';
import t from 'tap';
import { RawClient } from '../helpers/raw-client.js';
import { startTestServer } from '../helpers/server.js';

const NS_CARBONS = 'urn:xmpp:carbons:2';
const NS_FORWARD = 'urn:xmpp:forward:0';

const srv = await startTestServer({ modules: '  disco: {}\n  carbons: {}' });
t.teardown(() => srv.close());

let users = 0;
/** A fresh account per test, so sessions of one test never meet those of another. */
async function user(): Promise<string> {
  const name = `u${++users}`;
  await srv.register(name, 'pw');
  return name;
}

let ids = 0;
async function login(name: string, resource: string, o: { priority?: number; carbons?: boolean } = {}): Promise<RawClient> {
  const presence = o.priority === undefined ? '<presence/>' : `<presence><priority>${o.priority}</priority></presence>`;
  const c = await RawClient.login(srv.c2sPort, name, 'pw', { resource, presence });
  if (o.carbons !== false) await iq(c, `<iq type='set' id='ID'><enable xmlns='${NS_CARBONS}'/></iq>`, 'result');
  return c;
}

/** Sends an IQ (ID is replaced by a fresh id) and returns the answer, checking its type. */
async function iq(c: RawClient, text: string, type?: string): Promise<Element> {
  const id = `iq${++ids}`;
  c.send(text.replace("id='ID'", `id='${id}'`));
  const answer = await c.nextNamed('iq', id);
  if (type && answer.attrs.type !== type) throw new Error(`expected ${type}: ${answer.toString()}`);
  return answer;
}

function carbon(el: Element): { dir: string; inner: Element } | undefined {
  const wrapper = el.getChildElements().find((c) => c.attrs.xmlns === NS_CARBONS);
  const inner = wrapper?.getChild('forwarded', NS_FORWARD)?.getChild('message');
  return wrapper && inner ? { dir: wrapper.name, inner } : undefined;
}

const isMessage = (el: Element) => el.name === 'message';
const nextMessage = (c: RawClient) => c.next(isMessage);
/** The message a carbon carries, checking the carbon's direction. */
async function nextCarbon(c: RawClient, dir: 'sent' | 'received'): Promise<Element> {
  const el = await nextMessage(c);
  const cc = carbon(el);
  if (!cc) throw new Error(`expected a ${dir} carbon, got ${el.toString()}`);
  if (cc.dir !== dir) throw new Error(`expected a ${dir} carbon, got ${cc.dir}`);
  return cc.inner;
}

function end(...clients: RawClient[]): void {
  for (const c of clients) c.end();
}

t.test('the domain advertises carbons', async (t) => {
  const a = await user();
  const c = await login(a, 'r', { carbons: false });
  const info = await iq(c, "<iq type='get' id='ID' to='localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>", 'result');
  const features = info.getChild('query')!.getChildren('feature').map((f) => f.attrs.var);
  t.ok(features.includes(NS_CARBONS));
  t.ok(features.includes('urn:xmpp:carbons:rules:0'), 'the XEP-0280 1.0 eligibility rules');
  end(c);
});

t.test('enable and disable answers', async (t) => {
  const a = await user();
  const b = await user();
  const c = await login(a, 'r', { carbons: false });
  const other = await login(b, 'r', { carbons: false });
  for (const what of ['enable', 'enable', 'disable', 'disable', 'enable']) {
    const r = await iq(c, `<iq type='set' id='ID'><${what} xmlns='${NS_CARBONS}'/></iq>`);
    t.equal(r.attrs.type, 'result', `${what}: repeated requests are not errors`);
    t.equal(r.attrs.from, `${a}@localhost`, 'answered from the bare JID');
    t.equal(r.attrs.to, `${a}@localhost/r`);
    t.equal(r.children.length, 0, 'empty result');
  }
  const own = await iq(c, `<iq type='set' id='ID' to='${a}@localhost'><disable xmlns='${NS_CARBONS}'/></iq>`);
  t.equal(own.attrs.type, 'result', 'addressed to the own bare JID');
  const get = await iq(c, `<iq type='get' id='ID'><enable xmlns='${NS_CARBONS}'/></iq>`);
  t.equal(get.attrs.type, 'error', 'get is not a way to enable');
  const foreign = await iq(other, `<iq type='set' id='ID' to='${a}@localhost'><enable xmlns='${NS_CARBONS}'/></iq>`);
  t.equal(foreign.attrs.type, 'error', "another user cannot switch someone's carbons");
  t.ok(foreign.getChild('error')?.getChild('not-allowed'), 'not-allowed');
  t.equal(foreign.getChild('error')?.attrs.type, 'cancel');
  end(c, other);
});

t.test('received copies: to a full JID, with the exact wrapping', async (t) => {
  const a = await user();
  const b = await user();
  const ra = await login(a, 'a');
  const rb = await login(a, 'b');
  const bob = await login(b, 'x', { carbons: false });
  bob.send(`<message to='${a}@localhost/a' type='chat' id='m1'><body>hello &amp; welcome</body><thread>t1</thread></message>`);
  const orig = await nextMessage(ra);
  t.notOk(carbon(orig), 'the addressed resource gets the original');
  t.equal(orig.getChildText('body'), 'hello & welcome');

  const cc = await nextMessage(rb);
  t.equal(cc.attrs.from, `${a}@localhost`, 'wrapper from the bare JID');
  t.equal(cc.attrs.to, `${a}@localhost/b`, 'wrapper to the full JID of the copy');
  t.equal(cc.attrs.type, 'chat', 'wrapper keeps the type');
  const kids = cc.getChildElements();
  t.equal(kids.length, 1, 'one child');
  t.equal(kids[0]!.name, 'received');
  t.equal(kids[0]!.attrs.xmlns, NS_CARBONS);
  const fwd = kids[0]!.getChildElements();
  t.equal(fwd.length, 1);
  t.equal(fwd[0]!.name, 'forwarded');
  t.equal(fwd[0]!.attrs.xmlns, NS_FORWARD);
  const inner = fwd[0]!.getChildElements();
  t.equal(inner.length, 1);
  const m = inner[0]!;
  t.equal(m.name, 'message');
  t.equal(m.attrs.xmlns, 'jabber:client', 'the forwarded message names its namespace');
  t.equal(m.attrs.from, `${b}@localhost/x`);
  t.equal(m.attrs.to, `${a}@localhost/a`);
  t.equal(m.attrs.type, 'chat');
  t.equal(m.attrs.id, 'm1');
  t.equal(m.getChildText('body'), 'hello & welcome');
  t.equal(m.getChildText('thread'), 't1');

  // The addressed resource gets no copy: the next thing it sees is the copy of the next message.
  bob.send(`<message to='${a}@localhost/b' type='chat' id='m2'><body>second</body></message>`);
  t.equal((await nextMessage(rb)).attrs.id, 'm2', 'original to b');
  t.equal((await nextCarbon(ra, 'received')).attrs.id, 'm2', 'a got no copy of m1, only of m2');
  end(ra, rb, bob);
});

t.test('received copies: to the bare JID, copies for the resources the router skipped', async (t) => {
  const a = await user();
  const b = await user();
  const high = await login(a, 'high', { priority: 5 });
  const low = await login(a, 'low', { priority: 1 });
  const plain = await login(a, 'plain', { priority: 0, carbons: false });
  const bob = await login(b, 'x', { carbons: false });
  bob.send(`<message to='${a}@localhost' type='chat' id='b1'><body>to bare</body></message>`);
  const orig = await nextMessage(high);
  t.notOk(carbon(orig));
  t.equal(orig.attrs.id, 'b1');
  const copy = await nextCarbon(low, 'received');
  t.equal(copy.attrs.id, 'b1');
  t.equal(copy.attrs.to, `${a}@localhost`, 'the original as addressed');
  // Without carbons enabled, nothing: the marker is the first thing to arrive.
  bob.send(`<message to='${a}@localhost/plain' type='chat' id='b2'><body>marker</body></message>`);
  const first = await nextMessage(plain);
  t.equal(first.attrs.id, 'b2', 'a resource without carbons gets no copies');
  t.notOk(carbon(first));
  end(high, low, plain, bob);
});

t.test('received copies when no resource takes the message', async (t) => {
  const a = await user();
  const b = await user();
  const neg = await login(a, 'neg', { priority: -1 });
  const bob = await login(b, 'x', { carbons: false });
  bob.send(`<message to='${a}@localhost' type='chat' id='n1'><body>anyone?</body></message>`);
  const copy = await nextCarbon(neg, 'received');
  t.equal(copy.attrs.id, 'n1', 'a negative-priority resource did not receive it, so it gets the copy');
  const err = await bob.nextNamed('message', 'n1');
  t.equal(err.attrs.type, 'error', 'routing itself is unchanged (no offline storage here)');
  end(neg, bob);
});

t.test('sent copies', async (t) => {
  const a = await user();
  const b = await user();
  const ra = await login(a, 'a');
  const rb = await login(a, 'b');
  const rc = await login(a, 'c', { carbons: false });
  const bob = await login(b, 'x', { carbons: false });
  ra.send(`<message to='${b}@localhost' type='chat' id='s1'><body>from a</body></message>`);
  t.equal((await nextMessage(bob)).attrs.id, 's1', 'the contact gets the original');
  const cc = await nextMessage(rb);
  t.equal(cc.attrs.from, `${a}@localhost`);
  t.equal(cc.attrs.to, `${a}@localhost/b`);
  t.equal(cc.attrs.type, 'chat');
  const sent = cc.getChild('sent', NS_CARBONS);
  t.ok(sent, 'wrapped in sent');
  const m = sent!.getChild('forwarded', NS_FORWARD)!.getChild('message')!;
  t.equal(m.attrs.xmlns, 'jabber:client');
  t.equal(m.attrs.from, `${a}@localhost/a`, 'with the sender stamped');
  t.equal(m.attrs.to, `${b}@localhost`);
  t.equal(m.attrs.id, 's1');
  t.equal(m.getChildText('body'), 'from a');

  // The sender itself and a resource without carbons get nothing. The marker: c (without
  // carbons itself) sends; the others get sent copies of that one first.
  rc.send(`<message to='${b}@localhost' type='chat' id='s2'><body>from c</body></message>`);
  t.equal((await nextCarbon(ra, 'sent')).attrs.id, 's2', 'a got no copy of its own s1');
  t.equal((await nextCarbon(rb, 'sent')).attrs.id, 's2', 'copied even though c has carbons off');
  bob.send(`<message to='${a}@localhost/c' type='chat' id='s3'><body>marker</body></message>`);
  const first = await nextMessage(rc);
  t.equal(first.attrs.id, 's3', 'c got no copy of s1 (carbons off) and none of its own s2');
  end(ra, rb, rc, bob);
});

t.test('private and no-copy are not copied; private is removed on delivery', async (t) => {
  const a = await user();
  const b = await user();
  const ra = await login(a, 'a');
  const rb = await login(a, 'b');
  const bx = await login(b, 'x');
  const by = await login(b, 'y');
  ra.send(`<message to='${b}@localhost/x' type='chat' id='p1'><body>secret</body><private xmlns='${NS_CARBONS}'/></message>`);
  const got = await nextMessage(bx);
  t.equal(got.attrs.id, 'p1');
  t.notOk(got.getChild('private', NS_CARBONS), 'the receiving server removes <private/>');
  t.equal(got.getChildText('body'), 'secret');
  ra.send(`<message to='${b}@localhost/x' type='chat' id='p2'><body>hint</body><no-copy xmlns='urn:xmpp:hints'/></message>`);
  const hinted = await nextMessage(bx);
  t.equal(hinted.attrs.id, 'p2');
  t.ok(hinted.getChild('no-copy', 'urn:xmpp:hints'), 'the hint is left for the recipient');
  ra.send(`<message to='${b}@localhost/x' type='chat' id='p3'><body>public</body></message>`);
  t.equal((await nextMessage(bx)).attrs.id, 'p3');
  t.equal((await nextCarbon(rb, 'sent')).attrs.id, 'p3', 'no sent copies of p1 or p2');
  t.equal((await nextCarbon(by, 'received')).attrs.id, 'p3', 'no received copies of p1 or p2');
  end(ra, rb, bx, by);
});

t.test('errors, groupchat, headlines and forged carbons are not copied', async (t) => {
  const a = await user();
  const b = await user();
  const ra = await login(a, 'a');
  const rb = await login(a, 'b');
  const bob = await login(b, 'x');
  const toA = (id: string, extra: string) => `<message to='${a}@localhost/a' id='${id}' ${extra}</message>`;
  bob.send(toA('e1', `type='error'><body>x</body><error type='cancel'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error>`));
  bob.send(toA('e2', `type='groupchat'><body>room talk</body>`));
  bob.send(toA('e3', `type='headline'><body>news</body>`));
  bob.send(toA('e4', `type='chat'><received xmlns='${NS_CARBONS}'><forwarded xmlns='${NS_FORWARD}'><message xmlns='jabber:client' from='${a}@localhost/z' to='${b}@localhost' type='chat'><body>forged</body></message></forwarded></received>`));
  bob.send(toA('e5', `type='chat'><body>marker</body>`));
  for (const id of ['e1', 'e2', 'e3', 'e4', 'e5']) t.equal((await nextMessage(ra)).attrs.id, id, `a gets ${id}`);
  t.equal((await nextCarbon(rb, 'received')).attrs.id, 'e5', 'b gets a copy of the marker only');

  // The same from the user's side: errors and groupchat sent by a are not copied either.
  ra.send(`<message to='${b}@localhost/x' type='error' id='o1'><error type='cancel'><service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>`);
  ra.send(`<message to='${b}@localhost/x' type='groupchat' id='o2'><body>x</body></message>`);
  ra.send(`<message to='${b}@localhost/x' type='chat' id='o3'><body>marker</body></message>`);
  const sent = await nextCarbon(rb, 'sent');
  t.equal(sent.attrs.id, 'o3', 'b gets a sent copy of the marker only');
  end(ra, rb, bob);
});

t.test('normal messages: with a body or an IM payload', async (t) => {
  const a = await user();
  const b = await user();
  const ra = await login(a, 'a');
  const rb = await login(a, 'b');
  const bob = await login(b, 'x', { carbons: false });
  const send = (id: string, payload: string, type = '') =>
    bob.send(`<message to='${a}@localhost/a' id='${id}'${type}>${payload}</message>`);
  send('n1', '<body>normal with a body</body>');
  send('n2', "<x xmlns='urn:example:unknown'/>");
  send('n3', "<received xmlns='urn:xmpp:receipts' id='n1'/>");
  send('n4', "<displayed xmlns='urn:xmpp:chat-markers:0' id='n1'/>");
  send('n5', "<composing xmlns='http://jabber.org/protocol/chatstates'/>", " type='chat'");
  send('n6', "<x xmlns='jabber:x:conference' jid='room@conference.localhost'/>");
  const copied: string[] = [];
  for (let i = 0; i < 5; i++) copied.push((await nextCarbon(rb, 'received')).attrs.id!);
  t.same(copied, ['n1', 'n3', 'n4', 'n5', 'n6'], 'a bodiless normal message with an unknown payload is not copied');
  end(ra, rb, bob);
});

t.test('disabling stops the copies', async (t) => {
  const a = await user();
  const b = await user();
  const ra = await login(a, 'a');
  const rb = await login(a, 'b');
  const bob = await login(b, 'x', { carbons: false });
  bob.send(`<message to='${a}@localhost/a' type='chat' id='d1'><body>one</body></message>`);
  t.equal((await nextCarbon(rb, 'received')).attrs.id, 'd1');
  await iq(rb, `<iq type='set' id='ID'><disable xmlns='${NS_CARBONS}'/></iq>`, 'result');
  bob.send(`<message to='${a}@localhost/a' type='chat' id='d2'><body>two</body></message>`);
  ra.send(`<message to='${b}@localhost/x' type='chat' id='d3'><body>three</body></message>`);
  t.equal((await nextMessage(bob)).attrs.id, 'd3');
  bob.send(`<message to='${a}@localhost/b' type='chat' id='d4'><body>marker</body></message>`);
  const first = await nextMessage(rb);
  t.equal(first.attrs.id, 'd4', 'no received copy of d2, no sent copy of d3');
  t.notOk(carbon(first));
  end(ra, rb, bob);
});

t.test('MUC: private messages from occupants are not copied, the user\'s own and invitations are', async (t) => {
  const a = await user();
  const ra = await login(a, 'a', { priority: 1 });
  const rb = await login(a, 'b');
  const room = 'room@conference.example.net';
  // Stanzas from a MUC service, injected as the server would route them from s2s.
  await srv.server.route(parse(`<message from='${room}/nick' to='${a}@localhost/a' type='chat' id='m1'><body>pm</body><x xmlns='http://jabber.org/protocol/muc#user'/></message>`));
  await srv.server.route(parse(`<message from='${room}' to='${a}@localhost' id='m2'><x xmlns='http://jabber.org/protocol/muc#user'><invite from='someone@example.net'/></x></message>`));
  t.equal((await nextMessage(ra)).attrs.id, 'm1');
  t.equal((await nextMessage(ra)).attrs.id, 'm2', 'the invitation to the bare JID reaches the top resource');
  // b gets a copy of the invitation, and before it nothing: no copy of the occupant's PM.
  t.equal((await nextCarbon(rb, 'received')).attrs.id, 'm2');
  // The user's own private message to an occupant is copied (the original bounces: no s2s here).
  ra.send(`<message to='${room}/nick' type='chat' id='m3'><body>reply</body><x xmlns='http://jabber.org/protocol/muc#user'/></message>`);
  const sent = await nextCarbon(rb, 'sent');
  t.equal(sent.attrs.id, 'm3');
  t.ok(sent.getChild('x', 'http://jabber.org/protocol/muc#user'));
  end(ra, rb);
});

// A real client library: slixmpp's XEP-0280 plugin accepts the copies (it checks that they come
// from the account's bare JID) and finds the forwarded message in them.
const SLIX_CARBONS = `
import asyncio, ssl, sys, slixmpp
port, jid, password = sys.argv[1:4]
class Client(slixmpp.ClientXMPP):
    def __init__(self):
        super().__init__(jid, password)
        self.ssl_context.check_hostname = False
        self.ssl_context.verify_mode = ssl.CERT_NONE
        for p in ('xep_0030', 'xep_0297', 'xep_0280'):
            self.register_plugin(p)
        self.seen = set()
        self.add_event_handler('session_start', self.start)
        self.add_event_handler('carbon_received', lambda m: self.got('RECEIVED', m['carbon_received']))
        self.add_event_handler('carbon_sent', lambda m: self.got('SENT', m['carbon_sent']))
    async def start(self, _event):
        self.send_presence()
        await self['xep_0280'].enable()
        print('READY', flush=True)
    def got(self, kind, inner):
        print(kind, inner['from'], inner['to'], inner['body'], flush=True)
        self.seen.add(kind)
        if len(self.seen) == 2:
            self.disconnect()
client = Client()
client.connect(('127.0.0.1', int(port)), force_starttls=True)
try:
    asyncio.get_event_loop().run_until_complete(asyncio.wait_for(client.disconnected, 20))
except asyncio.TimeoutError:
    print('TIMEOUT', flush=True)
    sys.exit(1)
`;

t.test('slixmpp understands the copies', async (t) => {
  const python = existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';
  const a = await user();
  const b = await user();
  const ra = await login(a, 'a', { carbons: false });
  const bob = await login(b, 'x', { carbons: false });
  const child = spawn(python, ['-c', SLIX_CARBONS, String(srv.c2sPort), `${a}@localhost/slix`, 'pw']);
  let out = '';
  let onOutput = (): void => undefined;
  child.stdout.on('data', (d: Buffer) => {
    out += d.toString();
    onOutput();
  });
  child.stderr.on('data', (d: Buffer) => {
    out += d.toString();
  });
  const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
  const killer = setTimeout(() => child.kill(), 25_000);
  t.teardown(() => clearTimeout(killer));
  await new Promise<void>((resolve, reject) => {
    onOutput = () => {
      if (out.includes('READY')) resolve();
    };
    void exited.then(() => reject(new Error(`slixmpp ended early: ${out}`)));
  });
  bob.send(`<message to='${a}@localhost/a' type='chat'><body>to a</body></message>`);
  ra.send(`<message to='${b}@localhost/x' type='chat'><body>from a</body></message>`);
  t.equal(await exited, 0, out);
  t.match(out, `RECEIVED ${b}@localhost/x ${a}@localhost/a to a`);
  t.match(out, `SENT ${a}@localhost/a ${b}@localhost/x from a`);
  end(ra, bob);
});
