// The room archive (XEP-0313 on the room JID) and moderation (XEP-0425).
import t from 'tap';
import type { Element } from 'ltx';
import type { RawClient } from '../helpers/raw-client.js';
import {
  createConfigured, createInstant, errorCondition, groupchatBody, iq, join, login, nextId, SERVICE, startMucServer, subject,
} from '../helpers/muc-client.js';

const srv = await startMucServer('{ mam_max_page: 4, message_rate: 0 }');
t.teardown(() => srv.close());

const NS_MAM = 'urn:xmpp:mam:2';

/** Runs a MAM query and collects the results and the fin. */
async function mam(c: RawClient, room: string, inner = ''): Promise<{ results: Element[]; iq: Element }> {
  const id = nextId();
  const queryid = `q-${id}`;
  c.send(`<iq type='set' to='${room}' id='${id}'><query xmlns='${NS_MAM}' queryid='${queryid}'>${inner}</query></iq>`);
  const results: Element[] = [];
  for (;;) {
    const el = await c.next((e) => (e.name === 'iq' && e.attrs.id === id) || (e.name === 'message' && e.getChild('result', NS_MAM)?.attrs.queryid === queryid));
    if (el.name === 'iq') return { results, iq: el };
    results.push(el);
  }
}
const bodies = (rs: Element[]) => rs.map((r) => r.getChild('result', NS_MAM)!.getChild('forwarded', 'urn:xmpp:forward:0')!.getChild('message')!.getChildText('body'));
const ids = (rs: Element[]) => rs.map((r) => r.getChild('result', NS_MAM)!.attrs.id!);
const rsm = (q: { iq: Element }) => q.iq.getChild('fin', NS_MAM)!.getChild('set', 'http://jabber.org/protocol/rsm')!;

t.test('MAM on the room: forms, paging forwards and backwards, filters', async (t) => {
  const alice = await login(srv, 'alice');
  const room = `archived@${SERVICE}`;
  await createInstant(alice, room, 'Alice');
  const start = new Date(Date.now() - 1000).toISOString();
  for (let i = 1; i <= 6; i++) {
    alice.send(`<message to='${room}' type='groupchat'><body>a${i}</body></message>`);
    await alice.next(groupchatBody(room, `a${i}`));
  }
  alice.send(`<message to='${room}' type='groupchat'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>`);

  const form = await iq(alice, 'get', room, `<query xmlns='${NS_MAM}'/>`);
  const vars = form.getChild('query')!.getChild('x', 'jabber:x:data')!.getChildren('field').map((f) => f.attrs.var);
  t.ok(['FORM_TYPE', 'with', 'start', 'end'].every((v) => vars.includes(v)));

  const p1 = await mam(alice, room, "<set xmlns='http://jabber.org/protocol/rsm'><max>4</max></set>");
  t.same(bodies(p1.results), ['a1', 'a2', 'a3', 'a4'], 'first page; chat states are not archived');
  t.notOk(p1.iq.getChild('fin', NS_MAM)!.attrs.complete);
  t.equal(rsm(p1).getChildText('count'), '6');
  t.equal(rsm(p1).getChildText('first'), ids(p1.results)[0]);
  const fwd = p1.results[0]!.getChild('result', NS_MAM)!.getChild('forwarded', 'urn:xmpp:forward:0')!;
  t.ok(fwd.getChild('delay', 'urn:xmpp:delay')?.attrs.stamp, 'delay with the time');
  t.equal(fwd.getChild('message')!.attrs.from, `${room}/Alice`);
  t.equal(p1.results[0]!.attrs.from, room);

  const p2 = await mam(alice, room, `<set xmlns='http://jabber.org/protocol/rsm'><max>4</max><after>${rsm(p1).getChildText('last')}</after></set>`);
  t.same(bodies(p2.results), ['a5', 'a6']);
  t.equal(p2.iq.getChild('fin', NS_MAM)!.attrs.complete, 'true', 'last page is complete');

  const last = await mam(alice, room, "<set xmlns='http://jabber.org/protocol/rsm'><max>2</max><before/></set>");
  t.same(bodies(last.results), ['a5', 'a6'], 'before empty: the last page');
  const prev = await mam(alice, room, `<set xmlns='http://jabber.org/protocol/rsm'><max>10</max><before>${rsm(last).getChildText('first')}</before></set>`);
  t.same(bodies(prev.results), ['a1', 'a2', 'a3', 'a4'], 'max above mam_max_page is lowered');

  const withForm = `<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>${NS_MAM}</value></field>`
    + `<field var='start'><value>${start}</value></field><field var='with'><value>${room}/Alice</value></field></x>`;
  const filtered = await mam(alice, room, withForm);
  t.equal(filtered.results.length, 4);
  const future = await mam(alice, room, `<x xmlns='jabber:x:data' type='submit'><field var='start'><value>${new Date(Date.now() + 60_000).toISOString()}</value></field></x>`);
  t.equal(future.results.length, 0);

  const badDate = await mam(alice, room, "<x xmlns='jabber:x:data' type='submit'><field var='start'><value>yesterday</value></field></x>");
  t.equal(errorCondition(badDate.iq), 'bad-request');
  const unknownField = await mam(alice, room, "<x xmlns='jabber:x:data' type='submit'><field var='urn:example:filter'><value>x</value></field></x>");
  t.equal(errorCondition(unknownField.iq), 'feature-not-implemented', 'XEP-0313: unsupported fields');
  const badId = await mam(alice, room, "<set xmlns='http://jabber.org/protocol/rsm'><after>nope</after></set>");
  t.equal(errorCondition(badId.iq), 'item-not-found');
  alice.end();
});

