// Offline storage with ack-then-delete (issue 6, items 2, 3 and 7): what is stored and how it is
// marked, delivery on login with deletion only once the session's ack covers a message, leases
// between resources logging in together, the quota, expiry, clients without stream management,
// XEP-0013 flexible retrieval, and the metrics. A raw client decides when acks go out.
import xml from '@xmpp/xml';
import type { Element } from 'ltx';
import t from 'tap';
import { definePlugin, type StanzaEvent } from '../../lib/plugin/types.js';
import type { ClientSession } from '../../lib/session/types.js';
import type { OfflineService } from '../../plugins/offline/index.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { NS_SID, SmClient, bodies, delayOf, hasBody, stanzaIdOf } from '../fixtures/nl-client.js';

const NS_OFFLINE = 'http://jabber.org/protocol/offline';
const NS_STANZAS = 'urn:ietf:params:xml:ns:xmpp-stanzas';

/** Stands in for the archive: adds the recipient's stanza-id where the real one does (900). */
const fakeMam = definePlugin({
  name: 'mam',
  setup(ctx) {
    let n = 0;
    const add = ({ stanza, to }: StanzaEvent): undefined => {
      if (stanza.getChildText('body') !== null) {
        stanza.children = stanza.children.filter((c) => typeof c === 'string' || c.name !== 'stanza-id');
        stanza.c('stanza-id', { xmlns: NS_SID, by: to.bare, id: `archive-${++n}` });
      }
      return undefined;
    };
    ctx.hook('message/bare', add, 900);
    ctx.hook('message/full', add, 900);
  },
});

const base = '  disco: {}\n  ping: {}\n  smacks:\n    request_delay: 0\n    request_every: 1000\n';
const main = await startTestServer({ modules: `${base}  offline: {}` });
const small = await startTestServer({ modules: `${base}  offline:\n    max_messages: 2` });
const expiring = await startTestServer({ modules: `${base}  offline:\n    expiry: 300ms` });
const keeping = await startTestServer({ modules: `${base}  offline:\n    without_sm: keep` });
const archived = await startTestServer({ modules: `${base}  offline: {}\n  mam: {}`, plugins: [fakeMam] });
const windowed = await startTestServer({ modules: `${base}  offline:\n    window: 2` });
t.teardown(async () => {
  for (const srv of [main, small, expiring, keeping, archived, windowed]) await srv.close();
});

let users = 0;
async function user(srv: TestServer): Promise<string> {
  const name = `off${++users}`;
  await srv.register(name, 'pw');
  return name;
}

let ids = 0;
async function ping(c: SmClient): Promise<Element> {
  const id = `p${++ids}`;
  c.send(`<iq type='get' id='${id}' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>`);
  return c.nextNamed('iq', id);
}

const chat = (to: string, body: string) => `<message to='${to}' type='chat' id='m${++ids}'><body>${body}</body></message>`;

/** Sends and waits until the server handled it (the ping answer comes after). */
async function sendAll(c: SmClient, ...stanzas: string[]): Promise<void> {
  c.send(stanzas.join(''));
  await ping(c);
}

const spoolCount = (srv: TestServer, bare: string): Promise<number> => srv.server.storage.archive('offline').count(bare);
const service = (srv: TestServer): OfflineService => srv.server.host('localhost')!.services.get('offline') as OfflineService;
const isError = (el: Element) => el.name === 'message' && el.attrs.type === 'error';

