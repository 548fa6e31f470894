// XEP-0163 PEP over XEP-0060 with publish-options (XEP-0223) and caps-filtered notifications
// (XEP-0115), between real sessions: the sequences Conversations and Gajim run, access models,
// and refused input.
import xml from '@xmpp/xml';
import type { Element } from 'ltx';
import t from 'tap';
import { capsVer } from '../../plugins/caps.js';
import type { RosterApi } from '../../plugins/roster/api.js';
import { RawClient } from '../helpers/raw-client.js';
import { startTestServer } from '../helpers/server.js';

const srv = await startTestServer({
  modules: [
    '  disco: {}', '  caps: {}', '  roster: {}', '  presence: {}', '  blocking: {}', '  vcard: {}', '  private: {}',
    '  pep:', '    max_payload_size: 2KiB', '    max_nodes: 12', '    max_items: 50', '    caps_query_timeout: 2s',
  ].join('\n'),
});
t.teardown(() => srv.close());
for (const u of ['alice', 'bob', 'carol', 'dave', 'erin', 'frank']) await srv.register(u, 'pw');

const PUBSUB = 'http://jabber.org/protocol/pubsub';
const OWNER = 'http://jabber.org/protocol/pubsub#owner';
const EVENT = 'http://jabber.org/protocol/pubsub#event';
const ERRORS = 'http://jabber.org/protocol/pubsub#errors';
const STANZAS = 'urn:ietf:params:xml:ns:xmpp-stanzas';
const DISCO_INFO = 'http://jabber.org/protocol/disco#info';
const DEVICELIST = 'eu.siacs.conversations.axolotl.devicelist';
let counter = 0;

async function befriend(a: string, b: string): Promise<void> {
  const roster = srv.server.host('localhost')!.services.get('roster') as RosterApi;
  await roster.upsert(`${a}@localhost`, { jid: `${b}@localhost`, groups: ['Friends'], subscription: 'both' });
  await roster.upsert(`${b}@localhost`, { jid: `${a}@localhost`, groups: ['Friends'], subscription: 'both' });
}

/** A disco#info answer of a client, with its XEP-0115 verification string. */
function clientInfo(features: string[]): { info: Element; ver: string } {
  const info = xml('query', { xmlns: DISCO_INFO },
    xml('identity', { category: 'client', type: 'pc', name: 'test' }),
    ...[DISCO_INFO, ...features].map((f) => xml('feature', { var: f })));
  return { info, ver: capsVer(info) };
}

/** Answers the server's disco#info queries (about the caps node) until stopped. */
function serveDisco(c: RawClient, info: Element): { stop(): void; asked: string[] } {
  let stopped = false;
  const asked: string[] = [];
  void (async () => {
    while (!stopped && !c.isClosed) {
      let q: Element;
      try {
        q = await c.next((el) => el.name === 'iq' && el.attrs.type === 'get' && el.getChild('query', DISCO_INFO) !== undefined, 500);
      } catch {
        continue;
      }
      asked.push(q.attrs.from!);
      const answer = xml('query', { xmlns: DISCO_INFO, node: q.getChild('query')!.attrs.node ?? '' }, ...info.children as Element[]);
      c.send(xml('iq', { type: 'result', id: q.attrs.id!, to: q.attrs.from! }, answer).toString());
    }
  })();
  return { stop: () => { stopped = true; }, asked };
}

const capsElement = (ver: string): string => `<c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='https://test.example/client' ver='${ver}'/>`;

async function login(user: string, resource: string, presence: string | false = '<presence/>'): Promise<RawClient> {
  const c = await RawClient.login(srv.c2sPort, user, 'pw', { resource, presence });
  if (presence !== false) await c.next((el) => el.name === 'presence' && el.attrs.from === c.jid && el.attrs.type === undefined);
  return c;
}

async function iq(c: RawClient, payload: string, type = 'set', to?: string): Promise<Element> {
  const id = `p${++counter}`;
  c.send(`<iq type='${type}' id='${id}'${to ? ` to='${to}'` : ''}>${payload}</iq>`);
  return c.nextNamed('iq', id);
}

