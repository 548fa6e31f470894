// Groupchat, subject, private messages, history on join, invitations, rate limit.
import t from 'tap';
import type { Element } from 'ltx';
import {
  codes, createConfigured, createInstant, errorCondition, groupchatBody, iq, join, login, NS_MUC_USER, nothing,
  presenceFrom, SERVICE, startMucServer, subject,
} from '../helpers/muc-client.js';

const srv = await startMucServer('{ message_rate: 5, rate_window: 1m }');
t.teardown(() => srv.close());

const sid = (el: Element) => el.getChild('stanza-id', 'urn:xmpp:sid:0');

t.test('groupchat: reflected to everyone in order, with stanza-id and occupant-id', async (t) => {
  const alice = await login(srv, 'alice');
  const bob = await login(srv, 'bob');
  const room = `chat@${SERVICE}`;
  await createInstant(alice, room, 'Alice');
  await join(bob, room, 'Bob');
  await subject(bob, room);
  for (let i = 1; i <= 5; i++) alice.send(`<message to='${room}' type='groupchat' id='g${i}'><body>m${i}</body><stanza-id xmlns='urn:xmpp:sid:0' by='${room}' id='forged'/><occupant-id xmlns='urn:xmpp:occupant-id:0' id='forged'/></message>`);
  const got: Element[] = [];
  for (let i = 1; i <= 5; i++) got.push(await bob.next(groupchatBody(room)));
  t.same(got.map((m) => m.getChildText('body')), ['m1', 'm2', 'm3', 'm4', 'm5'], 'in order');
  const m = got[0]!;
  t.equal(m.attrs.from, `${room}/Alice`);
  t.equal(m.attrs.id, 'g1', 'the id is kept');
  t.equal(m.getChildren('stanza-id', 'urn:xmpp:sid:0').length, 1, 'the forged stanza-id is gone');
  t.equal(sid(m)!.attrs.by, room);
  t.not(sid(m)!.attrs.id, 'forged');
  const oid = m.getChildren('occupant-id', 'urn:xmpp:occupant-id:0');
  t.equal(oid.length, 1);
  t.not(oid[0]!.attrs.id, 'forged');
  const echo = await alice.next(groupchatBody(room, 'm1'));
  t.equal(sid(echo)!.attrs.id, sid(m)!.attrs.id, 'the sender gets the same stanza-id');
  alice.end();
  bob.end();
});

t.test('bad groupchat input is refused and not stored', async (t) => {
  const alice = await login(srv, 'alice');
  const carol = await login(srv, 'carol');
  const room = `strict@${SERVICE}`;
  await createInstant(alice, room, 'Alice');
  carol.send(`<message to='${room}' type='groupchat' id='x1'><body>let me in</body></message>`);
  const e = await carol.nextNamed('message', 'x1');
  t.equal(errorCondition(e), 'not-acceptable', 'a non-occupant cannot speak');
  t.equal(e.getChild('error')!.attrs.type, 'modify');
  t.ok(await nothing(alice, groupchatBody(room, 'let me in')));
  const mam = await iq(alice, 'set', room, "<query xmlns='urn:xmpp:mam:2'/>");
  t.equal(mam.getChild('fin')!.getChild('set')!.getChildText('count'), '0', 'nothing was archived');
  carol.send(`<message to='nowhere@${SERVICE}' type='groupchat' id='x2'><body>?</body></message>`);
  t.equal(errorCondition(await carol.nextNamed('message', 'x2')), 'item-not-found');
  alice.end();
  carol.end();
});

t.test('subject: moderators, or anyone when the room allows it', async (t) => {
  const alice = await login(srv, 'alice');
  const bob = await login(srv, 'bob');
  const room = `topic@${SERVICE}`;
  await createInstant(alice, room, 'Alice');
  await join(bob, room, 'Bob');
  await subject(bob, room);
  bob.send(`<message to='${room}' type='groupchat' id='s1'><subject>Bob's topic</subject></message>`);
  t.equal(errorCondition(await bob.nextNamed('message', 's1')), 'forbidden');
  alice.send(`<message to='${room}' type='groupchat' id='s2'><subject>Cats</subject></message>`);
  const s = await bob.next((el) => el.name === 'message' && el.getChildText('subject') === 'Cats');
  t.equal(s.attrs.from, `${room}/Alice`);
  const carol = await login(srv, 'carol');
  await join(carol, room, 'Carol');
  const onJoin = await subject(carol, room);
  t.equal(onJoin.getChildText('subject'), 'Cats', 'the subject is sent on join');
  t.equal(onJoin.attrs.from, `${room}/Alice`);
  await iq(alice, 'set', room, "<query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'><field var='muc#roomconfig_changesubject'><value>1</value></field></x></query>");
  bob.send(`<message to='${room}' type='groupchat' id='s3'><subject>Dogs</subject></message>`);
  t.ok(await carol.next((el) => el.name === 'message' && el.getChildText('subject') === 'Dogs'));
  for (const c of [alice, bob, carol]) c.end();
});

