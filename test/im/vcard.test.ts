// XEP-0054 vcard-temp and XEP-0153 avatar hashes in presence, between real sessions.
import { createHash } from 'node:crypto';
import type { Element } from 'ltx';
import t from 'tap';
import type { RosterApi } from '../../plugins/roster/api.js';
import { RawClient } from '../helpers/raw-client.js';
import { startTestServer } from '../helpers/server.js';

const srv = await startTestServer({
  modules: '  disco: {}\n  roster: {}\n  presence: {}\n  vcard:\n    max_size: 4KiB',
});
t.teardown(() => srv.close());
for (const u of ['alice', 'bob', 'carol', 'dave', 'erin']) await srv.register(u, 'pw');

const NS = 'vcard-temp';
const UPDATE = 'vcard-temp:x:update';
const STANZAS = 'urn:ietf:params:xml:ns:xmpp-stanzas';
let counter = 0;

async function befriend(a: string, b: string): Promise<void> {
  const roster = srv.server.host('localhost')!.services.get('roster') as RosterApi;
  await roster.upsert(`${a}@localhost`, { jid: `${b}@localhost`, groups: [], subscription: 'both' });
  await roster.upsert(`${b}@localhost`, { jid: `${a}@localhost`, groups: [], subscription: 'both' });
}

const presence = (type: string | undefined, from?: string) => (el: Element): boolean =>
  el.name === 'presence' && el.attrs.type === type && (from === undefined || el.attrs.from === from);

async function login(user: string, resource: string, initial: string | false = '<presence/>'): Promise<RawClient> {
  const c = await RawClient.login(srv.c2sPort, user, 'pw', { resource, presence: initial });
  if (initial !== false) await c.next(presence(undefined, c.jid));
  return c;
}

async function iq(c: RawClient, payload: string, type = 'set', to?: string): Promise<Element> {
  const id = `v${++counter}`;
  c.send(`<iq type='${type}' id='${id}'${to ? ` to='${to}'` : ''}>${payload}</iq>`);
  return c.nextNamed('iq', id);
}

function condition(el: Element): string | undefined {
  return el.getChild('error')?.children.find((c): c is Element => typeof c !== 'string' && c.attrs.xmlns === STANZAS && c.name !== 'text')?.name;
}

/** The photo hash in a presence: undefined without an update element, '' for an empty <photo/>. */
function photoOf(p: Element): string | undefined {
  const updates = p.getChildren('x').filter((x) => x.attrs.xmlns === UPDATE);
  if (updates.length > 1) throw new Error('more than one update element');
  return updates[0]?.getChild('photo')?.getText();
}

const sha1 = (data: Buffer): string => createHash('sha1').update(data).digest('hex');
const IMAGE1 = Buffer.from('89504e470d0a1a0a0000000d4948445200000001', 'hex');
const IMAGE2 = Buffer.from('another image entirely');
const card = (fn: string, image?: Buffer): string => `<vCard xmlns='${NS}'><FN>${fn}</FN><NICKNAME/>${image
  ? `<PHOTO><TYPE>image/png</TYPE><BINVAL>\n${image.toString('base64').replace(/(.{8})/g, '$1\n')}\n</BINVAL></PHOTO>` : ''}</vCard>`;

