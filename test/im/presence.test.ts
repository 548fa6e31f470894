// Presence (RFC 6121 §4): broadcast, probes, last unavailable with delay, directed presence,
// and the presence service (rebroadcast with amendments, last unavailable across restarts).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import xml from '@xmpp/xml';
import type { Element } from 'ltx';
import t from 'tap';
import { definePlugin, type StanzaEvent } from '../../lib/plugin/types.js';
import type { PresenceApi } from '../../plugins/presence/api.js';
import type { RosterApi, Subscription } from '../../plugins/roster/api.js';
import { RawClient } from '../helpers/raw-client.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

// Stands for plugins such as vCard avatars that amend broadcast presence: adds a counter.
let amendments = 0;
const amend = definePlugin({
  name: 'amend',
  setup(ctx) {
    ctx.hook('presence/broadcast', (ev: StanzaEvent) => {
      if (ev.stanza.attrs.type !== undefined) return;
      ev.stanza.remove('x', 'urn:test:amend');
      ev.stanza.append(xml('x', { xmlns: 'urn:test:amend' }, String(++amendments)));
    });
  },
});

const MODULES = '  disco: {}\n  roster: {}\n  presence: {}\n  amend: {}';
const dataDir = mkdtempSync(path.join(tmpdir(), 'parley-presence-'));
let srv: TestServer = await startTestServer({ modules: MODULES, plugins: [amend], dataDir });
t.teardown(async () => {
  await srv.close();
  rmSync(dataDir, { recursive: true, force: true });
});
for (const u of ['alice', 'bob', 'carol', 'erin', 'nick']) await srv.register(u, 'pw');

const rosterApi = (): RosterApi => srv.server.host('localhost')!.services.get('roster') as RosterApi;
const presenceApi = (): PresenceApi => srv.server.host('localhost')!.services.get('presence') as PresenceApi;

async function relate(a: string, b: string, aToB: Subscription, bToA: Subscription): Promise<void> {
  await rosterApi().upsert(`${a}@localhost`, { jid: `${b}@localhost`, groups: [], subscription: aToB });
  await rosterApi().upsert(`${b}@localhost`, { jid: `${a}@localhost`, groups: [], subscription: bToA });
}
await relate('alice', 'bob', 'both', 'both');
await relate('alice', 'carol', 'to', 'from');

async function nothing(c: RawClient, pred: (el: Element) => boolean, ms = 300): Promise<boolean> {
  try {
    await c.next(pred, ms);
    return false;
  } catch {
    return true;
  }
}

const presence = (type: string | undefined, from?: string) => (el: Element): boolean =>
  el.name === 'presence' && el.attrs.type === type && (from === undefined || el.attrs.from === from);

async function login(user: string, resource: string, initial: string | false = '<presence/>'): Promise<RawClient> {
  const c = await RawClient.login(srv.c2sPort, user, 'pw', { resource, presence: false });
  if (initial) {
    c.send(initial);
    await c.next(presence(undefined, c.jid));
  }
  return c;
}

t.test('initial presence: broadcast to subscribers and own resources, probes of contacts', async (t) => {
  const bob = await login('bob', 'b');
  const carol = await login('carol', 'c', "<presence><status>carol here</status></presence>");
  const erin = await login('erin', 'e');
  const a = await RawClient.login(srv.c2sPort, 'alice', 'pw', { resource: 'a', presence: "<presence><status>hi</status></presence>" });

  const echo = await a.next(presence(undefined, 'alice@localhost/a'));
  t.equal(echo.getChildText('status'), 'hi', 'the sender gets its own presence');
  const atBob = await bob.next(presence(undefined, 'alice@localhost/a'));
  t.equal(atBob.getChildText('status'), 'hi', 'a subscriber gets it');
  t.equal(atBob.attrs.to, 'bob@localhost');
  t.ok(await nothing(carol, presence(undefined, 'alice@localhost/a')), "carol ('from' on alice's side is missing) does not");
  t.ok(await nothing(erin, presence(undefined, 'alice@localhost/a')), 'a stranger does not');

  const bobs = await a.next(presence(undefined, 'bob@localhost/b'));
  t.equal(bobs.attrs.to, 'alice@localhost/a', 'the probe answer goes to the new resource');
  const carols = await a.next(presence(undefined, 'carol@localhost/c'));
  t.equal(carols.getChildText('status'), 'carol here', "alice ('to') gets carol's presence");

  // Subsequent presence.
  a.send('<presence><show>away</show></presence>');
  t.equal((await bob.next(presence(undefined, 'alice@localhost/a'))).getChildText('show'), 'away');
  t.equal((await a.next(presence(undefined, 'alice@localhost/a'))).getChildText('show'), 'away');

  // A second resource gets the first one's presence and the contacts'; the first sees it come.
  const a2 = await RawClient.login(srv.c2sPort, 'alice', 'pw', { resource: 'a2', presence: '<presence/>' });
  t.equal((await a2.next(presence(undefined, 'alice@localhost/a'))).getChildText('show'), 'away', 'other resource');
  await a2.next(presence(undefined, 'bob@localhost/b'));
  await a.next(presence(undefined, 'alice@localhost/a2'));
  await bob.next(presence(undefined, 'alice@localhost/a2'));
  t.ok(await nothing(a, presence(undefined, 'bob@localhost/b')), 'the first resource is not probed for again');

  // Logout: unavailable to subscribers and the other resource.
  a2.end();
  await bob.next(presence('unavailable', 'alice@localhost/a2'));
  await a.next(presence('unavailable', 'alice@localhost/a2'));
  t.ok(await nothing(erin, presence('unavailable')), 'nothing to a stranger');

  bob.end();
  await a.next(presence('unavailable', 'bob@localhost/b'));
  for (const c of [a, carol, erin]) c.end();
});