t.test('archive access follows membership; archiving can be off', async (t) => {
  const alice = await login(srv, 'alice');
  const bob = await login(srv, 'bob');
  const room = `private-archive@${SERVICE}`;
  await createConfigured(alice, room, 'Alice', { 'muc#roomconfig_membersonly': '1' });
  t.equal(errorCondition((await mam(bob, room)).iq), 'forbidden');
  const off = `unarchived@${SERVICE}`;
  await createConfigured(alice, off, 'Alice', { 'muc#roomconfig_enablearchiving': '0' });
  const info = await iq(alice, 'get', off, "<query xmlns='http://jabber.org/protocol/disco#info'/>");
  t.notOk(info.getChild('query')!.getChildren('feature').some((f) => f.attrs.var === NS_MAM), 'no mam:2 without archiving');
  t.equal(errorCondition((await mam(alice, off)).iq), 'service-unavailable');
  alice.end();
  bob.end();
});

t.test('moderation: retraction broadcast and tombstone in the archive', async (t) => {
  const alice = await login(srv, 'alice');
  const bob = await login(srv, 'bob');
  const room = `moderation@${SERVICE}`;
  await createInstant(alice, room, 'Alice');
  await join(bob, room, 'Bob');
  await subject(bob, room);
  bob.send(`<message to='${room}' type='groupchat'><body>spam spam</body></message>`);
  const spam = await alice.next(groupchatBody(room, 'spam spam'));
  const id = spam.getChild('stanza-id', 'urn:xmpp:sid:0')!.attrs.id!;
  const moderate = (c: RawClient, sid: string) => iq(c, 'set', room,
    `<moderate id='${sid}' xmlns='urn:xmpp:message-moderate:1'><retract xmlns='urn:xmpp:message-retract:1'/><reason>Spam</reason></moderate>`);
  t.equal(errorCondition(await moderate(bob, id)), 'forbidden', 'participants cannot moderate');
  t.equal(errorCondition(await moderate(alice, 'unknown')), 'item-not-found');
  t.equal((await moderate(alice, id)).attrs.type, 'result');
  const r = await bob.next((el) => el.name === 'message' && el.getChild('retract', 'urn:xmpp:message-retract:1') !== undefined);
  t.equal(r.attrs.from, room);
  const retract = r.getChild('retract', 'urn:xmpp:message-retract:1')!;
  t.equal(retract.attrs.id, id);
  t.equal(retract.getChild('moderated', 'urn:xmpp:message-moderate:1')!.attrs.by, `${room}/Alice`);
  t.equal(retract.getChildText('reason'), 'Spam');
  const q = await mam(alice, room);
  const archived = q.results.map((m) => m.getChild('result', NS_MAM)!.getChild('forwarded', 'urn:xmpp:forward:0')!.getChild('message')!);
  const tomb = archived.find((m) => m.getChild('retracted', 'urn:xmpp:message-retract:1'))!;
  t.ok(tomb, 'tombstone in place of the message');
  t.equal(tomb.getChildText('body'), null, 'its body is gone');
  t.equal(q.results.map((m) => m.getChild('result', NS_MAM)!.attrs.id)[0], id, 'at the same place in the archive');
  const stored = await srv.server.storage.archive<{ xml: string }>('muc_archive').get(room, id);
  t.notMatch(stored!.value.xml, /spam spam/, 'the moderated text is gone from the database too');
  t.match(stored!.value.xml, /urn:xmpp:message-retract:1/, 'the stored item is the tombstone');
  t.ok(archived.some((m) => m.getChild('retract', 'urn:xmpp:message-retract:1')), 'the retraction is archived too');
  // A joining occupant sees the tombstone in history, not the message.
  const carol = await login(srv, 'carol');
  await join(carol, room, 'Carol');
  const hist = await carol.next((el) => el.name === 'message' && el.getChild('delay', 'urn:xmpp:delay') !== undefined);
  t.ok(hist.getChild('retracted', 'urn:xmpp:message-retract:1'));
  for (const c of [alice, bob, carol]) c.end();
});