function condition(el: Element): string | undefined {
  return el.getChild('error')?.children.find((c): c is Element => typeof c !== 'string' && c.attrs.xmlns === STANZAS && c.name !== 'text')?.name;
}

function pubsubCondition(el: Element): string | undefined {
  return el.getChild('error')?.children.find((c): c is Element => typeof c !== 'string' && c.attrs.xmlns === ERRORS)?.name;
}

const form = (type: string, fields: Record<string, string>): string =>
  `<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>${type}</value></field>${
    Object.entries(fields).map(([k, v]) => `<field var='${k}'><value>${v}</value></field>`).join('')}</x>`;
const publishOptions = (fields: Record<string, string>): string =>
  `<publish-options>${form('http://jabber.org/protocol/pubsub#publish-options', fields)}</publish-options>`;
const configure = (node: string, fields: Record<string, string>): string =>
  `<pubsub xmlns='${OWNER}'><configure node='${node}'>${form('http://jabber.org/protocol/pubsub#node_config', fields)}</configure></pubsub>`;
const publish = (node: string, item: string, id?: string, options = ''): string =>
  `<pubsub xmlns='${PUBSUB}'><publish node='${node}'><item${id ? ` id='${id}'` : ''}>${item}</item></publish>${options}</pubsub>`;
const items = (node: string, extra = ''): string => `<pubsub xmlns='${PUBSUB}'><items node='${node}'${extra}/></pubsub>`;

function fieldValue(x: Element | undefined, name: string): string | undefined {
  return x?.getChildren('field').find((f) => f.attrs.var === name)?.getChildText('value') ?? undefined;
}

async function configOf(c: RawClient, node: string): Promise<Element | undefined> {
  const r = await iq(c, `<pubsub xmlns='${OWNER}'><configure node='${node}'/></pubsub>`, 'get');
  return r.getChild('pubsub')?.getChild('configure')?.getChild('x');
}

async function nothing(c: RawClient, pred: (el: Element) => boolean, ms = 300): Promise<boolean> {
  try {
    await c.next(pred, ms);
    return false;
  } catch {
    return true;
  }
}

const eventFor = (node: string) => (el: Element): boolean =>
  el.name === 'message' && el.getChild('event', EVENT)?.getChild('items')?.attrs.node === node;

t.test('the account advertises PEP as clients check it', async (t) => {
  const alice = await login('alice', 'disco', false);
  const r = await iq(alice, `<query xmlns='${DISCO_INFO}'/>`, 'get', 'alice@localhost');
  const q = r.getChild('query')!;
  t.ok(q.getChildren('identity').some((i) => i.attrs.category === 'pubsub' && i.attrs.type === 'pep'), 'identity pubsub/pep');
  const features = new Set(q.getChildren('feature').map((f) => f.attrs.var));
  for (const f of ['publish-options', 'persistent-items', 'config-node-max', 'auto-create', 'retrieve-items', 'subscribe', 'publish',
    'delete-nodes', 'retract-items', 'access-open', 'access-presence', 'access-roster', 'access-whitelist', 'item-ids',
    'last-published', 'filtered-notifications', 'purge-nodes', 'create-nodes', 'multi-items']) {
    t.ok(features.has(`${PUBSUB}#${f}`), f);
  }
  for (const f of ['urn:xmpp:pep-vcard-conversion:0', 'urn:xmpp:bookmarks-conversion:0', 'urn:xmpp:bookmarks:1#compat', 'urn:xmpp:bookmarks:1#compat-pep']) {
    t.ok(features.has(f), f);
  }
  alice.end();
});

