// The conversions PEP clients look for: XEP-0398 avatars (PEP <-> vCard), XEP-0402/0411
// bookmarks (private XML <-> storage:bookmarks node <-> urn:xmpp:bookmarks:1), and the open
// defaults of XEP-0172 nicknames and XEP-0292 vCard4.
import { createHash } from 'node:crypto';
import type { Element } from 'ltx';
import t from 'tap';
import { RawClient } from '../helpers/raw-client.js';
import { startTestServer } from '../helpers/server.js';

const srv = await startTestServer({
  modules: ['  disco: {}', '  roster: {}', '  presence: {}', '  vcard: {}', '  private: {}', '  pep: {}'].join('\n'),
});
t.teardown(() => srv.close());
for (const u of ['alice', 'bob', 'carol', 'dave']) await srv.register(u, 'pw');

const PUBSUB = 'http://jabber.org/protocol/pubsub';
const OWNER = 'http://jabber.org/protocol/pubsub#owner';
const EVENT = 'http://jabber.org/protocol/pubsub#event';
const BOOKMARKS2 = 'urn:xmpp:bookmarks:1';
let counter = 0;

async function login(user: string, resource: string): Promise<RawClient> {
  return RawClient.login(srv.c2sPort, user, 'pw', { resource, presence: false });
}

async function iq(c: RawClient, payload: string, type = 'set', to?: string): Promise<Element> {
  const id = `c${++counter}`;
  c.send(`<iq type='${type}' id='${id}'${to ? ` to='${to}'` : ''}>${payload}</iq>`);
  const r = await c.nextNamed('iq', id);
  return r;
}

const publish = (node: string, item: string, id?: string): string =>
  `<pubsub xmlns='${PUBSUB}'><publish node='${node}'><item${id ? ` id='${id}'` : ''}>${item}</item></publish></pubsub>`;

async function itemsOf(c: RawClient, node: string, to?: string): Promise<Element[]> {
  const r = await iq(c, `<pubsub xmlns='${PUBSUB}'><items node='${node}'/></pubsub>`, 'get', to);
  if (r.attrs.type !== 'result') throw new Error(`items of ${node}: ${r.toString()}`);
  return r.getChild('pubsub')!.getChild('items')!.getChildren('item');
}

async function accessModel(c: RawClient, node: string): Promise<string | undefined> {
  const r = await iq(c, `<pubsub xmlns='${OWNER}'><configure node='${node}'/></pubsub>`, 'get');
  return r.getChild('pubsub')?.getChild('configure')?.getChild('x')?.getChildren('field')
    .find((f) => f.attrs.var === 'pubsub#access_model')?.getChildText('value') ?? undefined;
}

const sha1 = (b: Buffer): string => createHash('sha1').update(b).digest('hex');
// A 3x2 PNG header is enough for the size to be read.
const PNG = Buffer.concat([Buffer.from('89504e470d0a1a0a0000000d49484452000000030000000208060000', 'hex'), Buffer.from('rest of the image')]);
const OTHER = Buffer.from('a different picture');

