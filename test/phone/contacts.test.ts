// Contact sync (im.quicksy.synchronization:0) at api.<host>: only matches come back, an equal
// `ver` gives an empty result (with DESIGN §5's two check values), only local users may ask, the
// per-user limit of new numbers, and auto_roster's pushes to both users' resources.
import type { Element } from 'ltx';
import t from 'tap';
import type { RosterApi } from '../../plugins/roster/api.js';
import { RawClient } from '../helpers/raw-client.js';
import { startTestServer } from '../helpers/server.js';

const NS = 'im.quicksy.synchronization:0';
const NS_ROSTER = 'jabber:iq:roster';

// quicksy.im matches the check values' JIDs; other.test has auto_roster and the default limit.
const srv = await startTestServer({
  hosts: ['quicksy.im', 'other.test'],
  modules: ['  disco: {}', '  roster: {}', '  presence: {}', '  contacts:', '    max_new_numbers: 5'].join('\n'),
  yaml: ['host_config:', '  other.test:', '    modules:', '      contacts:', '        auto_roster: true'].join('\n'),
});
t.teardown(() => srv.close());
for (const n of ['+14155550123', '+4915112345678', 'alice', 'limited']) await srv.register(n, 'pw', 'quicksy.im');
for (const n of ['+4915112340001', '+4915112340002', 'carol']) await srv.register(n, 'pw', 'other.test');

let ids = 0;
async function sync(c: RawClient, numbers: string[], o: { ver?: string; to?: string; raw?: string } = {}): Promise<Element> {
  const id = `s${++ids}`;
  const entries = o.raw ?? numbers.map((n) => `<entry number='${n}'/>`).join('');
  const ver = o.ver === undefined ? '' : ` ver='${o.ver}'`;
  c.send(`<iq type='get' to='${o.to ?? 'api.quicksy.im'}' id='${id}'><phone-book xmlns='${NS}'${ver}>${entries}</phone-book></iq>`);
  return c.nextNamed('iq', id);
}

function entries(el: Element): Array<[string, string[]]> {
  return (el.getChild('phone-book', NS)?.getChildren('entry') ?? [])
    .map((e) => [String(e.attrs.number), e.getChildren('jid').map((j) => j.getText())]);
}

function condition(el: Element): string | undefined {
  return el.getChild('error')?.children.find((x): x is Element => typeof x !== 'string' && x.name !== 'text')?.name;
}

async function nothing(c: RawClient, pred: (el: Element) => boolean, ms = 300): Promise<boolean> {
  try {
    await c.next(pred, ms);
    return false;
  } catch {
    return true;
  }
}

const alice = await RawClient.login(srv.c2sPort, 'alice', 'pw', { host: 'quicksy.im', resource: 'a' });
t.teardown(() => alice.end());

t.test('the service is listed and describes itself', async (t) => {
  alice.send("<iq type='get' to='quicksy.im' id='i1'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>");
  const items = await alice.nextNamed('iq', 'i1');
  t.ok(items.getChild('query')?.getChildren('item').some((i) => i.attrs.jid === 'api.quicksy.im'), 'in the host\'s disco#items');
  alice.send("<iq type='get' to='api.quicksy.im' id='i2'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>");
  const info = (await alice.nextNamed('iq', 'i2')).getChild('query')!;
  t.same(info.getChildren('identity').map((i) => `${i.attrs.category}/${i.attrs.type}`), ['store/generic']);
  t.ok(info.getChildren('feature').some((f) => f.attrs.var === NS));
});

t.test('only numbers with accounts come back, each with its JID', async (t) => {
  const res = await sync(alice, ['+4915112345678', '+14155550123', '+4915199999999', '+4915112345678', 'not a number']);
  t.equal(res.attrs.type, 'result');
  t.same(entries(res), [['+14155550123', ['+14155550123@quicksy.im']], ['+4915112345678', ['+4915112345678@quicksy.im']]]);
  t.notOk(JSON.stringify(entries(res)).includes('+4915199999999'), 'numbers without an account are not mentioned');
});

t.test('ver: an equal hash gives an empty result (both check values of DESIGN §5)', async (t) => {
  const same = await sync(alice, ['+14155550123', '+4915112345678'], { ver: 'dCBnW5uCyb2OqxDUMP9yHanXJHo=' });
  t.equal(same.attrs.type, 'result');
  t.equal(same.children.length, 0, 'nothing changed: empty result');
  const stale = await sync(alice, ['+14155550123', '+4915112345678'], { ver: '2jmj7l5rSw0yVb/vlWAYkK/YBwk=' });
  t.equal(entries(stale).length, 2, 'a different hash gets the matches');
  const none = await sync(alice, ['+4915199999999'], { ver: '2jmj7l5rSw0yVb/vlWAYkK/YBwk=' });
  t.equal(none.children.length, 0, 'no matches hash to the empty check value');
  const empty = await sync(alice, [], { ver: 'x' });
  t.ok(empty.getChild('phone-book', NS), 'no matches and another hash: an empty phone book');
  t.same(entries(empty), []);
});