t.test("Conversations' OMEMO compliance sequence", async (t) => {
  const alice = await login('alice', 'omemo', false);
  const dave = await login('dave', 'stranger', false);
  const node = 'eu.siacs.conversations.axolotl.bundles:4223';
  const bundle = "<bundle xmlns='eu.siacs.conversations.axolotl'><signedPreKeyPublic signedPreKeyId='1'>BQ==</signedPreKeyPublic></bundle>";
  // A node left with the default (presence) access model by an earlier client.
  t.equal((await iq(alice, publish(node, bundle, 'current'))).attrs.type, 'result');
  let r = await iq(alice, publish(node, bundle, 'current', publishOptions({ 'pubsub#access_model': 'open' })));
  t.equal(condition(r), 'conflict', 'the precondition is not met');
  t.equal(pubsubCondition(r), 'precondition-not-met');
  t.equal(fieldValue(await configOf(alice, node), 'pubsub#access_model'), 'presence', 'nothing changed');
  r = await iq(alice, configure(node, { 'pubsub#access_model': 'open' }));
  t.equal(r.attrs.type, 'result', 'reconfigured');
  r = await iq(alice, publish(node, bundle, 'current', publishOptions({ 'pubsub#access_model': 'open' })));
  t.equal(r.attrs.type, 'result', 'the retry succeeds');
  t.equal(r.getChild('pubsub')?.getChild('publish')?.getChild('item')?.attrs.id, 'current');
  t.equal(fieldValue(await configOf(alice, node), 'pubsub#access_model'), 'open', 'the node configuration reads open');
  r = await iq(dave, items(node), 'get', 'alice@localhost');
  t.equal(r.attrs.type, 'result', 'a stranger reads the bundle');
  t.ok(r.getChild('pubsub')?.getChild('items')?.getChild('item')?.getChild('bundle', 'eu.siacs.conversations.axolotl'));
  // Publishing with met preconditions to a new node creates it with them.
  const fresh = 'eu.siacs.conversations.axolotl.bundles:777';
  r = await iq(alice, publish(fresh, bundle, 'current', publishOptions({ 'pubsub#access_model': 'open' })));
  t.equal(r.attrs.type, 'result');
  t.equal(fieldValue(await configOf(alice, fresh), 'pubsub#access_model'), 'open', 'auto-created with the preconditions');
  r = await iq(alice, `<pubsub xmlns='${OWNER}'><delete node='${node}'/></pubsub>`);
  t.equal(r.attrs.type, 'result', 'deleted');
  r = await iq(dave, items(node), 'get', 'alice@localhost');
  t.equal(condition(r), 'item-not-found', 'the node is gone');
  r = await iq(alice, `<pubsub xmlns='${OWNER}'><delete node='${node}'/></pubsub>`);
  t.equal(condition(r), 'item-not-found', 'deleting it again');
  alice.end();
  dave.end();
});