async function until(cond: () => boolean | Promise<boolean>, what: string, timeoutMs = 5000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting until ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

t.test('stored messages are delivered in order and deleted only once acknowledged', async (t) => {
  const a = await user(main);
  const b = await user(main);
  const bare = `${b}@localhost`;
  const alice = await SmClient.login(main.c2sPort, a, 'pw', { resource: 'a' });
  await sendAll(alice, chat(bare, 'one'), chat(bare, 'two'), chat(bare, 'three'));
  t.ok(await alice.nothing(isError), 'no error for an offline recipient');
  t.equal(await spoolCount(main, bare), 3);

  const first = await SmClient.login(main.c2sPort, b, 'pw', { resource: 'phone', sm: true });
  const got = await first.messages(3);
  t.same(bodies(got), ['one', 'two', 'three'], 'in order');
  for (const m of got) {
    t.equal(delayOf(m)?.attrs.from, 'localhost', 'delay from the host');
    t.ok(delayOf(m)?.attrs.stamp, 'with a stamp');
  }
  const sids = got.map((m) => stanzaIdOf(m, bare));
  t.ok(sids.every((id) => id !== undefined), 'each with a stanza-id for the recipient');
  t.equal(new Set(sids).size, 3);
  // The socket dies before any ack: nothing is lost.
  first.destroy();
  await until(() => main.server.sessions.resources(bare).length === 0, 'the session is gone');
  t.equal(await spoolCount(main, bare), 3, 'still stored, not duplicated');

  const same = await SmClient.login(main.c2sPort, b, 'pw', { resource: 'phone', sm: true });
  const again = await same.messages(3);
  t.same(bodies(again), ['one', 'two', 'three'], 'the same resource gets them again');
  t.same(again.map((m) => stanzaIdOf(m, bare)), sids, 'with the same stanza-ids');
  same.destroy();
  await until(() => main.server.sessions.resources(bare).length === 0, 'the session is gone');

  const other = await SmClient.login(main.c2sPort, b, 'pw', { resource: 'laptop', sm: true });
  t.same(bodies(await other.messages(3)), ['one', 'two', 'three'], 'another resource gets them too');
  other.ack();
  await until(async () => (await spoolCount(main, bare)) === 0, 'the ack deletes them');
  other.end();

  const third = await SmClient.login(main.c2sPort, b, 'pw', { resource: 'tablet', sm: true });
  await ping(third);
  t.ok(await third.nothing(hasBody), 'a third login gets nothing');
  alice.end();
  third.end();
});

t.test('the same with stream resumption instead of a new login', async (t) => {
  const a = await user(main);
  const b = await user(main);
  const bare = `${b}@localhost`;
  const alice = await SmClient.login(main.c2sPort, a, 'pw', { resource: 'a' });
  await sendAll(alice, chat(bare, 'one'), chat(bare, 'two'), chat(bare, 'three'));
  const bob = await SmClient.login(main.c2sPort, b, 'pw', { resource: 'phone', sm: 'resume', max: 600 });
  t.same(bodies(await bob.messages(3)), ['one', 'two', 'three']);
  const session = main.server.sessions.get(bare, 'phone')!;
  bob.destroy();
  await until(() => session.hibernating, 'hibernating');
  t.equal(await spoolCount(main, bare), 3, 'kept while the session waits');
  const { client, answer } = await SmClient.resumeLogin(main.c2sPort, b, 'pw', bob.smId!, 0);
  t.equal(answer.name, 'resumed');
  const resent = await client.messages(3);
  t.same(bodies(resent), ['one', 'two', 'three'], 'sent again on the resumed stream');
  t.equal(await spoolCount(main, bare), 3, 'not deleted before the ack');
  client.ack();
  await until(async () => (await spoolCount(main, bare)) === 0, 'the ack deletes them');
  client.end();
  const next = await SmClient.login(main.c2sPort, b, 'pw', { resource: 'other', sm: true });
  await ping(next);
  t.ok(await next.nothing(hasBody), 'a new login gets nothing');
  alice.end();
  next.end();
});

t.test('a window at a time: each ack lets the next ones out, in order, each once', async (t) => {
  const a = await user(windowed);
  const b = await user(windowed);
  const bare = `${b}@localhost`;
  const alice = await SmClient.login(windowed.c2sPort, a, 'pw', { resource: 'a' });
  const sent = ['1', '2', '3', '4', '5', '6', '7'];
  await sendAll(alice, ...sent.map((body) => chat(bare, body)));
  alice.end();

  const first = await SmClient.login(windowed.c2sPort, b, 'pw', { resource: 'phone', sm: true });
  t.same(bodies(await first.messages(2)), ['1', '2'], 'the first window');
  t.ok(await first.nothing(hasBody), 'no more before an ack');
  first.ack();
  t.same(bodies(await first.messages(2)), ['3', '4'], 'the ack lets the next window out');
  // Acknowledging one of two leaves one slot: exactly one more comes.
  first.send(`<a xmlns='urn:xmpp:sm:3' h='${first.handled - 1}'/>`);
  t.same(bodies(await first.messages(1)), ['5']);
  t.ok(await first.nothing(hasBody), 'still one in flight');
  // Gone before acknowledging 4 and 5: they, and what was never sent, wait for the next login.
  first.destroy();
  await until(() => windowed.server.sessions.resources(bare).length === 0, 'the session is gone');
  t.equal(await spoolCount(windowed, bare), 4, '1 to 3 deleted; 4 to 7 kept');

  const second = await SmClient.login(windowed.c2sPort, b, 'pw', { resource: 'laptop', sm: true });
  t.same(bodies(await second.messages(2)), ['4', '5'], 'the rest in order, from the oldest kept');
  second.ack();
  t.same(bodies(await second.messages(2)), ['6', '7']);
  second.ack();
  await until(async () => (await spoolCount(windowed, bare)) === 0, 'the acks delete them');
  t.ok(await second.nothing(hasBody), 'nothing more');
  second.end();
});

t.test('two resources logging in together never get the same stored message', async (t) => {
  const a = await user(main);
  const b = await user(main);
  const bare = `${b}@localhost`;
  const alice = await SmClient.login(main.c2sPort, a, 'pw', { resource: 'a' });
  const sent = ['m1', 'm2', 'm3', 'm4', 'm5', 'm6'];
  await sendAll(alice, ...sent.map((body) => chat(bare, body)));
  const [x, y] = await Promise.all([
    SmClient.login(main.c2sPort, b, 'pw', { resource: 'x', sm: true }),
    SmClient.login(main.c2sPort, b, 'pw', { resource: 'y', sm: true }),
  ]);
  await Promise.all([ping(x), ping(y)]);
  await until(() => x.log.filter(hasBody).length + y.log.filter(hasBody).length >= 6, 'all six are out', 10_000);
  const gotX = bodies(x.log.filter(hasBody));
  const gotY = bodies(y.log.filter(hasBody));
  t.same([...gotX, ...gotY].sort(), sent, 'every message once');
  t.same(gotX.filter((m) => gotY.includes(m)), [], 'no message to both');
  // One of them leaves without acking: its messages go to the other at once.
  const leaving = gotX.length >= gotY.length ? x : y;
  const staying = leaving === x ? y : x;
  const before = staying.log.filter(hasBody).length;
  leaving.destroy();
  await until(() => staying.log.filter(hasBody).length === 6, 'the other resource gets the rest');
  t.ok(staying.log.filter(hasBody).length - before > 0);
  staying.ack();
  await until(async () => (await spoolCount(main, bare)) === 0, 'acked and deleted');
  alice.end();
  staying.end();
});

t.test('a session without stream management: deleted once written', async (t) => {
  const a = await user(main);
  const b = await user(main);
  const bare = `${b}@localhost`;
  const alice = await SmClient.login(main.c2sPort, a, 'pw', { resource: 'a' });
  await sendAll(alice, chat(bare, 'plain'));
  const bob = await SmClient.login(main.c2sPort, b, 'pw', { resource: 'b' });
  t.same(bodies(await bob.messages(1)), ['plain']);
  await until(async () => (await spoolCount(main, bare)) === 0, 'deleted after the write');
  bob.end();
  const again = await SmClient.login(main.c2sPort, b, 'pw', { resource: 'b' });
  await ping(again);
  t.ok(await again.nothing(hasBody), 'not delivered twice');
  alice.end();
  again.end();
});

t.test('without_sm: keep leaves them for the next login (and XEP-0013 purge removes them)', async (t) => {
  const a = await user(keeping);
  const b = await user(keeping);
  const bare = `${b}@localhost`;
  const alice = await SmClient.login(keeping.c2sPort, a, 'pw', { resource: 'a' });
  await sendAll(alice, chat(bare, 'kept'));
  const bob = await SmClient.login(keeping.c2sPort, b, 'pw', { resource: 'b' });
  t.same(bodies(await bob.messages(1)), ['kept']);
  await ping(bob);
  t.equal(await spoolCount(keeping, bare), 1, 'still stored');
  bob.end();
  const again = await SmClient.login(keeping.c2sPort, b, 'pw', { resource: 'b' });
  t.same(bodies(await again.messages(1)), ['kept'], 'delivered again');
  again.send(`<iq type='set' id='purge'><offline xmlns='${NS_OFFLINE}'><purge/></offline></iq>`);
  t.equal((await again.nextNamed('iq', 'purge')).attrs.type, 'result');
  t.equal(await spoolCount(keeping, bare), 0);
  again.end();
  await until(() => keeping.server.sessions.resources(bare).length === 0, 'offline again');
  // With stream management, an ack still deletes.
  await sendAll(alice, chat(bare, 'acked'));
  const sm = await SmClient.login(keeping.c2sPort, b, 'pw', { resource: 'sm', sm: true });
  await sm.messages(1);
  sm.ack();
  await until(async () => (await spoolCount(keeping, bare)) === 0, 'acked and deleted');
  for (const c of [alice, sm]) c.end();
});

t.test("what is stored: ejabberd's policy and the XEP-0334 hints", async (t) => {
  const a = await user(main);
  const b = await user(main);
  const bare = `${b}@localhost`;
  const alice = await SmClient.login(main.c2sPort, a, 'pw', { resource: 'a' });
  await sendAll(alice,
    `<message to='${bare}' type='headline' id='h1'><body>headline</body></message>`,
    `<message to='${bare}' type='chat' id='cs1'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>`,
    `<message to='${bare}' type='chat' id='r1'><received xmlns='urn:xmpp:receipts' id='x'/></message>`,
    `<message to='${bare}' type='chat' id='s1'><store xmlns='urn:xmpp:hints'/><thread>t</thread></message>`,
    `<message to='${bare}' type='chat' id='ns1'><body>not to keep</body><no-store xmlns='urn:xmpp:hints'/></message>`,
    `<message to='${bare}' type='chat' id='np1'><body>not archived</body><no-permanent-store xmlns='urn:xmpp:hints'/></message>`,
    `<message to='${bare}' type='chat' id='u1'><x xmlns='urn:example:unknown'/></message>`,
    `<message to='${bare}' id='n1'><body>normal</body><active xmlns='http://jabber.org/protocol/chatstates'/></message>`,
  );
  const errors = alice.log.filter(isError).map((e) => e.attrs.id).sort();
  t.same(errors, ['ns1', 'u1'], 'errors only for messages the sender may care about');
  for (const e of alice.log.filter(isError)) t.ok(e.getChild('error')?.getChild('service-unavailable', NS_STANZAS));
  const bob = await SmClient.login(main.c2sPort, b, 'pw', { resource: 'b', sm: true });
  await ping(bob);
  await until(() => bob.log.filter((el) => el.name === 'message').length >= 4, 'stored ones arrive');
  await ping(bob);
  t.same(bob.log.filter((el) => el.name === 'message').map((m) => m.attrs.id), ['r1', 's1', 'np1', 'n1'],
    'receipts, store hint, no-permanent-store and a body with a chat state: stored, in order');
  bob.ack();
  alice.end();
  bob.end();
});

t.test('a full spool answers resource-constraint to the sender', async (t) => {
  const a = await user(small);
  const b = await user(small);
  const bare = `${b}@localhost`;
  const alice = await SmClient.login(small.c2sPort, a, 'pw', { resource: 'a' });
  await sendAll(alice, chat(bare, '1'), chat(bare, '2'));
  alice.send(`<message to='${bare}' type='chat' id='over'><body>3</body></message>`);
  const err = await alice.nextNamed('message', 'over');
  t.equal(err.attrs.type, 'error');
  t.ok(err.getChild('error')?.getChild('resource-constraint', NS_STANZAS));
  t.equal(err.attrs.from, bare);
  t.equal(await spoolCount(small, bare), 2, 'nothing half-stored');
  const bob = await SmClient.login(small.c2sPort, b, 'pw', { resource: 'b', sm: true });
  t.same(bodies(await bob.messages(2)), ['1', '2']);
  bob.ack();
  await until(async () => (await spoolCount(small, bare)) === 0, 'room again');
  await sendAll(alice, chat(bare, 'later'));
  t.ok(await alice.nothing(isError, 100), 'accepted once there is room');
  alice.end();
  bob.end();
});

t.test('an expired message is not delivered and is gone from storage', async (t) => {
  const a = await user(expiring);
  const b = await user(expiring);
  const bare = `${b}@localhost`;
  const alice = await SmClient.login(expiring.c2sPort, a, 'pw', { resource: 'a' });
  await sendAll(alice, chat(bare, 'too old'));
  t.equal(await spoolCount(expiring, bare), 1);
  await until(async () => (await spoolCount(expiring, bare)) === 0, 'its lifetime (300 ms) ends', 10_000);
  const expiredBefore = (await service(expiring).stats()).expired;
  await sendAll(alice, chat(bare, 'fresh'));
  const bob = await SmClient.login(expiring.c2sPort, b, 'pw', { resource: 'b', sm: true });
  t.same(bodies(await bob.messages(1)), ['fresh'], 'only the message still alive');
  await ping(bob);
  t.ok(await bob.nothing(hasBody), 'the old one never comes');
  t.equal(expiredBefore, 1, 'counted as expired');
  bob.ack();
  alice.end();
  bob.end();
});

t.test('stanza-ids: the archive id is kept; a forged one is replaced', async (t) => {
  const a = await user(archived);
  const b = await user(archived);
  const bare = `${b}@localhost`;
  const alice = await SmClient.login(archived.c2sPort, a, 'pw', { resource: 'a' });
  await sendAll(alice, chat(bare, 'archived'));
  const bob = await SmClient.login(archived.c2sPort, b, 'pw', { resource: 'b', sm: true });
  const [m] = await bob.messages(1);
  const ids = m!.getChildren('stanza-id', NS_SID).filter((s) => s.attrs.by === bare);
  t.equal(ids.length, 1, 'one stanza-id for the recipient');
  t.match(ids[0]!.attrs.id, /^archive-\d+$/, 'the one the archive gave it');
  bob.ack();
  bob.end();

  // Without an archive on the server, a stanza-id naming the recipient came from the sender.
  const c = await user(main);
  const d = await user(main);
  const mallory = await SmClient.login(main.c2sPort, c, 'pw', { resource: 'm' });
  await sendAll(mallory, `<message to='${d}@localhost' type='chat'><body>x</body><stanza-id xmlns='${NS_SID}' by='${d}@localhost' id='forged'/></message>`);
  const dave = await SmClient.login(main.c2sPort, d, 'pw', { resource: 'd', sm: true });
  const [forged] = await dave.messages(1);
  const own = forged!.getChildren('stanza-id', NS_SID).filter((s) => s.attrs.by === `${d}@localhost`);
  t.equal(own.length, 1);
  t.not(own[0]!.attrs.id, 'forged', 'replaced by the server');
  dave.ack();
  for (const x of [alice, mallory, dave]) x.end();
});

t.test('XEP-0013: count, headers, view, remove, fetch, purge; no flood in flexible mode', async (t) => {
  const a = await user(main);
  const b = await user(main);
  const bare = `${b}@localhost`;
  const alice = await SmClient.login(main.c2sPort, a, 'pw', { resource: 'a' });
  await sendAll(alice, chat(bare, 'first'), chat(bare, 'second'), chat(bare, 'third'));
  const bob = await SmClient.login(main.c2sPort, b, 'pw', { resource: 'flex', presence: false });
  bob.send(`<iq type='get' id='i1'><query xmlns='http://jabber.org/protocol/disco#info' node='${NS_OFFLINE}'/></iq>`);
  const info = await bob.nextNamed('iq', 'i1');
  t.equal(info.attrs.type, 'result');
  const q = info.getChild('query')!;
  t.ok(q.getChildren('identity').some((i) => i.attrs.category === 'automation' && i.attrs.type === 'message-list'));
  const count = q.getChild('x', 'jabber:x:data')!.getChildren('field').find((f) => f.attrs.var === 'number_of_messages');
  t.equal(count?.getChildText('value'), '3', 'number_of_messages');
  bob.send(`<iq type='get' id='i2'><query xmlns='http://jabber.org/protocol/disco#items' node='${NS_OFFLINE}'/></iq>`);
  const items = (await bob.nextNamed('iq', 'i2')).getChild('query')!.getChildren('item');
  t.equal(items.length, 3);
  t.ok(items.every((i) => i.attrs.jid === bare && i.attrs.name === `${a}@localhost/a` && i.attrs.node));
  const nodes = items.map((i) => i.attrs.node!);

  bob.send('<presence/>');
  await ping(bob);
  t.ok(await bob.nothing(hasBody), 'no flood after asking for headers');
  const second = await SmClient.login(main.c2sPort, b, 'pw', { resource: 'other' });
  await ping(second);
  t.ok(await second.nothing(hasBody), 'nor to another resource while the flexible one is online');

  bob.send(`<iq type='get' id='v1'><offline xmlns='${NS_OFFLINE}'><item action='view' node='${nodes[1]}'/></offline></iq>`);
  const viewed = await bob.next(hasBody);
  t.equal(viewed.getChildText('body'), 'second');
  t.equal(viewed.getChild('offline', NS_OFFLINE)?.getChild('item')?.attrs.node, nodes[1], 'marked with its node');
  t.equal((await bob.nextNamed('iq', 'v1')).attrs.type, 'result', 'the result comes after the message');

  bob.send(`<iq type='set' id='r1'><offline xmlns='${NS_OFFLINE}'><item action='remove' node='${nodes[0]}'/></offline></iq>`);
  t.equal((await bob.nextNamed('iq', 'r1')).attrs.type, 'result');
  bob.send(`<iq type='set' id='r2'><offline xmlns='${NS_OFFLINE}'><item action='remove' node='${nodes[2]}'/><item action='remove' node='nope'/></offline></iq>`);
  const missing = await bob.nextNamed('iq', 'r2');
  t.ok(missing.getChild('error')?.getChild('item-not-found', NS_STANZAS), 'an unknown node');
  t.equal(await spoolCount(main, bare), 2, 'all or nothing: the known one was not removed either');
  bob.send(`<iq type='get' id='v2'><offline xmlns='${NS_OFFLINE}'><item action='remove' node='${nodes[1]}'/></offline></iq>`);
  t.ok((await bob.nextNamed('iq', 'v2')).getChild('error')?.getChild('bad-request', NS_STANZAS), 'remove in a get');

  bob.send(`<iq type='get' id='f1'><offline xmlns='${NS_OFFLINE}'><fetch/></offline></iq>`);
  t.same(bodies(await bob.messages(2)), ['second', 'third'], 'fetch: everything left');
  await bob.nextNamed('iq', 'f1');
  t.equal(await spoolCount(main, bare), 2, 'fetching does not remove');

  alice.send(`<iq type='get' id='x1' to='${bare}'><query xmlns='http://jabber.org/protocol/disco#items' node='${NS_OFFLINE}'/></iq>`);
  t.ok((await alice.nextNamed('iq', 'x1')).getChild('error')?.getChild('forbidden', NS_STANZAS), "not another user's spool");
  alice.send(`<iq type='set' id='x2' to='${bare}'><offline xmlns='${NS_OFFLINE}'><purge/></offline></iq>`);
  t.ok((await alice.nextNamed('iq', 'x2')).getChild('error')?.getChild('forbidden', NS_STANZAS));

  bob.send(`<iq type='set' id='pg'><offline xmlns='${NS_OFFLINE}'><purge/></offline></iq>`);
  t.equal((await bob.nextNamed('iq', 'pg')).attrs.type, 'result');
  t.equal(await spoolCount(main, bare), 0);
  for (const c of [alice, bob, second]) c.end();
});

t.test('the domain advertises msgoffline and flexible retrieval', async (t) => {
  const name = await user(main);
  const c = await SmClient.login(main.c2sPort, name, 'pw', { presence: false });
  c.send("<iq type='get' id='d1' to='localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>");
  const features = (await c.nextNamed('iq', 'd1')).getChild('query')!.getChildren('feature').map((f) => f.attrs.var);
  t.ok(features.includes('msgoffline'), 'XEP-0160');
  t.ok(features.includes(NS_OFFLINE), 'XEP-0013');
  c.end();
});

t.test('a message read from the archive leaves the spool', async (t) => {
  const a = await user(main);
  const b = await user(main);
  const bare = `${b}@localhost`;
  const alice = await SmClient.login(main.c2sPort, a, 'pw', { resource: 'a' });
  await sendAll(alice, chat(bare, 'read elsewhere'), chat(bare, 'not read'));
  const stored = (await main.server.storage.archive('offline').query(bare)).items.map((i) => i.id);
  await main.server.host('localhost')!.hooks.emit('mam/queried', { owner: bare, page: { items: [{ id: stored[0] }] } });
  const bob = await SmClient.login(main.c2sPort, b, 'pw', { resource: 'b', sm: true });
  t.same(bodies(await bob.messages(1)), ['not read']);
  await ping(bob);
  t.ok(await bob.nothing(hasBody));
  bob.ack();
  await until(async () => (await spoolCount(main, bare)) === 0, 'acknowledged');
  alice.end();
  bob.end();
});

t.test('metrics: stored, delivered, acked, and the queue lengths', async (t) => {
  const before = await service(main).stats();
  const a = await user(main);
  const b = await user(main);
  const bare = `${b}@localhost`;
  const alice = await SmClient.login(main.c2sPort, a, 'pw', { resource: 'a' });
  await sendAll(alice, chat(bare, '1'), chat(bare, '2'), chat(bare, '3'), chat(bare, '4'));
  const waiting = await service(main).stats();
  t.equal(waiting.stored - before.stored, 4);
  t.same(waiting.queues.find((q) => q.user === bare), { user: bare, length: 4 }, 'the queue of the user');
  t.ok(waiting.users >= 1 && waiting.messages >= 4);
  const bob = await SmClient.login(main.c2sPort, b, 'pw', { resource: 'b', sm: true });
  await bob.messages(4);
  bob.ack(2);
  await until(async () => (await spoolCount(main, bare)) === 2, 'two acknowledged');
  const half = await service(main).stats();
  t.equal(half.delivered - before.delivered, 4);
  t.equal(half.acked - before.acked, 2);
  t.same(half.queues.find((q) => q.user === bare), { user: bare, length: 2 });
  bob.ack();
  await until(async () => (await spoolCount(main, bare)) === 0, 'all acknowledged');
  const done = await service(main).stats();
  t.equal(done.acked - before.acked, 4);
  t.notOk(done.queues.some((q) => q.user === bare), 'an empty queue is not listed');
  alice.end();
  bob.end();
});

// A session's delivery callbacks, as other plugins would use them (the core's contract).
t.test('delivery outcomes reach the callback given with a stanza', async (t) => {
  const b = await user(main);
  const bob = await SmClient.login(main.c2sPort, b, 'pw', { resource: 'b', sm: true });
  await ping(bob);
  const session = main.server.sessions.get(`${b}@localhost`, 'b') as ClientSession;
  const outcomes: string[] = [];
  session.deliver(parseMessage(bob.jid, 'tracked'), (o) => outcomes.push(o));
  await bob.messages(1);
  t.same(outcomes, [], 'not yet acknowledged');
  bob.ack();
  await until(() => outcomes.length === 1, 'the ack is reported');
  t.same(outcomes, ['acked']);
  session.deliver(parseMessage(bob.jid, 'lost'), (o) => outcomes.push(o));
  await bob.messages(1);
  bob.destroy();
  await until(() => outcomes.length === 2, 'the end of the session is reported');
  t.same(outcomes, ['acked', 'failed']);
  const plain = await SmClient.login(main.c2sPort, b, 'pw', { resource: 'plain', presence: false });
  const s2 = main.server.sessions.get(`${b}@localhost`, 'plain')!;
  s2.deliver(parseMessage(plain.jid, 'written'), (o) => outcomes.push(o));
  t.same(outcomes.at(-1), 'written', 'without stream management: written');
  plain.end();
});

function parseMessage(to: string, body: string): Element {
  return xml('message', { to, from: 'localhost', type: 'chat' }, xml('body', {}, body));
}
