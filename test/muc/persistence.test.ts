// Persistent rooms survive a restart with their configuration, affiliations, subject, archive,
// vCard and occupant-id secret; temporary rooms do not; destroyed rooms are gone for good.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t from 'tap';
import type { Element } from 'ltx';
import {
  codes, createConfigured, createInstant, errorCondition, groupchatBody, iq, join, login, NS_MUC_ADMIN, NS_MUC_OWNER,
  NS_MUC_USER, SERVICE, startMucServer, subject,
} from '../helpers/muc-client.js';

const dataDir = mkdtempSync(path.join(tmpdir(), 'parley-muc-'));
t.teardown(() => rmSync(dataDir, { recursive: true, force: true }));
const oid = (el: Element) => el.getChild('occupant-id', 'urn:xmpp:occupant-id:0')!.attrs.id;

const room = `lasting@${SERVICE}`;
const temp = `temporary@${SERVICE}`;
const doomed = `doomed@${SERVICE}`;
let bobId = '';

t.test('before the restart', async (t) => {
  const srv = await startMucServer('{}', { dataDir });
  const alice = await login(srv, 'alice');
  const bob = await login(srv, 'bob');
  await createConfigured(alice, room, 'Alice', {
    'muc#roomconfig_roomname': 'Lasting', 'muc#roomconfig_persistentroom': '1', 'muc#roomconfig_membersonly': '1',
    'muc#roomconfig_historylength': '5',
  });
  await iq(alice, 'set', room, `<query xmlns='${NS_MUC_ADMIN}'><item jid='bob@localhost' affiliation='member'/><item jid='carol@localhost' affiliation='outcast'/></query>`);
  alice.send(`<message to='${room}' type='groupchat'><subject>Kept</subject></message>`);
  const self = await join(bob, room, 'Bob');
  bobId = oid(self);
  alice.send(`<message to='${room}' type='groupchat'><body>remember me</body></message>`);
  await bob.next(groupchatBody(room, 'remember me'));
  await iq(alice, 'set', room, "<vCard xmlns='vcard-temp'><FN>Lasting room</FN></vCard>");
  await createInstant(alice, temp, 'Alice');
  await createConfigured(alice, doomed, 'Alice', { 'muc#roomconfig_persistentroom': '1' });
  await join(bob, doomed, 'Bob');
  const d = await iq(alice, 'set', doomed, `<query xmlns='${NS_MUC_OWNER}'><destroy jid='${room}'><reason>Moved</reason></destroy></query>`);
  t.equal(d.attrs.type, 'result');
  const gone = await bob.next((el) => el.name === 'presence' && el.attrs.from === `${doomed}/Bob` && el.attrs.type === 'unavailable');
  const destroy = gone.getChild('x', NS_MUC_USER)!.getChild('destroy')!;
  t.equal(destroy.attrs.jid, room, 'alternate venue');
  t.equal(destroy.getChildText('reason'), 'Moved');
  alice.end();
  bob.end();
  await srv.close();
});

t.test('after the restart', async (t) => {
  const srv = await startMucServer('{}', { dataDir });
  t.teardown(() => srv.close());
  const alice = await login(srv, 'alice');
  const bob = await login(srv, 'bob');
  const carol = await login(srv, 'carol');
  const dave = await login(srv, 'dave');
  const info = await iq(dave, 'get', room, "<query xmlns='http://jabber.org/protocol/disco#info'/>");
  t.equal(info.getChild('query')!.getChild('identity')!.attrs.name, 'Lasting', 'configuration kept');
  t.ok(info.getChild('query')!.getChildren('feature').some((f) => f.attrs.var === 'muc_membersonly'));
  t.equal(errorCondition(await join(dave, room, 'Dave')), 'registration-required', 'still members-only');
  t.equal(errorCondition(await join(carol, room, 'Carol')), 'forbidden', 'the ban is kept');
  const self = await join(bob, room, 'Bob');
  t.same(codes(self), [110, 170]);
  t.equal(self.getChild('x', NS_MUC_USER)!.getChild('item')!.attrs.affiliation, 'member', 'membership kept');
  t.equal(oid(self), bobId, 'occupant-id is the same after the restart');
  const hist = await bob.next(groupchatBody(room, 'remember me'));
  t.ok(hist.getChild('delay', 'urn:xmpp:delay'), 'history comes back from the archive');
  t.equal((await subject(bob, room)).getChildText('subject'), 'Kept', 'subject kept');
  const owner = await join(alice, room, 'Alice');
  t.equal(owner.getChild('x', NS_MUC_USER)!.getChild('item')!.attrs.affiliation, 'owner');
  const vcard = await iq(dave, 'get', room, "<vCard xmlns='vcard-temp'/>");
  t.equal(vcard.getChild('vCard', 'vcard-temp')!.getChildText('FN'), 'Lasting room', 'vCard kept');
  t.equal(errorCondition(await iq(alice, 'get', temp, "<query xmlns='http://jabber.org/protocol/disco#info'/>")), 'item-not-found', 'temporary rooms are gone');
  t.equal(errorCondition(await iq(alice, 'get', doomed, "<query xmlns='http://jabber.org/protocol/disco#info'/>")), 'item-not-found', 'destroyed rooms are gone');
  for (const c of [alice, bob, carol, dave]) c.end();
});
