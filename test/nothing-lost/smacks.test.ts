// XEP-0198 Stream Management between real sessions, with a raw client that acknowledges exactly
// when the test says so: enabling, acks both ways, server-requested acks, resumption with the
// stanzas sent again, <failed/> for what cannot be resumed, and what happens to unacknowledged
// stanzas when a session ends for good (issue 6, items 1 and 4).
import type { Element } from 'ltx';
import t from 'tap';
import { definePlugin } from '../../lib/plugin/types.js';
import type { ClientSession } from '../../lib/session/types.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { NS_SM, SmClient, bodies, delayOf, hasBody } from '../fixtures/nl-client.js';

const NS_CSI = 'urn:xmpp:csi:0';
const NS_CARBONS = 'urn:xmpp:carbons:2';
const NS_STANZAS = 'urn:ietf:params:xml:ns:xmpp-stanzas';

/** Records what the c2s session reports about hibernation, and stands in for the push service. */
const hibernated: Array<{ session: ClientSession; stanza: Element }> = [];
const pushed: Array<{ user: string; stanza: Element; session: ClientSession | undefined }> = [];
const probe = definePlugin({
  name: 'nl_probe',
  setup(ctx) {
    ctx.hook('session/hibernated-stanza', (ev: { session: ClientSession; stanza: Element }) => {
      hibernated.push(ev);
    });
    ctx.provide('push', {
      notify: async (user: string, stanza: Element, session?: ClientSession) => {
        pushed.push({ user, stanza, session });
        return 1;
      },
    });
  },
});

const modules = (smacks: string) => [
  '  ping: {}',
  '  carbons: {}',
  '  csi: {}',
  '  offline: {}',
  '  nl_probe: {}',
  '  smacks:',
  smacks,
].join('\n');

const main = await startTestServer({
  plugins: [probe],
  modules: modules([
    '    resume_timeout: 2s',
    '    max_resume_timeout: 1h',
    '    request_every: 3',
    // Long enough that a request made at once is told apart from a delayed one on a loaded machine.
    '    request_delay: 1s',
    '    ack_timeout: 0',
    '    max_unacked: 10',
  ].join('\n')),
});
// A short resumption window and a short ack timeout.
const short = await startTestServer({
  plugins: [probe],
  modules: modules([
    '    resume_timeout: 400ms',
    '    max_resume_timeout: 400ms',
    '    request_every: 1',
    '    request_delay: 0',
    '    ack_timeout: 300ms',
  ].join('\n')),
});
t.teardown(async () => {
  await main.close();
  await short.close();
});

let users = 0;
async function user(srv: TestServer): Promise<string> {
  const name = `sm${++users}`;
  await srv.register(name, 'pw');
  return name;
}

