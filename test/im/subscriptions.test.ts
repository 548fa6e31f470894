// Presence subscriptions (RFC 6121 §3, Appendix A) between real sessions.
import type { Element } from 'ltx';
import t from 'tap';
import { RawClient } from '../helpers/raw-client.js';
import { startTestServer } from '../helpers/server.js';

const srv = await startTestServer({ modules: '  disco: {}\n  roster: {}\n  presence: {}' });
t.teardown(() => srv.close());
for (const u of ['alice', 'bob', 'carol', 'dave', 'erin', 'frank', 'gina', 'hank', 'ivy', 'jack']) await srv.register(u, 'pw');

const NS = 'jabber:iq:roster';
let counter = 0;

async function nothing(c: RawClient, pred: (el: Element) => boolean, ms = 300): Promise<boolean> {
  try {
    await c.next(pred, ms);
    return false;
  } catch {
    return true;
  }
}

const isPush = (el: Element): boolean => el.name === 'iq' && el.attrs.type === 'set' && el.getChild('query', NS) !== undefined;
const pushFor = (jid: string) => (el: Element): boolean => isPush(el) && el.getChild('query', NS)!.getChild('item')?.attrs.jid === jid;
const presence = (type: string | undefined, from?: string) => (el: Element): boolean =>
  el.name === 'presence' && el.attrs.type === type && (from === undefined || el.attrs.from === from);

/** Logs in, fetches the roster (an interested resource) and optionally sends initial presence. */
async function login(user: string, resource: string, initial = true): Promise<RawClient> {
  const c = await RawClient.login(srv.c2sPort, user, 'pw', { resource, presence: false });
  const id = `g${++counter}`;
  c.send(`<iq type='get' id='${id}'><query xmlns='${NS}'/></iq>`);
  await c.nextNamed('iq', id);
  if (initial) {
    c.send('<presence/>');
    await c.next(presence(undefined, c.jid)); // the server echoes the presence to its sender
  }
  return c;
}

/** Consumes what has arrived, so later waits see only new stanzas. */
async function drain(c: RawClient): Promise<void> {
  for (;;) {
    try {
      await c.next(() => true, 100);
    } catch {
      return;
    }
  }
}

async function pushedItem(c: RawClient, jid: string): Promise<Element> {
  return (await c.next(pushFor(jid))).getChild('query', NS)!.getChild('item')!;
}

async function rosterItem(c: RawClient, jid: string): Promise<Element | undefined> {
  const id = `g${++counter}`;
  c.send(`<iq type='get' id='${id}'><query xmlns='${NS}'/></iq>`);
  const r = await c.nextNamed('iq', id);
  return r.getChild('query', NS)!.getChildren('item').find((i) => i.attrs.jid === jid);
}

t.test('the full handshake between two online users, then mutual', async (t) => {
  const alice = await login('alice', 'a');
  const bob = await login('bob', 'b');

  alice.send("<presence to='bob@localhost/b' type='subscribe' id='s1'><nick xmlns='http://jabber.org/protocol/nick'>Al</nick></presence>");
  const pending = await pushedItem(alice, 'bob@localhost');
  t.equal(pending.attrs.subscription, 'none');
  t.equal(pending.attrs.ask, 'subscribe', 'pending out');
  const req = await bob.next(presence('subscribe'));
  t.equal(req.attrs.from, 'alice@localhost', 'from is stamped with the bare JID');
  t.equal(req.attrs.to, 'bob@localhost', 'to is the bare JID');
  t.equal(req.getChild('nick')?.getText(), 'Al', 'extended content is kept');
  t.ok(await nothing(bob, isPush), 'an inbound request makes no roster item');

  bob.send("<presence to='alice@localhost' type='subscribed'/>");
  const bobItem = await pushedItem(bob, 'alice@localhost');
  t.equal(bobItem.attrs.subscription, 'from');
  const approved = await alice.next(presence('subscribed'));
  t.equal(approved.attrs.from, 'bob@localhost');
  const aliceItem = await pushedItem(alice, 'bob@localhost');
  t.equal(aliceItem.attrs.subscription, 'to');
  t.notOk(aliceItem.attrs.ask, 'no longer pending');
  const bobPresence = await alice.next(presence(undefined, 'bob@localhost/b'));
  t.ok(bobPresence, "bob's presence follows the approval");

  // Bob subscribes back.
  bob.send("<presence to='alice@localhost' type='subscribe'/>");
  t.equal((await pushedItem(bob, 'alice@localhost')).attrs.ask, 'subscribe');
  await alice.next(presence('subscribe', 'bob@localhost'));
  alice.send("<presence to='bob@localhost' type='subscribed'/>");
  t.equal((await pushedItem(alice, 'bob@localhost')).attrs.subscription, 'both');
  t.equal((await pushedItem(bob, 'alice@localhost')).attrs.subscription, 'both');
  await bob.next(presence(undefined, 'alice@localhost/a'));

  // A repeated subscribe while subscribed is answered by bob's server with "subscribed", which
  // alice's server drops as she asked nothing (RFC 6121 A.3.2): nobody sees anything.
  await drain(alice);
  alice.send("<presence to='bob@localhost' type='subscribe'/>");
  t.ok(await nothing(bob, presence('subscribe')), 'not asked again');
  t.ok(await nothing(alice, (el) => isPush(el) || presence('subscribed')(el)), 'nothing changes');
  alice.end();
  bob.end();
});

