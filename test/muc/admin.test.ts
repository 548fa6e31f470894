// Roles and affiliations (XEP-0045 §8, §9, §10): kick, ban, voice, member lists, privilege checks.
import t from 'tap';
import {
  codes, createConfigured, createInstant, errorCondition, groupchatBody, iq, item, join, login, NS_MUC_ADMIN, nothing,
  presenceFrom, SERVICE, startMucServer, subject,
} from '../helpers/muc-client.js';

const srv = await startMucServer();
t.teardown(() => srv.close());

const admin = (items: string) => `<query xmlns='${NS_MUC_ADMIN}'>${items}</query>`;

t.test('kick: moderators may, participants may not', async (t) => {
  const alice = await login(srv, 'alice');
  const bob = await login(srv, 'bob');
  const carol = await login(srv, 'carol');
  const room = `kick@${SERVICE}`;
  await createInstant(alice, room, 'Alice');
  await join(bob, room, 'Bob');
  await join(carol, room, 'Carol');
  await alice.next(presenceFrom(`${room}/Carol`));

  const denied = await iq(bob, 'set', room, admin("<item nick='Carol' role='none'><reason>no</reason></item>"));
  t.equal(errorCondition(denied), 'forbidden', 'a participant cannot kick');
  t.ok(await nothing(carol, presenceFrom(`${room}/Carol`, 'unavailable')), 'Carol is still there');

  const up = await iq(bob, 'set', room, admin("<item nick='Alice' role='none'/>"));
  t.equal(errorCondition(up), 'forbidden');

  const ok = await iq(alice, 'set', room, admin("<item nick='Carol' role='none'><reason>Be nice</reason></item>"));
  t.equal(ok.attrs.type, 'result');
  const self = await carol.next(presenceFrom(`${room}/Carol`, 'unavailable'));
  t.same(codes(self), [110, 307]);
  t.equal(self.getChild('x', 'http://jabber.org/protocol/muc#user')!.getChild('item')!.getChildText('reason'), 'Be nice');
  t.equal(self.getChild('x', 'http://jabber.org/protocol/muc#user')!.getChild('item')!.getChild('actor')!.attrs.nick, 'Alice');
  const other = await bob.next(presenceFrom(`${room}/Carol`, 'unavailable'));
  t.same(codes(other), [307]);
  t.equal(item(other).role, 'none');

  // Kicked is not banned: Carol may come back.
  const back = await join(carol, room, 'Carol');
  t.same(codes(back), [110, 170]);
  const owner = await iq(carol, 'set', room, admin("<item nick='Alice' role='none'/>"));
  t.equal(errorCondition(owner), 'forbidden');
  for (const c of [alice, bob, carol]) c.end();
});

t.test('a moderator cannot kick an admin or owner', async (t) => {
  const alice = await login(srv, 'alice');
  const bob = await login(srv, 'bob');
  const carol = await login(srv, 'carol');
  const room = `hierarchy@${SERVICE}`;
  await createInstant(alice, room, 'Alice');
  await join(bob, room, 'Bob');
  await join(carol, room, 'Carol');
  // Alice (owner) makes Bob (a plain participant) a moderator, and Carol an admin.
  t.equal((await iq(alice, 'set', room, admin("<item nick='Bob' role='moderator'/>"))).attrs.type, 'result');
  const promoted = await bob.next((el) => presenceFrom(`${room}/Bob`)(el) && item(el).role === 'moderator');
  t.same(codes(promoted), [110]);
  t.equal((await iq(alice, 'set', room, admin("<item jid='carol@localhost' affiliation='admin'/>"))).attrs.type, 'result');
  const adm = await carol.next((el) => presenceFrom(`${room}/Carol`)(el) && item(el).affiliation === 'admin');
  t.equal(item(adm).role, 'moderator', 'admins are moderators');

  const r1 = await iq(bob, 'set', room, admin("<item nick='Carol' role='none'/>"));
  t.equal(errorCondition(r1), 'not-allowed', 'moderator kicking an admin');
  const r2 = await iq(bob, 'set', room, admin("<item nick='Alice' role='none'/>"));
  t.equal(errorCondition(r2), 'not-allowed', 'moderator kicking an owner');
  const r3 = await iq(carol, 'set', room, admin("<item nick='Alice' role='none'/>"));
  t.equal(errorCondition(r3), 'not-allowed', 'admin kicking an owner');
  const r4 = await iq(carol, 'set', room, admin("<item jid='alice@localhost' affiliation='outcast'/>"));
  t.equal(errorCondition(r4), 'not-allowed', 'admin banning an owner');
  const r5 = await iq(carol, 'set', room, admin("<item jid='bob@localhost' affiliation='owner'/>"));
  t.equal(errorCondition(r5), 'forbidden', 'only owners grant ownership');
  const r6 = await iq(bob, 'set', room, admin("<item jid='dave@localhost' affiliation='member'/>"));
  t.equal(errorCondition(r6), 'forbidden', 'a moderator without affiliation cannot change affiliations');
  const lone = await iq(alice, 'set', room, admin("<item jid='alice@localhost' affiliation='admin'/>"));
  t.equal(errorCondition(lone), 'conflict', 'the last owner cannot step down');
  for (const c of [alice, bob, carol]) c.end();
});