/** Polls a condition of the server's state (no fixed sleeps). */
async function until(cond: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting until ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const sessionOf = (srv: TestServer, jid: string): ClientSession | undefined => {
  const [bare, resource] = [jid.split('/')[0]!, jid.split('/').slice(1).join('/')];
  return srv.server.sessions.get(bare, resource);
};

let ids = 0;
async function ping(c: SmClient): Promise<Element> {
  const id = `p${++ids}`;
  c.send(`<iq type='get' id='${id}' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>`);
  return c.nextNamed('iq', id);
}

const chat = (to: string, body: string, id = `m${++ids}`) =>
  `<message to='${to}' type='chat' id='${id}'><body>${body}</body></message>`;

const isSm = (name: string) => (el: Element) => el.name === name && el.attrs.xmlns === NS_SM;

t.test('the feature, and enabling once after binding', async (t) => {
  const name = await user(main);
  const c = await SmClient.connect(main.c2sPort);
  await c.open();
  const preAuth = await c.starttls();
  t.notOk(preAuth.getChild('sm', NS_SM), 'not offered before authentication');
  const postAuth = await c.auth(name, 'pw');
  t.ok(postAuth.getChild('sm', NS_SM), 'offered after authentication');
  const early = await c.enable();
  t.equal(early.name, 'failed', 'enable before binding fails');
  t.ok(early.getChild('unexpected-request', NS_STANZAS));
  await c.bind('r');
  const ok = await c.enable();
  t.equal(ok.name, 'enabled');
  t.equal(ok.attrs.id, undefined, 'no SM-ID without resume');
  t.equal(ok.attrs.resume, undefined);
  const again = await c.enable(true);
  t.equal(again.name, 'failed', 'a second enable fails');
  t.ok(again.getChild('unexpected-request', NS_STANZAS));
  t.equal((await ping(c)).attrs.type, 'result', 'the stream goes on');
  c.end();
});

t.test('resumable: the window is the server default or the client max within the limit', async (t) => {
  const name = await user(main);
  const plain = await SmClient.login(main.c2sPort, name, 'pw', { resource: 'a', sm: 'resume' });
  t.ok(plain.smId && plain.smId.length >= 16, 'an opaque SM-ID');
  t.same([plain.enabled?.attrs.resume, plain.enabled?.attrs.max], ['true', '2']);
  const asked = await SmClient.login(main.c2sPort, name, 'pw', { resource: 'b', sm: 'resume', max: 3600 });
  t.equal(asked.enabled?.attrs.max, '3600', 'a client may ask for an hour (Monal)');
  const greedy = await SmClient.login(main.c2sPort, name, 'pw', { resource: 'c', sm: 'resume', max: 86400 });
  t.equal(greedy.enabled?.attrs.max, '2', 'beyond max_resume_timeout: the default');
  t.not(plain.smId, asked.smId, 'every session has its own id');
  for (const c of [plain, asked, greedy]) c.end();
});

t.test('<r/> is answered with the number of stanzas handled', async (t) => {
  const name = await user(main);
  const c = await SmClient.login(main.c2sPort, name, 'pw', { sm: true, presence: false });
  t.equal(await c.request(), 0, 'nothing handled yet');
  await ping(c);
  await ping(c);
  t.equal(await c.request(), 2);
  // Pipelined: the answer still counts everything sent before it.
  c.send(`<iq type='get' id='x1' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq><presence/><r xmlns='${NS_SM}'/>`);
  const a = await c.next(isSm('a'));
  t.equal(a.attrs.h, '4');
  c.end();
});

t.test('the server asks for acks after request_every stanzas or request_delay', async (t) => {
  const a = await user(main);
  const b = await user(main);
  const alice = await SmClient.login(main.c2sPort, a, 'pw', { resource: 'a' });
  const bob = await SmClient.login(main.c2sPort, b, 'pw', { resource: 'b', sm: true });
  await ping(bob);
  alice.send(chat(`${b}@localhost/b`, 'one'));
  await bob.next(hasBody);
  // Two stanzas (the ping result and the message): fewer than 3, so the request waits 1 s.
  await bob.next(isSm('r'));
  const session = sessionOf(main, bob.jid)!;
  t.equal(session.stats().unacked, 2, 'ping result and message wait for the ack');
  bob.ack();
  await until(() => session.stats().unacked === 0, 'the ack is applied');
  for (const body of ['x', 'y', 'z']) alice.send(chat(`${b}@localhost/b`, body));
  await bob.messages(3);
  await bob.next(isSm('r'), 600);
  t.pass('three stanzas: asked at once, well before the delay');
  bob.ack();
  alice.end();
  bob.end();
});

t.test('an ack for more than was sent ends the stream with handled-count-too-high', async (t) => {
  const name = await user(main);
  const c = await SmClient.login(main.c2sPort, name, 'pw', { sm: true, presence: false });
  c.ack(5);
  const err = await c.streamErrorElement();
  t.ok(err.getChild('undefined-condition'));
  const detail = err.getChild('handled-count-too-high', NS_SM);
  t.same([detail?.attrs.h, detail?.attrs['send-count']], ['5', '0']);
  await c.closed();
});

t.test('resumption: same resource, state and presence; unacknowledged stanzas sent again', async (t) => {
  const a = await user(main);
  const b = await user(main);
  const alice = await SmClient.login(main.c2sPort, a, 'pw', { resource: 'a' });
  const bob = await SmClient.login(main.c2sPort, b, 'pw', { resource: 'phone', sm: 'resume', max: 60 });
  bob.send(`<iq type='set' id='c1'><enable xmlns='${NS_CARBONS}'/></iq>`);
  await bob.nextNamed('iq', 'c1');
  const before = sessionOf(main, bob.jid)!;
  alice.send(chat(`${b}@localhost`, 'first'));
  alice.send(chat(`${b}@localhost`, 'second'));
  t.same(bodies(await bob.messages(2)), ['first', 'second']);
  const bobH = bob.handled; // what bob has seen and will say it has
  bob.destroy();
  await until(() => before.hibernating, 'the server notices the lost connection');
  t.equal(sessionOf(main, `${b}@localhost/phone`), before, 'still registered while hibernating');
  t.ok(before.available, 'still available to contacts');
  const pushesBefore = pushed.length;
  alice.send(chat(`${b}@localhost`, 'while away'));
  await until(() => hibernated.some((h) => h.session === before && h.stanza.getChildText('body') === 'while away'),
    'the queued stanza is reported');
  await until(() => pushed.length > pushesBefore, 'the push service is asked');
  t.equal(pushed.at(-1)!.session, before, 'push is asked for that session');

  // bob got 'first' but lost its ack with the connection: it says it has one of the two.
  const { client: back, answer } = await SmClient.resumeLogin(main.c2sPort, b, 'pw', bob.smId!, bobH - 1);
  t.equal(answer.name, 'resumed');
  t.equal(answer.attrs.previd, bob.smId);
  t.equal(answer.attrs.h, '2', 'the server handled carbons enable and presence');
  const again = await back.messages(2);
  t.same(bodies(again), ['second', 'while away'], 'what h did not cover, in order');
  t.ok(again.every((m) => delayOf(m)?.attrs.from === 'localhost'), 'marked with when they were first sent');
  t.equal(sessionOf(main, `${b}@localhost/phone`), before, 'the same session, same resource');
  t.ok(before.available && !before.hibernating);

  // The carbons flag (session state) survived: a message sent by another resource is copied.
  const tablet = await SmClient.login(main.c2sPort, b, 'pw', { resource: 'tablet' });
  tablet.send(chat(`${a}@localhost`, 'from the tablet'));
  const carbon = await back.next((el) => el.name === 'message' && el.getChild('sent', NS_CARBONS) !== undefined);
  t.ok(carbon, 'carbons still enabled after resumption');
  // The stream counts on from the resumed values.
  back.ack();
  await until(() => before.stats().unacked === 0, 'acks on the resumed stream apply');
  t.equal(await back.request(), 2, 'nothing handled on the new stream yet');
  for (const c of [alice, back, tablet]) c.end();
});

t.test('resuming a session whose old connection still looks alive takes it over', async (t) => {
  const name = await user(main);
  const old = await SmClient.login(main.c2sPort, name, 'pw', { resource: 'r', sm: 'resume', max: 60 });
  await ping(old);
  const { client, answer } = await SmClient.resumeLogin(main.c2sPort, name, 'pw', old.smId!, old.handled);
  t.equal(answer.name, 'resumed');
  await old.closed();
  t.pass('the old connection is closed');
  t.equal((await ping(client)).attrs.type, 'result');
  client.end();
});

t.test('<failed/>: unknown, foreign, after binding, malformed', async (t) => {
  const owner = await user(main);
  const other = await user(main);
  const session = await SmClient.login(main.c2sPort, owner, 'pw', { resource: 'r', sm: 'resume', max: 60 });
  const unknown = await SmClient.resumeLogin(main.c2sPort, owner, 'pw', 'no-such-id', 0);
  t.equal(unknown.answer.name, 'failed');
  t.ok(unknown.answer.getChild('item-not-found', NS_STANZAS));
  t.equal(unknown.answer.attrs.h, undefined);
  await unknown.client.bind('fresh');
  t.pass('after a failed resume the client binds as usual');
  const foreign = await SmClient.resumeLogin(main.c2sPort, other, 'pw', session.smId!, 0);
  t.equal(foreign.answer.name, 'failed', "another account's session cannot be resumed");
  t.ok(foreign.answer.getChild('item-not-found', NS_STANZAS));
  t.equal((await ping(session)).attrs.type, 'result', 'and it stays with its owner');
  const bound = await SmClient.login(main.c2sPort, owner, 'pw', { resource: 'b', presence: false });
  const late = await bound.resume(session.smId!, 0);
  t.equal(late.name, 'failed');
  t.ok(late.getChild('unexpected-request', NS_STANZAS), 'resume after binding');
  const c = await SmClient.connect(main.c2sPort);
  await c.open();
  await c.starttls();
  await c.auth(owner, 'pw');
  c.send(`<resume xmlns='${NS_SM}' previd='${session.smId!}' h='-1'/>`);
  const bad = await c.next(isSm('failed'));
  t.ok(bad.getChild('bad-request', NS_STANZAS), 'an h that is not an unsignedInt');
  for (const x of [session, unknown.client, foreign.client, bound, c]) x.end();
});

t.test('after the window: <failed h/> with the last count, and the messages go offline', async (t) => {
  const a = await user(short);
  const b = await user(short);
  const alice = await SmClient.login(short.c2sPort, a, 'pw', { resource: 'a' });
  const bob = await SmClient.login(short.c2sPort, b, 'pw', { resource: 'b', sm: 'resume' });
  await ping(bob);
  alice.send(chat(`${b}@localhost`, 'kept for later'));
  await bob.messages(1);
  const session = sessionOf(short, bob.jid)!;
  bob.destroy();
  await until(() => session.hibernating, 'hibernating');
  await until(() => sessionOf(short, `${b}@localhost/b`) === undefined, 'the window ends', 10_000);
  const { client, answer } = await SmClient.resumeLogin(short.c2sPort, b, 'pw', bob.smId!, 1);
  t.equal(answer.name, 'failed');
  t.ok(answer.getChild('item-not-found', NS_STANZAS));
  t.equal(answer.attrs.h, '2', 'presence and ping were handled before the connection was lost');
  t.ok(await alice.nothing((el) => el.name === 'message' && el.attrs.type === 'error'), 'no error to the sender');
  await client.bind('b');
  client.send('<presence/>');
  const [back] = await client.messages(1);
  t.equal(back!.getChildText('body'), 'kept for later', 'delivered from the offline spool');
  t.ok(delayOf(back!), 'with a delay');
  alice.end();
  client.end();
});

t.test('an unanswered <r/> means a dead connection: hibernate, or close when not resumable', async (t) => {
  const a = await user(short);
  const b = await user(short);
  const alice = await SmClient.login(short.c2sPort, a, 'pw', { resource: 'a' });
  const bob = await SmClient.login(short.c2sPort, b, 'pw', { resource: 'b', sm: 'resume' });
  alice.send(chat(`${b}@localhost/b`, 'are you there'));
  await bob.messages(1);
  await bob.next(isSm('r'));
  const session = sessionOf(short, bob.jid)!;
  await bob.closed(10_000);
  t.ok(session.hibernating, 'the server dropped the connection and waits for resumption');
  const { client, answer } = await SmClient.resumeLogin(short.c2sPort, b, 'pw', bob.smId!, 0);
  t.equal(answer.name, 'resumed');
  t.equal(bodies(await client.messages(1))[0], 'are you there', 'sent again');
  client.ack();
  client.end();

  const carol = await SmClient.login(short.c2sPort, b, 'pw', { resource: 'c', sm: true });
  alice.send(chat(`${b}@localhost/c`, 'hello'));
  await carol.messages(1);
  await carol.next(isSm('r'));
  const err = await carol.streamErrorElement(10_000);
  t.ok(err.getChild('connection-timeout'), 'a session that cannot be resumed is closed');
  alice.end();
});

t.test('too many unacknowledged stanzas: resource-constraint, and nothing is lost', async (t) => {
  const a = await user(main);
  const b = await user(main);
  const alice = await SmClient.login(main.c2sPort, a, 'pw', { resource: 'a' });
  const bob = await SmClient.login(main.c2sPort, b, 'pw', { resource: 'b', sm: true });
  for (let i = 1; i <= 11; i++) alice.send(chat(`${b}@localhost`, `n${i}`));
  const err = await bob.streamErrorElement();
  t.ok(err.getChild('resource-constraint'), 'max_unacked is 10');
  t.ok(await alice.nothing((el) => el.name === 'message' && el.attrs.type === 'error'), 'the sender gets no error');
  // The spool sends at most half of max_unacked before waiting for acks: this client acks.
  const again = await SmClient.login(main.c2sPort, b, 'pw', { resource: 'b2', sm: true, autoAck: true });
  const got = await again.messages(11);
  t.same(bodies(got), Array.from({ length: 11 }, (_, i) => `n${i + 1}`), 'all of them, in order, from the spool');
  alice.end();
  again.end();
});

t.test('a session that ends unacknowledged hands its messages to another resource', async (t) => {
  const a = await user(main);
  const b = await user(main);
  const alice = await SmClient.login(main.c2sPort, a, 'pw', { resource: 'a' });
  const phone = await SmClient.login(main.c2sPort, b, 'pw', { resource: 'phone', sm: true, presence: '<presence><priority>5</priority></presence>' });
  const desktop = await SmClient.login(main.c2sPort, b, 'pw', { resource: 'desktop', presence: '<presence><priority>1</priority></presence>' });
  await ping(phone);
  await ping(desktop);
  alice.send(chat(`${b}@localhost`, 'to the phone'));
  t.equal(bodies(await phone.messages(1))[0], 'to the phone');
  t.ok(await desktop.nothing(hasBody, 200), 'the lower priority resource did not get it');
  phone.end();
  const [handed] = await desktop.messages(1);
  t.equal(handed!.getChildText('body'), 'to the phone', 'the desktop gets it when the phone leaves without acking');
  t.equal(delayOf(handed!)?.attrs.from, 'localhost');
  t.ok(await alice.nothing((el) => el.name === 'message' && el.attrs.type === 'error'), 'no error to the sender');
  alice.end();
  desktop.end();
});

t.test('a resumed stream starts active: what CSI held comes at once', async (t) => {
  const a = await user(main);
  const b = await user(main);
  const alice = await SmClient.login(main.c2sPort, a, 'pw', { resource: 'a' });
  const bob = await SmClient.login(main.c2sPort, b, 'pw', { resource: 'b', sm: 'resume', max: 60 });
  bob.send(`<inactive xmlns='${NS_CSI}'/>`);
  await ping(bob);
  const session = sessionOf(main, bob.jid)!;
  bob.destroy();
  await until(() => session.hibernating, 'hibernating');
  alice.send(`<message to='${b}@localhost/b' type='chat'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>`);
  await ping(alice);
  const { client, answer } = await SmClient.resumeLogin(main.c2sPort, b, 'pw', bob.smId!, bob.handled);
  t.equal(answer.name, 'resumed');
  const state = await client.next((el) => el.name === 'message' && el.getChild('composing') !== undefined, 5000);
  t.ok(state, 'the held chat state is written after <resumed/>');
  alice.end();
  client.end();
});

t.test('a new login on the same resource replaces a hibernating session and gets what it missed', async (t) => {
  const a = await user(main);
  const b = await user(main);
  const alice = await SmClient.login(main.c2sPort, a, 'pw', { resource: 'a' });
  const bob = await SmClient.login(main.c2sPort, b, 'pw', { resource: 'phone', sm: 'resume', max: 60 });
  await ping(bob);
  const old = sessionOf(main, bob.jid)!;
  bob.destroy();
  await until(() => old.hibernating, 'hibernating');
  alice.send(chat(`${b}@localhost/phone`, 'queued for the old session'));
  await until(() => old.stats().unacked >= 2, 'queued while hibernating');
  const fresh = await SmClient.login(main.c2sPort, b, 'pw', { resource: 'phone', sm: true });
  const [got] = await fresh.messages(1);
  t.equal(got!.getChildText('body'), 'queued for the old session', 'handed over through the spool');
  t.ok(delayOf(got!), 'with a delay');
  t.not(sessionOf(main, fresh.jid), old, 'the old session is gone');
  const late = await SmClient.resumeLogin(main.c2sPort, b, 'pw', bob.smId!, 0);
  t.equal(late.answer.name, 'failed', 'and cannot be resumed any more');
  t.ok(await alice.nothing((el) => el.name === 'message' && el.attrs.type === 'error'), 'no error to the sender');
  fresh.ack();
  for (const c of [alice, fresh, late.client]) c.end();
});