t.test('a request to an offline user is delivered at each next available resource until answered', async (t) => {
  const alice = await login('alice', 'a2');
  alice.send("<presence to='carol@localhost' type='subscribe'/>");
  await pushedItem(alice, 'carol@localhost');

  const quiet = await login('carol', 'noprs', false);
  t.ok(await nothing(quiet, presence('subscribe')), 'not to a resource without presence');
  const c1 = await login('carol', 'one');
  const got = await c1.next(presence('subscribe', 'alice@localhost'));
  t.equal(got.attrs.from, 'alice@localhost');
  t.ok(await nothing(quiet, presence('subscribe')), 'still not to the resource without presence');
  t.notOk(await rosterItem(c1, 'alice@localhost'), 'the request is no roster item');
  const c2 = await login('carol', 'two');
  await c2.next(presence('subscribe', 'alice@localhost'));
  t.ok(await nothing(c1, presence('subscribe')), 'not again to the first resource');

  // A repeated request while pending is not delivered again.
  alice.send("<presence to='carol@localhost' type='subscribe'/>");
  t.ok(await nothing(c1, presence('subscribe')), 'one request at a time');

  c2.send("<presence to='alice@localhost' type='subscribed'/>");
  t.equal((await pushedItem(alice, 'carol@localhost')).attrs.subscription, 'to');
  for (const c of [c1, c2, quiet]) t.equal((await pushedItem(c, 'alice@localhost')).attrs.subscription, 'from');
  const c3 = await login('carol', 'three');
  t.ok(await nothing(c3, presence('subscribe')), 'answered: no longer delivered');
  for (const c of [alice, quiet, c1, c2, c3]) c.end();
});

t.test('pre-approval', async (t) => {
  const dave = await login('dave', 'd');
  const erin = await login('erin', 'e');
  dave.send("<presence to='erin@localhost' type='subscribed'/>");
  const pre = await pushedItem(dave, 'erin@localhost');
  t.equal(pre.attrs.approved, 'true', 'pre-approved');
  t.equal(pre.attrs.subscription, 'none');
  t.ok(await nothing(erin, presence('subscribed')), 'a pre-approval is not sent');

  erin.send("<presence to='dave@localhost' type='subscribe'/>");
  t.equal((await pushedItem(erin, 'dave@localhost')).attrs.ask, 'subscribe');
  await erin.next(presence('subscribed', 'dave@localhost'));
  const erinItem = await pushedItem(erin, 'dave@localhost');
  t.equal(erinItem.attrs.subscription, 'to');
  const daveItem = await pushedItem(dave, 'erin@localhost');
  t.equal(daveItem.attrs.subscription, 'from');
  t.notOk(daveItem.attrs.approved, 'the approval is used up');
  t.ok(await nothing(dave, presence('subscribe')), 'the user is not asked');
  await erin.next(presence(undefined, 'dave@localhost/d'));

  // Cancelling a pre-approval.
  dave.send("<presence to='frank@localhost' type='subscribed'/>");
  t.equal((await pushedItem(dave, 'frank@localhost')).attrs.approved, 'true');
  dave.send("<presence to='frank@localhost' type='unsubscribed'/>");
  t.notOk((await pushedItem(dave, 'frank@localhost')).attrs.approved, 'pre-approval withdrawn');
  const frank = await login('frank', 'f');
  frank.send("<presence to='dave@localhost' type='subscribe'/>");
  await dave.next(presence('subscribe', 'frank@localhost'));
  t.ok(await nothing(frank, presence('subscribed')), 'no automatic approval any more');
  for (const c of [dave, erin, frank]) c.end();
});

