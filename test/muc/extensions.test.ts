// Occupant-id (XEP-0421), self-ping (XEP-0410), several sessions under one nick, the room vCard,
// IQs to occupants, the per-user room limit, shutdown notice.
import { readFileSync, writeFileSync } from 'node:fs';
import t from 'tap';
import type { Element } from 'ltx';
import {
  codes, createInstant, errorCondition, groupchatBody, iq, join, login, nothing, presenceFrom, SERVICE, startMucServer, subject,
} from '../helpers/muc-client.js';

const srv = await startMucServer('{ max_rooms_per_user: 3 }');
t.teardown(() => srv.close());
const oid = (el: Element) => el.getChild('occupant-id', 'urn:xmpp:occupant-id:0')?.attrs.id;

t.test('occupant-id: one per real JID per room, the same on rejoin and in messages', async (t) => {
  const alice = await login(srv, 'alice');
  const bob = await login(srv, 'bob');
  const room = `ids@${SERVICE}`;
  const other = `ids2@${SERVICE}`;
  await createInstant(alice, room, 'Alice');
  await createInstant(alice, other, 'Alice');
  const first = oid(await join(bob, room, 'Bob'))!;
  t.ok(first && first.length >= 16);
  bob.send(`<message to='${room}' type='groupchat'><body>hi</body></message>`);
  t.equal(oid(await alice.next(groupchatBody(room, 'hi'))), first, 'on messages');
  bob.send(`<presence to='${room}/Bob' type='unavailable'/>`);
  await bob.next(presenceFrom(`${room}/Bob`, 'unavailable'));
  t.equal(oid(await join(bob, room, 'Someone')), first, 'stable on rejoin under another nick');
  t.not(oid(await join(bob, other, 'Bob')), first, 'different in another room');
  const aliceId = oid(await alice.next(presenceFrom(`${room}/Someone`)));
  t.equal(aliceId, first, 'others see the same id');
  alice.end();
  bob.end();
});

t.test('self-ping', async (t) => {
  const alice = await login(srv, 'alice');
  const bob = await login(srv, 'bob');
  const room = `ping@${SERVICE}`;
  await createInstant(alice, room, 'Alice');
  const ping = "<ping xmlns='urn:xmpp:ping'/>";
  t.equal((await iq(alice, 'get', `${room}/Alice`, ping)).attrs.type, 'result', 'joined: result');
  const notJoined = await iq(bob, 'get', `${room}/Alice`, ping);
  t.equal(errorCondition(notJoined), 'not-acceptable', 'someone else\'s nick');
  t.equal(errorCondition(await iq(bob, 'get', `${room}/Bob`, ping)), 'not-acceptable', 'not joined');
  alice.send(`<presence to='${room}/Alice' type='unavailable'/>`);
  await alice.next(presenceFrom(`${room}/Alice`, 'unavailable'));
  t.equal(errorCondition(await iq(alice, 'get', `${room}/Alice`, ping)), 'item-not-found', 'after leaving, the temporary room is gone');
  const info = await iq(alice, 'get', SERVICE, "<query xmlns='http://jabber.org/protocol/disco#info'/>");
  t.ok(info.getChild('query')!.getChildren('feature').some((f) => f.attrs.var === 'http://jabber.org/protocol/muc#self-ping-optimization'));
  alice.end();
  bob.end();
});

t.test('two sessions of one account under one nick', async (t) => {
  const alice = await login(srv, 'alice');
  const phone = await login(srv, 'bob', 'phone');
  const laptop = await login(srv, 'bob', 'laptop');
  const room = `multi@${SERVICE}`;
  await createInstant(alice, room, 'Alice');
  await join(phone, room, 'Bob');
  await alice.next(presenceFrom(`${room}/Bob`));
  const second = await join(laptop, room, 'Bob');
  t.same(codes(second), [110, 170], 'the second session joins the same occupant');
  t.ok(await nothing(alice, presenceFrom(`${room}/Bob`), 200), 'the others see no new occupant');
  await subject(laptop, room);
  alice.send(`<message to='${room}' type='groupchat'><body>both</body></message>`);
  t.ok(await phone.next(groupchatBody(room, 'both')));
  t.ok(await laptop.next(groupchatBody(room, 'both')));
  alice.send(`<message to='${room}/Bob' type='chat'><body>pm both</body></message>`);
  t.ok(await phone.next((el) => el.getChildText('body') === 'pm both'));
  t.ok(await laptop.next((el) => el.getChildText('body') === 'pm both'));
  // One session leaves: only it sees itself go.
  laptop.send(`<presence to='${room}/Bob' type='unavailable'/>`);
  t.same(codes(await laptop.next(presenceFrom(`${room}/Bob`, 'unavailable'))), [110]);
  t.ok(await nothing(alice, presenceFrom(`${room}/Bob`, 'unavailable'), 200), 'Bob is still there');
  const third = await login(srv, 'carol');
  t.equal(errorCondition(await join(third, room, 'Bob')), 'conflict', 'another account cannot take the nick');
  phone.destroy();
  t.ok(await alice.next(presenceFrom(`${room}/Bob`, 'unavailable')), 'gone with the last session');
  for (const c of [alice, laptop, third]) c.end();
});

