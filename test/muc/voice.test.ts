// Voice requests in a moderated room (XEP-0045 §7.13, §8.6): a visitor asks, every moderator gets
// the form, a moderator's approval gives the visitor voice; repeated requests and answers from
// anyone but a moderator are refused.
import t from 'tap';
import type { Element } from 'ltx';
import {
  createConfigured, errorCondition, groupchatBody, item, join, login, nothing, presenceFrom, SERVICE, startMucServer, subject,
} from '../helpers/muc-client.js';

const srv = await startMucServer('{ voice_request_interval: 400ms }');
t.teardown(() => srv.close());

const NS_DATA = 'jabber:x:data';
const NS_REQUEST = 'http://jabber.org/protocol/muc#request';

const request = (room: string, id: string): string => `<message to='${room}' id='${id}'><x xmlns='${NS_DATA}' type='submit'>`
  + `<field var='FORM_TYPE'><value>${NS_REQUEST}</value></field>`
  + `<field var='muc#role' type='list-single'><value>participant</value></field></x></message>`;
const approval = (room: string, id: string, nick: string, allow: string): string => `<message to='${room}' id='${id}'>`
  + `<x xmlns='${NS_DATA}' type='submit'><field var='FORM_TYPE'><value>${NS_REQUEST}</value></field>`
  + `<field var='muc#role'><value>participant</value></field><field var='muc#roomnick'><value>${nick}</value></field>`
  + `<field var='muc#request_allow'><value>${allow}</value></field></x></message>`;

const isRequestForm = (room: string) => (el: Element): boolean => el.name === 'message' && el.attrs.from === room
  && el.getChildren('x', NS_DATA).some((x) => x.attrs.type === 'form');
const fieldValue = (form: Element, v: string): string | undefined =>
  form.getChildren('field').find((f) => f.attrs.var === v)?.getChildText('value') ?? undefined;

t.test('a visitor asks for voice and a moderator grants it', async (t) => {
  const alice = await login(srv, 'alice');
  const bob = await login(srv, 'bob', 'phone');
  const carol = await login(srv, 'carol');
  const dave = await login(srv, 'dave');
  const room = `voice@${SERVICE}`;
  await createConfigured(alice, room, 'Alice', { 'muc#roomconfig_moderatedroom': '1' });
  t.equal(item(await join(bob, room, 'Bob')).role, 'visitor');
  await subject(bob, room);
  t.equal(item(await join(carol, room, 'Carol')).role, 'visitor');
  await subject(carol, room);

  bob.send(request(room, 'r1'));
  const got = await alice.next(isRequestForm(room));
  const form = got.getChild('x', NS_DATA)!;
  t.equal(fieldValue(form, 'FORM_TYPE'), NS_REQUEST);
  t.equal(fieldValue(form, 'muc#roomnick'), 'Bob', 'names the visitor by nick');
  t.equal(fieldValue(form, 'muc#jid'), 'bob@localhost/phone', 'and by real JID: moderators see it');
  t.equal(fieldValue(form, 'muc#request_allow'), 'false');
  t.ok(await nothing(carol, isRequestForm(room)), 'visitors do not get the request');

  bob.send(request(room, 'r2'));
  const again = await bob.nextNamed('message', 'r2');
  t.equal(errorCondition(again), 'resource-constraint', 'a second request so soon is refused');
  t.equal(again.getChild('error')!.attrs.type, 'wait');

  carol.send(approval(room, 'a1', 'Bob', 'true'));
  t.equal(errorCondition(await carol.nextNamed('message', 'a1')), 'forbidden', 'only moderators answer');
  alice.send(approval(room, 'a2', 'Nobody', 'true'));
  t.equal(errorCondition(await alice.nextNamed('message', 'a2')), 'item-not-found');
  alice.send(approval(room, 'a3', 'Bob', 'false'));
  t.ok(await nothing(bob, (el) => presenceFrom(`${room}/Bob`)(el) && item(el).role === 'participant'), 'a denial changes nothing');

  alice.send(approval(room, 'a4', 'Bob', 'true'));
  await bob.next((el) => presenceFrom(`${room}/Bob`)(el) && item(el).role === 'participant');
  await carol.next((el) => presenceFrom(`${room}/Bob`)(el) && item(el).role === 'participant');
  bob.send(`<message to='${room}' type='groupchat'><body>thanks</body></message>`);
  t.ok(await alice.next(groupchatBody(room, 'thanks')), 'the visitor now has voice');

  dave.send(request(room, 'r3'));
  t.equal(errorCondition(await dave.nextNamed('message', 'r3')), 'not-acceptable', 'only occupants ask');
  carol.send(`<message to='${room}' id='r4'><x xmlns='${NS_DATA}' type='submit'><field var='FORM_TYPE'><value>${NS_REQUEST}</value></field>`
    + `<field var='muc#role'><value>moderator</value></field></x></message>`);
  t.equal(errorCondition(await carol.nextNamed('message', 'r4')), 'bad-request', 'only the participant role can be asked for');
  for (const c of [alice, bob, carol, dave]) c.end();
});

t.test('a visitor may ask again after voice_request_interval', async (t) => {
  const alice = await login(srv, 'alice');
  const bob = await login(srv, 'bob');
  const room = `voice-again@${SERVICE}`;
  await createConfigured(alice, room, 'Alice', { 'muc#roomconfig_moderatedroom': '1' });
  await join(bob, room, 'Bob');
  await subject(bob, room);
  bob.send(request(room, 'r1'));
  await alice.next(isRequestForm(room));
  await new Promise((r) => setTimeout(r, 500));
  bob.send(request(room, 'r2'));
  t.ok(await alice.next(isRequestForm(room)), 'forwarded again once the interval is over');
  alice.end();
  bob.end();
});