t.test('ban: by JID, with reason; the list; a banned user cannot come back', async (t) => {
  const alice = await login(srv, 'alice');
  const bob = await login(srv, 'bob');
  const room = `ban@${SERVICE}`;
  await createInstant(alice, room, 'Alice');
  await join(bob, room, 'Bob');
  // One bad item refuses the whole request.
  const half = await iq(alice, 'set', room, admin("<item jid='bob@localhost' affiliation='outcast'/><item jid='x@@' affiliation='member'/>"));
  t.equal(errorCondition(half), 'jid-malformed');
  t.ok(await nothing(bob, presenceFrom(`${room}/Bob`, 'unavailable')), 'nothing was applied');
  const banned = await iq(alice, 'set', room, admin("<item jid='bob@localhost' affiliation='outcast'><reason>Spam</reason></item>"));
  t.equal(banned.attrs.type, 'result');
  const self = await bob.next(presenceFrom(`${room}/Bob`, 'unavailable'));
  t.same(codes(self), [110, 301]);
  t.equal(item(self).affiliation, 'outcast');
  const seen = await alice.next(presenceFrom(`${room}/Bob`, 'unavailable'));
  t.same(codes(seen), [301]);
  const again = await join(bob, room, 'Bob');
  t.equal(errorCondition(again), 'forbidden', 'banned users get forbidden');
  const list = await iq(alice, 'get', room, admin("<item affiliation='outcast'/>"));
  const items = list.getChild('query')!.getChildren('item');
  t.same(items.map((i) => [i.attrs.jid, i.getChildText('reason')]), [['bob@localhost', 'Spam']]);
  const notAdmin = await iq(bob, 'get', room, admin("<item affiliation='outcast'/>"));
  t.equal(errorCondition(notAdmin), 'forbidden', 'lists are for admins');
  const unban = await iq(alice, 'set', room, admin("<item jid='bob@localhost' affiliation='none'/>"));
  t.equal(unban.attrs.type, 'result');
  t.same(codes(await join(bob, room, 'Bob')), [110, 170], 'unbanned');
  alice.end();
  bob.end();
});

t.test('voice in a moderated room', async (t) => {
  const alice = await login(srv, 'alice');
  const bob = await login(srv, 'bob');
  const room = `moderated@${SERVICE}`;
  await createConfigured(alice, room, 'Alice', { 'muc#roomconfig_moderatedroom': '1' });
  const self = await join(bob, room, 'Bob');
  t.equal(item(self).role, 'visitor', 'no voice by default');
  await subject(bob, room);
  bob.send(`<message to='${room}' type='groupchat' id='v1'><body>hello?</body></message>`);
  const err = await bob.nextNamed('message', 'v1');
  t.equal(errorCondition(err), 'forbidden', 'visitors cannot speak');
  t.ok(await nothing(alice, groupchatBody(room, 'hello?')));

  t.equal((await iq(alice, 'set', room, admin("<item nick='Bob' role='participant'><reason>speak</reason></item>"))).attrs.type, 'result');
  const voiced = await bob.next((el) => presenceFrom(`${room}/Bob`)(el) && item(el).role === 'participant');
  t.ok(voiced);
  bob.send(`<message to='${room}' type='groupchat' id='v2'><body>thanks</body></message>`);
  t.ok(await alice.next(groupchatBody(room, 'thanks')));
  const roles = await iq(alice, 'get', room, admin("<item role='participant'/>"));
  t.same(roles.getChild('query')!.getChildren('item').map((i) => i.attrs.nick), ['Bob']);
  t.equal((await iq(alice, 'set', room, admin("<item nick='Bob' role='visitor'/>"))).attrs.type, 'result');
  await bob.next((el) => presenceFrom(`${room}/Bob`)(el) && item(el).role === 'visitor');
  bob.send(`<message to='${room}' type='groupchat' id='v3'><body>again</body></message>`);
  t.equal(errorCondition(await bob.nextNamed('message', 'v3')), 'forbidden', 'voice revoked');
  alice.end();
  bob.end();
});