t.test('bad requests and non-local users', async (t) => {
  alice.send("<iq type='get' to='api.quicksy.im' id='b1'/>");
  t.equal(condition(await alice.nextNamed('iq', 'b1')), 'bad-request', 'no payload');
  t.equal(condition(await sync(alice, [], { raw: "<entry/>" })), 'bad-request', 'an entry without a number');
  alice.send(`<iq type='set' to='api.quicksy.im' id='b2'><phone-book xmlns='${NS}'/></iq>`);
  t.equal(condition(await alice.nextNamed('iq', 'b2')), 'bad-request', 'a set');
  const carol = await RawClient.login(srv.c2sPort, 'carol', 'pw', { host: 'other.test', resource: 'c' });
  const foreign = await sync(carol, ['+14155550123']);
  t.equal(condition(foreign), 'not-authorized', 'a user of another host');
  t.same(entries(foreign), [], 'and learns nothing');
  carol.end();
});

t.test('a limit on new numbers per user and window: policy-violation', async (t) => {
  const limited = await RawClient.login(srv.c2sPort, 'limited', 'pw', { host: 'quicksy.im', resource: 'l' });
  const four = ['+4915100000001', '+4915100000002', '+4915100000003', '+14155550123'];
  t.equal((await sync(limited, four)).attrs.type, 'result');
  t.equal((await sync(limited, four)).attrs.type, 'result', 'numbers already counted do not count again');
  const over = await sync(limited, [...four, '+4915100000004', '+4915100000005']);
  t.equal(condition(over), 'policy-violation', 'two more would make 6 > 5');
  t.same(entries(over), []);
  const fits = await sync(limited, [...four, '+4915100000004']);
  t.same(entries(fits), [['+14155550123', ['+14155550123@quicksy.im']]], 'five fit, and the refused request counted nothing');
  limited.end();
});

t.test('the default limit is 2048 new numbers', async (t) => {
  const carol = await RawClient.login(srv.c2sPort, 'carol', 'pw', { host: 'other.test', resource: 'c' });
  const numbers = Array.from({ length: 2048 }, (_, i) => `+4915200${String(i).padStart(6, '0')}`);
  t.equal((await sync(carol, numbers, { to: 'api.other.test' })).attrs.type, 'result', '2048 new numbers');
  t.equal(condition(await sync(carol, ['+4915300000000'], { to: 'api.other.test' })), 'policy-violation', 'the 2049th');
  carol.end();
});

t.test('auto_roster: pushes to both users when each has the other\'s number', async (t) => {
  const A = '+4915112340001';
  const B = '+4915112340002';
  const login = async (user: string) => {
    const c = await RawClient.login(srv.c2sPort, user, 'pw', { host: 'other.test', resource: 'phone' });
    c.send("<iq type='get' id='roster'><query xmlns='jabber:iq:roster'/></iq>");
    await c.nextNamed('iq', 'roster');
    return c;
  };
  const a = await login(A);
  const b = await login(B);
  const pushFor = (jid: string) => (el: Element) => el.name === 'iq' && el.attrs.type === 'set'
    && el.getChild('query', NS_ROSTER)?.getChild('item')?.attrs.jid === jid;

  // Only A has B's number: A gets an item, B learns nothing about A.
  const first = await sync(a, [B], { to: 'api.other.test' });
  t.same(entries(first), [[B, [`${B}@other.test`]]]);
  const pushA = await a.next(pushFor(`${B}@other.test`));
  const itemA = pushA.getChild('query', NS_ROSTER)!.getChild('item')!;
  t.equal(itemA.attrs.subscription, 'none');
  t.equal(itemA.attrs.approved, 'true', "pre-approving B's subscription");
  t.ok(await nothing(b, pushFor(`${A}@other.test`)), 'B gets no push: A\'s number is not revealed to B');

  // B syncs with A's number: now both know each other.
  await sync(b, [A], { to: 'api.other.test' });
  const toB = await b.next((el) => pushFor(`${A}@other.test`)(el)
    && el.getChild('query', NS_ROSTER)!.getChild('item')!.attrs.subscription === 'both');
  t.ok(toB, "B's resource gets the push: subscription both");
  const toA = await a.next((el) => pushFor(`${B}@other.test`)(el)
    && el.getChild('query', NS_ROSTER)!.getChild('item')!.attrs.subscription === 'both');
  t.ok(toA, "A's resource gets the push: subscription both");
  t.notOk(toA.getChild('query', NS_ROSTER)!.getChild('item')!.attrs.approved, 'the pre-approval is used up');

  // Both are online: each gets the other's presence, and the subscriptions stay mutual.
  const presenceFrom = (jid: string) => (el: Element) => el.name === 'presence' && el.attrs.type === undefined && String(el.attrs.from).startsWith(jid);
  await a.next(presenceFrom(`${B}@other.test`));
  await b.next(presenceFrom(`${A}@other.test`));
  const roster = srv.server.host('other.test')!.services.get('roster') as RosterApi;
  t.equal((await roster.item(`${A}@other.test`, `${B}@other.test`))?.subscription, 'both');
  t.equal((await roster.item(`${B}@other.test`, `${A}@other.test`))?.subscription, 'both');

  const again = await sync(b, [A], { to: 'api.other.test' });
  t.equal(again.attrs.type, 'result');
  t.ok(await nothing(a, pushFor(`${B}@other.test`)), 'a repeated sync changes nothing');
  a.end();
  b.end();
});
