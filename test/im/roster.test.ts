// Roster management (RFC 6121 §2) and roster versioning (§2.6) against a real server.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Element } from 'ltx';
import t from 'tap';
import type { RosterApi } from '../../plugins/roster/api.js';
import { RawClient } from '../helpers/raw-client.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

const MODULES = [
  '  disco: {}',
  '  roster:',
  '    max_items: 3',
  '    max_name_length: 20',
  '    max_group_length: 10',
  '    max_groups: 3',
  '  presence: {}',
].join('\n');

const dataDir = mkdtempSync(path.join(tmpdir(), 'parley-roster-'));
let srv: TestServer = await startTestServer({ modules: MODULES, dataDir });
t.teardown(async () => {
  await srv.close();
  rmSync(dataDir, { recursive: true, force: true });
});
for (const u of ['alice', 'bob', 'carol', 'dave', 'erin', 'frank', 'gina']) await srv.register(u, 'pw');

const NS = 'jabber:iq:roster';
let counter = 0;
const nextId = (): string => `r${++counter}`;

async function nothing(c: RawClient, pred: (el: Element) => boolean, ms = 300): Promise<boolean> {
  try {
    await c.next(pred, ms);
    return false;
  } catch {
    return true;
  }
}

const isPush = (el: Element): boolean => el.name === 'iq' && el.attrs.type === 'set' && el.getChild('query', NS) !== undefined;

async function iqSet(c: RawClient, body: string, attrs = ''): Promise<Element> {
  const id = nextId();
  c.send(`<iq type='set' id='${id}' ${attrs}>${body}</iq>`);
  return c.nextNamed('iq', id);
}

async function rosterGet(c: RawClient, ver?: string, attrs = ''): Promise<Element> {
  const id = nextId();
  c.send(`<iq type='get' id='${id}' ${attrs}><query xmlns='${NS}'${ver === undefined ? '' : ` ver='${ver}'`}/></iq>`);
  return c.nextNamed('iq', id);
}

async function rosterSet(c: RawClient, items: string): Promise<Element> {
  const id = nextId();
  c.send(`<iq type='set' id='${id}'><query xmlns='${NS}'>${items}</query></iq>`);
  return c.nextNamed('iq', id);
}

function errorOf(el: Element): string | undefined {
  if (el.attrs.type !== 'error') return undefined;
  const e = el.getChild('error');
  return e?.children.find((c): c is Element => typeof c !== 'string' && c.name !== 'text')?.name;
}

function items(result: Element): Element[] {
  return result.getChild('query', NS)?.getChildren('item') ?? [];
}

const login = (user: string, resource: string, presence: string | false = false) =>
  RawClient.login(srv.c2sPort, user, 'pw', { resource, presence });

t.test('stream features after authentication offer roster versioning and pre-approval', async (t) => {
  const c = await RawClient.connect(srv.c2sPort);
  await c.open();
  const before = await c.starttls();
  t.notOk(before.getChild('ver', 'urn:xmpp:features:rosterver'), 'not before authentication');
  const features = await c.authPlain('alice', 'pw');
  t.ok(features.getChild('ver', 'urn:xmpp:features:rosterver'), 'rosterver');
  t.ok(features.getChild('sub', 'urn:xmpp:features:pre-approval'), 'pre-approval');
  c.end();
});