t.test('probes of an offline user are answered with the last unavailable presence and a delay', async (t) => {
  const bob = await login('bob', 'gone');
  bob.send("<presence type='unavailable'><status>off to bed</status></presence>");
  const before = Date.now();
  bob.end();
  await bob.closed();
  const a = await RawClient.login(srv.c2sPort, 'alice', 'pw', { resource: 'late', presence: '<presence/>' });
  const last = await a.next(presence('unavailable', 'bob@localhost/gone'));
  t.equal(last.getChildText('status'), 'off to bed');
  t.equal(last.attrs.to, 'alice@localhost/late');
  const delay = last.getChild('delay', 'urn:xmpp:delay');
  t.ok(delay, 'delay');
  t.equal(delay?.attrs.from, 'localhost');
  t.ok(Math.abs(Date.parse(delay!.attrs.stamp as string) - before) < 5000, 'stamped with the time it was sent');
  const stored = await presenceApi().lastUnavailable('bob@localhost');
  t.equal(stored?.stanza.getChildText('status'), 'off to bed', 'the service gives it too');
  a.end();
});

t.test('a closed stream without explicit unavailable counts as unavailable', async (t) => {
  const a = await login('alice', 'watch');
  const bob = await login('bob', 'drop');
  await a.next(presence(undefined, 'bob@localhost/drop'));
  bob.destroy();
  await a.next(presence('unavailable', 'bob@localhost/drop'));
  const stored = await presenceApi().lastUnavailable('bob@localhost');
  t.equal(stored?.stanza.attrs.from, 'bob@localhost/drop');
  a.end();
});

t.test('directed presence: tracked, and ended with unavailable at logout', async (t) => {
  const erin = await login('erin', 'd');
  const a = await login('alice', 'dir');
  a.send("<presence to='erin@localhost/d'><status>just for you</status></presence>");
  t.equal((await erin.next(presence(undefined, 'alice@localhost/dir'))).getChildText('status'), 'just for you');
  a.end();
  t.ok(await erin.next(presence('unavailable', 'alice@localhost/dir')), 'unavailable to the directed-presence target');

  // Directed presence from a session that never sent initial presence.
  const quiet = await login('alice', 'quiet', false);
  quiet.send("<presence to='erin@localhost'/>");
  await erin.next(presence(undefined, 'alice@localhost/quiet'));
  quiet.end();
  await erin.next(presence('unavailable', 'alice@localhost/quiet'));

  // A directed unavailable ends it: nothing more at logout.
  const again = await login('alice', 'again');
  again.send("<presence to='erin@localhost'/>");
  await erin.next(presence(undefined, 'alice@localhost/again'));
  again.send("<presence to='erin@localhost' type='unavailable'/>");
  await erin.next(presence('unavailable', 'alice@localhost/again'));
  again.end();
  t.ok(await nothing(erin, presence('unavailable', 'alice@localhost/again')), 'only one unavailable');
  erin.end();
});

t.test('probes: answered for subscribers; others get unsubscribed, which corrects their roster', async (t) => {
  const a = await login('alice', 'p');
  const erin = await login('erin', 'p');
  await drainPresence(erin);
  erin.send("<presence to='alice@localhost' type='probe'/>");
  erin.send("<presence to='nobody@localhost' type='probe'/>");
  // The "unsubscribed" answers meet no subscription on erin's side, so her server drops them.
  t.ok(await nothing(erin, (el) => el.name === 'presence'), 'a stranger learns nothing');

  // Erin's roster claims a subscription alice never granted: the probe sent for it is answered
  // with "unsubscribed", which cancels it.
  erin.send("<iq type='get' id='eg'><query xmlns='jabber:iq:roster'/></iq>");
  await erin.nextNamed('iq', 'eg');
  await rosterApi().upsert('erin@localhost', { jid: 'alice@localhost', groups: [], subscription: 'to' });
  await erin.next(presence('unsubscribed', 'alice@localhost'));
  const fixed = await erin.next((el) => el.name === 'iq' && el.getChild('query')?.getChild('item')?.attrs.subscription === 'none');
  t.ok(fixed, 'the roster is corrected');
  t.equal((await rosterApi().item('erin@localhost', 'alice@localhost'))?.subscription, 'none');
  t.ok(await nothing(erin, presence(undefined, 'alice@localhost/p')), 'still no presence');

  const bob = await login('bob', 'p');
  await drainPresence(bob);
  bob.send("<presence to='alice@localhost' type='probe'/>");
  t.equal((await bob.next(presence(undefined, 'alice@localhost/p'))).attrs.to, 'bob@localhost/p', 'answered to the prober');
  for (const c of [a, erin, bob]) c.end();
});

