// XEP-0352 Client State Indication between real sessions: what an inactive client gets at once,
// what waits (and is deduplicated), and what flushes the waiting stanzas, in order.
//
// Held stanzas carry a <delay/> stamped by the server, so a test can tell a stanza that waited
// from one written at once; barriers (an IQ answered after everything before it) replace sleeps.
import type { Element } from 'ltx';
import t from 'tap';
import { RawClient } from '../helpers/raw-client.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

const NS_CSI = 'urn:xmpp:csi:0';
const NS_DELAY = 'urn:xmpp:delay';
const NS_CARBONS = 'urn:xmpp:carbons:2';
const CHATSTATES = 'http://jabber.org/protocol/chatstates';

const main = await startTestServer({
  modules: '  ping: {}\n  carbons: {}\n  csi:\n    max_held: 3\n    max_hold_time: 1h',
});
const timed = await startTestServer({ modules: '  ping: {}\n  csi:\n    max_hold_time: 300ms' });
const options = await startTestServer({
  modules: '  ping: {}\n  csi:\n    hold_presence: false\n    hold_groupchat: true\n    max_hold_time: 1h',
});
t.teardown(async () => {
  await main.close();
  await timed.close();
  await options.close();
});

let users = 0;
async function user(srv: TestServer): Promise<string> {
  const name = `u${++users}`;
  await srv.register(name, 'pw');
  return name;
}

function login(srv: TestServer, name: string, resource: string): Promise<RawClient> {
  return RawClient.login(srv.c2sPort, name, 'pw', { resource });
}

let ids = 0;
/** Pings the server and waits for the answer: everything the client sent before is handled. */
async function barrier(c: RawClient): Promise<Element> {
  const id = `ping${++ids}`;
  c.send(`<iq type='get' id='${id}' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>`);
  return c.nextNamed('iq', id);
}

/** Sends <active/> and a ping; the answer to the ping must come after everything flushed. */
function activeThenPing(c: RawClient): string {
  const id = `ping${++ids}`;
  c.send(`<active xmlns='${NS_CSI}'/><iq type='get' id='${id}' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>`);
  return id;
}

const isPong = (el: Element, id: string) => el.name === 'iq' && el.attrs.id === id && el.attrs.type === 'result';

async function inactive(c: RawClient): Promise<void> {
  c.send(`<inactive xmlns='${NS_CSI}'/>`);
  await barrier(c);
}

const held = (el: Element) => el.getChild('delay', NS_DELAY) !== undefined;
const presenceTo = (to: string, status: string, extra = '') => `<presence to='${to}'${extra}><status>${status}</status></presence>`;
const chatState = (to: string, state: string, type = 'chat') =>
  `<message to='${to}' type='${type}'><${state} xmlns='${CHATSTATES}'/></message>`;

/** Expects nothing at all within a short time (used once, after a barrier, as a safety net). */
async function quiet(c: RawClient, ms = 150): Promise<boolean> {
  try {
    await c.next(() => true, ms);
    return false;
  } catch {
    return true;
  }
}

t.test('the stream feature is offered after authentication only', async (t) => {
  const name = await user(main);
  const c = await RawClient.connect(main.c2sPort);
  await c.open();
  const preAuth = await c.starttls();
  t.ok(preAuth.getChild('mechanisms'), 'pre-auth features');
  t.notOk(preAuth.getChild('csi', NS_CSI), 'no csi before authentication');
  const postAuth = await c.authPlain(name, 'pw');
  t.ok(postAuth.getChild('bind'), 'post-auth features');
  t.ok(postAuth.getChild('csi', NS_CSI), '<csi/> offered');
  c.end();
});