t.test('an avatar published with PEP becomes the vCard photo', async (t) => {
  const alice = await login('alice', 'pep');
  const id = sha1(PNG);
  let r = await iq(alice, publish('urn:xmpp:avatar:data', `<data xmlns='urn:xmpp:avatar:data'>${PNG.toString('base64')}</data>`, id));
  t.equal(r.attrs.type, 'result');
  r = await iq(alice, publish('urn:xmpp:avatar:metadata',
    `<metadata xmlns='urn:xmpp:avatar:metadata'><info id='${id}' type='image/png' bytes='${PNG.length}' url='https://example.test/a.png'/>`
    + `<info id='${id}' type='image/png' bytes='${PNG.length}'/></metadata>`, id));
  t.equal(r.attrs.type, 'result');
  const bob = await login('bob', 'viewer');
  r = await iq(bob, "<vCard xmlns='vcard-temp'/>", 'get', 'alice@localhost');
  const photo = r.getChild('vCard')?.getChild('PHOTO');
  t.equal(photo?.getChildText('TYPE'), 'image/png');
  t.equal(photo?.getChildText('BINVAL'), PNG.toString('base64'), 'the image data');
  // Disabling the avatar (XEP-0084 §4.5) removes the photo.
  r = await iq(alice, publish('urn:xmpp:avatar:metadata', "<metadata xmlns='urn:xmpp:avatar:metadata'/>"));
  t.equal(r.attrs.type, 'result');
  r = await iq(alice, "<vCard xmlns='vcard-temp'/>", 'get');
  t.notOk(r.getChild('vCard')?.getChild('PHOTO'), 'no photo any more');
  // Metadata naming data that was never published leaves the vCard alone.
  r = await iq(alice, publish('urn:xmpp:avatar:metadata',
    `<metadata xmlns='urn:xmpp:avatar:metadata'><info id='${sha1(OTHER)}' type='image/png' bytes='3'/></metadata>`));
  r = await iq(alice, "<vCard xmlns='vcard-temp'/>", 'get');
  t.notOk(r.getChild('vCard')?.getChild('PHOTO'), 'nothing to convert without the data');
  alice.end();
  bob.end();
});

t.test('a vCard photo is published as a PEP avatar', async (t) => {
  const carol = await login('carol', 'legacy');
  const other = await login('carol', 'modern');
  other.send('<presence/>');
  carol.send('<presence/>');
  await other.next((el) => el.name === 'presence' && el.attrs.from === 'carol@localhost/legacy');
  let r = await iq(carol, `<vCard xmlns='vcard-temp'><FN>Carol</FN><PHOTO><TYPE>image/png</TYPE><BINVAL>${PNG.toString('base64')}</BINVAL></PHOTO></vCard>`);
  t.equal(r.attrs.type, 'result');
  const meta = await itemsOf(carol, 'urn:xmpp:avatar:metadata');
  const info = meta[0]?.getChild('metadata')?.getChild('info');
  t.equal(info?.attrs.id, sha1(PNG), 'the metadata names the image by its SHA-1');
  t.equal(info?.attrs.type, 'image/png');
  t.equal(info?.attrs.bytes, String(PNG.length));
  t.equal(info?.attrs.width, '3');
  t.equal(info?.attrs.height, '2');
  const data = await itemsOf(carol, 'urn:xmpp:avatar:data');
  t.equal(data[0]?.attrs.id, sha1(PNG));
  t.equal(data[0]?.getChildText('data'), PNG.toString('base64'));
  const dave = await login('dave', 'anyone');
  t.equal((await itemsOf(dave, 'urn:xmpp:avatar:data', 'carol@localhost')).length, 1, 'as public as the vCard it came from');
  // The same vCard again changes nothing; a vCard without a photo disables the avatar.
  r = await iq(carol, "<vCard xmlns='vcard-temp'><FN>Carol</FN></vCard>");
  t.equal(r.attrs.type, 'result');
  const after = await itemsOf(carol, 'urn:xmpp:avatar:metadata');
  t.equal(after[0]?.getChild('metadata')?.getChildren('info').length, 0, 'empty metadata');
  // The vCard set by the server for the empty metadata did not come back as another publish.
  t.equal((await itemsOf(carol, 'urn:xmpp:avatar:data')).length, 1);
  for (const c of [carol, other, dave]) c.end();
});