t.test('private messages', async (t) => {
  const alice = await login(srv, 'alice');
  const bob = await login(srv, 'bob');
  const carol = await login(srv, 'carol');
  const room = `whisper@${SERVICE}`;
  await createInstant(alice, room, 'Alice');
  await join(bob, room, 'Bob');
  bob.send(`<message to='${room}/Alice' type='chat' id='p1'><body>psst</body></message>`);
  const pm = await alice.next((el) => el.name === 'message' && el.getChildText('body') === 'psst');
  t.equal(pm.attrs.from, `${room}/Bob`);
  t.equal(pm.attrs.to, 'alice@localhost/r');
  t.ok(pm.getChild('x', NS_MUC_USER), 'marked as a MUC private message');
  t.ok(pm.getChild('occupant-id', 'urn:xmpp:occupant-id:0'));
  bob.send(`<message to='${room}/Nobody' type='chat' id='p2'><body>?</body></message>`);
  t.equal(errorCondition(await bob.nextNamed('message', 'p2')), 'item-not-found');
  bob.send(`<message to='${room}/Alice' type='groupchat' id='p3'><body>?</body></message>`);
  t.equal(errorCondition(await bob.nextNamed('message', 'p3')), 'bad-request');
  carol.send(`<message to='${room}/Alice' type='chat' id='p4'><body>outsider</body></message>`);
  t.equal(errorCondition(await carol.nextNamed('message', 'p4')), 'not-acceptable');
  await iq(alice, 'set', room, "<query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'><field var='muc#roomconfig_allowpm'><value>none</value></field></x></query>");
  bob.send(`<message to='${room}/Alice' type='chat' id='p5'><body>still?</body></message>`);
  t.equal(errorCondition(await bob.nextNamed('message', 'p5')), 'forbidden', 'allowpm none');
  for (const c of [alice, bob, carol]) c.end();
});

t.test('history on join: historylength, maxstanzas, maxchars, seconds, since; with delay', async (t) => {
  const alice = await login(srv, 'alice');
  const room = `history@${SERVICE}`;
  await createConfigured(alice, room, 'Alice', { 'muc#roomconfig_historylength': '3' });
  for (let i = 1; i <= 4; i++) {
    alice.send(`<message to='${room}' type='groupchat'><body>h${i}</body></message>`);
    await alice.next(groupchatBody(room, `h${i}`));
  }
  const history = async (user: string, extra: string): Promise<string[]> => {
    const c = await login(srv, user);
    await join(c, room, user, extra);
    const bodies: string[] = [];
    for (;;) {
      const el = await c.next((e) => e.name === 'message' && e.attrs.from?.startsWith(room) === true);
      if (el.getChild('subject')) break;
      const delay = el.getChild('delay', 'urn:xmpp:delay');
      t.equal(delay?.attrs.from, room, 'history carries a delay from the room');
      bodies.push(el.getChildText('body')!);
    }
    c.end();
    return bodies;
  };
  t.same(await history('bob', ''), ['h2', 'h3', 'h4'], 'the room keeps historylength messages');
  t.same(await history('carol', "<history maxstanzas='2'/>"), ['h3', 'h4']);
  t.same(await history('dave', "<history maxchars='0'/>"), []);
  t.same(await history('bob', "<history seconds='3600'/>"), ['h2', 'h3', 'h4']);
  t.same(await history('carol', `<history since='${new Date(Date.now() + 60_000).toISOString()}'/>`), []);
  t.same(await history('dave', "<history maxchars='1000000' maxstanzas='1'/>"), ['h4'], 'limits combine');
  alice.end();
});