t.test('presence and chat states wait; a message with a body flushes them first, in order', async (t) => {
  const a = await user(main);
  const b = await user(main);
  const alice = await login(main, a, 'a');
  const bob = await login(main, b, 'x');
  const bobJid = `${b}@localhost/x`;
  await inactive(bob);
  alice.send(presenceTo(bobJid, 'away for lunch'));
  alice.send(chatState(bobJid, 'composing'));
  await barrier(alice);
  t.ok(await quiet(bob), 'nothing written to the inactive client yet');
  alice.send(`<message to='${bobJid}' type='chat' id='m1'><body>hi</body><active xmlns='${CHATSTATES}'/></message>`);
  const p = await bob.next();
  t.equal(p.name, 'presence', 'the held presence first');
  t.equal(p.getChildText('status'), 'away for lunch');
  t.equal(p.attrs.from, `${a}@localhost/a`);
  const delay = p.getChild('delay', NS_DELAY);
  t.ok(delay, 'stamped with the time it was held');
  t.equal(delay?.attrs.from, 'localhost');
  t.match(delay?.attrs.stamp, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/);
  const cs = await bob.next();
  t.ok(cs.getChild('composing', CHATSTATES), 'then the held chat state');
  t.ok(held(cs));
  const m = await bob.next();
  t.equal(m.attrs.id, 'm1', 'then the message');
  t.notOk(held(m), 'the message itself was not held');
  // Still inactive: the next presence waits again, until <active/>; the ping after it is answered
  // only after the flush (in-order processing, XEP-0352 §5.1).
  alice.send(presenceTo(bobJid, 'back'));
  await barrier(alice);
  const ping = activeThenPing(bob);
  const again = await bob.next();
  t.equal(again.getChildText('status'), 'back', 'flushed by <active/>');
  t.ok(held(again));
  t.ok(isPong(await bob.next(), ping), 'the pong comes after the flush');
  // Active again: written at once.
  alice.send(presenceTo(bobJid, 'live'));
  const live = await bob.next();
  t.equal(live.getChildText('status'), 'live');
  t.notOk(held(live), 'an active client gets presence at once');
  alice.end();
  bob.end();
});

t.test('only the latest presence per sender and chat state per conversation is kept', async (t) => {
  const a = await user(main);
  const b = await user(main);
  const a1 = await login(main, a, 'one');
  const a2 = await login(main, a, 'two');
  const bob = await login(main, b, 'x');
  const bobJid = `${b}@localhost/x`;
  await inactive(bob);
  a1.send(presenceTo(bobJid, '1'));
  a1.send(presenceTo(bobJid, '2'));
  a2.send(presenceTo(bobJid, 'other resource'));
  await barrier(a2);
  a1.send(chatState(bobJid, 'composing'));
  a1.send(presenceTo(bobJid, '3'));
  a1.send(chatState(bobJid, 'paused'));
  await barrier(a1);
  const ping = activeThenPing(bob);
  const got: string[] = [];
  for (let i = 0; i < 3; i++) {
    const el = await bob.next();
    t.ok(held(el));
    got.push(el.name === 'presence'
      ? `${el.attrs.from} ${el.getChildText('status')}`
      : `${el.attrs.from} ${el.getChildElements().find((c) => c.attrs.xmlns === CHATSTATES)?.name}`);
  }
  t.same(got, [
    `${a}@localhost/two other resource`,
    `${a}@localhost/one 3`,
    `${a}@localhost/one paused`,
  ], 'each sender once, with its latest state, in the order of the latest updates');
  t.ok(isPong(await bob.next(), ping), 'nothing else was held');
  for (const c of [a1, a2, bob]) c.end();
});

t.test('what is important: held stanzas are flushed before it', async (t) => {
  const a = await user(main);
  const b = await user(main);
  const alice = await login(main, a, 'a');
  const bob = await login(main, b, 'x');
  const bobJid = `${b}@localhost/x`;
  await inactive(bob);
  const cases: Array<[string, string]> = [
    ['a subscription request', `<presence to='${bobJid}' type='subscribe'/>`],
    ['an error', `<message to='${bobJid}' type='error' id='e'><error type='cancel'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>`],
    ['an OMEMO message without a body', `<message to='${bobJid}' type='chat'><encrypted xmlns='eu.siacs.conversations.axolotl'><header sid='1'/></encrypted></message>`],
    ['an OMEMO 2 message', `<message to='${bobJid}' type='chat'><encrypted xmlns='urn:xmpp:omemo:2'><header sid='1'/></encrypted></message>`],
    ['a chat state with another payload', `<message to='${bobJid}' type='chat'><composing xmlns='${CHATSTATES}'/><x xmlns='urn:example:other'/></message>`],
    ['a receipt', `<message to='${bobJid}'><received xmlns='urn:xmpp:receipts' id='m0'/></message>`],
    ['a groupchat message with a body', `<message to='${bobJid}' type='groupchat'><body>room</body></message>`],
    ['a MUC self-presence', `<presence to='${bobJid}'><x xmlns='http://jabber.org/protocol/muc#user'><status code='110'/></x></presence>`],
    ['an IQ', `<iq to='${bobJid}' type='get' id='v'><query xmlns='jabber:iq:version'/></iq>`],
  ];
  for (const [what, stanza] of cases) {
    alice.send(presenceTo(bobJid, what));
    alice.send(stanza);
    const first = await bob.next();
    t.equal(first.getChildText('status'), what, `${what}: the held presence first`);
    t.ok(held(first));
    const second = await bob.next();
    t.not(second.getChildText('status'), what, `${what}: then it, at once`);
    t.notOk(held(second), `${what}: not held`);
  }
  alice.end();
  bob.end();
});