t.test('bookmarks written through private XML storage appear in PEP, and back', async (t) => {
  const alice = await login('alice', 'bookmarks');
  let r = await iq(alice, "<query xmlns='jabber:iq:private'><storage xmlns='storage:bookmarks'>"
    + "<conference jid='play@conference.localhost' name='The Play' autojoin='true'><nick>JC</nick></conference>"
    + "<conference jid='orchard@conference.localhost' name='The Orchard'/>"
    + "<url name='Home' url='https://example.test/'/></storage></query>");
  t.equal(r.attrs.type, 'result');
  let items = await itemsOf(alice, BOOKMARKS2);
  t.same(items.map((i) => i.attrs.id).sort(), ['orchard@conference.localhost', 'play@conference.localhost'], 'one XEP-0402 item per room');
  const play = items.find((i) => i.attrs.id === 'play@conference.localhost')!.getChild('conference', BOOKMARKS2)!;
  t.equal(play.attrs.name, 'The Play');
  t.equal(play.attrs.autojoin, 'true');
  t.equal(play.getChildText('nick'), 'JC');
  t.equal(await accessModel(alice, BOOKMARKS2), 'whitelist', 'the node the server made is private');
  const legacy = await itemsOf(alice, 'storage:bookmarks');
  t.equal(legacy[0]?.attrs.id, 'current');
  t.equal(legacy[0]?.getChild('storage', 'storage:bookmarks')?.getChildren('conference').length, 2, 'and the XEP-0048 node');
  t.equal(await accessModel(alice, 'storage:bookmarks'), 'whitelist');

  // XEP-0402 -> private XML, keeping the URL only XEP-0048 can hold.
  r = await iq(alice, `<pubsub xmlns='${PUBSUB}'><publish node='${BOOKMARKS2}'><item id='hall@conference.localhost'>`
    + `<conference xmlns='${BOOKMARKS2}' name='The Hall' autojoin='1'><nick>Juliet</nick><extensions><x xmlns='urn:example'/></extensions></conference>`
    + `</item></publish></pubsub>`);
  t.equal(r.attrs.type, 'result');
  r = await iq(alice, "<query xmlns='jabber:iq:private'><storage xmlns='storage:bookmarks'/></query>", 'get');
  let storage = r.getChild('query')!.getChild('storage', 'storage:bookmarks')!;
  const rooms = storage.getChildren('conference');
  t.same(rooms.map((c) => c.attrs.jid).sort(), ['hall@conference.localhost', 'orchard@conference.localhost', 'play@conference.localhost']);
  const hall = rooms.find((c) => c.attrs.jid === 'hall@conference.localhost')!;
  t.equal(hall.attrs.autojoin, 'true');
  t.equal(hall.getChildText('nick'), 'Juliet');
  t.equal(storage.getChildren('url').length, 1, 'the URL bookmark is kept');
  r = await iq(alice, `<pubsub xmlns='${PUBSUB}'><retract node='${BOOKMARKS2}' notify='true'><item id='orchard@conference.localhost'/></retract></pubsub>`);
  t.equal(r.attrs.type, 'result');
  r = await iq(alice, "<query xmlns='jabber:iq:private'><storage xmlns='storage:bookmarks'/></query>", 'get');
  storage = r.getChild('query')!.getChild('storage', 'storage:bookmarks')!;
  t.same(storage.getChildren('conference').map((c) => c.attrs.jid).sort(), ['hall@conference.localhost', 'play@conference.localhost'], 'retracted there too');

  // A legacy client renames a room: only that item changes, its extensions stay.
  const watcher = await RawClient.login(srv.c2sPort, 'alice', 'pw', { resource: 'watcher', presence: false });
  r = await iq(alice, "<query xmlns='jabber:iq:private'><storage xmlns='storage:bookmarks'>"
    + "<conference jid='play@conference.localhost' name='The Play' autojoin='true'><nick>JC</nick></conference>"
    + "<conference jid='hall@conference.localhost' name='The Great Hall' autojoin='true'><nick>Juliet</nick></conference>"
    + "<url name='Home' url='https://example.test/'/></storage></query>");
  t.equal(r.attrs.type, 'result');
  items = await itemsOf(alice, BOOKMARKS2);
  const renamed = items.find((i) => i.attrs.id === 'hall@conference.localhost')!.getChild('conference', BOOKMARKS2)!;
  t.equal(renamed.attrs.name, 'The Great Hall');
  t.ok(renamed.getChild('extensions')?.getChild('x', 'urn:example'), 'extensions survive');
  watcher.end();

  // The XEP-0048 PEP node is the third way in.
  r = await iq(alice, publish('storage:bookmarks', "<storage xmlns='storage:bookmarks'>"
    + "<conference jid='play@conference.localhost' name='The Play' autojoin='true'><nick>JC</nick></conference></storage>", 'current'));
  t.equal(r.attrs.type, 'result');
  t.same((await itemsOf(alice, BOOKMARKS2)).map((i) => i.attrs.id), ['play@conference.localhost'], 'XEP-0402 follows the XEP-0048 node');
  r = await iq(alice, "<query xmlns='jabber:iq:private'><storage xmlns='storage:bookmarks'/></query>", 'get');
  t.same(r.getChild('query')!.getChild('storage')!.getChildren('conference').map((c) => c.attrs.jid), ['play@conference.localhost'],
    'and so does private storage');
  alice.end();
});

