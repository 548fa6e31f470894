// Registering a nickname with a room (XEP-0045 §7.10) and discovering it (§7.12): the form, the
// registration and its answer, the nickname reserved against everyone else (joins, nick changes,
// other registrations), the member affiliation it brings, giving it up, bans, and bad forms.
import t from 'tap';
import type { Element } from 'ltx';
import type { RawClient } from '../helpers/raw-client.js';
import {
  createConfigured, createInstant, errorCondition, iq, join, login, NS_MUC_ADMIN, SERVICE, startMucServer, subject,
} from '../helpers/muc-client.js';

const srv = await startMucServer();
t.teardown(() => srv.close());

const NS_REGISTER = 'jabber:iq:register';
const NS_MUC_REGISTER = 'http://jabber.org/protocol/muc#register';

const registration = (nick: string, formType = NS_MUC_REGISTER): string => `<query xmlns='${NS_REGISTER}'><x xmlns='jabber:x:data' type='submit'>`
  + `<field var='FORM_TYPE'><value>${formType}</value></field><field var='muc#register_roomnick'><value>${nick}</value></field></x></query>`;
const register = (c: RawClient, room: string, nick: string) => iq(c, 'set', room, registration(nick));
const registeredNick = async (c: RawClient, room: string): Promise<string | null> => {
  const q = (await iq(c, 'get', room, `<query xmlns='${NS_REGISTER}'/>`)).getChild('query', NS_REGISTER)!;
  return q.getChild('registered') ? q.getChildText('username') : null;
};
const reservedByDisco = async (c: RawClient, room: string): Promise<string | undefined> => {
  const r = await iq(c, 'get', room, "<query xmlns='http://jabber.org/protocol/disco#info' node='x-roomuser-item'/>");
  return r.getChild('query')!.getChild('identity')?.attrs.name;
};
const members = async (owner: RawClient, room: string): Promise<Element[]> =>
  (await iq(owner, 'get', room, `<query xmlns='${NS_MUC_ADMIN}'><item affiliation='member'/></query>`)).getChild('query')!.getChildren('item');

t.test('a registered nickname is reserved for its user', async (t) => {
  const alice = await login(srv, 'alice');
  const bob = await login(srv, 'bob');
  const carol = await login(srv, 'carol');
  const room = `registry@${SERVICE}`;
  await createInstant(alice, room, 'Alice');

  const form = (await iq(bob, 'get', room, `<query xmlns='${NS_REGISTER}'/>`)).getChild('query', NS_REGISTER)!.getChild('x', 'jabber:x:data')!;
  t.equal(form.attrs.type, 'form');
  const vars = form.getChildren('field').map((f) => f.attrs.var);
  t.same(vars, ['FORM_TYPE', 'muc#register_roomnick'], 'the form asks for the nickname');
  t.ok(form.getChildren('field')[1]!.getChild('required'), 'which is required');
  t.equal(await reservedByDisco(bob, room), undefined, 'nothing registered yet');

  t.equal((await register(bob, room, 'Bobby')).attrs.type, 'result');
  t.equal(await registeredNick(bob, room), 'Bobby', 'a get now answers with the registered nickname');
  t.equal(await reservedByDisco(bob, room), 'Bobby', '§7.12: the x-roomuser-item node names it');
  t.equal(await reservedByDisco(carol, room), undefined, 'only to its user');
  const list = await members(alice, room);
  t.same(list.map((i) => [i.attrs.jid, i.attrs.nick]), [['bob@localhost', 'Bobby']], 'registering made bob a member, listed with the nick');

  t.equal(errorCondition(await join(carol, room, 'bobby')), 'conflict', 'nobody else enters under it (compared case-insensitively)');
  t.equal(errorCondition(await register(carol, room, 'BOBBY')), 'conflict', 'nor registers it');
  t.equal((await join(bob, room, 'Bobby')).attrs.type, undefined, 'its user enters under it');
  await subject(bob, room);
  await join(carol, room, 'Carol');
  await subject(carol, room);
  carol.send(`<presence to='${room}/Bobby'/>`);
  const change = await carol.next((el) => el.name === 'presence' && el.attrs.type === 'error');
  t.equal(errorCondition(change), 'conflict', 'nor changes to it');

  t.equal((await iq(bob, 'set', room, `<query xmlns='${NS_REGISTER}'><remove/></query>`)).attrs.type, 'result');
  t.equal(await registeredNick(bob, room), null, 'given up');
  t.same((await members(alice, room)).map((i) => i.attrs.jid), ['bob@localhost'], 'the affiliation stays');
  t.equal((await register(carol, room, 'Carol')).attrs.type, 'result', 'carol registers her own');
  for (const c of [alice, bob, carol]) c.end();
});

t.test('a ban ends the registration; bad forms get clear errors', async (t) => {
  const alice = await login(srv, 'alice');
  const bob = await login(srv, 'bob');
  const room = `registry2@${SERVICE}`;
  await createInstant(alice, room, 'Alice');
  t.equal((await register(bob, room, 'Bob')).attrs.type, 'result');
  t.equal((await iq(alice, 'set', room, `<query xmlns='${NS_MUC_ADMIN}'><item affiliation='admin' jid='bob@localhost'/></query>`)).attrs.type, 'result');
  t.equal(await registeredNick(bob, room), 'Bob', 'kept when the affiliation changes');
  t.equal((await iq(alice, 'set', room, `<query xmlns='${NS_MUC_ADMIN}'><item affiliation='outcast' jid='bob@localhost'/></query>`)).attrs.type, 'result');
  t.equal(errorCondition(await iq(bob, 'get', room, `<query xmlns='${NS_REGISTER}'/>`)), 'forbidden', 'banned users cannot register');
  t.equal((await register(alice, room, 'Bob')).attrs.type, 'result', 'the banned user\'s nickname is free again');

  t.equal(errorCondition(await iq(alice, 'set', room, `<query xmlns='${NS_REGISTER}'/>`)), 'bad-request', 'no form');
  t.equal(errorCondition(await register(alice, room, '')), 'not-acceptable', 'no nickname');
  t.equal(errorCondition(await iq(alice, 'set', room, registration('X', 'urn:example'))), 'bad-request', 'another FORM_TYPE');
  t.equal(errorCondition(await register(alice, room, 'a\ue000b')), 'jid-malformed', 'not a valid nickname');
  alice.end();
  bob.end();
});

t.test('in a members-only room only members register', async (t) => {
  const alice = await login(srv, 'alice');
  const dave = await login(srv, 'dave');
  const room = `registry3@${SERVICE}`;
  await createConfigured(alice, room, 'Alice', { 'muc#roomconfig_membersonly': '1' });
  t.equal(errorCondition(await iq(dave, 'get', room, `<query xmlns='${NS_REGISTER}'/>`)), 'not-allowed');
  t.equal(errorCondition(await register(dave, room, 'Dave')), 'not-allowed', 'registering would let anyone in');
  t.equal((await iq(alice, 'set', room, `<query xmlns='${NS_MUC_ADMIN}'><item affiliation='member' jid='dave@localhost'/></query>`)).attrs.type, 'result');
  t.equal((await register(dave, room, 'Dave')).attrs.type, 'result', 'a member may');
  alice.end();
  dave.end();
});