t.test('mediated invitations and declines; direct invitations pass through', async (t) => {
  const alice = await login(srv, 'alice');
  const bob = await login(srv, 'bob');
  const carol = await login(srv, 'carol');
  const room = `party@${SERVICE}`;
  await createConfigured(alice, room, 'Alice', { 'muc#roomconfig_membersonly': '1', 'muc#roomconfig_passwordprotectedroom': '1', 'muc#roomconfig_roomsecret': 'cake' });
  alice.send(`<message to='${room}' id='i1'><x xmlns='${NS_MUC_USER}'><invite to='bob@localhost'><reason>Join us</reason></invite></x></message>`);
  const inv = await bob.next((el) => el.name === 'message' && el.attrs.from === room);
  const x = inv.getChild('x', NS_MUC_USER)!;
  t.equal(x.getChild('invite')!.attrs.from, 'alice@localhost/r');
  t.equal(x.getChild('invite')!.getChildText('reason'), 'Join us');
  t.equal(x.getChildText('password'), 'cake', 'the invitee learns the password');
  t.same(codes(await join(bob, room, 'Bob', '<password>cake</password>')), [110, 170], 'invited into a members-only room');

  // A participant of a members-only room may not invite.
  bob.send(`<message to='${room}' id='i2'><x xmlns='${NS_MUC_USER}'><invite to='carol@localhost'/></x></message>`);
  t.equal(errorCondition(await bob.nextNamed('message', 'i2')), 'forbidden');
  t.ok(await nothing(carol, (el) => el.name === 'message' && el.attrs.from === room));
  carol.send(`<message to='${room}' id='i3'><x xmlns='${NS_MUC_USER}'><invite to='dave@localhost'/></x></message>`);
  t.equal(errorCondition(await carol.nextNamed('message', 'i3')), 'not-acceptable', 'outsiders cannot invite');

  alice.send(`<message to='${room}'><x xmlns='${NS_MUC_USER}'><invite to='carol@localhost'/></x></message>`);
  await carol.next((el) => el.name === 'message' && el.attrs.from === room);
  carol.send(`<message to='${room}'><x xmlns='${NS_MUC_USER}'><decline to='alice@localhost/r'><reason>Busy</reason></decline></x></message>`);
  const dec = await alice.next((el) => el.name === 'message' && el.getChild('x', NS_MUC_USER)?.getChild('decline') !== undefined);
  t.equal(dec.attrs.from, room);
  t.equal(dec.getChild('x', NS_MUC_USER)!.getChild('decline')!.attrs.from, 'carol@localhost');
  t.equal(dec.getChild('x', NS_MUC_USER)!.getChild('decline')!.getChildText('reason'), 'Busy');

  // XEP-0249: from user to user, untouched by the server.
  alice.send(`<message to='carol@localhost/r'><x xmlns='jabber:x:conference' jid='${room}' password='cake' reason='come'/></message>`);
  const direct = await carol.next((el) => el.name === 'message' && el.getChild('x', 'jabber:x:conference') !== undefined);
  t.match(direct.getChild('x', 'jabber:x:conference')!.attrs, { jid: room, password: 'cake', reason: 'come' });
  t.equal(direct.attrs.from, 'alice@localhost/r');
  for (const c of [alice, bob, carol]) c.end();
});

t.test('message rate per occupant', async (t) => {
  const alice = await login(srv, 'alice');
  const room = `flood@${SERVICE}`;
  await createInstant(alice, room, 'Alice');
  for (let i = 1; i <= 6; i++) alice.send(`<message to='${room}' type='groupchat' id='f${i}'><body>f${i}</body></message>`);
  for (let i = 1; i <= 5; i++) t.ok(await alice.next(groupchatBody(room, `f${i}`)));
  const e = await alice.next((el) => el.name === 'message' && el.attrs.id === 'f6');
  t.equal(errorCondition(e), 'resource-constraint');
  t.equal(e.getChild('error')!.attrs.type, 'wait');
  alice.end();
});

t.test('nick change: 303 then the new presence', async (t) => {
  const alice = await login(srv, 'alice');
  const bob = await login(srv, 'bob');
  const room = `nicks@${SERVICE}`;
  await createInstant(alice, room, 'Alice');
  await join(bob, room, 'Bob');
  const before = await alice.next(presenceFrom(`${room}/Bob`));
  bob.send(`<presence to='${room}/Alice'/>`);
  t.equal(errorCondition(await bob.next((el) => el.name === 'presence' && el.attrs.type === 'error')), 'conflict');
  bob.send(`<presence to='${room}/Robert'/>`);
  const old = await alice.next(presenceFrom(`${room}/Bob`, 'unavailable'));
  t.same(codes(old), [303]);
  t.equal(old.getChild('x', NS_MUC_USER)!.getChild('item')!.attrs.nick, 'Robert');
  const now = await alice.next(presenceFrom(`${room}/Robert`));
  const selfOld = await bob.next(presenceFrom(`${room}/Bob`, 'unavailable'));
  t.same(codes(selfOld), [110, 303]);
  t.same(codes(await bob.next(presenceFrom(`${room}/Robert`))), [110]);
  const id = (el: Element) => el.getChild('occupant-id', 'urn:xmpp:occupant-id:0')!.attrs.id;
  t.equal(id(now), id(before), 'occupant-id is stable across nick changes');
  bob.send(`<presence to='${room}/Robert'><show>away</show></presence>`);
  const away = await alice.next(presenceFrom(`${room}/Robert`));
  t.equal(away.getChildText('show'), 'away', 'presence updates are broadcast');
  alice.end();
  bob.end();
});

t.test('a broadcast that yields between batches keeps the order for everyone', async (t) => {
  const own = await startMucServer('{ fanout_batch: 2, message_rate: 0 }');
  t.teardown(() => own.close());
  const room = `batched@${SERVICE}`;
  const alice = await login(own, 'alice');
  await createInstant(alice, room, 'Alice');
  const others = [];
  for (const u of ['bob', 'carol', 'dave']) {
    const c = await login(own, u);
    await join(c, room, u);
    await subject(c, room);
    others.push(c);
  }
  for (let i = 1; i <= 10; i++) alice.send(`<message to='${room}' type='groupchat'><body>b${i}</body></message>`);
  for (const c of [alice, ...others]) {
    const got: string[] = [];
    for (let i = 1; i <= 10; i++) got.push((await c.next(groupchatBody(room))).getChildText('body')!);
    t.same(got, Array.from({ length: 10 }, (_, i) => `b${i + 1}`));
  }
  for (const c of [alice, ...others]) c.end();
});