t.test('denying a request and cancelling subscriptions', async (t) => {
  const gina = await login('gina', 'g');
  const hank = await login('hank', 'h');
  gina.send("<presence to='hank@localhost' type='subscribe'/>");
  await pushedItem(gina, 'hank@localhost');
  await hank.next(presence('subscribe'));
  hank.send("<presence to='gina@localhost' type='unsubscribed'/>");
  await gina.next(presence('unsubscribed', 'hank@localhost'));
  const denied = await pushedItem(gina, 'hank@localhost');
  t.equal(denied.attrs.subscription, 'none');
  t.notOk(denied.attrs.ask, 'no longer pending');
  t.ok(await nothing(hank, isPush), 'hank had no item, none is made');

  // Mutual subscription, then hank cancels gina's subscription to him.
  gina.send("<presence to='hank@localhost' type='subscribe'/>");
  await hank.next(presence('subscribe'));
  hank.send("<presence to='gina@localhost' type='subscribed'/>");
  await gina.next(presence('subscribed'));
  hank.send("<presence to='gina@localhost' type='subscribe'/>");
  await gina.next(presence('subscribe'));
  gina.send("<presence to='hank@localhost' type='subscribed'/>");
  t.equal((await rosterItem(gina, 'hank@localhost'))?.attrs.subscription, 'both');
  t.equal((await rosterItem(hank, 'gina@localhost'))?.attrs.subscription, 'both');
  await gina.next(presence(undefined, 'hank@localhost/h'));
  await drain(gina);
  await drain(hank);

  hank.send("<presence to='gina@localhost' type='unsubscribed'/>");
  t.equal((await pushedItem(hank, 'gina@localhost')).attrs.subscription, 'to');
  await gina.next(presence('unsubscribed', 'hank@localhost'));
  t.equal((await pushedItem(gina, 'hank@localhost')).attrs.subscription, 'from');
  const gone = await gina.next(presence('unavailable', 'hank@localhost/h'));
  t.ok(gone, 'a cancelled subscriber gets unavailable presence');

  // Gina unsubscribes from nothing more; hank unsubscribes from gina.
  hank.send("<presence to='gina@localhost' type='unsubscribe'/>");
  t.equal((await pushedItem(hank, 'gina@localhost')).attrs.subscription, 'none');
  await gina.next(presence('unsubscribe', 'hank@localhost'));
  t.equal((await pushedItem(gina, 'hank@localhost')).attrs.subscription, 'none');
  t.ok(await hank.next(presence('unavailable', 'gina@localhost/g')), 'the unsubscribed user learns the contact is gone');
  gina.end();
  hank.end();
});

t.test('removing a roster item cancels both directions', async (t) => {
  const ivy = await login('ivy', 'i');
  const jack = await login('jack', 'j');
  ivy.send("<presence to='jack@localhost' type='subscribe'/>");
  await jack.next(presence('subscribe'));
  jack.send("<presence to='ivy@localhost' type='subscribed'/>");
  jack.send("<presence to='ivy@localhost' type='subscribe'/>");
  await ivy.next(presence('subscribe'));
  ivy.send("<presence to='jack@localhost' type='subscribed'/>");
  await jack.next((el) => pushFor('ivy@localhost')(el) && el.getChild('query')!.getChild('item')!.attrs.subscription === 'both');

  ivy.send(`<iq type='set' id='rm'><query xmlns='${NS}'><item jid='jack@localhost' subscription='remove'/></query></iq>`);
  t.equal((await ivy.nextNamed('iq', 'rm')).attrs.type, 'result');
  await jack.next(presence('unsubscribe', 'ivy@localhost'));
  await jack.next(presence('unsubscribed', 'ivy@localhost'));
  await jack.next(presence('unavailable', 'ivy@localhost/i'));
  await jack.next((el) => pushFor('ivy@localhost')(el) && el.getChild('query')!.getChild('item')!.attrs.subscription === 'none');
  t.equal((await rosterItem(jack, 'ivy@localhost'))?.attrs.subscription, 'none', "jack's item stays, without subscription");
  t.notOk(await rosterItem(ivy, 'jack@localhost'), "gone from ivy's roster");
  ivy.end();
  jack.end();
});

t.test('subscriptions to accounts that do not exist, to oneself, and without a to', async (t) => {
  const alice = await login('alice', 'x');
  alice.send("<presence to='nobody@localhost' type='subscribe'/>");
  const pending = await pushedItem(alice, 'nobody@localhost');
  t.equal(pending.attrs.ask, 'subscribe');
  await alice.next(presence('unsubscribed', 'nobody@localhost'));
  t.notOk((await pushedItem(alice, 'nobody@localhost')).attrs.ask, 'the refusal clears the pending request');

  alice.send("<presence to='alice@localhost' type='subscribe'/>");
  t.ok(await nothing(alice, (el) => isPush(el) || presence('subscribe')(el)), 'subscribing to oneself does nothing');

  alice.send("<presence type='subscribe' id='nt'/>");
  const err = await alice.next((el) => el.name === 'presence' && el.attrs.id === 'nt');
  t.equal(err.attrs.type, 'error', 'a subscription needs a to');
  alice.end();
});

t.test('unsolicited approvals and cancellations change nothing', async (t) => {
  const bob = await login('bob', 'u');
  const dave = await login('dave', 'u');
  dave.send("<presence to='bob@localhost' type='unsubscribed'/>");
  dave.send("<presence to='bob@localhost' type='unsubscribe'/>");
  t.ok(await nothing(bob, (el) => isPush(el) || el.name === 'presence' && el.attrs.from === 'dave@localhost'), 'bob sees nothing');
  // A "subscribed" to someone who never asked is a pre-approval: bob is not told.
  dave.send("<presence to='bob@localhost' type='subscribed'/>");
  t.ok(await nothing(bob, (el) => isPush(el) || presence('subscribed')(el)), 'no unsolicited approval reaches bob');
  bob.end();
  dave.end();
});