async function drainPresence(c: RawClient): Promise<void> {
  while (!(await nothing(c, (el) => el.name === 'presence', 150)));
}

t.test('negative priority: still available for presence', async (t) => {
  const bob = await login('bob', 'neg', '<presence><priority>-1</priority></presence>');
  const a = await login('alice', 'n');
  const got = await a.next(presence(undefined, 'bob@localhost/neg'));
  t.equal(got.getChildText('priority'), '-1');
  await bob.next(presence(undefined, 'alice@localhost/n'));
  a.end();
  bob.end();
});

t.test('presence to an account that does not exist is ignored', async (t) => {
  const a = await login('alice', 'x');
  a.send("<presence to='nobody@localhost' id='pn'/>");
  a.send("<presence to='nobody@localhost' type='unavailable' id='pu'/>");
  t.ok(await nothing(a, (el) => el.attrs.id === 'pn' || el.attrs.id === 'pu'), 'no error');
  a.end();
});

t.test('unavailable then available again is initial presence again', async (t) => {
  const bob = await login('bob', 'stay');
  const a = await login('alice', 'flip');
  await a.next(presence(undefined, 'bob@localhost/stay'));
  a.send("<presence type='unavailable'/>");
  await bob.next(presence('unavailable', 'alice@localhost/flip'));
  a.send('<presence/>');
  await bob.next(presence(undefined, 'alice@localhost/flip'));
  t.ok(await a.next(presence(undefined, 'bob@localhost/stay')), 'probed again');
  a.end();
  bob.end();
});

t.test('subscription changes made by the server bring presence along', async (t) => {
  const a = await login('alice', 'sync');
  const nick = await login('nick', 'n');
  await relate('alice', 'nick', 'both', 'both');
  t.ok(await nick.next(presence(undefined, 'alice@localhost/sync')), "nick gets alice's presence");
  t.ok(await a.next(presence(undefined, 'nick@localhost/n')), "alice gets nick's");
  await rosterApi().remove('alice@localhost', 'nick@localhost');
  t.ok(await nick.next(presence('unavailable', 'alice@localhost/sync')), 'removal: unavailable to the former subscriber');
  await nick.next(presence('unsubscribed', 'alice@localhost'));
  a.end();
  nick.end();
});

t.test('rebroadcast re-runs presence/broadcast handlers, and the last presence answers probes', async (t) => {
  const bob = await login('bob', 'rb');
  const a = await login('alice', 'rb');
  const first = await bob.next(presence(undefined, 'alice@localhost/rb'));
  const n1 = Number(first.getChildText('x', 'urn:test:amend'));
  t.ok(n1 > 0, 'the broadcast carries the amendment');
  await presenceApi().rebroadcast('alice@localhost');
  const again = await bob.next(presence(undefined, 'alice@localhost/rb'));
  const n2 = Number(again.getChildText('x', 'urn:test:amend'));
  t.ok(n2 > n1, 'amended again');
  t.equal(again.getChildren('x').length, 1, 'one amendment, not two');
  t.equal((await a.next(presence(undefined, 'alice@localhost/rb'))).getChildText('x', 'urn:test:amend'), String(n2), 'own resources too');
  bob.send("<presence to='alice@localhost' type='probe'/>");
  t.equal((await bob.next(presence(undefined, 'alice@localhost/rb'))).getChildText('x', 'urn:test:amend'), String(n2), 'probe answer');
  a.end();
  bob.end();
});

t.test('the last unavailable presence survives a restart', async (t) => {
  const bob = await login('bob', 'restart');
  bob.send("<presence type='unavailable'><status>see you</status></presence>");
  bob.end();
  await bob.closed();
  await srv.close();
  srv = await startTestServer({ modules: MODULES, plugins: [amend], dataDir });
  const stored = await presenceApi().lastUnavailable('bob@localhost');
  t.equal(stored?.stanza.getChildText('status'), 'see you');
  t.ok(stored && Date.now() - stored.at < 60_000);
  const a = await login('alice', 'after');
  t.equal((await a.next(presence('unavailable', 'bob@localhost/restart'))).getChildText('status'), 'see you');
  a.end();
});