t.test('set, get own and get another user\'s', async (t) => {
  const alice = await login('alice', 'a', false);
  const bob = await login('bob', 'b', false);
  const disco = await iq(alice, "<query xmlns='http://jabber.org/protocol/disco#info'/>", 'get', 'localhost');
  t.ok(disco.getChild('query')!.getChildren('feature').some((f) => f.attrs.var === NS), 'vcard-temp on the domain');

  const none = await iq(alice, `<vCard xmlns='${NS}'/>`, 'get');
  t.equal(none.attrs.type, 'result', 'no vCard yet: an empty one for its owner');
  t.equal(none.getChild('vCard', NS)?.children.length, 0);
  t.equal(condition(await iq(bob, `<vCard xmlns='${NS}'/>`, 'get', 'alice@localhost')), 'item-not-found',
    'no vCard yet: an error for others');

  t.equal((await iq(alice, card('Alice A. Liddell')).then((r) => r.attrs.type)), 'result');
  const own = await iq(alice, `<vCard xmlns='${NS}'/>`, 'get', 'alice@localhost');
  t.equal(own.getChild('vCard', NS)?.getChildText('FN'), 'Alice A. Liddell', 'own, addressed to the bare JID');
  t.ok(own.getChild('vCard', NS)?.getChild('NICKNAME'), 'empty elements are kept');
  const other = await iq(bob, `<vCard xmlns='${NS}'/>`, 'get', 'alice@localhost');
  t.equal(other.attrs.from, 'alice@localhost', 'answered by the server for the account');
  t.equal(other.getChild('vCard', NS)?.getChildText('FN'), 'Alice A. Liddell', "another user's");

  t.equal(condition(await iq(bob, card('Mallory'), 'set', 'alice@localhost')), 'forbidden', "setting another user's vCard");
  t.equal((await iq(bob, `<vCard xmlns='${NS}'/>`, 'get', 'alice@localhost')).getChild('vCard', NS)?.getChildText('FN'),
    'Alice A. Liddell', 'unchanged');

  await iq(alice, `<vCard xmlns='${NS}'/>`);
  t.equal(condition(await iq(bob, `<vCard xmlns='${NS}'/>`, 'get', 'alice@localhost')), 'item-not-found', 'an empty set removes the vCard');
  t.equal(condition(await iq(bob, `<vCard xmlns='${NS}'/>`, 'get', 'nobody@localhost')), 'service-unavailable', 'no such account');
  alice.end();
  bob.end();
});

t.test('bad vCards are refused and nothing is stored', async (t) => {
  const carol = await login('carol', 'c', false);
  await iq(carol, card('Carol'));
  const big = await iq(carol, card('x'.repeat(5000)));
  t.equal(condition(big), 'policy-violation', 'larger than max_size');
  t.match(big.getChild('error')?.getChildText('text'), /at most 4096/, 'the limit is named');
  const badPhoto = await iq(carol, `<vCard xmlns='${NS}'><FN>Bad</FN><PHOTO><BINVAL>not*base64!</BINVAL></PHOTO></vCard>`);
  t.equal(condition(badPhoto), 'bad-request', 'a photo that is not base64');
  t.equal((await iq(carol, `<vCard xmlns='${NS}'/>`, 'get')).getChild('vCard', NS)?.getChildText('FN'), 'Carol', 'the old vCard stays');
  carol.end();
});

t.test('avatar hash in presence, and a new broadcast when the photo changes', async (t) => {
  await befriend('dave', 'erin');
  const erin = await login('erin', 'e');
  const dave = await login('dave', 'd', false);
  await iq(dave, card('Dave', IMAGE1));
  // The client claims another hash: the server's, from the stored vCard, replaces it.
  dave.send(`<presence><status>on</status><x xmlns='${UPDATE}'><photo>0000</photo></x></presence>`);
  const first = await erin.next(presence(undefined, 'dave@localhost/d'));
  t.equal(photoOf(first), sha1(IMAGE1), 'the SHA-1 of the decoded image');
  t.equal(first.getChildText('status'), 'on', 'the rest of the presence is kept');
  t.equal(photoOf(await dave.next(presence(undefined, 'dave@localhost/d'))), sha1(IMAGE1), "and the user's own copy");

  await iq(dave, card('Dave', IMAGE2));
  const changed = await erin.next(presence(undefined, 'dave@localhost/d'));
  t.equal(photoOf(changed), sha1(IMAGE2), 'a new photo is broadcast again with its hash');
  t.equal(changed.getChildText('status'), 'on', 'with the current presence');

  await iq(dave, card('Dave again', IMAGE2));
  await t.rejects(erin.next(presence(undefined, 'dave@localhost/d'), 300), 'no broadcast when the photo stayed the same');

  await iq(dave, card('Dave'));
  t.equal(photoOf(await erin.next(presence(undefined, 'dave@localhost/d'))), '', 'no photo: an empty <photo/>');

  dave.send("<presence to='erin@localhost/e'/>");
  t.equal(photoOf(await erin.next(presence(undefined, 'dave@localhost/d'))), '', 'in directed presence too');
  erin.send('<presence/>');
  t.equal(photoOf(await dave.next(presence(undefined, 'erin@localhost/e'))), '', 'a user without vCard has an empty photo');
  dave.end();
  erin.end();
});