t.test('members-only rooms and passwords', async (t) => {
  const alice = await login(srv, 'alice');
  const bob = await login(srv, 'bob');
  const carol = await login(srv, 'carol');
  const room = `club@${SERVICE}`;
  await createConfigured(alice, room, 'Alice', { 'muc#roomconfig_membersonly': '1' });
  const denied = await join(bob, room, 'Bob');
  t.equal(errorCondition(denied), 'registration-required');
  t.equal(denied.getChild('error')!.attrs.type, 'auth');
  await iq(alice, 'set', room, admin("<item jid='bob@localhost' affiliation='member'/>"));
  t.equal(item(await join(bob, room, 'Bob')).affiliation, 'member');
  const members = await iq(alice, 'get', room, admin("<item affiliation='member'/>"));
  t.same(members.getChild('query')!.getChildren('item').map((i) => i.attrs.jid), ['bob@localhost']);
  // Losing membership in a members-only room removes the occupant with 321.
  await iq(alice, 'set', room, admin("<item jid='bob@localhost' affiliation='none'/>"));
  const removed = await bob.next(presenceFrom(`${room}/Bob`, 'unavailable'));
  t.same(codes(removed), [110, 321]);

  const secret = `secret@${SERVICE}`;
  await createConfigured(alice, secret, 'Alice', { 'muc#roomconfig_passwordprotectedroom': '1', 'muc#roomconfig_roomsecret': 'sesame' });
  const noPw = await join(carol, secret, 'Carol');
  t.equal(errorCondition(noPw), 'not-authorized');
  const wrong = await join(carol, secret, 'Carol', '<password>open</password>');
  t.equal(errorCondition(wrong), 'not-authorized');
  const right = await join(carol, secret, 'Carol', '<password>sesame</password>');
  t.same(codes(right), [110, 170]);
  const noSecret = await iq(alice, 'set', secret, `<query xmlns='http://jabber.org/protocol/muc#owner'>${
    "<x xmlns='jabber:x:data' type='submit'><field var='muc#roomconfig_passwordprotectedroom'><value>1</value></field><field var='muc#roomconfig_roomsecret'><value></value></field></x>"}</query>`);
  t.equal(errorCondition(noSecret), 'not-acceptable', 'a protected room needs a password');

  // Making a room members-only removes the non-members (322).
  await iq(alice, 'set', secret, `<query xmlns='http://jabber.org/protocol/muc#owner'>${
    "<x xmlns='jabber:x:data' type='submit'><field var='muc#roomconfig_membersonly'><value>1</value></field></x>"}</query>`);
  const out = await carol.next(presenceFrom(`${secret}/Carol`, 'unavailable'));
  t.same(codes(out), [110, 322]);
  for (const c of [alice, bob, carol]) c.end();
});

t.test('a full room refuses with service-unavailable', async (t) => {
  const alice = await login(srv, 'alice');
  const bob = await login(srv, 'bob');
  const carol = await login(srv, 'carol');
  const room = `small@${SERVICE}`;
  await createConfigured(alice, room, 'Alice', { 'muc#roomconfig_maxusers': '2' });
  await join(bob, room, 'Bob');
  const full = await join(carol, room, 'Carol');
  t.equal(errorCondition(full), 'service-unavailable');
  t.equal(full.getChild('error')!.attrs.type, 'wait');
  for (const c of [alice, bob, carol]) c.end();
});