t.test('device list updates reach contacts that want them; last item on presence', async (t) => {
  await befriend('alice', 'bob');
  await befriend('alice', 'carol');
  const wants = clientInfo([`${DEVICELIST}+notify`, 'urn:xmpp:avatar:metadata+notify']);
  const doesNot = clientInfo(['urn:xmpp:avatar:metadata+notify']);
  const alice = await login('alice', 'phone');
  await iq(alice, publish(DEVICELIST, "<list xmlns='eu.siacs.conversations.axolotl'><device id='1'/></list>", 'current',
    publishOptions({ 'pubsub#access_model': 'open' })));
  const bob = await RawClient.login(srv.c2sPort, 'bob', 'pw', { resource: 'laptop', presence: `<presence>${capsElement(wants.ver)}</presence>` });
  const bobDisco = serveDisco(bob, wants.info);
  const carol = await RawClient.login(srv.c2sPort, 'carol', 'pw', { resource: 'desk', presence: `<presence>${capsElement(doesNot.ver)}</presence>` });
  const carolDisco = serveDisco(carol, doesNot.info);
  // Alice's server knows bob is there once his presence reached her.
  await alice.next((el) => el.name === 'presence' && el.attrs.from === 'bob@localhost/laptop');
  await alice.next((el) => el.name === 'presence' && el.attrs.from === 'carol@localhost/desk');
  // The item published before bob came shows his features were learnt: it is sent as soon as
  // his capabilities are known.
  const first = await bob.next(eventFor(DEVICELIST));
  t.equal(first.getChild('event')!.getChild('items')!.getChild('item')!.getChild('list')!.getChild('device')!.attrs.id, '1', 'last item on presence');
  t.ok(bobDisco.asked.length >= 1, 'the server asked bob for his features');
  const list = "<list xmlns='eu.siacs.conversations.axolotl'><device id='1'/><device id='4223'/></list>";
  const r = await iq(alice, publish(DEVICELIST, list, 'current', publishOptions({ 'pubsub#access_model': 'open' })));
  t.equal(r.attrs.type, 'result');
  const note = await bob.next(eventFor(DEVICELIST));
  t.equal(note.attrs.from, 'alice@localhost', 'from the bare JID');
  t.equal(note.attrs.to, 'bob@localhost/laptop', 'to the full JID that asked');
  t.equal(note.attrs.type, 'headline');
  t.equal(note.getChild('event')!.getChild('items')!.getChild('item')!.attrs.id, 'current');
  t.equal(note.getChild('event')!.getChild('items')!.getChild('item')!.getChild('list')!.getChildren('device').length, 2, 'with the new payload');
  // Carol gets the metadata she asked for, published after the device list: had the device list
  // been sent to her, it would have come first.
  await iq(alice, publish('urn:xmpp:avatar:metadata', "<metadata xmlns='urn:xmpp:avatar:metadata'/>", 'none'));
  await carol.next(eventFor('urn:xmpp:avatar:metadata'));
  t.ok(await nothing(carol, eventFor(DEVICELIST), 50), 'a contact without +notify gets no device list');
  bobDisco.stop();
  bob.end();
  await alice.next((el) => el.name === 'presence' && el.attrs.from === 'bob@localhost/laptop' && el.attrs.type === 'unavailable');
  // A new resource with the same (now cached) caps gets the last item when it comes online.
  const bob2 = await RawClient.login(srv.c2sPort, 'bob', 'pw', { resource: 'phone', presence: `<presence>${capsElement(wants.ver)}</presence>` });
  const last = await bob2.next(eventFor(DEVICELIST));
  t.equal(last.attrs.to, 'bob@localhost/phone');
  t.ok(last.getChild('delay', 'urn:xmpp:delay'), 'the last item carries its publication time');
  // A presence update with the same caps sends nothing again.
  bob2.send(`<presence><show>away</show>${capsElement(wants.ver)}</presence>`);
  t.ok(await nothing(bob2, eventFor(DEVICELIST)), 'no repeat on a status change');
  carolDisco.stop();
  for (const c of [alice, bob2, carol]) c.end();
});

t.test('explicit subscription to an open node, and unsubscribe', async (t) => {
  const alice = await login('alice', 'sub', false);
  const dave = await login('dave', 'sub', false);
  const node = 'urn:xmpp:test:open';
  await iq(alice, publish(node, "<x xmlns='urn:xmpp:test:open'>1</x>", 'one', publishOptions({ 'pubsub#access_model': 'open' })));
  let r = await iq(dave, `<pubsub xmlns='${PUBSUB}'><subscribe node='${node}' jid='alice@localhost'/></pubsub>`, 'set', 'alice@localhost');
  t.equal(pubsubCondition(r), 'invalid-jid', 'only one\'s own JID may be subscribed');
  r = await iq(dave, `<pubsub xmlns='${PUBSUB}'><subscribe node='${node}' jid='dave@localhost/sub'/></pubsub>`, 'set', 'alice@localhost');
  t.equal(r.getChild('pubsub')?.getChild('subscription')?.attrs.subscription, 'subscribed');
  await dave.next(eventFor(node));
  await iq(alice, publish(node, "<x xmlns='urn:xmpp:test:open'>2</x>", 'two'));
  const note = await dave.next(eventFor(node));
  t.equal(note.getChild('event')!.getChild('items')!.getChild('item')!.attrs.id, 'two');
  r = await iq(dave, `<pubsub xmlns='${PUBSUB}'><subscriptions/></pubsub>`, 'get', 'alice@localhost');
  t.equal(r.getChild('pubsub')?.getChild('subscriptions')?.getChildren('subscription').length, 1, 'dave lists his subscription');
  r = await iq(dave, `<pubsub xmlns='${PUBSUB}'><unsubscribe node='${node}' jid='dave@localhost/sub'/></pubsub>`, 'set', 'alice@localhost');
  t.equal(r.attrs.type, 'result');
  r = await iq(dave, `<pubsub xmlns='${PUBSUB}'><unsubscribe node='${node}' jid='dave@localhost/sub'/></pubsub>`, 'set', 'alice@localhost');
  t.equal(pubsubCondition(r), 'not-subscribed');
  await iq(alice, publish(node, "<x xmlns='urn:xmpp:test:open'>3</x>", 'three'));
  t.ok(await nothing(dave, eventFor(node)), 'no more notifications');
  alice.end();
  dave.end();
});

