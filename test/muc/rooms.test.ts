// Room creation (instant and reserved), entering and leaving, service discovery.
import t from 'tap';
import {
  codes, createInstant, errorCondition, form, iq, item, join, login, NS_MUC_OWNER, NS_MUC_USER, nothing, presenceFrom,
  SERVICE, startMucServer, subject,
} from '../helpers/muc-client.js';

const srv = await startMucServer("{ create: local, admins: ['dave@localhost'] }", { hosts: ['localhost', 'other.test'] });
t.teardown(() => srv.close());
await srv.register('eve', 'pw', 'other.test');

t.test('the host lists the service; the service is a conference/text MUC', async (t) => {
  const alice = await login(srv, 'alice');
  const items = await iq(alice, 'get', 'localhost', "<query xmlns='http://jabber.org/protocol/disco#items'/>");
  t.ok(items.getChild('query')!.getChildren('item').some((i) => i.attrs.jid === SERVICE), 'host disco#items has the service');
  const info = await iq(alice, 'get', SERVICE, "<query xmlns='http://jabber.org/protocol/disco#info'/>");
  const q = info.getChild('query')!;
  t.match(q.getChild('identity')!.attrs, { category: 'conference', type: 'text' });
  t.ok(q.getChildren('feature').some((f) => f.attrs.var === 'http://jabber.org/protocol/muc'));
  alice.end();
});

t.test('instant room: 201 and 110, locked until the owner submits the form', async (t) => {
  const alice = await login(srv, 'alice');
  const bob = await login(srv, 'bob');
  const room = `instant@${SERVICE}`;
  const self = await join(alice, room, 'Alice');
  t.equal(self.attrs.from, `${room}/Alice`);
  t.same(codes(self), [110, 170, 201], 'self-presence of a new room (archiving on by default)');
  t.match(item(self), { affiliation: 'owner', role: 'moderator', jid: 'alice@localhost/r' });
  t.ok(self.getChild('occupant-id', 'urn:xmpp:occupant-id:0'), 'occupant-id on presence');
  await subject(alice, room);

  const locked = await join(bob, room, 'Bob');
  t.equal(locked.attrs.type, 'error');
  t.equal(errorCondition(locked), 'item-not-found', 'a locked room does not exist for others');

  const r = await iq(alice, 'set', room, `<query xmlns='${NS_MUC_OWNER}'><x xmlns='jabber:x:data' type='submit'/></query>`);
  t.equal(r.attrs.type, 'result');
  const bobSelf = await join(bob, room, 'Bob');
  t.same(codes(bobSelf), [110, 170], 'no 201 for a later occupant');
  t.match(item(bobSelf), { affiliation: 'none', role: 'participant' });
  t.notOk(item(bobSelf).jid === undefined, 'own jid is shown in self-presence');
  const seen = await alice.next(presenceFrom(`${room}/Bob`));
  t.equal(item(seen).jid, 'bob@localhost/r', 'moderators see real JIDs');
  t.same(codes(seen), []);
  const carol = await login(srv, 'carol');
  carol.send(`<presence to='${room}/Carol'><x xmlns='http://jabber.org/protocol/muc'/></presence>`);
  const aliceToCarol = await carol.next(presenceFrom(`${room}/Alice`));
  t.equal(item(aliceToCarol).jid, undefined, 'semi-anonymous: a participant does not see real JIDs');
  t.equal(item(aliceToCarol).affiliation, 'owner');
  carol.end();

  bob.send(`<presence to='${room}/Bob' type='unavailable'><status>bye</status></presence>`);
  const gone = await bob.next(presenceFrom(`${room}/Bob`, 'unavailable'));
  t.same(codes(gone), [110]);
  t.equal(item(gone).role, 'none');
  const goneOther = await alice.next(presenceFrom(`${room}/Bob`, 'unavailable'));
  t.equal(goneOther.getChildText('status'), 'bye', 'the status text of the leave is passed on');
  alice.end();
  bob.end();
});