t.test('add, rename and remove a contact; pushes reach interested resources only', async (t) => {
  const a1 = await login('alice', 'one');
  const a2 = await login('alice', 'two', '<presence/>');
  const a3 = await login('alice', 'three', '<presence/>');
  t.equal(items(await rosterGet(a1)).length, 0, 'empty roster');
  await rosterGet(a2);
  // a3 never asks for the roster: it is not an interested resource.

  const add = await rosterSet(a1, "<item jid='Bob@LocalHost' name='Bobby'><group>Friends</group><group>Work</group></item>");
  t.equal(add.attrs.type, 'result');
  t.notOk(add.getChild('query'), 'the result is empty');
  for (const [c, res] of [[a1, 'one'], [a2, 'two']] as const) {
    const push = await c.next(isPush);
    t.equal(push.attrs.from, 'alice@localhost', `push to ${res} comes from the bare JID`);
    t.equal(push.attrs.to, `alice@localhost/${res}`);
    const item = items(push)[0]!;
    t.equal(item.attrs.jid, 'bob@localhost', 'JID is normalised');
    t.equal(item.attrs.name, 'Bobby');
    t.equal(item.attrs.subscription, 'none');
    t.same(item.getChildren('group').map((g) => g.getText()), ['Friends', 'Work']);
    c.send(`<iq type='result' id='${push.attrs.id}'/>`);
  }
  t.ok(await nothing(a3, isPush), 'no push for a resource that did not request the roster');

  t.equal((await rosterSet(a2, "<item jid='bob@localhost' name='Robert'><group>Work</group></item>")).attrs.type, 'result');
  for (const c of [a1, a2]) {
    const item = items(await c.next(isPush))[0]!;
    t.equal(item.attrs.name, 'Robert', 'renamed');
    t.same(item.getChildren('group').map((g) => g.getText()), ['Work']);
  }
  const roster = items(await rosterGet(a3));
  t.equal(roster.length, 1);
  t.equal(roster[0]!.attrs.name, 'Robert');

  // Now a3 is interested too.
  t.equal((await rosterSet(a1, "<item jid='bob@localhost' subscription='remove'/>")).attrs.type, 'result');
  for (const c of [a1, a2, a3]) {
    const item = items(await c.next(isPush))[0]!;
    t.equal(item.attrs.subscription, 'remove');
    t.equal(item.attrs.jid, 'bob@localhost');
  }
  t.equal(items(await rosterGet(a1)).length, 0, 'removed');
  const again = await rosterSet(a1, "<item jid='bob@localhost' subscription='remove'/>");
  t.equal(errorOf(again), 'item-not-found', 'removing what is not there');
  for (const c of [a1, a2, a3]) c.end();
});

t.test('versioned roster get', async (t) => {
  const c = await login('bob', 'v');
  const first = await rosterGet(c, '');
  const ver1 = first.getChild('query', NS)?.attrs.ver as string;
  t.ok(ver1, 'a version comes with the roster');
  const current = await rosterGet(c, ver1);
  t.equal(current.attrs.type, 'result');
  t.notOk(current.getChild('query'), 'current version: empty result');
  const plain = await rosterGet(c);
  t.notOk(plain.getChild('query', NS)?.attrs.ver, 'no ver for a client that sent none');

  await rosterSet(c, "<item jid='carol@localhost'/>");
  const push = await c.next(isPush);
  const ver2 = push.getChild('query', NS)?.attrs.ver as string;
  t.ok(ver2 && ver2 !== ver1, 'the push carries the new version');
  const stale = await rosterGet(c, ver1);
  t.equal(stale.getChild('query', NS)?.attrs.ver, ver2, 'stale version: the roster with the current version');
  t.same(items(stale).map((i) => i.attrs.jid), ['carol@localhost']);
  t.notOk((await rosterGet(c, ver2)).getChild('query'), 'current again');
  t.equal(items(await rosterGet(c, 'garbage')).length, 1, 'unknown version: full roster');

  // A change that does not change the item changes nothing, not even the version.
  await rosterSet(c, "<item jid='carol@localhost'/>");
  t.ok(await nothing(c, isPush), 'no push for a no-op');
  t.notOk((await rosterGet(c, ver2)).getChild('query'), 'version unchanged');
  c.end();
});

t.test('bad roster sets get the RFC errors and store nothing', async (t) => {
  const c = await login('carol', 'bad');
  await rosterGet(c);
  const cases: Array<[string, string, string]> = [
    ["<item jid='dave@localhost'/><item jid='erin@localhost'/>", 'bad-request', 'two items'],
    ['', 'bad-request', 'no item'],
    ["<item name='x'/>", 'bad-request', 'no jid'],
    ["<item jid='a@b@c'/>", 'jid-malformed', 'invalid JID'],
    ["<item jid='dave@'/>", 'jid-malformed', 'empty domain'],
    ["<item jid='dave@localhost/phone'/>", 'not-acceptable', 'full JID'],
    ["<item jid='carol@localhost'/>", 'not-allowed', 'own JID'],
    ["<item jid='dave@localhost'><group></group></item>", 'not-acceptable', 'empty group'],
    ["<item jid='dave@localhost'><group>Friends</group><group>Friends</group></item>", 'bad-request', 'duplicate groups'],
    ["<item jid='dave@localhost'><group>abcdefghijk</group></item>", 'not-acceptable', 'group too long'],
    ["<item jid='dave@localhost'><group>a</group><group>b</group><group>c</group><group>d</group></item>", 'not-acceptable', 'too many groups'],
    ["<item jid='dave@localhost' name='abcdefghijklmnopqrstu'/>", 'not-acceptable', 'name too long'],
  ];
  for (const [body, condition, what] of cases) {
    t.equal(errorOf(await rosterSet(c, body)), condition, what);
  }
  t.ok(await nothing(c, isPush), 'no pushes');
  t.equal(items(await rosterGet(c)).length, 0, 'nothing stored');

  // At the limits, accepted; names count characters, not bytes.
  const ok = await rosterSet(c, "<item jid='dave@localhost' name='ééééééééééééééééééé😀'><group>abcdefghij</group><group>b</group><group>c</group></item>");
  t.equal(ok.attrs.type, 'result', 'at the limits');
  await c.next(isPush);
  c.end();
});