t.test('access models: presence, roster, whitelist', async (t) => {
  const alice = await login('alice', 'access', false);
  const bob = await login('bob', 'access', false);
  const dave = await login('dave', 'access', false);
  const node = 'urn:xmpp:test:presence';
  await iq(alice, publish(node, "<x xmlns='urn:xmpp:test:presence'/>", 'p'));
  let r = await iq(dave, items(node), 'get', 'alice@localhost');
  t.equal(condition(r), 'not-authorized', 'a stranger may not read a presence node');
  t.equal(pubsubCondition(r), 'presence-subscription-required');
  r = await iq(bob, items(node), 'get', 'alice@localhost');
  t.equal(r.attrs.type, 'result', 'a contact subscribed to alice\'s presence may');
  t.equal(r.getChild('pubsub')?.getChild('items')?.getChildren('item').length, 1);
  r = await iq(dave, `<query xmlns='http://jabber.org/protocol/disco#items'/>`, 'get', 'alice@localhost');
  t.notOk(r.getChild('query')?.getChildren('item').some((i) => i.attrs.node === node), 'nor see it in disco#items');
  r = await iq(bob, `<query xmlns='http://jabber.org/protocol/disco#items'/>`, 'get', 'alice@localhost');
  t.ok(r.getChild('query')?.getChildren('item').some((i) => i.attrs.node === node), 'bob sees it');

  const rosterNode = 'urn:xmpp:test:roster';
  await iq(alice, publish(rosterNode, "<x xmlns='urn:xmpp:test:roster'/>", 'r',
    `<publish-options>${form('http://jabber.org/protocol/pubsub#publish-options', { 'pubsub#access_model': 'roster' })
      .replace('</x>', "<field var='pubsub#roster_groups_allowed'><value>Family</value></field></x>")}</publish-options>`));
  r = await iq(bob, items(rosterNode), 'get', 'alice@localhost');
  t.equal(pubsubCondition(r), 'not-in-roster-group', 'bob is not in an allowed group');
  r = await iq(alice, configure(rosterNode, { 'pubsub#roster_groups_allowed': 'Friends' }));
  t.equal(r.attrs.type, 'result');
  r = await iq(bob, items(rosterNode), 'get', 'alice@localhost');
  t.equal(r.attrs.type, 'result', 'now he is');

  const secret = 'urn:xmpp:test:whitelist';
  await iq(alice, publish(secret, "<x xmlns='urn:xmpp:test:whitelist'/>", 'w', publishOptions({ 'pubsub#access_model': 'whitelist' })));
  r = await iq(bob, items(secret), 'get', 'alice@localhost');
  t.equal(condition(r), 'not-allowed', 'even a contact may not read a whitelist node');
  t.equal(pubsubCondition(r), 'closed-node');
  r = await iq(alice, items(secret), 'get');
  t.equal(r.getChild('pubsub')?.getChild('items')?.getChildren('item').length, 1, 'its owner may');
  r = await iq(alice, `<pubsub xmlns='${OWNER}'><affiliations node='${secret}'><affiliation jid='bob@localhost' affiliation='member'/></affiliations></pubsub>`);
  t.equal(r.attrs.type, 'result');
  r = await iq(bob, items(secret), 'get', 'alice@localhost');
  t.equal(r.attrs.type, 'result', 'a member may');
  r = await iq(alice, `<pubsub xmlns='${OWNER}'><affiliations node='${secret}'><affiliation jid='bob@localhost' affiliation='publisher'/></affiliations></pubsub>`);
  t.equal(pubsubCondition(r), 'unsupported', 'only the account publishes');
  for (const c of [alice, bob, dave]) c.end();
});