t.test('reserved room: configuration form with the archiving field, then room disco', async (t) => {
  const alice = await login(srv, 'alice');
  const room = `reserved@${SERVICE}`;
  await join(alice, room, 'Alice');
  await subject(alice, room);
  const f = await iq(alice, 'get', room, `<query xmlns='${NS_MUC_OWNER}'/>`);
  const x = f.getChild('query')!.getChild('x', 'jabber:x:data')!;
  const vars = x.getChildren('field').map((fl) => fl.attrs.var);
  for (const v of ['muc#roomconfig_roomname', 'muc#roomconfig_roomdesc', 'muc#roomconfig_publicroom', 'muc#roomconfig_persistentroom',
    'muc#roomconfig_membersonly', 'muc#roomconfig_moderatedroom', 'muc#roomconfig_passwordprotectedroom', 'muc#roomconfig_roomsecret',
    'muc#roomconfig_maxusers', 'muc#roomconfig_whois', 'muc#roomconfig_allowinvites', 'muc#roomconfig_allowpm',
    'muc#roomconfig_changesubject', 'muc#roomconfig_historylength', 'muc#roomconfig_enablearchiving',
    'muc#roomconfig_roomowners', 'muc#roomconfig_roomadmins']) {
    t.ok(vars.includes(v), `form has ${v}`);
  }
  const bad = await iq(alice, 'set', room, `<query xmlns='${NS_MUC_OWNER}'>${form({ 'muc#roomconfig_maxusers': 'many', 'muc#roomconfig_roomname': 'Nope' })}</query>`);
  t.equal(errorCondition(bad), 'not-acceptable', 'a bad value refuses the whole form');
  const ok = await iq(alice, 'set', room, `<query xmlns='${NS_MUC_OWNER}'>${form({
    'muc#roomconfig_roomname': 'The Room', 'muc#roomconfig_roomdesc': 'About things', 'muc#roomconfig_persistentroom': '1',
    'muc#roomconfig_whois': 'anyone',
  })}</query>`);
  t.equal(ok.attrs.type, 'result');
  const info = await iq(alice, 'get', room, "<query xmlns='http://jabber.org/protocol/disco#info'/>");
  const q = info.getChild('query')!;
  const features = q.getChildren('feature').map((fe) => fe.attrs.var);
  for (const v of ['http://jabber.org/protocol/muc', 'urn:xmpp:mam:2', 'vcard-temp', 'urn:xmpp:sid:0', 'urn:xmpp:occupant-id:0',
    'http://jabber.org/protocol/muc#stable_id', 'muc_persistent', 'muc_nonanonymous', 'muc_public', 'muc_open', 'muc_unsecured',
    'muc_unmoderated', 'urn:xmpp:message-moderate:1']) {
    t.ok(features.includes(v), `room has ${v}`);
  }
  t.equal(q.getChild('identity')!.attrs.name, 'The Room');
  t.notOk(q.getChildren('feature').some((fe) => fe.attrs.var === 'muc_semianonymous'));
  const roominfo = q.getChild('x', 'jabber:x:data')!;
  t.equal(roominfo.getChildren('field').find((fl) => fl.attrs.var === 'muc#roominfo_description')?.getChildText('value'), 'About things');

  const items = await iq(alice, 'get', SERVICE, "<query xmlns='http://jabber.org/protocol/disco#items'/>");
  const listed = items.getChild('query')!.getChildren('item');
  t.ok(listed.some((i) => i.attrs.jid === room && i.attrs.name === 'The Room'), 'public room listed');

  // A non-owner neither reads nor changes the configuration.
  const bob = await login(srv, 'bob');
  const self = await join(bob, room, 'Bob');
  t.same(codes(self), [100, 110, 170], '100: the room is non-anonymous');
  const get = await iq(bob, 'get', room, `<query xmlns='${NS_MUC_OWNER}'/>`);
  t.equal(errorCondition(get), 'forbidden');
  const set = await iq(bob, 'set', room, `<query xmlns='${NS_MUC_OWNER}'>${form({ 'muc#roomconfig_roomname': 'Mine' })}</query>`);
  t.equal(errorCondition(set), 'forbidden', 'configuration by a non-owner');
  const again = await iq(bob, 'get', room, "<query xmlns='http://jabber.org/protocol/disco#info'/>");
  t.equal(again.getChild('query')!.getChild('identity')!.attrs.name, 'The Room', 'nothing changed');

  // A later configuration change is announced with 104 (and 173 when JIDs become hidden).
  await iq(alice, 'set', room, `<query xmlns='${NS_MUC_OWNER}'>${form({ 'muc#roomconfig_whois': 'moderators' })}</query>`);
  const note = await bob.next((el) => el.name === 'message' && el.attrs.from === room && el.getChild('x', NS_MUC_USER) !== undefined);
  t.same(codes(note), [104, 173]);
  alice.end();
  bob.end();
});