t.test('subscription, ask and approved in a roster set are ignored', async (t) => {
  const c = await login('dave', 'ign');
  await rosterGet(c);
  t.equal((await rosterSet(c, "<item jid='erin@localhost' subscription='both' ask='subscribe' approved='true'/>")).attrs.type, 'result');
  const item = items(await c.next(isPush))[0]!;
  t.equal(item.attrs.subscription, 'none');
  t.notOk(item.attrs.ask);
  t.notOk(item.attrs.approved);
  c.end();
});

t.test('the roster size is limited', async (t) => {
  const c = await login('erin', 'full');
  await rosterGet(c);
  for (const u of ['u1', 'u2', 'u3']) {
    t.equal((await rosterSet(c, `<item jid='${u}@example.org'/>`)).attrs.type, 'result');
    await c.next(isPush);
  }
  t.equal(errorOf(await rosterSet(c, "<item jid='u4@example.org'/>")), 'not-allowed', 'full');
  t.equal((await rosterSet(c, "<item jid='u3@example.org' name='still editable'/>")).attrs.type, 'result', 'existing items can change');
  await c.next(isPush);
  t.equal(items(await rosterGet(c)).length, 3);
  c.end();
});

t.test('only the account itself may use its roster', async (t) => {
  const c = await login('frank', 'x');
  const get = await rosterGet(c, undefined, "to='alice@localhost'");
  t.equal(errorOf(get), 'forbidden', 'get on another user');
  const set = await iqSet(c, `<query xmlns='${NS}'><item jid='frank2@localhost'/></query>`, "to='alice@localhost'");
  t.equal(errorOf(set), 'forbidden', 'set on another user');
  t.equal((await rosterGet(c, undefined, "to='frank@localhost'")).attrs.type, 'result', 'own bare JID as to');
  c.end();
});

t.test('the service API: upsert and remove as the server, with pushes', async (t) => {
  const api = srv.server.host('localhost')!.services.get('roster') as RosterApi;
  const c = await login('gina', 'api');
  await rosterGet(c);
  await api.upsert('gina@localhost', { jid: 'Alice@localhost', name: 'Alice', groups: ['Contacts'], subscription: 'none' });
  const item = items(await c.next(isPush))[0]!;
  t.equal(item.attrs.jid, 'alice@localhost');
  t.equal(item.attrs.name, 'Alice');
  t.same(await api.item('gina@localhost', 'alice@localhost'), { jid: 'alice@localhost', name: 'Alice', groups: ['Contacts'], subscription: 'none' });
  const refused = await api.upsert('gina@localhost', { jid: 'x@localhost', groups: ['', 'a'], subscription: 'none' }).then(() => undefined, (e: unknown) => e);
  t.equal((refused as { condition?: string } | undefined)?.condition, 'not-acceptable', 'an empty group is refused');
  t.equal((await api.items('gina@localhost')).length, 1, 'a refused upsert stores nothing');
  await api.remove('gina@localhost', 'alice@localhost');
  t.equal(items(await c.next(isPush))[0]!.attrs.subscription, 'remove');
  await api.remove('gina@localhost', 'alice@localhost');
  t.same(await api.items('gina@localhost'), []);
  c.end();
});

t.test('the roster survives a restart', async (t) => {
  const c = await login('alice', 'persist');
  await rosterGet(c);
  await rosterSet(c, "<item jid='kept@example.org' name='Kept'><group>G</group></item>");
  const ver = (await c.next(isPush)).getChild('query', NS)!.attrs.ver as string;
  c.end();
  await srv.close();
  srv = await startTestServer({ modules: MODULES, dataDir });
  const d = await login('alice', 'again');
  const r = items(await rosterGet(d));
  t.same(r.map((i) => [i.attrs.jid, i.attrs.name, i.getChildText('group')]), [['kept@example.org', 'Kept', 'G']]);
  t.notOk((await rosterGet(d, ver)).getChild('query'), 'the version survives too');
  d.end();
});