t.test("Gajim's message-displayed-sync publish: precondition-not-met, reconfigure, republish", async (t) => {
  const erin = await login('erin', 'gajim', false);
  const node = 'urn:xmpp:mds:displayed:0';
  const displayed = (id: string): string => `<displayed xmlns='urn:xmpp:mds:displayed:0'><stanza-id xmlns='urn:xmpp:sid:0' id='${id}' by='erin@localhost'/></displayed>`;
  const options = {
    'pubsub#persist_items': 'true', 'pubsub#max_items': 'max', 'pubsub#send_last_published_item': 'never', 'pubsub#access_model': 'whitelist',
  };
  // An older client created the node with defaults.
  t.equal((await iq(erin, publish(node, displayed('a'), 'bob@localhost'))).attrs.type, 'result');
  let r = await iq(erin, publish(node, displayed('b'), 'bob@localhost', publishOptions(options)));
  t.equal(condition(r), 'conflict');
  t.equal(pubsubCondition(r), 'precondition-not-met');
  r = await iq(erin, configure(node, options));
  t.equal(r.attrs.type, 'result', 'reconfigured with the same values');
  r = await iq(erin, publish(node, displayed('b'), 'bob@localhost', publishOptions(options)));
  t.equal(r.attrs.type, 'result', 'republished');
  r = await iq(erin, publish(node, displayed('c'), 'carol@localhost', publishOptions(options)));
  t.equal(r.attrs.type, 'result');
  r = await iq(erin, items(node), 'get');
  const got = r.getChild('pubsub')!.getChild('items')!.getChildren('item');
  t.same(got.map((i) => i.attrs.id), ['bob@localhost', 'carol@localhost'], 'max_items=max keeps one item per conversation');
  t.equal(got[0]!.getChild('displayed')!.getChild('stanza-id')!.attrs.id, 'b', 'republishing an id replaces the item');
  const x = await configOf(erin, node);
  t.equal(fieldValue(x, 'pubsub#max_items'), 'max');
  t.equal(fieldValue(x, 'pubsub#send_last_published_item'), 'never');
  r = await iq(erin, items(node, " max_items='1'"), 'get');
  t.same(r.getChild('pubsub')!.getChild('items')!.getChildren('item').map((i) => i.attrs.id), ['carol@localhost'], 'max_items takes the newest');
  r = await iq(erin, `<pubsub xmlns='${PUBSUB}'><retract node='${node}' notify='true'><item id='bob@localhost'/></retract></pubsub>`);
  t.equal(r.attrs.type, 'result');
  r = await iq(erin, items(node), 'get');
  t.same(r.getChild('pubsub')!.getChild('items')!.getChildren('item').map((i) => i.attrs.id), ['carol@localhost'], 'retracted');
  r = await iq(erin, `<pubsub xmlns='${OWNER}'><purge node='${node}'/></pubsub>`);
  t.equal(r.attrs.type, 'result');
  r = await iq(erin, items(node), 'get');
  t.equal(r.getChild('pubsub')!.getChild('items')!.getChildren('item').length, 0, 'purged');
  erin.end();
});

