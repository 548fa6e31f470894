// XEP-0049 private XML storage through a real session.
import type { Element } from 'ltx';
import t from 'tap';
import { RawClient } from '../helpers/raw-client.js';
import { startTestServer } from '../helpers/server.js';

const srv = await startTestServer({ modules: '  disco: {}\n  private:\n    max_size: 2KiB\n    max_namespaces: 3' });
t.teardown(() => srv.close());
for (const u of ['alice', 'bob', 'carol']) await srv.register(u, 'pw');

const NS = 'jabber:iq:private';
const STANZAS = 'urn:ietf:params:xml:ns:xmpp-stanzas';
let counter = 0;

async function iq(c: RawClient, payload: string, type = 'set', to?: string): Promise<Element> {
  const id = `p${++counter}`;
  c.send(`<iq type='${type}' id='${id}'${to ? ` to='${to}'` : ''}><query xmlns='${NS}'>${payload}</query></iq>`);
  return c.nextNamed('iq', id);
}

/** The elements a get returns for one namespace. */
async function stored(c: RawClient, request: string): Promise<Element[]> {
  const r = await iq(c, request, 'get');
  if (r.attrs.type !== 'result') throw new Error(`get failed: ${r.toString()}`);
  return r.getChild('query', NS)!.children.filter((x): x is Element => typeof x !== 'string');
}

function condition(el: Element): string | undefined {
  return el.getChild('error')?.children.find((c): c is Element => typeof c !== 'string' && c.attrs.xmlns === STANZAS && c.name !== 'text')?.name;
}

const BOOKMARKS = "<storage xmlns='storage:bookmarks'><conference jid='room@muc.example' autojoin='true'><nick>al</nick></conference></storage>";

t.test('store, read back, replace and clear', async (t) => {
  const c = await RawClient.login(srv.c2sPort, 'alice', 'pw', { presence: false });
  c.send("<iq type='get' to='localhost' id='disco'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>");
  const features = (await c.nextNamed('iq', 'disco')).getChild('query')!.getChildren('feature').map((f) => f.attrs.var);
  t.ok(features.includes(NS), 'advertised on the domain');
  const empty = await stored(c, "<storage xmlns='storage:bookmarks'/>");
  t.equal(empty.length, 1, 'nothing stored: the requested element comes back');
  t.equal(empty[0]!.name, 'storage');
  t.equal(empty[0]!.attrs.xmlns, 'storage:bookmarks');
  t.equal(empty[0]!.children.length, 0, 'empty');

  t.equal((await iq(c, BOOKMARKS)).attrs.type, 'result');
  const got = await stored(c, "<storage xmlns='storage:bookmarks'/>");
  t.equal(got.length, 1);
  t.equal(got[0]!.getChild('conference')?.attrs.jid, 'room@muc.example', 'the stored XML');
  t.equal(got[0]!.getChild('conference')?.getChildText('nick'), 'al');

  await iq(c, "<note xmlns='storage:rosternotes' jid='a@x'>one</note><note xmlns='storage:rosternotes' jid='b@x'>two</note><prefs xmlns='app:prefs'><x/></prefs>");
  const notes = await stored(c, "<note xmlns='storage:rosternotes'/>");
  t.same(notes.map((n) => n.getText()), ['one', 'two'], 'several elements of one namespace are kept together');
  t.equal((await stored(c, "<prefs xmlns='app:prefs'/>"))[0]!.getChild('x') !== undefined, true, 'two namespaces in one set');
  t.equal((await stored(c, "<storage xmlns='storage:bookmarks'/>"))[0]!.getChild('conference')?.attrs.jid, 'room@muc.example',
    'other namespaces are untouched');

  await iq(c, "<note xmlns='storage:rosternotes' jid='c@x'>three</note>");
  t.same((await stored(c, "<note xmlns='storage:rosternotes'/>")).map((n) => n.getText()), ['three'], 'a set replaces the namespace');
  await iq(c, "<storage xmlns='storage:bookmarks'/>");
  t.equal((await stored(c, "<storage xmlns='storage:bookmarks'/>"))[0]!.children.length, 0, 'an empty element clears it');
  c.end();
});

t.test('refusals', async (t) => {
  const c = await RawClient.login(srv.c2sPort, 'bob', 'pw', { presence: false });
  await iq(c, "<prefs xmlns='bob:prefs'>keep</prefs>");

  t.equal(condition(await iq(c, '', 'set')), 'not-acceptable', 'a set without a child');
  t.equal(condition(await iq(c, '', 'get')), 'bad-request', 'a get without a child');
  t.equal(condition(await iq(c, "<a xmlns='x:a'/><b xmlns='x:b'/>", 'get')), 'bad-request', 'a get of two namespaces');
  for (const ns of ['jabber:x:data', 'jabber:client', 'jabber:iq:private', 'http://jabber.org/protocol/muc', 'vcard-temp']) {
    t.equal(condition(await iq(c, `<x xmlns='${ns}'>no</x>`)), 'not-acceptable', `set in ${ns}`);
    t.equal(condition(await iq(c, `<x xmlns='${ns}'/>`, 'get')), 'not-acceptable', `get in ${ns}`);
  }
  t.equal(condition(await iq(c, '<nonamespace/>')), 'not-acceptable', 'a child without a namespace of its own');
  t.equal(condition(await iq(c, "<prefs xmlns='bob:prefs'>changed</prefs><x xmlns='jabber:x:oob'/>")), 'not-acceptable',
    'one reserved element refuses the whole set');
  t.equal(condition(await iq(c, `<prefs xmlns='bob:prefs'>${'x'.repeat(3000)}</prefs>`)), 'policy-violation', 'larger than max_size');
  t.equal((await stored(c, "<prefs xmlns='bob:prefs'/>"))[0]!.getText(), 'keep', 'nothing was stored by the refused sets');

  await iq(c, "<a xmlns='x:a'/><b xmlns='x:b'>1</b><c xmlns='x:c'>1</c>");
  t.equal(condition(await iq(c, "<d xmlns='x:d'>1</d>")), 'policy-violation', 'more namespaces than max_namespaces');
  t.equal((await stored(c, "<d xmlns='x:d'/>"))[0]!.children.length, 0, 'not stored');
  t.equal((await iq(c, "<prefs xmlns='bob:prefs'>replaced</prefs>")).attrs.type, 'result', 'replacing within the limit is fine');

  t.equal(condition(await iq(c, "<prefs xmlns='bob:prefs'>x</prefs>", 'set', 'carol@localhost')), 'forbidden', "setting another user's data");
  t.equal(condition(await iq(c, "<prefs xmlns='bob:prefs'/>", 'get', 'carol@localhost')), 'forbidden', "reading another user's data");
  const own = await iq(c, "<prefs xmlns='bob:prefs'/>", 'get', 'bob@localhost');
  t.equal(own.getChild('query', NS)?.getChild('prefs')?.getText(), 'replaced', 'the own bare JID as the address is fine');
  c.end();
});