t.test('joins that are refused', async (t) => {
  const alice = await login(srv, 'alice');
  const bob = await login(srv, 'bob');
  const room = `refusals@${SERVICE}`;
  await createInstant(alice, room, 'Alice');

  const conflict = await join(bob, room, 'alice');
  t.equal(errorCondition(conflict), 'conflict', 'nicks compare case-insensitively');
  t.equal(conflict.attrs.from, `${room}/alice`);
  const bad = await join(bob, room, '%20%20'.replace(/%20/g, ' '));
  t.equal(errorCondition(bad), 'jid-malformed', 'a nick of spaces only');
  bob.send(`<presence to='${room}'><x xmlns='http://jabber.org/protocol/muc'/></presence>`);
  const noNick = await bob.nextNamed('presence');
  t.equal(errorCondition(noNick), 'jid-malformed', 'no nick at all');
  t.ok(await nothing(alice, presenceFrom(`${room}/alice`)), 'nothing was broadcast');

  // Nick normalisation: status 210 and the prepared nick.
  const modified = await join(bob, room, ' Bob ');
  t.equal(modified.attrs.from, `${room}/Bob`);
  t.ok(codes(modified).includes(210), 'service-modified nick');
  alice.end();
  bob.end();
});

t.test('who may create rooms', async (t) => {
  const eve = await RawClientLogin('eve', 'other.test');
  const e = await join(eve, `evesroom@${SERVICE}`, 'Eve');
  t.equal(errorCondition(e), 'not-allowed', 'create: local refuses other hosts');
  const room = `nocreate@${SERVICE}`;
  const later = await join(eve, room, 'Eve');
  t.equal(errorCondition(later), 'not-allowed');
  const alice = await login(srv, 'alice');
  await createInstant(alice, room, 'Alice');
  const ok = await join(eve, room, 'Eve');
  t.same(codes(ok), [110, 170], 'but users of other hosts may join existing rooms');
  eve.end();
  alice.end();
});

t.test('old groupchat protocol: a join without the MUC element makes an unlocked room', async (t) => {
  const alice = await login(srv, 'alice');
  const bob = await login(srv, 'bob');
  const room = `legacy@${SERVICE}`;
  const self = await join(alice, room, 'Alice', '', false);
  t.ok(codes(self).includes(201));
  const b = await join(bob, room, 'Bob');
  t.same(codes(b), [110, 170], 'no configuration was needed');
  alice.end();
  bob.end();
});

t.test('temporary rooms disappear with their last occupant', async (t) => {
  const alice = await login(srv, 'alice');
  const room = `fleeting@${SERVICE}`;
  await createInstant(alice, room, 'Alice');
  alice.send(`<presence to='${room}/Alice' type='unavailable'/>`);
  await alice.next(presenceFrom(`${room}/Alice`, 'unavailable'));
  const info = await iq(alice, 'get', room, "<query xmlns='http://jabber.org/protocol/disco#info'/>");
  t.equal(errorCondition(info), 'item-not-found');
  alice.end();
});

t.test('leaving on disconnect', async (t) => {
  const alice = await login(srv, 'alice');
  const bob = await login(srv, 'bob');
  const room = `disconnect@${SERVICE}`;
  await createInstant(alice, room, 'Alice');
  await join(bob, room, 'Bob');
  await alice.next(presenceFrom(`${room}/Bob`));
  bob.destroy();
  const gone = await alice.next(presenceFrom(`${room}/Bob`, 'unavailable'));
  t.equal(item(gone).role, 'none');
  alice.end();
});

async function RawClientLogin(user: string, host: string) {
  const { RawClient } = await import('../helpers/raw-client.js');
  return RawClient.login(srv.c2sPort, user, 'pw', { resource: 'r', host });
}