t.test('bad input is refused with the XEP\'s errors and changes nothing', async (t) => {
  const alice = await login('alice', 'bad', false);
  const bob = await login('bob', 'bad', false);
  const node = 'urn:xmpp:test:bad';
  await iq(alice, publish(node, "<x xmlns='urn:xmpp:test:bad'>ok</x>", 'keep'));
  let r = await iq(bob, publish(node, "<x xmlns='urn:xmpp:test:bad'>mine now</x>", 'keep'), 'set', 'alice@localhost');
  t.equal(condition(r), 'forbidden', "publishing to another user's PEP");
  r = await iq(bob, `<pubsub xmlns='${OWNER}'><delete node='${node}'/></pubsub>`, 'set', 'alice@localhost');
  t.equal(condition(r), 'forbidden', "deleting another user's node");
  r = await iq(alice, publish(node, `<x xmlns='urn:xmpp:test:bad'>${'a'.repeat(3000)}</x>`, 'big'));
  t.equal(condition(r), 'not-acceptable', 'an oversize item');
  t.equal(pubsubCondition(r), 'payload-too-big');
  for (const [field, value] of [['pubsub#max_items', '-1'], ['pubsub#max_items', '51'], ['pubsub#access_model', 'authorize'],
    ['pubsub#persist_items', 'maybe'], ['pubsub#send_last_published_item', 'sometimes']]) {
    r = await iq(alice, configure(node, { [field!]: value! }));
    t.equal(condition(r), 'not-acceptable', `${field}=${value}`);
  }
  r = await iq(alice, publish(node, "<x xmlns='urn:xmpp:test:bad'/>", 'x', publishOptions({ 'pubsub#access_model': 'everyone' })));
  t.equal(condition(r), 'not-acceptable', 'an invalid publish-option');
  const x = await configOf(alice, node);
  t.equal(fieldValue(x, 'pubsub#access_model'), 'presence', 'the configuration is unchanged');
  t.equal(fieldValue(x, 'pubsub#max_items'), '1');
  r = await iq(alice, items(node), 'get');
  t.same(r.getChild('pubsub')!.getChild('items')!.getChildren('item').map((i) => i.attrs.id), ['keep'], 'and so are the items');
  t.equal(r.getChild('pubsub')!.getChild('items')!.getChild('item')!.getChildText('x'), 'ok');
  r = await iq(alice, `<pubsub xmlns='${PUBSUB}'><publish node='${node}'/></pubsub>`);
  t.equal(pubsubCondition(r), 'item-required');
  r = await iq(alice, `<pubsub xmlns='${PUBSUB}'><publish node='${node}'><item><a xmlns='x'/><b xmlns='x'/></item></publish></pubsub>`);
  t.equal(pubsubCondition(r), 'invalid-payload', 'two payloads');
  r = await iq(alice, `<pubsub xmlns='${PUBSUB}'><publish><item><a xmlns='x'/></item></publish></pubsub>`);
  t.equal(pubsubCondition(r), 'nodeid-required');
  r = await iq(alice, `<pubsub xmlns='${PUBSUB}'><create node='${node}'/></pubsub>`);
  t.equal(condition(r), 'conflict', 'creating an existing node');
  r = await iq(alice, `<pubsub xmlns='${PUBSUB}'><retract node='${node}'><item id='nope'/></retract></pubsub>`);
  t.equal(condition(r), 'item-not-found');
  r = await iq(alice, items(node, " max_items='zero'"), 'get');
  t.equal(condition(r), 'bad-request');
  alice.end();
  bob.end();
});

t.test('limits: nodes per account and items per node', async (t) => {
  const frank = await login('frank', 'limits', false);
  for (let i = 0; i < 12; i++) {
    const r = await iq(frank, publish(`urn:xmpp:test:n${i}`, `<x xmlns='urn:xmpp:test:n'>${i}</x>`));
    t.equal(r.attrs.type, 'result', `node ${i}`);
  }
  let r = await iq(frank, publish('urn:xmpp:test:one-too-many', "<x xmlns='urn:xmpp:test:n'/>"));
  t.equal(condition(r), 'policy-violation', 'one node too many');
  r = await iq(frank, `<pubsub xmlns='${PUBSUB}'><create node='urn:xmpp:test:one-too-many'/></pubsub>`);
  t.equal(condition(r), 'policy-violation');
  await iq(frank, configure('urn:xmpp:test:n0', { 'pubsub#max_items': 'max' }));
  for (let i = 0; i < 55; i++) await iq(frank, publish('urn:xmpp:test:n0', `<x xmlns='urn:xmpp:test:n'>${i}</x>`, `i${i}`));
  r = await iq(frank, items('urn:xmpp:test:n0'), 'get');
  const ids = r.getChild('pubsub')!.getChild('items')!.getChildren('item').map((i) => i.attrs.id);
  t.equal(ids.length, 50, 'max means the server limit');
  t.equal(ids[0], 'i5', 'the oldest went first');
  frank.end();
});