t.test('groupchat chat states wait, and carbons are judged by what they carry', async (t) => {
  const a = await user(main);
  const b = await user(main);
  const alice = await login(main, a, 'a');
  const phone = await login(main, b, 'phone');
  const desk = await login(main, b, 'desk');
  for (const c of [phone, desk]) {
    c.send(`<iq type='set' id='cc'><enable xmlns='${NS_CARBONS}'/></iq>`);
    await c.nextNamed('iq', 'cc');
  }
  await inactive(phone);
  // Bob types on the desktop: the phone's sent copy of the chat state waits.
  desk.send(chatState(`${a}@localhost/a`, 'composing'));
  await barrier(desk);
  alice.send(chatState(`${b}@localhost/phone`, 'active', 'groupchat'));
  await barrier(alice);
  t.ok(await quiet(phone), 'the chat-state carbon and the groupchat chat state wait');
  // Bob sends a message from the desktop: its carbon is important.
  desk.send(`<message to='${a}@localhost/a' type='chat' id='d1'><body>from the desk</body></message>`);
  const first = await phone.next();
  t.ok(first.getChild('sent', NS_CARBONS), 'the held carbon first');
  t.ok(held(first));
  const second = await phone.next();
  t.equal(second.attrs.type, 'groupchat');
  t.ok(held(second));
  const third = await phone.next();
  t.equal(third.getChild('sent', NS_CARBONS)?.getChild('forwarded')?.getChild('message')?.attrs.id, 'd1', 'then the carbon of the message');
  t.notOk(held(third));
  for (const c of [alice, phone, desk]) c.end();
});

t.test('more than max_held stanzas flush them all', async (t) => {
  const a = await user(main);
  const b = await user(main);
  const a1 = await login(main, a, 'one');
  const a2 = await login(main, a, 'two');
  const bob = await login(main, b, 'x');
  const bobJid = `${b}@localhost/x`;
  await inactive(bob);
  a1.send(presenceTo(bobJid, 'p1'));
  a2.send(presenceTo(bobJid, 'p2'));
  await barrier(a2);
  a1.send(chatState(bobJid, 'composing'));
  await barrier(a1);
  t.ok(await quiet(bob), 'three held (max_held: 3)');
  a2.send(chatState(bobJid, 'composing'));
  const got = [];
  for (let i = 0; i < 4; i++) got.push(await bob.next());
  t.ok(got.every(held), 'the fourth flushed all four');
  t.same(got.map((el) => el.name), ['presence', 'presence', 'message', 'message'], 'in order');
  // Still inactive afterwards.
  a1.send(presenceTo(bobJid, 'later'));
  await barrier(a1);
  const ping = activeThenPing(bob);
  t.equal((await bob.next()).getChildText('status'), 'later', 'held again until <active/>');
  t.ok(isPong(await bob.next(), ping));
  for (const c of [a1, a2, bob]) c.end();
});

t.test('nothing waits longer than max_hold_time', async (t) => {
  const a = await user(timed);
  const b = await user(timed);
  const alice = await login(timed, a, 'a');
  const bob = await login(timed, b, 'x');
  await inactive(bob);
  const started = Date.now();
  alice.send(presenceTo(`${b}@localhost/x`, 'timed'));
  const p = await bob.next((el) => el.name === 'presence', 5000);
  const waited = Date.now() - started;
  t.equal(p.getChildText('status'), 'timed');
  t.ok(held(p), 'it was held');
  t.ok(waited >= 250, `written by the timer (after ${waited} ms)`);
  alice.end();
  bob.end();
});

t.test('options: presence not held, groupchat held', async (t) => {
  const a = await user(options);
  const b = await user(options);
  const alice = await login(options, a, 'a');
  const bob = await login(options, b, 'x');
  const bobJid = `${b}@localhost/x`;
  await inactive(bob);
  alice.send(presenceTo(bobJid, 'now'));
  const p = await bob.next();
  t.equal(p.name, 'presence', 'hold_presence: false writes presence at once');
  t.notOk(held(p));
  alice.send(`<message to='${bobJid}' type='groupchat' id='g1'><body>one</body></message>`);
  alice.send(`<message to='${bobJid}' type='groupchat' id='g2'><body>two</body></message>`);
  await barrier(alice);
  t.ok(await quiet(bob), 'hold_groupchat: true holds groupchat messages');
  const ping = activeThenPing(bob);
  const g1 = await bob.next();
  const g2 = await bob.next();
  t.same([g1.attrs.id, g2.attrs.id], ['g1', 'g2'], 'every one of them, in order');
  t.ok(held(g1) && held(g2));
  t.ok(isPong(await bob.next(), ping));
  alice.end();
  bob.end();
});