t.test('room vCard: owners set it, anyone reads it', async (t) => {
  const alice = await login(srv, 'alice');
  const bob = await login(srv, 'bob');
  const room = `avatar@${SERVICE}`;
  await createInstant(alice, room, 'Alice');
  await join(bob, room, 'Bob');
  const empty = await iq(bob, 'get', room, "<vCard xmlns='vcard-temp'/>");
  t.equal(empty.getChild('vCard', 'vcard-temp')!.children.length, 0);
  const png = Buffer.from('not really a png').toString('base64');
  const denied = await iq(bob, 'set', room, `<vCard xmlns='vcard-temp'><PHOTO><TYPE>image/png</TYPE><BINVAL>${png}</BINVAL></PHOTO></vCard>`);
  t.equal(errorCondition(denied), 'forbidden');
  const ok = await iq(alice, 'set', room, `<vCard xmlns='vcard-temp'><PHOTO><TYPE>image/png</TYPE><BINVAL>${png}</BINVAL></PHOTO></vCard>`);
  t.equal(ok.attrs.type, 'result');
  const note = await bob.next((el) => el.name === 'message' && el.attrs.from === room && codes(el).includes(104));
  t.ok(note, 'occupants learn about the change');
  const got = await iq(bob, 'get', room, "<vCard xmlns='vcard-temp'/>");
  t.equal(got.getChild('vCard', 'vcard-temp')!.getChild('PHOTO')!.getChildText('BINVAL'), png);
  const info = await iq(bob, 'get', room, "<query xmlns='http://jabber.org/protocol/disco#info'/>");
  const hash = info.getChild('query')!.getChild('x', 'jabber:x:data')!.getChildren('field').find((f) => f.attrs.var === 'muc#roominfo_avatarhash');
  t.match(hash?.getChildText('value'), /^[0-9a-f]{40}$/);
  alice.end();
  bob.end();
});

t.test('IQs between occupants are forwarded under occupant JIDs', async (t) => {
  const alice = await login(srv, 'alice');
  const bob = await login(srv, 'bob');
  const room = `forward@${SERVICE}`;
  await createInstant(alice, room, 'Alice');
  await join(bob, room, 'Bob');
  alice.send(`<iq type='get' to='${room}/Bob' id='fw1'><query xmlns='jabber:iq:version'/></iq>`);
  const asked = await bob.next((el) => el.name === 'iq' && el.attrs.type === 'get');
  t.equal(asked.attrs.from, `${room}/Alice`, 'the real JID stays hidden');
  bob.send(`<iq type='result' to='${asked.attrs.from}' id='${asked.attrs.id}'><query xmlns='jabber:iq:version'><name>x</name></query></iq>`);
  const answer = await alice.nextNamed('iq', 'fw1');
  t.equal(answer.attrs.type, 'result');
  t.equal(answer.attrs.from, `${room}/Bob`);
  t.equal(answer.getChild('query')!.getChildText('name'), 'x');
  alice.send(`<iq type='get' to='${room}/Nobody' id='fw2'><query xmlns='jabber:iq:version'/></iq>`);
  t.equal(errorCondition(await alice.nextNamed('iq', 'fw2')), 'item-not-found');
  alice.end();
  bob.end();
});

t.test('rooms per user are limited', async (t) => {
  const carol = await login(srv, 'carol');
  for (let i = 1; i <= 3; i++) await createInstant(carol, `mine${i}@${SERVICE}`, 'Carol');
  const e = await join(carol, `mine4@${SERVICE}`, 'Carol');
  t.equal(errorCondition(e), 'policy-violation');
  const d = await iq(carol, 'set', `mine1@${SERVICE}`, "<query xmlns='http://jabber.org/protocol/muc#owner'><destroy/></query>");
  t.equal(d.attrs.type, 'result');
  t.ok(codes(await join(carol, `mine4@${SERVICE}`, 'Carol')).includes(201), 'a destroyed room frees a place');
  carol.end();
});

t.test('occupants learn when the service stops under them (332): a reload that changes its options', async (t) => {
  const own = await startMucServer('{}');
  t.teardown(() => own.close());
  const alice = await login(own, 'alice');
  const room = `reloaded@${SERVICE}`;
  await createInstant(alice, room, 'Alice');
  writeFileSync(own.configFile, readFileSync(own.configFile, 'utf8').replace('muc: {}', 'muc: { name: Renamed }'));
  const summary = await own.server.reload();
  t.match(summary, /muc/);
  const p = await alice.next(presenceFrom(`${room}/Alice`, 'unavailable'));
  t.same(codes(p), [110, 332]);
  const info = await iq(alice, 'get', SERVICE, "<query xmlns='http://jabber.org/protocol/disco#info'/>");
  t.equal(info.getChild('query')!.getChild('identity')!.attrs.name, 'Renamed', 'the service runs on with its new options');
  alice.end();
});

t.test('ghosts: a delivery error removes the occupant (333); broadcast unavailable leaves rooms', async (t) => {
  const alice = await login(srv, 'alice');
  const bob = await login(srv, 'bob');
  const carol = await login(srv, 'carol');
  const room = `ghosts@${SERVICE}`;
  await createInstant(alice, room, 'Alice');
  await join(bob, room, 'Bob');
  await join(carol, room, 'Carol');
  bob.send(`<message type='error' to='${room}'><error type='cancel'><bad-request xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>`);
  t.ok(await nothing(alice, presenceFrom(`${room}/Bob`, 'unavailable'), 200), 'an error that is not about delivery changes nothing');
  bob.send(`<message type='error' to='${room}'><error type='cancel'><recipient-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>`);
  const ghost = await alice.next(presenceFrom(`${room}/Bob`, 'unavailable'));
  t.same(codes(ghost), [333]);
  carol.send("<presence type='unavailable'/>");
  t.ok(await alice.next(presenceFrom(`${room}/Carol`, 'unavailable')), 'unavailable broadcast presence ends the room presence');
  for (const c of [alice, bob, carol]) c.end();
});