t.test('existing private bookmarks are copied to PEP at login', async (t) => {
  // Stored before PEP existed for this account: written straight into the private store.
  const store = srv.server.storage.map<string[]>('private');
  await store.set('dave@localhost', 'storage:bookmarks',
    ["<storage xmlns='storage:bookmarks'><conference jid='old@conference.localhost' name='Old' autojoin='true'/></storage>"]);
  const dave = await login('dave', 'first');
  t.same((await itemsOf(dave, BOOKMARKS2)).map((i) => i.attrs.id), ['old@conference.localhost']);
  dave.end();
});

t.test('nicknames and vCard4 are readable by anyone; notifications of bookmarks go to the account', async (t) => {
  const bob = await login('bob', 'nick');
  let r = await iq(bob, publish('http://jabber.org/protocol/nick', "<nick xmlns='http://jabber.org/protocol/nick'>Bobby</nick>", 'current'));
  t.equal(r.attrs.type, 'result');
  r = await iq(bob, publish('urn:xmpp:vcard4', "<vcard xmlns='urn:ietf:params:xml:ns:vcard-4.0'><fn><text>Bob</text></fn></vcard>", 'current'));
  t.equal(r.attrs.type, 'result');
  const stranger = await login('dave', 'stranger');
  t.equal((await itemsOf(stranger, 'http://jabber.org/protocol/nick', 'bob@localhost'))[0]?.getChildText('nick'), 'Bobby');
  t.equal((await itemsOf(stranger, 'urn:xmpp:vcard4', 'bob@localhost')).length, 1);
  // The account's own resource with +notify for XEP-0402 hears of a bookmark added elsewhere.
  const caps = "<c xmlns='http://jabber.org/protocol/caps' node='https://test.example' ver='legacy-1'/>";
  const listener = await RawClient.login(srv.c2sPort, 'bob', 'pw', { resource: 'listener', presence: `<presence>${caps}</presence>` });
  const q = await listener.next((el) => el.name === 'iq' && el.attrs.type === 'get' && el.getChild('query') !== undefined);
  listener.send(`<iq type='result' id='${q.attrs.id}' to='${q.attrs.from}'><query xmlns='http://jabber.org/protocol/disco#info' node='${q.getChild('query')!.attrs.node}'>`
    + `<feature var='${BOOKMARKS2}+notify'/><feature var='urn:xmpp:vcard4+notify'/></query></iq>`);
  // The last vCard4 item arrives once the server knows the resource's features.
  await listener.next((el) => el.name === 'message' && el.getChild('event', EVENT)?.getChild('items')?.attrs.node === 'urn:xmpp:vcard4');
  r = await iq(bob, "<query xmlns='jabber:iq:private'><storage xmlns='storage:bookmarks'>"
    + "<conference jid='new@conference.localhost' name='New' autojoin='true'/></storage></query>");
  t.equal(r.attrs.type, 'result');
  const note = await listener.next((el) => el.name === 'message' && el.getChild('event', EVENT)?.getChild('items')?.attrs.node === BOOKMARKS2);
  t.equal(note.getChild('event')!.getChild('items')!.getChild('item')!.attrs.id, 'new@conference.localhost');
  for (const c of [bob, stranger, listener]) c.end();
});
